#!/usr/bin/env bash
# The settings of the real binaries (imap-gateway, mailbox-service, mailbox-admin):
# a bad value, an unknown or renamed name from a flag, a variable or the config file
# stops the program with exit status 2 and a message naming it; --print-config prints
# the effective settings with their sources, and its output read back as a config
# file gives the same settings.
set -uo pipefail

root="$TEST_SRCDIR/imapd"
gateway="$root/gateway/imap-gateway"
service="$root/mailbox-service/server/mailbox-service"
admin="$root/mailbox-service/admin/mailbox-admin"
work="$TEST_TMPDIR/settings"
rm -rf "$work"
mkdir -p "$work"

failures=0
passes=0
# expect NAME STATUS REGEX COMMAND...: runs COMMAND, checks its exit status and that
# its output (stdout and stderr) matches REGEX.
expect() {
  local name=$1 status=$2 regex=$3
  shift 3
  local output rc
  output=$("$@" 2>&1)
  rc=$?
  if [[ $rc -ne $status ]]; then
    echo "FAIL: $name: exit status $rc, expected $status; output:"
    echo "$output"
    failures=$((failures + 1))
  elif ! [[ "$output" =~ $regex ]]; then
    echo "FAIL: $name: expected /$regex/ in:"
    echo "$output"
    failures=$((failures + 1))
  else
    passes=$((passes + 1))
  fi
}

# --- imap-gateway ------------------------------------------------------------------
expect "gateway: bare-number duration" 2 \
  "imap-gateway: --autologout=1800: a bare number has no unit: write 1800s for seconds" \
  "$gateway" --autologout=1800
expect "gateway: bad boolean from the environment" 2 \
  "IMAPD_OAUTH=ture \(--oauth\): expected true or false" \
  env IMAPD_OAUTH=ture "$gateway"
expect "gateway: unknown variable with the prefix" 2 \
  "unknown environment variable IMAPD_AUTOLOGUT: .*did you mean IMAPD_AUTOLOGOUT\?" \
  env IMAPD_AUTOLOGUT=30m "$gateway"
expect "gateway: unknown flag" 2 "unknown flag --autologut; did you mean --autologout\?" \
  "$gateway" --autologut=30m
expect "gateway: renamed flag" 2 \
  "--fetch-cache-mib was renamed to --fetch-cache-size \(a size such as 64MiB\)" \
  "$gateway" --fetch-cache-mib=64
expect "gateway: renamed variable" 2 \
  "IMAPD_STORE_TLS_RELOAD_SECONDS was renamed to IMAPD_STORE_TLS_RELOAD_INTERVAL" \
  env IMAPD_STORE_TLS_RELOAD_SECONDS=60 "$gateway"
expect "gateway: integer out of range" 2 "--workers=2000: expected an integer from 0 to 1024" \
  "$gateway" --workers=2000
expect "gateway: bad listen address" 2 "--imaps-listen=::1:993: .*brackets" \
  "$gateway" --imaps-listen=::1:993
printf 'workers = 2\n\n# a comment\nautologout = 30\n' >"$work/bad.conf"
expect "gateway: file value with its line" 2 \
  "$work/bad.conf:4: autologout = 30: a bare number has no unit" \
  "$gateway" --config="$work/bad.conf"
printf 'workers = 2\nworkres = 3\n' >"$work/typo.conf"
expect "gateway: unknown file key (IMAPD_CONFIG)" 2 \
  "$work/typo.conf:2: unknown setting \"workres\"; did you mean --workers\?" \
  env IMAPD_CONFIG="$work/typo.conf" "$gateway"
expect "gateway: missing file" 2 "cannot read the config file $work/none.conf" \
  "$gateway" --config "$work/none.conf"
expect "gateway: --help lists the variables" 0 \
  "--autologout=DURATION .*IMAPD_AUTOLOGOUT" "$gateway" --help
# tools/run-cluster.sh's variables are not the gateway's to refuse.
expect "gateway: foreign variables are left alone" 0 "workers = 0  # default" \
  env IMAPD_CLUSTER_DIR=/tmp "$gateway" --print-config

printf 'imap-listen = ""\nworkers = 3   # three\nmax-append-size = 32MiB\n' >"$work/gateway.conf"
expect "gateway: --print-config names each source" 0 \
  "imap-listen = \"\"  # file.*workers = 3  # file.*autologout = 10m  # env IMAPD_AUTOLOGOUT.*max-append-size = 32MiB  # file.*literal-minus = true  # flag" \
  env IMAPD_AUTOLOGOUT=600s "$gateway" --config="$work/gateway.conf" --literal-minus \
  --print-config
# Round trip: the output read back gives the same values.
env IMAPD_AUTOLOGOUT=600s "$gateway" --config="$work/gateway.conf" --literal-minus \
  --print-config >"$work/printed.conf" 2>&1
