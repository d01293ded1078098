#!/usr/bin/env bash
# The main command of the README. On a fresh Debian 12 machine, as root: installs what it needs
# with apt-get, builds onebit in Release from scratch (in build/), then runs the benchmark of
# the 1-bit kernels against FP16/FP32 GEMM, writes its JSON to build/bench_gemm.json and plots
# it with benchmarks/plot.py (tables on stdout, build/speedup.png); then times whole
# Llama-shaped models (bench_model: 7B and 1.1B shapes, 1-bit and FP16, decode and prefill,
# 1 and 2 threads; build/bench_model.json, tables on stdout, build/model.png). Without the
# benchmark binaries (benchmarks turned off) it runs the quickstart example.
# Arguments are passed to bench_gemm (e.g. --benchmark_filter=...); BENCH_MODEL_ARGS to
# bench_model (e.g. "--models=1b --decode=4"; BENCH_MODEL_ARGS=skip skips it).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source_dir=$(pwd)
build_dir="$source_dir/build"
jobs=${JOBS:-$(nproc)}

source "$source_dir/scripts/install-deps.sh"
onebit_install_deps

if command -v ninja >/dev/null 2>&1; then generator=Ninja; else generator="Unix Makefiles"; fi
rm -rf "$build_dir"
cmake -S "$source_dir" -B "$build_dir" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER=g++ -DONEBIT_BUILD_TESTS=OFF
cmake --build "$build_dir" --parallel "$jobs"

bench="$build_dir/benchmarks/bench_gemm"
json="$build_dir/bench_gemm.json"
if [[ -x "$bench" ]]; then
  echo "== $bench"
  "$bench" --benchmark_out="$json" --benchmark_out_format=json "$@"
  echo "== results: $json"
  if [[ -f "$source_dir/benchmarks/plot.py" ]]; then
    # A filter that left no gemm rows leaves plot.py nothing to draw: not a reason to stop.
    MPLBACKEND=Agg /usr/bin/python3 "$source_dir/benchmarks/plot.py" "$json" \
      "$build_dir/speedup.png" || echo "bench.sh: plot.py drew nothing from $json"
  fi
  model_bench="$build_dir/benchmarks/bench_model"
  model_json="$build_dir/bench_model.json"
  if [[ -x "$model_bench" && "${BENCH_MODEL_ARGS:-}" != skip ]]; then
    echo "== $model_bench"
    # shellcheck disable=SC2086  # the arguments are words on purpose
    "$model_bench" --json="$model_json" ${BENCH_MODEL_ARGS:-}
    echo "== results: $model_json"
    MPLBACKEND=Agg /usr/bin/python3 "$source_dir/benchmarks/plot_model.py" "$model_json" \
      "$build_dir/model.png"
  fi
elif [[ -x "$build_dir/examples/quickstart" ]]; then
  echo "== no benchmark yet: running $build_dir/examples/quickstart"
  "$build_dir/examples/quickstart"
else
  echo "bench.sh: neither $bench nor $build_dir/examples/quickstart was built" >&2
  exit 1
fi
