#!/usr/bin/env bash
# Runs every tests/abuse/test_*.py module against the real binaries and ends with
# "N passed, M failed". Under Bazel: bazel test //tests/abuse:abuse_test. By hand, after
# building the three binaries: bash tests/abuse/run_abuse.sh [MODULE...]
set -uo pipefail

if [[ -n "${TEST_SRCDIR:-}" ]]; then
  here="$TEST_SRCDIR/imapd/tests/abuse"
else
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fi
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
export TEST_TMPDIR="$tmp"
export PYTHONDONTWRITEBYTECODE=1
export ABUSE_REPORT="${ABUSE_REPORT:-$tmp/abuse-memory.json}"
rm -f "$ABUSE_REPORT"
python=/usr/bin/python3
[[ -x "$python" ]] || python=python3

modules=("$@")
if ((${#modules[@]} == 0)); then
  for path in "$here"/test_*.py; do
    name=$(basename "$path" .py)
    modules+=("$name")
  done
fi

log="$tmp/abuse.log"
(cd "$here" && "$python" -m unittest -v "${modules[@]}") 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
"$python" "$here/abuse_util.py" --report "$ABUSE_REPORT"

ran=$(grep -Eo '^Ran [0-9]+ test' "$log" | tail -1 | grep -Eo '[0-9]+')
ran=${ran:-0}
bad=0
for n in $(grep -E '^FAILED \(' "$log" | tail -1 \
           | grep -Eo '(failures|errors|unexpected successes)=[0-9]+' | grep -Eo '[0-9]+'); do
  bad=$((bad + n))
done
if [[ "$status" != 0 && "$bad" == 0 ]]; then
  bad=1
fi
if grep -Eq '^OK \(.*skipped' "$log"; then
  echo "error: skipped tests"
  bad=$((bad + 1))
fi
((ran > 0)) || bad=$((bad + 1))
echo "abuse: $((ran - (bad > ran ? ran : bad))) passed, $bad failed"
((bad == 0))
