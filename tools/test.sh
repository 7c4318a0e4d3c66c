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

# The parsers and the session again under AddressSanitizer + UndefinedBehaviorSanitizer
# (.bazelrc --config=asan; docs/security.md "Fuzzing and sanitizers"). The fuzz tests
# are left out here: their fuzzers are built with ASan and UBSan in every configuration
# and already ran above.
echo "== test under ASan+UBSan"
asan_log=$(mktemp)
set +e
bazel test --config=asan --build_tests_only --test_tag_filters=-fuzz \
  //gateway/imap:all //gateway/session:all //mailbox-service/mime:all \
  --test_output=errors --test_summary=short 2>&1 | grep --line-buffered -vE 'linux-sandbox' | tee "$asan_log"
asan_status=${PIPESTATUS[0]}
set -e
if [[ "$status" == 0 ]]; then
  status=$asan_status
fi

# The plain closing line: one count per Bazel test target and step (a target of the
# ASan step counts again).
count() {
  cat "$log" "$asan_log" | grep -cE "$1" || true
}
passed=$(count '^//.* (PASSED|\(cached\) PASSED)')
failed=$(count '^//.* (FAILED|TIMEOUT|NO STATUS|FLAKY)')
rm -f "$log" "$asan_log"
echo "$passed passed, $failed failed"
exit "$status"
