#!/usr/bin/env bash
# The bench suite in one command: installs what is missing (Debian packages, including
# Dovecot for the side-by-side columns), builds the binaries, runs every standard
# scenario against our system and Dovecot, and writes
# bench-results/DATE/{results.json,report.html} (see bench/README.md).
# Arguments go to bench/suite/run_suite.py, e.g. --no-dovecot, --only=idle,push,
# --clients=10,100 or --smoke.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh
echo "== build"
if ! bazel build //gateway:imap-gateway //mailbox-service/server:mailbox-service \
  //mailbox-service/admin:mailbox-admin //bench/loadgen:imap-loadgen \
  > /tmp/imapd-bench-build.log 2>&1; then
  grep -vE 'linux-sandbox' /tmp/imapd-bench-build.log | tail -60
  echo "build failed"
  exit 1
fi
echo "== bench"
exec python3 bench/suite/run_suite.py "$@"
