// Eigen compiled with -mavx2 -mfma (set for this file only in CMakeLists.txt). See
// eigen_gemm.hpp.
//
// Every inline function this file instantiates is compiled for AVX2, and the linker keeps one
// copy of each across the program. Eigen's are renamed out of the way (the `Eigen` namespace is
// `eigen_avx2_build` here), so the SSE2 build never runs AVX2 code through a shared template;
// this file includes nothing else (not even onebit/cpu.hpp: the CPU check is in
// eigen_sse2.cpp), and `nm` on its object shows no weak symbol outside that namespace.
#include "eigen_gemm.hpp"

#if defined(__AVX2__) && defined(__FMA__)
#define Eigen eigen_avx2_build
#define EIGEN_BASELINE_NAMESPACE eigen_avx2
#include "eigen_gemm.inl"
#undef Eigen

namespace bench::eigen_avx2 {
bool compiled() { return true; }
}  // namespace bench::eigen_avx2

#else
#include <stdexcept>
namespace bench::eigen_avx2 {
bool compiled() { return false; }
void gemm(const float*, std::size_t, std::size_t, const float*, std::size_t, float*,
          std::size_t) {
  throw std::logic_error("eigen_avx2: not compiled with -mavx2 -mfma");
}
const char* simd_instruction_sets() { return "none (not compiled with -mavx2 -mfma)"; }
}  // namespace bench::eigen_avx2
#endif
