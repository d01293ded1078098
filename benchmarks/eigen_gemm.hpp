// The FP32 baseline of the benchmarks: Y = X · Wᵀ with Eigen 3.4, W row-major (out x in) float.
//
// Two builds of the same source (eigen_gemm.inl), each in a translation unit of its own:
//
// * eigen_sse2.cpp, with the build's default flags: what a consumer of Eigen gets with no
//   -march. On x86-64 that is SSE2 only: Eigen picks its packet width from the compiler's
//   predefined macros (__AVX__, __AVX2__, __FMA__, __AVX512F__), not at run time, so without
//   -march it runs 4-wide SSE2 with separate multiply and add.
// * eigen_avx2.cpp, compiled with -mavx2 -mfma for that file only: Eigen at 8-wide AVX2 with
//   FMA, the strong FP32 baseline. Called only when the CPU has AVX2 and FMA. (Eigen 3.4's
//   AVX-512 GEMM kernels need -mavx512f on the whole file; AVX2+FMA is what distributions
//   commonly build for, so that is the second row.)
//
// Both run single-threaded (no OpenMP); the benchmark splits rows across its own threads by
// calling these on row ranges of W.
#pragma once

#include <cstddef>

namespace bench {

// y[b*ldy + j] = sum_i x[b*in + i] * w[j*in + i], for b < batch and j < out: x is batch x in
// (contiguous rows), w is out x in (contiguous rows), y has row stride ldy >= out. Batch 1 is an
// Eigen GEMV (row vector times Wᵀ), larger batches an Eigen GEMM.
namespace eigen_sse2 {
void gemm(const float* w, std::size_t out, std::size_t in, const float* x, std::size_t batch,
          float* y, std::size_t ldy);
const char* simd_instruction_sets();  // Eigen::SimdInstructionSetsInUse() of this build
}  // namespace eigen_sse2

namespace eigen_avx2 {
bool compiled();   // built with -mavx2 -mfma
bool available();  // compiled, and this CPU has AVX2 and FMA
void gemm(const float* w, std::size_t out, std::size_t in, const float* x, std::size_t batch,
          float* y, std::size_t ldy);
const char* simd_instruction_sets();
}  // namespace eigen_avx2

}  // namespace bench
