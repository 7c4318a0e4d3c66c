#!/usr/bin/env bash
# Installs the Debian 12 packages the build and the tests need, skipping those that
# are already present. Debian packages only: the build itself never downloads.
set -euo pipefail

packages=(
  bazel-bootstrap g++ pkg-config git python3 procps
  # The tests make their TLS certificates with the openssl command.
  openssl
  # The end-to-end tests sign OAuth 2.0 bearer tokens (tests/e2e/harness.py).
  python3-cryptography
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libboost1.81-dev libssl-dev libsqlite3-dev libargon2-dev
  # IMAP COMPRESS=DEFLATE (gateway/net/deflate.h).
  zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  android-libboringssl-dev
  clang-14 libfuzzer-14-dev
  # The PostgreSQL backend (libpq) and the private servers its tests start
  # (initdb + pg_ctl; a system cluster the package may create is not used).
  libpq-dev postgresql-15
  # The PROXY protocol test puts a real HAProxy in front of two gateways.
  haproxy
  # promtool (check metrics, check rules) for //tests/e2e:metrics_test; the
  # Prometheus server it also installs is not started (see below).
  prometheus
  # A QRESYNC sync client for the end-to-end tests (its local side is Dovecot's imap).
  interimap
  # The bench suite: Dovecot side by side (bench/suite/dovecot.py) and CPU profiles.
  dovecot-imapd dovecot-sqlite argon2 linux-perf
  # The Kubernetes manifests' test (tests/deploy): the API models that check every
  # object's fields and types, and a strict YAML linter (duplicate keys).
  python3-kubernetes python3-yaml yamllint
  # Container images (deploy/container): image trees from Debian packages (mmdebstrap),
  # images without a base image (buildah) written as OCI archives (skopeo); the
  # container test runs them with podman under runc, catatonit as --init, and enters
  # their network namespace with nsenter (util-linux).
  mmdebstrap buildah skopeo podman runc catatonit util-linux
  # The Dovecot migration test (tests/e2e/test_dovecot_migration.py): mbsync caches an
  # account from Dovecot, then must find nothing to fetch from the gateway; dates are
  # compared in a zone with summer time (Europe/Berlin).
  isync tzdata
  # The logs test runs fail2ban-regex with the example filter of deploy/fail2ban/.
  fail2ban
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} Debian packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [[ $(id -u) != 0 ]]; then
  sudo="sudo"
fi
$sudo apt-get update -q

# The bench starts its own Dovecot on loopback when it needs one. Installing
# dovecot-imapd must not leave a system-wide Dovecot listening on 143/993, so while
# packages are installed no service may start (policy-rc.d, which invoke-rc.d and
# deb-systemd-invoke honour), and a newly installed dovecot.service is disabled.
policy=/usr/sbin/policy-rc.d
placed_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  placed_policy=1
fi
status=0
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
  "${missing[@]}" || status=$?
if ((placed_policy)); then
  $sudo rm -f "$policy"
fi
if [[ " ${missing[*]} " == *" dovecot-imapd "* ]] && command -v systemctl >/dev/null \
    && [[ -d /run/systemd/system ]]; then
  $sudo systemctl disable --now dovecot.service dovecot.socket 2>/dev/null || true
fi
# Likewise the tests start their own haproxy on loopback ports; none system-wide.
if [[ " ${missing[*]} " == *" haproxy "* ]] && command -v systemctl >/dev/null \
    && [[ -d /run/systemd/system ]]; then
  $sudo systemctl disable --now haproxy.service 2>/dev/null || true
fi
# Only promtool is used; no Prometheus server (it would take port 9090).
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null \
    && [[ -d /run/systemd/system ]]; then
  $sudo systemctl disable --now prometheus.service 2>/dev/null || true
# Only fail2ban-regex is used; no fail2ban server banning addresses of this host.
if [[ " ${missing[*]} " == *" fail2ban "* ]] && command -v systemctl >/dev/null \
    && [[ -d /run/systemd/system ]]; then
  $sudo systemctl disable --now fail2ban.service 2>/dev/null || true
fi
exit $status
