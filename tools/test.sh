#!/usr/bin/env bash
# The README's test command: installs what is missing, builds everything and runs
# every test (unit, integration against the real binaries). Exits non-zero on any
# failure. Bazel keeps its cache between runs, so a warm run is much faster.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh

echo "== build"
if ! bazel build //... > /tmp/imapd-build.log 2>&1; then
  grep -vE 'linux-sandbox' /tmp/imapd-build.log | tail -60
  echo "build failed"
  exit 1
fi

echo "== test"
log=$(mktemp)
set +e
bazel test //... --test_output=errors --test_summary=short 2>&1 | grep --line-buffered -vE 'linux-sandbox' | tee "$log"
status=${PIPESTATUS[0]}
set -e

# The plain closing line: one count per Bazel test target.
passed=$(grep -cE '^//.* (PASSED|\(cached\) PASSED)' "$log" || true)
failed=$(grep -cE '^//.* (FAILED|TIMEOUT|NO STATUS|FLAKY)' "$log" || true)
rm -f "$log"
echo "$passed passed, $failed failed"
exit "$status"
