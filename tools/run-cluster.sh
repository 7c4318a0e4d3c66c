#!/usr/bin/env bash
# The multi-replica topology on one machine, for people who want to try it: a
# private PostgreSQL server (in ./.cluster, Unix socket only), two mailbox-service
# replicas on it (--backend=postgres) and two IMAP gateways, each spreading its
# calls over both replicas. Ctrl-C (SIGINT) or SIGTERM stops everything, PostgreSQL
# included; the data stays in ./.cluster for the next start.
#
#   tools/run-cluster.sh          # IMAPS on 127.0.0.1:9993 and :9994, user demo/demo
#
# For its test (tests/replicas): IMAPD_BIN_DIR runs binaries built already (no
# install, no build), IMAPD_CLUSTER_DIR moves the data, and IMAPD_CLUSTER_PORT_OFFSET
# is added to every port.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${IMAPD_BIN_DIR:-}" ]]; then
  tools/install-and-build.sh
fi

dir=${IMAPD_CLUSTER_DIR:-$PWD/.cluster}
bin=${IMAPD_BIN_DIR:-bazel-bin}
offset=${IMAPD_CLUSTER_PORT_OFFSET:-0}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
mkdir -p "$dir"
# PostgreSQL refuses to run as root: then it runs as Debian's "postgres" user, in a
# directory of its own under /tmp (the socket path must stay short).
pg_dir=$dir/pg
as_pg=()
if [[ $(id -u) == 0 ]]; then
  pg_dir=/tmp/imapd-cluster-pg-$(printf %s "$dir" | md5sum | cut -c1-8)
  mkdir -p "$pg_dir"
  chown postgres: "$pg_dir"
  as_pg=(runuser -u postgres --)
fi
# From "/": the server's user may not enter this directory.
as_server() { (cd / && "${as_pg[@]}" "$@"); }
if [[ ! -s "$pg_dir/data/PG_VERSION" ]]; then
  as_server "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust -E UTF8 \
    --locale=C.UTF-8 > "$dir/initdb.log"
fi
as_server "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
  -o "-k $pg_dir -p 5432 -c listen_addresses=" start > /dev/null
"$pg_bin/createdb" -h "$pg_dir" -p 5432 -U postgres mail 2>/dev/null || true
conninfo="host=$pg_dir port=5432 dbname=mail user=postgres"

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  as_server "$pg_bin/pg_ctl" -D "$pg_dir/data" -w stop > /dev/null 2>&1 || true
}
trap stop EXIT INT TERM

if [[ ! -s "$dir/tls-cert.pem" ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/tls-key.pem" -out "$dir/tls-cert.pem" 2>/dev/null
  chmod 600 "$dir/tls-key.pem"
fi

targets=()
for i in 1 2; do
  data=$dir/replica$i
  mkdir -p "$data" && chmod 700 "$data"
  if [[ $i == 2 ]]; then  # one deployment, one set of tokens
    cp "$dir/replica1/admin.token" "$dir/replica1/gateway.token" "$dir/replica1/session.key" "$data/"
  fi
  listen=127.0.0.1:$((50060 + offset + i))
  extra=()
  [[ $i == 1 ]] && extra=(--demo-user=demo:demo)
  "$bin/mailbox-service/server/mailbox-service" --listen="$listen" --data-dir="$data" \
    --backend=postgres --postgres="$conninfo" --port-file="$data/port" \
    --http-listen=127.0.0.1:$((8160 + offset + i)) "${extra[@]}" &
  pids+=($!)
  for _ in $(seq 1 300); do [[ -s "$data/port" ]] && break; sleep 0.1; done
  rm -f "$data/port"
  targets+=("$listen")
done
store=$(IFS=,; echo "${targets[*]}")
for i in 1 2; do
  "$bin/gateway/imap-gateway" --store="$store" --imaps-listen=127.0.0.1:$((9992 + offset + i)) \
    --imap-listen=127.0.0.1:$((9142 + offset + i)) --http-listen=127.0.0.1:$((8142 + offset + i)) \
    --tls-cert-file="$dir/tls-cert.pem" --tls-key-file="$dir/tls-key.pem" \
    --store-token-file="$dir/replica1/gateway.token" --gateway-id="gateway$i" &
  pids+=($!)
done

cat <<MSG

== running
  PostgreSQL      $conninfo
  replicas        ${targets[*]}   (mailbox-service --backend=postgres)
  gateways        IMAPS 127.0.0.1:$((9993 + offset)) and 127.0.0.1:$((9994 + offset)) (each on both replicas)
  user / password demo / demo
  certificate     $dir/tls-cert.pem

Try it: log in on $((9993 + offset)), IDLE, and APPEND through $((9994 + offset)); kill one replica and go on.
  $bin/mailbox-service/admin/mailbox-admin --server=${targets[1]} --token-file=$dir/replica1/admin.token user list

Ctrl-C stops everything.
MSG
wait "${pids[@]}"
