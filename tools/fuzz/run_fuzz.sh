#!/usr/bin/env bash
# Runs one libFuzzer binary (built by the genrules of tools/fuzz/fuzz.bzl with
# clang++-14 under ASan and UBSan) on a copy of its seed corpus. Exits non-zero
# on any crash, sanitizer report, timeout, memory blow-up or violated
# invariant: the fuzz runs are part of the test suite.
#
# Usage: run_fuzz.sh --binary=PATH --corpus=DIR [--seconds=N] [--runs=N]
#                    [--max-len=N] [--workdir=DIR] [-- LIBFUZZER-FLAGS...]
#   --binary   the fuzzer
#   --corpus   the committed seed corpus, relative to the workspace root
#   --seconds  upper bound on the fuzzing time (default 30)
#   --runs     inputs to run from a fixed seed (default 0: unlimited, random
#              seed unless FUZZ_SEED is set)
#   --max-len  longest input libFuzzer generates (default 4096)
#   --workdir  grow the corpus there and keep it (default: a temporary
#              directory, TEST_TMPDIR inside bazel test)
#
# In the test command each target runs a fixed number of inputs from a fixed
# seed (FUZZ_SEED, default 1), so CI is repeatable: a new finding comes from a
# change, not from luck. A longer exploratory run, from the workspace root:
#   bazel build //mailbox-service/mime:mime_fuzzer
#   tools/fuzz/run_fuzz.sh --binary=bazel-bin/mailbox-service/mime/fuzzers/mime_fuzzer \
#     --corpus=mailbox-service/mime/fuzz/corpus --max-len=8192 --seconds=600 \
#     --workdir=/tmp/fuzz-mime
set -euo pipefail

seconds=30
runs=0
max_len=4096
binary=""
corpus=""
workdir=""
flags=()
while (($#)); do
  case "$1" in
    --binary=*) binary="${1#*=}" ;;
    --corpus=*) corpus="${1#*=}" ;;
    --seconds=*) seconds="${1#*=}" ;;
    --runs=*) runs="${1#*=}" ;;
    --max-len=*) max_len="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --) shift; flags=("$@"); break ;;
    *) echo "run_fuzz.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z "${binary}" || -z "${corpus}" ]]; then
  echo "run_fuzz.sh: --binary and --corpus are required" >&2
  exit 2
fi

if [[ -n "${TEST_SRCDIR:-}" ]]; then
  root="${TEST_SRCDIR}/imapd"
  work="${workdir:-${TEST_TMPDIR:-$(mktemp -d)}}"
  binary="${root}/${binary}"
else
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  if [[ -n "${workdir}" ]]; then
    work="${workdir}"
  else
    work="$(mktemp -d)"
    trap 'rm -rf "${work}"' EXIT
  fi
  binary="$(realpath "${binary}")"
fi
if [[ ! -x "${binary}" ]]; then
  echo "FAIL: fuzzer ${binary} not built" >&2
  exit 1
fi
name="$(basename "${binary}")"

mkdir -p "${work}/corpus"
cp "${root}/${corpus}"/* "${work}/corpus/"

# A fixed seed with a fixed count; exploratory runs take a random seed unless
# FUZZ_SEED is set.
extra=()
if [[ "${runs}" != 0 ]]; then
  extra=(-runs="${runs}" -seed="${FUZZ_SEED:-1}")
elif [[ -n "${FUZZ_SEED:-}" ]]; then
  extra=(-seed="${FUZZ_SEED}")
fi
echo "fuzzing ${name} for at most ${seconds}s, runs=${runs} (0: unlimited) ${extra[*]}"
cd "${work}"
# -rss_limit_mb guards against unbounded buffering; timeouts count as crashes.
"${binary}" -max_total_time="${seconds}" "${extra[@]}" -timeout=10 \
  -rss_limit_mb=2048 -max_len="${max_len}" -print_final_stats=1 "${flags[@]}" \
  "${work}/corpus"
echo "PASS: ${name}: no crashes (limit ${seconds}s, runs=${runs})"
