#!/usr/bin/env bash
# Smoke of the bench suite: every scenario for a few seconds at tiny sizes against our
# system and Dovecot (cheap password hashing on both), then checks that results.json
# has every section for both systems with sane fields and that the report was written.
# Never asserts speed.
set -euo pipefail
suite="$TEST_SRCDIR/imapd/bench/suite"
out="$TEST_TMPDIR/bench-smoke"
python3 "$suite/run_suite.py" --smoke --out "$out"
python3 "$suite/check_results.py" "$out/results.json" "$out/report.html"
