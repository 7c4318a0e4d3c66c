#!/usr/bin/env bash
# The multi-replica suites: PostgreSQL, two or three mailbox-service replicas and
# gateways on them (tests/replicas/cluster.py). The argument names the suite
# (test_replicas by default, or test_drain). Under Bazel:
# bazel test //tests/replicas:replicas_test (or :drain_test). By hand, after building
# the binaries: python3 tests/replicas/test_replicas.py
set -euo pipefail
if [[ -n "${TEST_SRCDIR:-}" ]]; then
  here="$TEST_SRCDIR/imapd/tests/replicas"
else
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fi
export PYTHONDONTWRITEBYTECODE=1
cd "$here"
exec /usr/bin/python3 -m unittest -v "${1:-test_replicas}"
