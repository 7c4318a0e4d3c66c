#!/usr/bin/env bash
# Builds gateway/net/fuzz/proxy_protocol_fuzzer.cc with clang++-14 and libFuzzer
# (Debian packages clang-14 and libfuzzer-14-dev) and runs it for a bounded time on a
# copy of the seed corpus. Exits non-zero on any crash, sanitizer report or violated
# invariant, and when the toolchain is missing (the fuzz run is part of the test
# suite; it must never pass silently). Same shape as gateway/imap/fuzz/run_fuzz.sh.
#
# Usage: run_fuzz.sh [seconds] [runs]   (default 30 s; runs: 0 = unlimited)
# In the test command it runs a fixed number of inputs from a fixed seed, so CI is
# repeatable. Longer exploratory runs: run_fuzz.sh 600
set -euo pipefail

seconds="${1:-30}"
runs="${2:-0}"
seed="${FUZZ_SEED:-1}"

if [[ -n "${TEST_SRCDIR:-}" ]]; then
  root="${TEST_SRCDIR}/imapd"
  work="${TEST_TMPDIR:-$(mktemp -d)}"
else
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' EXIT
fi
net="${root}/gateway/net"

clang="$(command -v clang++-14 || true)"
if [[ -z "${clang}" ]]; then
  echo "FAIL: clang++-14 not found; install clang-14 and libfuzzer-14-dev" \
       "(tools/install-deps.sh)" >&2
  exit 1
fi
if ! ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 &&
   ! ls /usr/lib/llvm-14/lib/libFuzzer.a >/dev/null 2>&1; then
  echo "FAIL: libFuzzer runtime for clang-14 not found; install libfuzzer-14-dev" >&2
  exit 1
fi

echo "building fuzzer in ${work}"
"${clang}" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -I"${root}" \
  "${net}/proxy_protocol.cc" "${net}/fuzz/proxy_protocol_fuzzer.cc" \
  -o "${work}/proxy_protocol_fuzzer"

mkdir -p "${work}/corpus"
cp "${net}/fuzz/corpus/"* "${work}/corpus/"

echo "fuzzing for at most ${seconds}s, runs=${runs} (0: unlimited), seed=${seed}"
cd "${work}"
extra=()
if [[ "${runs}" != 0 ]]; then
  extra=(-runs="${runs}" -seed="${seed}")
fi
"${work}/proxy_protocol_fuzzer" -max_total_time="${seconds}" "${extra[@]}" -timeout=10 \
  -rss_limit_mb=2048 -max_len=1400 -print_final_stats=1 "${work}/corpus"
echo "PASS: no crashes (limit ${seconds}s, runs=${runs})"
