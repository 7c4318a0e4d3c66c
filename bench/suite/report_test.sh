#!/usr/bin/env bash
# Runs the report generator's unit tests (bench/suite/report_test.py).
set -euo pipefail
exec python3 "$TEST_SRCDIR/imapd/bench/suite/report_test.py"
