#!/usr/bin/env bash
# mailbox-admin against the real mailbox-service: users, mailboxes, mbox and Maildir
# import, revise, and clear errors.
set -euo pipefail

root="$TEST_SRCDIR/imapd"
service="$root/mailbox-service/server/mailbox-service"
admin="$root/mailbox-service/admin/mailbox-admin"
work="$TEST_TMPDIR/admin"
rm -rf "$work"
mkdir -p "$work/data"

"$service" --listen=127.0.0.1:0 --http-listen=127.0.0.1:0 --data-dir="$work/data" \
  --port-file="$work/data/port" \
  --argon2-memory=64KiB --argon2-time-cost=1 >"$work/service.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do [[ -s "$work/data/port" ]] && break; sleep 0.1; done
export MAILBOX_SERVER="127.0.0.1:$(cat "$work/data/port")"
export MAILBOX_ADMIN_TOKEN_FILE="$work/data/admin.token"

failures=0
passes=0
check() {  # check NAME EXPECTED-REGEX ACTUAL
  if [[ "$3" =~ $2 ]]; then
    passes=$((passes + 1))
  else
    echo "FAIL: $1: expected /$2/, got:"
    echo "$3"
    failures=$((failures + 1))
  fi
}

check "user add" '^created user alice \(id [0-9]+\)$' "$("$admin" user add alice --password secret)"
check "password from stdin" '^created user bob' "$(echo hunter2 | "$admin" user add bob --password-stdin)"
check "user list" $'alice\n.*bob|alice.*bob' "$("$admin" user list)"
check "duplicate user" 'ALREADYEXISTS' "$("$admin" user add alice --password x 2>&1 || true)"
check "passwd" '^changed password of user alice$' "$("$admin" user passwd alice --password secret2)"

# An mboxrd file of three messages, one with a quoted From line and flags.
printf 'From a@example.org Thu Jan  1 09:00:00 2026\nFrom: a@example.org\nSubject: one\nStatus: RO\n\nbody one\n>From the quoted line\n\nFrom b@example.org Fri Jan  2 10:00:00 2026\nFrom: b@example.org\nSubject: two\nX-Status: F\n\nbody two\n\nFrom c@example.org Sat Jan  3 11:00:00 2026\nFrom: c@example.org\nSubject: three\n\nbody three\n' > "$work/in.mbox"
check "import mbox" 'imported 3 messages into Archive \(uidvalidity [0-9]+, uids 1:3\)' \
  "$("$admin" import mbox alice Archive "$work/in.mbox" 2>&1)"

# A Maildir with one seen and one new message.
mkdir -p "$work/md/cur" "$work/md/new" "$work/md/tmp"
printf 'Subject: seen\n\nold\n' > "$work/md/cur/1700000000.1.host:2,S"
printf 'Subject: new\n\nfresh\n' > "$work/md/new/1700000001.2.host"
check "import maildir" '^imported 2 messages into INBOX' "$("$admin" import maildir alice INBOX "$work/md" 2>&1)"

listing=$("$admin" mailbox list alice)
check "mailbox list Archive" $'Archive\t[^\t]*\t3\t4\t' "$listing"
check "mailbox list INBOX" $'INBOX\t[^\t]*\t2\t3\t[0-9]+\t1\t' "$listing"

printf 'From: a@example.org\nSubject: one, revised\n\nnew body\n' > "$work/revision.eml"
check "revise" '^revised UID 1 -> 4 \(uidvalidity [0-9]+\)$' \
  "$("$admin" revise alice Archive 1 "$work/revision.eml")"
check "after revise" $'Archive\t[^\t]*\t3\t5\t' "$("$admin" mailbox list alice)"
check "revise missing uid" '^error: .*' "$("$admin" revise alice Archive 99 "$work/revision.eml" 2>&1 || true)"

check "unknown user" 'error: .*(NONEXISTENT|not)' "$("$admin" mailbox list nobody 2>&1 || true)"
check "bad token" 'error: ' "$("$admin" --token=wrong user list 2>&1 || true)"
set +e
"$admin" frobnicate >/dev/null 2>&1
usage_status=$?
set -e
check "usage error exits 2" '^2$' "$usage_status"
check "user remove" '^removed user bob$' "$("$admin" user remove bob)"

echo "$passes passed, $failures failed"
((failures == 0))
