#!/usr/bin/env bash
# Smoke test of imap-loadgen against the real system: starts a mailbox service and an
# IMAP gateway on loopback, creates users, populates them and runs the
# imaptest-default profile briefly over plain IMAP and over IMAPS. Checks only that the
# outputs parse, commands ran and no protocol errors were seen — never speed.
# Usage outside Bazel (after `bazel build //bench/loadgen:all //gateway:imap-gateway
# //mailbox-service/...`): bench/loadgen/loadgen_smoke.sh
set -euo pipefail

if [[ -n "${TEST_SRCDIR:-}" ]]; then
  root="$TEST_SRCDIR/imapd"
  bin_dir="$root"
  work="$TEST_TMPDIR"
else
  root="$(cd "$(dirname "$0")/../.." && pwd)"
  bin_dir="$root/bazel-bin"
  work="$(mktemp -d)"
fi
bin_service="$bin_dir/mailbox-service/server/mailbox-service"
bin_admin="$bin_dir/mailbox-service/admin/mailbox-admin"
bin_gateway="$bin_dir/gateway/imap-gateway"
bin_loadgen="$bin_dir/bench/loadgen/imap-loadgen"
profiles="$root/bench/loadgen/profiles"

data="$work/loadgen-smoke"
rm -rf "$data"
mkdir -p "$data/store"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

wait_for() {
  for _ in $(seq 1 300); do
    [[ -s "$1" ]] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  cat "$data"/*.log >&2 || true
  return 1
}

# Cheap password hashing: the smoke measures nothing, and logins are frequent.
"$bin_service" --listen=127.0.0.1:0 --http-listen=127.0.0.1:0 --data-dir="$data/store" --port-file="$data/store/port" \
  --argon2-memory=64KiB --argon2-time-cost=1 \
  --auth-user-free-failures=100000 --auth-ip-free-failures=100000 \
  >"$data/service.log" 2>&1 &
pids+=($!)
wait_for "$data/store/port"
store="127.0.0.1:$(cat "$data/store/port")"

users=5
for i in $(seq 1 $users); do
  "$bin_admin" --server="$store" --token-file="$data/store/admin.token" \
    user add "user$i" --password "secret-pw" >/dev/null
done

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$data/key.pem" -out "$data/cert.pem" \
  -days 2 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  >/dev/null 2>&1

"$bin_gateway" --store="$store" --imap-listen=127.0.0.1:0 --imaps-listen=127.0.0.1:0 \
  --http-listen=127.0.0.1:0 --tls-cert-file="$data/cert.pem" --tls-key-file="$data/key.pem" \
  --allow-plaintext-auth=true --ports-file="$data/gateway.ports" \
  --store-token-file="$data/store/gateway.token" >"$data/gateway.log" 2>&1 &
pids+=($!)
wait_for "$data/gateway.ports"
read -r imap_port imaps_port < <(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); print(p["imap"], p["imaps"])' "$data/gateway.ports")

check() {
  python3 - "$1" "$2" <<'PY'
import json, sys
out, what = sys.argv[1], sys.argv[2]
summary = json.load(open(out + "/summary.json"))
samples = [json.loads(line) for line in open(out + "/samples.jsonl") if line.strip()]
assert summary["commands"] > 0, summary
assert summary["errors"]["protocol"] == 0, summary
assert summary["errors"]["timeout"] == 0, summary
assert "login" in summary["kinds"] and "connect" in summary["kinds"], summary
for row in summary["kinds"].values():
    assert row["p50_us"] <= row["p99_us"] <= row["max_us"], row
assert samples and all("open_connections" in s for s in samples), samples
print("%s: %d commands, %.0f/s, errors %s" % (what, summary["commands"],
      summary["commands_per_s"], summary["errors"]))
PY
}

# Plain IMAP, closed loop, with populate.
"$bin_loadgen" --port="$imap_port" --users=$users --clients=5 --duration=3s \
  --profile="$profiles/imaptest-default.profile" --populate=20 --out-dir="$data/plain" \
  >/dev/null 2>"$data/loadgen-plain.log" || { cat "$data/loadgen-plain.log" >&2; exit 1; }
check "$data/plain" plain

# IMAPS, open loop.
"$bin_loadgen" --port="$imaps_port" --tls --users=$users --clients=5 --duration=3s \
  --profile="$profiles/imaptest-default.profile" --open-loop-rate=50 \
  --out-dir="$data/tls" >/dev/null 2>"$data/loadgen-tls.log" ||
  { cat "$data/loadgen-tls.log" >&2; exit 1; }
check "$data/tls" tls

# Bad input is refused with a clear message, not a crash.
if "$bin_loadgen" --port="$imap_port" --profile="$data/missing.profile" 2>"$data/err.log"; then
  echo "a missing profile was accepted" >&2
  exit 1
fi
grep -q "cannot open profile" "$data/err.log"
if "$bin_loadgen" --port="$imap_port" --clients=50000 \
  --profile="$profiles/imaptest-default.profile" 2>"$data/err.log"; then
  echo "50000 clients were accepted" >&2
  exit 1
fi
grep -q "open files" "$data/err.log"
echo "loadgen smoke passed"
