// Eigen with the build's default flags (SSE2 on x86-64 without -march). See eigen_gemm.hpp.
#include "eigen_gemm.hpp"

#define EIGEN_BASELINE_NAMESPACE eigen_sse2
#include "eigen_gemm.inl"

#include <onebit/cpu.hpp>

// Here, in a file built with the default flags, not in eigen_avx2.cpp: see the note there.
bool bench::eigen_avx2::available() {
  return compiled() && onebit::cpu().avx2 && onebit::cpu().fma;
}
