#!/usr/bin/env bash
# The README's run command: installs what is missing, builds, and starts the whole
# system on its embedded default (SQLite in ./.data) with a demo user, in the
# foreground. Ctrl-C (SIGINT) or SIGTERM drains and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh
echo "== build"
if ! bazel build //mailbox-service/... > /tmp/imapd-build.log 2>&1; then
  grep -vE 'linux-sandbox' /tmp/imapd-build.log | tail -60
  echo "build failed"
  exit 1
fi

data_dir=${MAILBOX_DATA_DIR:-$PWD/.data}
listen=${MAILBOX_LISTEN:-127.0.0.1:50051}
demo=${MAILBOX_DEMO_USER:-demo:demo}
bin=bazel-bin/mailbox-service

cat <<MSG

== starting the mailbox service
  gRPC API        $listen  (proto/mailbox/v1/mailbox.proto)
  data directory  $data_dir
  demo user       ${demo%%:*} / password ${demo#*:}
  admin tool      $bin/admin/mailbox-admin --server=$listen --token-file=$data_dir/admin.token user list
  import mail     $bin/admin/mailbox-admin --server=$listen --token-file=$data_dir/admin.token import mbox ${demo%%:*} INBOX FILE.mbox

The IMAP gateway (issue 3) is not built yet: mail clients cannot connect until it is.
MSG

exec "$bin/server/mailbox-service" --listen="$listen" --data-dir="$data_dir" --demo-user="$demo"
