#!/usr/bin/env bash
# Installs what is missing (tools/install-deps.sh) and builds the service, the admin
# tool and the gateway; on failure prints the end of the build log. For the run
# scripts (tools/run.sh, tools/run-cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh
echo "== build"
if ! bazel build //mailbox-service/... //gateway:imap-gateway > /tmp/imapd-build.log 2>&1; then
  grep -vE 'linux-sandbox' /tmp/imapd-build.log | tail -60
  echo "build failed"
  exit 1
fi