"$gateway" --config="$work/printed.conf" --print-config >"$work/reprinted.conf" 2>&1
strip() { grep -v '^#' "$1" | sed 's/  # [a-z].*$//'; }
if [[ "$(strip "$work/printed.conf")" == "$(strip "$work/reprinted.conf")" ]] &&
   [[ $(grep -c '  # file$' "$work/reprinted.conf") -eq $(grep -vc '^#' "$work/reprinted.conf") ]]; then
  passes=$((passes + 1))
else
  echo "FAIL: gateway: --print-config round trip differs:"
  diff <(strip "$work/printed.conf") <(strip "$work/reprinted.conf")
  failures=$((failures + 1))
fi

# --- mailbox-service -----------------------------------------------------------------
expect "service: renamed flag" 2 \
  "mailbox-service: --drain-seconds was renamed to --drain-timeout \(a duration such as 30s\)" \
  "$service" --drain-seconds=20
expect "service: bare number in the environment" 2 \
  "MAILBOX_DRAIN_TIMEOUT=20 \(--drain-timeout\): a bare number has no unit: write 20s" \
  env MAILBOX_DRAIN_TIMEOUT=20 "$service"
expect "service: unknown backend" 2 "--backend=oracle: unknown backend; this build has: " \
  "$service" --backend=oracle
expect "service: size with a unit that is not binary" 2 \
  "--max-message-bytes=64MB: expected a size" "$service" --max-message-bytes=64MB
expect "service: bad boolean" 2 "--insecure-listen=maybe: expected true or false" \
  "$service" --insecure-listen=maybe
expect "service: unknown variable" 2 "unknown environment variable MAILBOX_DATADIR" \
  env MAILBOX_DATADIR=/tmp "$service"
printf 'listen = 127.0.0.1:0\nlisten = 127.0.0.1:1\n' >"$work/twice.conf"
expect "service: a key twice (MAILBOX_CONFIG)" 2 \
  "$work/twice.conf:2: listen is already set on line 1" \
  env MAILBOX_CONFIG="$work/twice.conf" "$service"
# mailbox-admin's variables share the prefix and are left alone.
expect "service: --print-config" 0 \
  "drain-timeout = 20s  # default.*max-message-bytes = 1MiB  # flag.*fetch-stall-timeout = 1m30s  # env MAILBOX_FETCH_STALL_TIMEOUT" \
  env MAILBOX_SERVER=127.0.0.1:1 MAILBOX_FETCH_STALL_TIMEOUT=90s "$service" \
  --max-message-bytes=1048576 --print-config

# expect_hidden NAME SECRET COMMAND...: --print-config output names the setting as a
# secret not shown and never holds SECRET.
expect_hidden() {
  local name=$1 secret=$2
  shift 2
  local output
  output=$("$@" 2>&1)
  if [[ "$output" == *"$secret"* || "$output" != *"secret not shown"* ]]; then
    echo "FAIL: $name: the secret is printed, or not marked as hidden:"
    echo "$output"
    failures=$((failures + 1))
  else
    passes=$((passes + 1))
  fi
}
expect_hidden "service: --print-config hides the database password" hunter2 \
  env MAILBOX_POSTGRES="host=db.internal user=mail password=hunter2 dbname=mail" \
  "$service" --demo-user=alice:wonderland --print-config
expect_hidden "service: --print-config hides the demo user's password" wonderland \
  "$service" --demo-user=alice:wonderland --print-config
expect "service: --print-config keeps the rest of a connection string" 0 \
  "# postgres = \"postgresql://mail:\(not shown\)@db.internal/mail\"  # flag, secret not shown" \
  "$service" --postgres=postgresql://mail:hunter2@db.internal/mail --print-config

# --- mailbox-admin -------------------------------------------------------------------
expect "admin: bare-number timeout" 2 "mailbox-admin: --timeout=30: a bare number has no unit" \
  "$admin" --timeout=30 user list
printf 'server = "db.internal:50051"\ntimeout = 2m\n' >"$work/admin.conf"
expect "admin: --print-config" 0 \
  "server = \"db.internal:50051\"  # file.*timeout = 5s  # flag" \
  env MAILBOX_ADMIN_CONFIG="$work/admin.conf" MAILBOX_LISTEN=0.0.0.0:1 "$admin" \
  --timeout=5s --print-config
expect_hidden "admin: --print-config hides the token" tok3n-value \
  "$admin" --token=tok3n-value --print-config
printf 'listen = 0.0.0.0:1\n' >"$work/service-only.conf"
expect "admin: a service key in its file" 2 \
  "$work/service-only.conf:1: unknown setting \"listen\"" \
  "$admin" --config="$work/service-only.conf" user list

echo "$passes passed, $failures failed"
[[ $failures -eq 0 ]]
