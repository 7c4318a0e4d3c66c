#!/usr/bin/env bash
# Starts a mailbox service on a fresh data directory, creates the bench user and
# runs store-throughput against it. Usage:
#   bench/store/store_throughput.sh [--smoke] [store-throughput flags...]
# (run from the workspace after `bazel build //bench/store:all //mailbox-service/...`;
# under `bazel test` the binaries come from runfiles). --smoke runs a tiny load and
# only checks that the report parses.
set -euo pipefail

if [[ -n "${TEST_SRCDIR:-}" ]]; then
  root="$TEST_SRCDIR/imapd"
  bin_service="$root/mailbox-service/server/mailbox-service"
  bin_admin="$root/mailbox-service/admin/mailbox-admin"
  bin_bench="$root/bench/store/store-throughput"
  work="$TEST_TMPDIR"
else
  root="$(cd "$(dirname "$0")/../.." && pwd)"
  bin_service="$root/bazel-bin/mailbox-service/server/mailbox-service"
  bin_admin="$root/bazel-bin/mailbox-service/admin/mailbox-admin"
  bin_bench="$root/bazel-bin/bench/store/store-throughput"
  work="$(mktemp -d)"
fi

smoke=0
if [[ "${1:-}" == "--smoke" ]]; then
  smoke=1
  shift
fi

data="$work/store-bench-data"
rm -rf "$data"
mkdir -p "$data"
"$bin_service" --listen=127.0.0.1:0 --http-listen=127.0.0.1:0 --data-dir="$data" --port-file="$data/port" \
  >"$work/service.log" 2>&1 &
service_pid=$!
trap 'kill -TERM $service_pid 2>/dev/null; wait $service_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  [[ -s "$data/port" ]] && break
  sleep 0.1
done
port=$(cat "$data/port")
target="127.0.0.1:$port"
"$bin_admin" --server="$target" --token-file="$data/admin.token" user add bench --password bench >/dev/null

if ((smoke)); then
  report=$("$bin_bench" --target="$target" --messages=50 --size=5000 --concurrency=4 "$@")
else
  report=$("$bin_bench" --target="$target" "$@")
fi
echo "$report"
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["errors"]==0, r; assert r["append"]["messages_per_s"]>0 and r["fetch"]["mb_per_s"]>0, r' "$report"
