#!/usr/bin/env bash
# The test command of the README (and of .ci/run). On a fresh Debian 12 machine, as root:
# installs what it needs with apt-get, then builds from scratch and runs every test leg:
#
#   release  g++ Release build of everything (tests, benchmarks, examples); ctest, which also
#            runs the packaging tests (three consumer projects; every header on its own with
#            g++ and clang++, C++17 and C++20)
#   asan     the test suite built with clang++ and ASan + UBSan (-O1, line tables only: -g1,
#            enough for the reports' file:line; no recovery); ctest, without the two whole-model
#            cases (test_tinyllama's cross-entropy, test_gptq's real layers: numbers, not memory;
#            minutes under ASan) and without the -march=native copy of test_cross_block (an
#            alignment check, which faults alike without ASan). clang, not g++: the same
#            instrumented suite compiles in about half the time (g++ 12's UBSan at -O1 is most of
#            its cost), and the suite is then built by both compilers, not only g++.
#   aarch64  the test suite cross-built for aarch64 (the NEON path) with static linking; ctest
#            under qemu-aarch64 (without those two cases either: minutes emulated). Without the
#            command-line tool: its tests run it only natively, so a cross-built copy would be
#            compiled (25 CPU-s) and never run
#   fuzz     the safetensors and GGUF readers' libFuzzer targets (built by the asan leg, with
#            -fsanitize=fuzzer,address,undefined), 60 seconds each from their committed corpora:
#            the same fuzzers and flags as scripts/fuzz.sh 60, without a second build
#
# A failing leg does not stop the others: the script runs them all, prints the time of every
# stage and which failed, and exits non-zero if any did. Build trees go to build-tests/<leg>,
# removed first. Environment: JOBS (default: nproc), ONEBIT_APT=always (run apt-get even when
# every package is there).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source_dir=$(pwd)
build_root="$source_dir/build-tests"
jobs=${JOBS:-$(nproc)}
script_start=$SECONDS
timings=()
failed=()

# CPU seconds (user + system) of every child process the script has waited for so far, from
# bash's `times` (its second line: children's user and system time, as 1m2.345s). `times` runs
# in this shell, not in a command substitution's subshell, which has no children of its own.
times_file=$(mktemp)
trap 'rm -f "$times_file"' EXIT
# Sets cpu_now.
children_cpu() {
  times >"$times_file"
  cpu_now=$(tail -1 "$times_file" | awk '{
    total = 0
    for (i = 1; i <= 2; ++i) { split($i, t, "m"); total += t[1] * 60 + t[2] }
    printf "%d", total
  }')
}

# step <name> <command...>: runs and times one stage (wall and CPU); returns its status.
step() {
  local name=$1 start=$SECONDS cpu_start status=0
  children_cpu
  cpu_start=$cpu_now
  shift
  echo
  echo "== $name"
  "$@" || status=$?
  local verdict=ok
  [[ $status -eq 0 ]] || verdict="FAILED ($status)"
  children_cpu
  timings+=("$(printf '%-24s %5ds wall %6ds cpu  %s' "$name" $((SECONDS - start)) \
    $((cpu_now - cpu_start)) "$verdict")")
  return "$status"
}

report() {
  echo
  echo "== stage timings"
  local line
  for line in "${timings[@]}"; do echo "   $line"; done
  children_cpu
  printf '   %-24s %5ds wall %6ds cpu (%d CPU-minutes)\n' total $((SECONDS - script_start)) \
    "$cpu_now" $((cpu_now / 60))
}

if command -v ninja >/dev/null 2>&1; then generator=Ninja; else generator="Unix Makefiles"; fi

configure() {  # configure <leg> <cmake args...>
  local leg=$1
  shift
  rm -rf "${build_root:?}/$leg"
  cmake -S "$source_dir" -B "$build_root/$leg" -G "$generator" "$@"
}
build() { cmake --build "$build_root/$1" --parallel "$jobs"; }
run_tests() {  # run_tests <leg> [ctest arguments...]
  local leg=$1
  shift
  ctest --test-dir "$build_root/$leg" --output-on-failure -j "$jobs" --timeout 900 "$@"
}
source "$source_dir/scripts/find-clang.sh"

# ---------------------------------------------------------------- dependencies
source "$source_dir/scripts/install-deps.sh"
if ! step "apt" onebit_install_deps; then
  report
  exit 1
fi
echo
echo "== tools: $(cmake --version | head -1); $(g++ --version | head -1); $(clang++ --version | head -1)"
echo "== cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, jobs $jobs"

# ---------------------------------------------------------------- release (g++)
leg_release() {
  step "release: configure" configure release -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_COMPILER=g++ || return 1
  step "release: build" build release || return 1
  step "release: ctest" run_tests release
}

# ---------------------------------------------------------------- ASan + UBSan
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
leg_asan() {
  local clang
  clang=$(onebit_find_clang) || { echo "asan: no clang++ found (scripts/install-deps.sh installs it)"; return 1; }
  step "asan+ubsan: configure" configure asan -DCMAKE_BUILD_TYPE=Debug \
    "-DCMAKE_CXX_COMPILER=$clang" \
    "-DCMAKE_CXX_FLAGS=$sanitize" "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" \
    "-DCMAKE_EXE_LINKER_FLAGS=$sanitize" \
    -DONEBIT_BUILD_BENCHMARKS=OFF -DONEBIT_BUILD_EXAMPLES=OFF \
    -DONEBIT_TEST_CONSUMERS=OFF -DONEBIT_TEST_HEADERS=OFF -DONEBIT_TESTS_FULL_MODEL=OFF \
    -DONEBIT_TESTS_NATIVE=OFF || return 1
  step "asan+ubsan: build" build asan || return 1
  ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1 \
  UBSAN_OPTIONS=print_stacktrace=1 \
    step "asan+ubsan: ctest" run_tests asan -LE fuzz
}

# ---------------------------------------------------------------- aarch64 under qemu
leg_aarch64() {
  step "aarch64: configure" configure aarch64 -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_TOOLCHAIN_FILE=$source_dir/cmake/toolchains/aarch64-linux-gnu.cmake" \
    -DONEBIT_BUILD_BENCHMARKS=OFF -DONEBIT_BUILD_EXAMPLES=OFF -DONEBIT_BUILD_TOOLS=OFF || return 1
  step "aarch64: build" build aarch64 || return 1
  step "aarch64: ctest (qemu)" run_tests aarch64
}

# ---------------------------------------------------------------- fuzz (clang + libFuzzer)
# The asan leg built the fuzzers (tests fuzz_*_60s, label fuzz); a build without libFuzzer
# would report them skipped, so the leg first checks that both are there.
fuzz_tests() {
  local target
  for target in fuzz_safetensors fuzz_gguf; do
    if [[ ! -x "$build_root/asan/fuzz/$target" ]]; then
      echo "fuzz: $build_root/asan/fuzz/$target was not built (no libFuzzer: libclang-rt-*-dev)"
      return 1
    fi
  done
  run_tests asan -L fuzz
}
leg_fuzz() {
  step "fuzz: safetensors and gguf, 60s each" fuzz_tests
}

for leg in release asan aarch64 fuzz; do
  "leg_$leg" || failed+=("$leg")
done

report
if [[ ${#failed[@]} -ne 0 ]]; then
  echo "FAILED legs: ${failed[*]}"
  exit 1
fi
echo "all test legs passed"
