#!/usr/bin/env bash
# The README's run command: installs what is missing, builds, and starts the whole
# system on its embedded default (SQLite in ./.data) with a demo user: the mailbox
# service and one IMAP gateway with a self-signed certificate. Ctrl-C (SIGINT) or
# SIGTERM drains and stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-and-build.sh

data_dir=${MAILBOX_DATA_DIR:-$PWD/.data}
listen=${MAILBOX_LISTEN:-127.0.0.1:50051}
demo=${MAILBOX_DEMO_USER:-demo:demo}
imaps=${IMAPD_IMAPS_LISTEN:-127.0.0.1:9993}
imap=${IMAPD_IMAP_LISTEN:-127.0.0.1:9143}
http=${IMAPD_HTTP_LISTEN:-127.0.0.1:8143}
bin=bazel-bin
mkdir -p "$data_dir"

# A self-signed certificate for local use, made once. Operators pass their own
# with --tls-cert-file/--tls-key-file (reloaded on change or SIGHUP). ECDSA P-256: its
# handshake signature costs the gateway a small fraction of an RSA-2048 one.
if [[ ! -s "$data_dir/tls-cert.pem" ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$data_dir/tls-key.pem" -out "$data_dir/tls-cert.pem" 2>/dev/null
  chmod 600 "$data_dir/tls-key.pem"
fi

"$bin/mailbox-service/server/mailbox-service" --listen="$listen" --data-dir="$data_dir" \
  --demo-user="$demo" --port-file="$data_dir/service.port" &
service_pid=$!
stop() {
  kill -TERM "${gateway_pid:-}" 2>/dev/null || true
  wait "${gateway_pid:-}" 2>/dev/null || true
  kill -TERM "$service_pid" 2>/dev/null || true
  wait "$service_pid" 2>/dev/null || true
}
trap stop EXIT INT TERM
for _ in $(seq 1 300); do [[ -s "$data_dir/service.port" ]] && break; sleep 0.1; done
rm -f "$data_dir/service.port"

"$bin/gateway/imap-gateway" --store="$listen" --imaps-listen="$imaps" --imap-listen="$imap" \
  --http-listen="$http" --tls-cert-file="$data_dir/tls-cert.pem" \
  --tls-key-file="$data_dir/tls-key.pem" --store-token-file="$data_dir/gateway.token" &
gateway_pid=$!

user=${demo%%:*}
password=${demo#*:}
cat <<MSG

== running
  IMAPS           $imaps   (implicit TLS, self-signed certificate: $data_dir/tls-cert.pem)
  IMAP+STARTTLS   $imap
  user / password $user / $password
  operator        http://$http/metrics  /healthz  /readyz
  mailbox service $listen  (data in $data_dir)

Try it:
  curl --cacert $data_dir/tls-cert.pem -u $user:$password imaps://localhost:${imaps##*:}/INBOX
  python3 -c "import imaplib,ssl; c=imaplib.IMAP4_SSL('127.0.0.1', ${imaps##*:}, ssl_context=ssl._create_unverified_context()); print(c.login('$user','$password')); print(c.list())"
  Thunderbird: server 127.0.0.1, port ${imaps##*:}, SSL/TLS, normal password (accept the certificate)
  Import mail: $bin/mailbox-service/admin/mailbox-admin --server=$listen --token-file=$data_dir/admin.token import mbox $user INBOX FILE.mbox

Ctrl-C stops both processes.
MSG

wait "$gateway_pid"
