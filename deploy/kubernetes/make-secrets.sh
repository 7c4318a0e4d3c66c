#!/usr/bin/env bash
# Makes the files the kustomizations turn into Secrets (base/secrets/, and with
# --postgres overlays/postgres/secrets/): the tokens, a CA for the gateway-service
# link with the service's, a gateway's and mailbox-admin's certificates, and, unless
# you give your own, a self-signed certificate for IMAPS (replace it with one clients
# trust). A file that exists is kept, so running it again only adds what is missing;
# delete a file to make it anew.
#
#   make-secrets.sh [--namespace imapd] [--hostname mail.example.org]
#                   [--imaps-cert FULLCHAIN.pem --imaps-key KEY.pem]
#                   [--postgres 'host=db dbname=mail user=mail password=...'] [--dir DIR]
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
namespace=imapd
hostname=mail.example.org
imaps_cert=""
imaps_key=""
postgres=""
usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
while (($#)); do
  case "$1" in
    --namespace) namespace="${2:?}"; shift 2 ;;
    --hostname) hostname="${2:?}"; shift 2 ;;
    --imaps-cert) imaps_cert="${2:?}"; shift 2 ;;
    --imaps-key) imaps_key="${2:?}"; shift 2 ;;
    --postgres) postgres="${2:?}"; shift 2 ;;
    --dir) dir="${2:?}"; shift 2 ;;
    *) usage ;;
  esac
done
if [[ -n "$imaps_cert" && -z "$imaps_key" ]] || [[ -z "$imaps_cert" && -n "$imaps_key" ]]; then
  echo "make-secrets: give --imaps-cert and --imaps-key together" >&2
  exit 2
fi

umask 077
secrets="$dir/base/secrets"
mkdir -p "$secrets/tokens" "$secrets/link" "$secrets/imaps"
made=()

# 32 random bytes in hex: what the service itself makes for each of them.
for name in gateway.token admin.token session.key; do
  if [[ ! -e "$secrets/tokens/$name" ]]; then
    openssl rand -hex 32 > "$secrets/tokens/$name"
    made+=("tokens/$name")
  fi
done

# A certificate signed by the link's CA: name, key usage, subjectAltName (optional).
link_cert() {
  local name="$1" usage="$2" san="${3:-}"
  [[ -e "$secrets/link/$name.crt" ]] && return 0
  local ext="$secrets/link/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$usage"
    [[ -n "$san" ]] && echo "subjectAltName=$san"
  } > "$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$secrets/link/$name.key" -out "$secrets/link/$name.csr" 2>/dev/null
  openssl x509 -req -in "$secrets/link/$name.csr" -CA "$secrets/link/ca.crt" \
    -CAkey "$secrets/link/ca.key" -CAcreateserial -days 825 -sha256 -extfile "$ext" \
    -out "$secrets/link/$name.crt" 2>/dev/null
  rm -f "$secrets/link/$name.csr" "$ext"
  made+=("link/$name.crt")
}

if [[ ! -e "$secrets/link/ca.crt" ]]; then
  # A new CA invalidates the certificates it signed before.
  rm -f "$secrets/link/"{service,gateway,admin}.{crt,key}
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=imapd link CA" -keyout "$secrets/link/ca.key" -out "$secrets/link/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  made+=("link/ca.crt")
fi
# The gateways check the name mailbox-service (IMAPD_STORE_TLS_SERVER_NAME).
link_cert service serverAuth \
  "DNS:mailbox-service,DNS:mailbox-service.$namespace.svc,DNS:mailbox-service.$namespace.svc.cluster.local"
link_cert gateway clientAuth
link_cert admin clientAuth

if [[ -n "$imaps_cert" ]]; then
  cp "$imaps_cert" "$secrets/imaps/tls.crt"
  cp "$imaps_key" "$secrets/imaps/tls.key"
  made+=("imaps/tls.crt (from $imaps_cert)")
elif [[ ! -e "$secrets/imaps/tls.crt" ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 \
    -subj "/CN=$hostname" -addext "subjectAltName=DNS:$hostname" \
    -keyout "$secrets/imaps/tls.key" -out "$secrets/imaps/tls.crt" 2>/dev/null
  made+=("imaps/tls.crt (self-signed for $hostname: replace it with one clients trust)")
fi

if [[ -n "$postgres" ]]; then
  mkdir -p "$dir/overlays/postgres/secrets"
  printf '%s\n' "$postgres" > "$dir/overlays/postgres/secrets/postgres.conninfo"
  made+=("overlays/postgres/secrets/postgres.conninfo")
fi

if ((${#made[@]} == 0)); then
  echo "make-secrets: every file was there already ($secrets)"
else
  printf 'make-secrets: made %s\n' "${made[@]}"
fi
