#!/usr/bin/env bash
# Builds the libFuzzer target over onebit's safetensors reader (fuzz/fuzz_safetensors.cpp) with
# clang++ -fsanitize=fuzzer,address,undefined and runs it for a number of seconds:
#
#   scripts/fuzz.sh [seconds]        default 60
#
# It starts from the committed seed corpus fuzz/corpus (read only) and keeps what it finds new
# in build-fuzz/corpus, so a later run goes on from there. A finding (crash, sanitizer report,
# timeout, mismatch) stops the run; the input is saved under build-fuzz/artifacts/ and the script
# exits 1. Exit codes: 0 no finding, 1 a finding, 2 bad usage or no clang/libFuzzer. Every
# input runs in about a millisecond; the 30 s timeout per input is generous so that a loaded
# machine (a niced run starved by builds once took 10 s of wall time for a 1 ms input) does not
# report a false hang.
# Environment: ONEBIT_FUZZ_BUILD (default build-fuzz), CXX_FUZZ (default: clang++ found on PATH).
set -euo pipefail

usage() { echo "usage: scripts/fuzz.sh [seconds]   (default 60)" >&2; }
if [[ $# -gt 1 || ( $# -eq 1 && ! "$1" =~ ^[0-9]+$ ) ]]; then
  usage
  exit 2
fi
seconds=${1:-60}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${ONEBIT_FUZZ_BUILD:-build-fuzz}
cxx=${CXX_FUZZ:-}
if [[ -z "$cxx" ]]; then
  for candidate in clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
    if command -v "$candidate" >/dev/null 2>&1; then cxx=$candidate; break; fi
  done
fi
if [[ -z "$cxx" ]]; then
  echo "fuzz: no clang++ found (scripts/install-deps.sh installs it)" >&2
  exit 2
fi

mkdir -p "$build/corpus" "$build/artifacts"
flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -DONEBIT_LIBFUZZER -Iinclude)
# The reader is onebit::io: the core and nlohmann-json (on the default include path), no Eigen.
echo "fuzz: building $build/fuzz_safetensors with $("$cxx" --version | head -1)"
build_start=$SECONDS
if ! "$cxx" "${flags[@]}" fuzz/fuzz_safetensors.cpp -o "$build/fuzz_safetensors" -pthread; then
  echo "fuzz: the build failed (is libFuzzer installed? Debian: libclang-rt-14-dev)" >&2
  exit 2
fi
echo "fuzz: built in $((SECONDS - build_start))s; running for ${seconds}s"

status=0
"$build/fuzz_safetensors" -max_total_time="$seconds" -max_len=4096 -timeout=30 \
  -rss_limit_mb=2048 -dict=fuzz/safetensors.dict -artifact_prefix="$build/artifacts/" \
  -print_final_stats=1 "$build/corpus" fuzz/corpus >"$build/fuzz.log" 2>&1 || status=$?
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$build/fuzz.log" | grep -o '[0-9]*$' || true)
corpus=$(ls "$build/corpus" | wc -l)
if [[ $status -ne 0 ]]; then
  tail -n 60 "$build/fuzz.log"
  echo "fuzz: FINDING after ${runs:-?} runs (exit $status); inputs in $build/artifacts/:"
  ls -l "$build/artifacts/"
  exit 1
fi
tail -n 12 "$build/fuzz.log"
echo "fuzz: ${seconds}s, ${runs:-?} runs, $corpus new corpus inputs in $build/corpus, no finding"
