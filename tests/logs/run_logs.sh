#!/usr/bin/env bash
# Runs tests/logs/test_logs.py against the real binaries. Under Bazel:
# bazel test //tests/logs:logs_test. By hand, after building the three binaries:
# bash tests/logs/run_logs.sh
set -uo pipefail

if [[ -n "${TEST_SRCDIR:-}" ]]; then
  here="$TEST_SRCDIR/imapd/tests/logs"
else
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fi
export TEST_TMPDIR="${TEST_TMPDIR:-$(mktemp -d)}"
export PYTHONDONTWRITEBYTECODE=1
python=/usr/bin/python3
[[ -x "$python" ]] || python=python3
if ! command -v fail2ban-regex >/dev/null; then
  echo "fail2ban-regex not found: install fail2ban (tools/install-deps.sh)" >&2
  exit 1
fi

log="$TEST_TMPDIR/logs.log"
(cd "$here" && "$python" -m unittest -v test_logs) 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if grep -Eq '^OK \(.*skipped' "$log"; then
  echo "error: skipped tests"
  exit 1
fi
exit "$status"
