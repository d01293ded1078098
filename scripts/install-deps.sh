#!/usr/bin/env bash
# Installs with apt-get what onebit's builds, tests and benchmarks need on Debian 12, unless
# every package is already there (so reruns on a set-up machine skip apt). Sourced or run by
# scripts/test.sh and scripts/bench.sh; run as root (or with sudo) on a fresh machine.
# ONEBIT_APT=always forces the apt-get step.
set -euo pipefail

ONEBIT_PACKAGES=(
  cmake ninja-build make g++ clang           # build; clang for the header checks
  libeigen3-dev                              # onebit::quant (header-only)
  nlohmann-json3-dev                         # onebit::io: safetensors headers (header-only)
  libclang-rt-14-dev                         # libFuzzer for clang++ -fsanitize=fuzzer
  doctest-dev libbenchmark-dev               # tests, benchmarks
  g++-aarch64-linux-gnu qemu-user            # the aarch64 (NEON) leg, run under qemu
  python3-numpy python3-matplotlib           # the benchmark plot
)

onebit_missing_packages() {
  local package status
  for package in "${ONEBIT_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    [[ "$status" == "installed" ]] || echo "$package"
  done
}

onebit_install_deps() {
  local missing
  missing=$(onebit_missing_packages | tr '\n' ' ')
  if [[ -z "$missing" && "${ONEBIT_APT:-}" != "always" ]]; then
    echo "install-deps: all ${#ONEBIT_PACKAGES[@]} packages present, apt-get skipped"
    return 0
  fi
  echo "install-deps: installing ${missing:-${ONEBIT_PACKAGES[*]}}"
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "install-deps: missing packages ($missing) and not root: run as root" >&2
      return 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y --no-install-recommends "${ONEBIT_PACKAGES[@]}"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  onebit_install_deps
fi
