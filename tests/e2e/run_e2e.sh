#!/usr/bin/env bash
# End-to-end suites against the real mailbox-service and imap-gateway binaries:
# Python imaplib, the raw-socket protocol suite, curl, and Node's imapflow (installed
# with `npm ci` from the committed package-lock.json into a temporary directory).
# Ends with one line "N passed, M failed" over all suites; exits non-zero on any failure.
#
# Under Bazel: bazel test //tests/e2e:e2e_test. By hand, after
# `bazel build //gateway:imap-gateway //mailbox-service/server:mailbox-service
#  //mailbox-service/admin:mailbox-admin //tests/e2e:scram_plus_client`: bash tests/e2e/run_e2e.sh [SUITE...]
# where SUITE is imaplib, protocol, resilience, standards, sasl, interimap, curl or imapflow
# (default: all), or dovecot_migration or metrics (run by //tests/e2e:dovecot_migration_test
# and //tests/e2e:metrics_test).
set -uo pipefail

if [[ -n "${TEST_SRCDIR:-}" ]]; then
  here="$TEST_SRCDIR/imapd/tests/e2e"
else
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fi
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
export TEST_TMPDIR="$tmp"
export PYTHONDONTWRITEBYTECODE=1
python=/usr/bin/python3
[[ -x "$python" ]] || python=python3

suites=("$@")
((${#suites[@]})) || suites=(imaplib protocol resilience standards sasl interimap curl imapflow)

passed=0
failed=0
failed_suites=()

# Counts a unittest run from its closing lines ("Ran N tests", "FAILED (failures=F, errors=E)").
count_unittest() {  # count_unittest SUITE LOGFILE STATUS
  local ran bad
  ran=$(grep -Eo '^Ran [0-9]+ test' "$2" | tail -1 | grep -Eo '[0-9]+')
  ran=${ran:-0}
  bad=0
  for n in $(grep -E '^FAILED \(' "$2" | tail -1 \
             | grep -Eo '(failures|errors|unexpected successes)=[0-9]+' | grep -Eo '[0-9]+'); do
    bad=$((bad + n))
  done
  if [[ "$3" != 0 && "$bad" == 0 ]]; then
    bad=1  # crashed before its summary
  fi
  if grep -Eq '^OK \(.*skipped' "$2"; then
    echo "error: suite $1 skipped tests"
    bad=$((bad + 1))
  fi
  passed=$((passed + ran - (bad > ran ? ran : bad)))
  failed=$((failed + bad))
  ((bad == 0)) || failed_suites+=("$1")
}

for suite in "${suites[@]}"; do
  echo "=== e2e suite: $suite"
  log="$tmp/$suite.log"
  case "$suite" in
    imaplib|protocol|resilience|standards|sasl|interimap|curl|dovecot_migration|metrics)
      (cd "$here" && "$python" -m unittest -v "test_$suite") 2>&1 | tee "$log"
      count_unittest "$suite" "$log" "${PIPESTATUS[0]}"
      ;;
    imapflow)
      work="$tmp/imapflow-client"
      rm -rf "$work"
      mkdir -p "$work"
      cp "$here/imapflow/package.json" "$here/imapflow/package-lock.json" \
         "$here/imapflow/imapflow_test.mjs" "$work/"
      if ! (cd "$work" && npm_config_cache="$tmp/npm-cache" npm ci --no-audit --no-fund) \
           >"$tmp/npm.log" 2>&1; then
        cat "$tmp/npm.log"
        echo "error: npm ci failed for the imapflow suite"
        failed=$((failed + 1))
        failed_suites+=(imapflow)
        continue
      fi
      "$python" "$here/run_imapflow.py" "$work" 2>&1 | tee "$log"
      status=${PIPESTATUS[0]}
      p=$(grep -E '^# pass [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+')
      f=$(grep -E '^# fail [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+')
      p=${p:-0}
      f=${f:-0}
      if [[ "$status" != 0 && "$f" == 0 ]]; then
        f=1
      fi
      passed=$((passed + p))
      failed=$((failed + f))
      ((f == 0)) || failed_suites+=(imapflow)
      ;;
    *)
      echo "unknown suite $suite"
      failed=$((failed + 1))
      ;;
  esac
done

if ((${#failed_suites[@]})); then
  echo "failed suites: ${failed_suites[*]}"
fi
echo "$passed passed, $failed failed"
((failed == 0))
