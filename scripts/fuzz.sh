#!/usr/bin/env bash
# Builds the libFuzzer targets over onebit's safetensors reader (fuzz/fuzz_safetensors.cpp) and
# GGUF reader (fuzz/fuzz_gguf.cpp) with clang++ -fsanitize=fuzzer,address,undefined and runs each
# for a number of seconds:
#
#   scripts/fuzz.sh [seconds]        default 60
#
# Each starts from its committed seed corpus fuzz/corpus or fuzz/corpus_gguf (read only) and keeps
# what it finds new in build-fuzz/corpus or build-fuzz/corpus_gguf, so a later run goes on from there. A finding (crash, sanitizer report,
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
source scripts/find-clang.sh
cxx=${CXX_FUZZ:-$(onebit_find_clang || true)}
if [[ -z "$cxx" ]]; then
  echo "fuzz: no clang++ found (scripts/install-deps.sh installs it)" >&2
  exit 2
fi

# Each target: its source, dictionary and committed corpus; both run for `seconds` each.
fuzz_one() {
  local name=$1 dict=$2 seeds=$3
  local corpus_dir="$build/corpus" log="$build/fuzz.log"
  if [[ $name != safetensors ]]; then corpus_dir="$build/corpus_$name"; log="$build/fuzz_$name.log"; fi
  mkdir -p "$corpus_dir" "$build/artifacts"
  echo "fuzz: building $build/fuzz_$name with $("$cxx" --version | head -1)"
  local build_start=$SECONDS
  if ! "$cxx" "${flags[@]}" "fuzz/fuzz_$name.cpp" -o "$build/fuzz_$name" -pthread; then
    echo "fuzz: the build failed (is libFuzzer installed? Debian: libclang-rt-14-dev)" >&2
    exit 2
  fi
  echo "fuzz: built in $((SECONDS - build_start))s; running for ${seconds}s"
  local status=0
  "$build/fuzz_$name" -max_total_time="$seconds" -max_len=4096 -timeout=30 \
    -rss_limit_mb=2048 -dict="$dict" -artifact_prefix="$build/artifacts/" \
    -print_final_stats=1 "$corpus_dir" "$seeds" >"$log" 2>&1 || status=$?
  local runs corpus
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  corpus=$(ls "$corpus_dir" | wc -l)
  if [[ $status -ne 0 ]]; then
    tail -n 60 "$log"
    echo "fuzz: $name: FINDING after ${runs:-?} runs (exit $status); inputs in $build/artifacts/:"
    ls -l "$build/artifacts/"
    exit 1
  fi
  tail -n 12 "$log"
  echo "fuzz: $name: ${seconds}s, ${runs:-?} runs, $corpus new corpus inputs in $corpus_dir, no finding"
}

flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -DONEBIT_LIBFUZZER -Iinclude)
# The readers are onebit::io: the core and nlohmann-json (on the default include path), no Eigen.
fuzz_one safetensors fuzz/safetensors.dict fuzz/corpus
fuzz_one gguf fuzz/gguf.dict fuzz/corpus_gguf
