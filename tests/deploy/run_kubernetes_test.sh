#!/usr/bin/env bash
# Runs tests/deploy/test_kubernetes.py and ends with "N passed, M failed". Under Bazel:
# bazel test //tests/deploy:kubernetes_test. By hand, after building the three
# binaries: bash tests/deploy/run_kubernetes_test.sh
set -uo pipefail

if [[ -n "${TEST_SRCDIR:-}" ]]; then
  here="$TEST_SRCDIR/imapd/tests/deploy"
else
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fi
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
export TEST_TMPDIR="$tmp"
export PYTHONDONTWRITEBYTECODE=1
# Debian's python3-kubernetes and python3-yaml live with the system interpreter.
python=/usr/bin/python3
[[ -x "$python" ]] || python=python3

log="$tmp/kubernetes.log"
(cd "$here" && "$python" -m unittest -v test_kubernetes) 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

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
echo "kubernetes: $((ran - (bad > ran ? ran : bad))) passed, $bad failed"
((bad == 0))
