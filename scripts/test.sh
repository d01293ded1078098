#!/usr/bin/env bash
# The test command of the README (and of .ci/run). On a fresh Debian 12 machine, as root:
# installs what it needs with apt-get, then builds from scratch and runs every test leg:
#
#   release  g++ Release build of everything (tests, benchmarks, examples); ctest, which also
#            runs the packaging tests (three consumer projects; every header on its own with
#            g++ and clang++, C++17 and C++20)
#   asan     the test suite built with ASan + UBSan (-O1, no recovery); ctest
#   aarch64  the test suite cross-built for aarch64 (the NEON path) with static linking; ctest
#            under qemu-aarch64
#
# Build trees go to build-tests/<leg> (removed first). Prints the time of each stage.
# Environment: JOBS (default: nproc), ONEBIT_APT=always (run apt-get even when all is there).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source_dir=$(pwd)
build_root="$source_dir/build-tests"
jobs=${JOBS:-$(nproc)}

timings=()
stage_start=0
script_start=$SECONDS
report() {
  echo
  echo "== stage timings (seconds)"
  local line
  for line in "${timings[@]}"; do echo "   $line"; done
  echo "   total: $((SECONDS - script_start))"
}
trap 'status=$?; [[ $status -ne 0 ]] && { timings+=("FAILED in: ${current_stage:-?}"); report; }; exit $status' EXIT

begin() {
  current_stage=$1
  stage_start=$SECONDS
  echo
  echo "== $1"
}
end() {
  timings+=("$(printf '%-22s %5d' "$current_stage" $((SECONDS - stage_start)))")
  current_stage=
}

if command -v ninja >/dev/null 2>&1; then generator=Ninja; else generator="Unix Makefiles"; fi

configure() {  # configure <leg> <cmake args...>
  local leg=$1
  shift
  rm -rf "${build_root:?}/$leg"
  cmake -S "$source_dir" -B "$build_root/$leg" -G "$generator" "$@"
}
build() { cmake --build "$build_root/$1" --parallel "$jobs"; }
run_tests() { ctest --test-dir "$build_root/$1" --output-on-failure -j "$jobs" --timeout 900; }

begin "apt"
source "$source_dir/scripts/install-deps.sh"
onebit_install_deps
end

echo
echo "== tools: $(cmake --version | head -1); $(g++ --version | head -1); $(clang++ --version | head -1)"
echo "== cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, jobs $jobs"

# ---------------------------------------------------------------- release (g++)
begin "release: configure"
configure release -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++
end
begin "release: build"
build release
end
begin "release: ctest"
run_tests release
end

# ---------------------------------------------------------------- ASan + UBSan
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
begin "asan+ubsan: configure"
configure asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=g++ \
  "-DCMAKE_CXX_FLAGS=$sanitize" "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g" \
  "-DCMAKE_EXE_LINKER_FLAGS=$sanitize" \
  -DONEBIT_BUILD_BENCHMARKS=OFF -DONEBIT_BUILD_EXAMPLES=OFF \
  -DONEBIT_TEST_CONSUMERS=OFF -DONEBIT_TEST_HEADERS=OFF
end
begin "asan+ubsan: build"
build asan
end
begin "asan+ubsan: ctest"
ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1 \
UBSAN_OPTIONS=print_stacktrace=1 \
  run_tests asan
end

# ---------------------------------------------------------------- aarch64 under qemu
begin "aarch64: configure"
configure aarch64 -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_TOOLCHAIN_FILE=$source_dir/cmake/toolchains/aarch64-linux-gnu.cmake" \
  -DONEBIT_BUILD_BENCHMARKS=OFF -DONEBIT_BUILD_EXAMPLES=OFF
end
begin "aarch64: build"
build aarch64
end
begin "aarch64: ctest (qemu)"
run_tests aarch64
end

report
echo "all test legs passed"
