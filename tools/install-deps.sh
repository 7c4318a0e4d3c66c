#!/usr/bin/env bash
# Installs the Debian 12 packages the build and the tests need, skipping those that
# are already present. Debian packages only: the build itself never downloads.
set -euo pipefail

packages=(
  bazel-bootstrap g++ pkg-config git python3 procps
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libboost1.81-dev libssl-dev libsqlite3-dev libargon2-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  android-libboringssl-dev
  clang-14 libfuzzer-14-dev
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
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
