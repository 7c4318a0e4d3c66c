#!/usr/bin/env bash
# Builds gateway/imap/fuzz/receiver_fuzzer.cc with clang++-14 and libFuzzer
# (Debian packages clang-14 and libfuzzer-14-dev) and runs it for a bounded
# time on a copy of the seed corpus. Exits non-zero on any crash, sanitizer
# report or violated invariant, and when the toolchain is missing (the fuzz
# run is part of the test suite; it must never pass silently).
#
# Usage: run_fuzz.sh [seconds] [runs]   (default 30 s; runs: 0 = unlimited)
# In the test command it runs a fixed number of inputs from a fixed seed, so CI is
# repeatable: a new finding comes from a change, not from luck. Longer exploratory
# runs: run_fuzz.sh 600
# Works from the source tree and inside `bazel test` (sources via runfiles).
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
imap="${root}/gateway/imap"

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

# The include root must contain gateway/imap/*.h; runfiles provide that tree.
sources=()
for f in command date_time lexer mutf7 parser receiver response search sequence_set serialize; do
  sources+=("${imap}/${f}.cc")
done

echo "building fuzzer in ${work}"
"${clang}" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -I"${root}" \
  "${sources[@]}" "${imap}/fuzz/receiver_fuzzer.cc" -o "${work}/receiver_fuzzer"

mkdir -p "${work}/corpus"
cp "${imap}/fuzz/corpus/"* "${work}/corpus/"

echo "fuzzing for at most ${seconds}s, runs=${runs} (0: unlimited), seed=${seed}"
cd "${work}"
# -rss_limit_mb guards against unbounded buffering; timeouts count as crashes.
extra=()
if [[ "${runs}" != 0 ]]; then
  extra=(-runs="${runs}" -seed="${seed}")
fi
"${work}/receiver_fuzzer" -max_total_time="${seconds}" "${extra[@]}" -timeout=10 \
  -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 "${work}/corpus"
echo "PASS: no crashes (limit ${seconds}s, runs=${runs})"
