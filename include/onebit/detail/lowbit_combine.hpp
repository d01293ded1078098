// The last step of a low-bit product (lowbit_linear.hpp): per output j of a row tile,
//
//     y_j = Σ_g s_gj · (c_gj · X_g − P_gj)
//
// over the groups g, from the groups' sign products P, their activation sums X and the
// per-(group, row) scale s and offset c = (2^k − 1)/2 − z. Written per instruction set (16 or 8
// outputs per vector, the groups summed in registers) and portably in blocks of 16 the compiler
// vectorises; every path sums the groups in the same order with the same roundings except that
// the SIMD ones fuse c·X − P and the accumulation into FMAs.
#pragma once

#include <cstddef>

#include "../cpu.hpp"
#include "target.hpp"

namespace onebit::detail::quant {

// y[j] for j < n; s, c, p point at the tile's first output, group g's values ld floats further
// on per group (the same ld for all three), sums[g] = X_g.
using combine_fn = void (*)(float* y, std::size_t n, std::size_t groups, const float* s,
                            const float* c, const float* p, std::size_t ld,
                            const float* sums) noexcept;

inline void combine_portable(float* y, std::size_t n, std::size_t groups, const float* s,
                             const float* c, const float* p, std::size_t ld,
                             const float* sums) noexcept {
  std::size_t j = 0;
  for (; j + 16 <= n; j += 16) {
    float acc[16] = {};
    for (std::size_t g = 0; g < groups; ++g) {
      const float x = sums[g];
      const float* sg = s + g * ld + j;
      const float* cg = c + g * ld + j;
      const float* pg = p + g * ld + j;
      ONEBIT_UNROLL
      for (int t = 0; t < 16; ++t) acc[t] += sg[t] * (cg[t] * x - pg[t]);
    }
    for (int t = 0; t < 16; ++t) y[j + t] = acc[t];
  }
  for (; j < n; ++j) {
    float acc = 0;
    for (std::size_t g = 0; g < groups; ++g)
      acc += s[g * ld + j] * (c[g * ld + j] * sums[g] - p[g * ld + j]);
    y[j] = acc;
  }
}

#if ONEBIT_X86

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX2)
inline void combine_avx2(float* y, std::size_t n, std::size_t groups, const float* s,
                         const float* c, const float* p, std::size_t ld,
                         const float* sums) noexcept {
  std::size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (std::size_t g = 0; g < groups; ++g) {
      const std::size_t o = g * ld + j;
      const __m256 t = _mm256_fmsub_ps(_mm256_loadu_ps(c + o), _mm256_set1_ps(sums[g]),
                                       _mm256_loadu_ps(p + o));
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(s + o), t, acc);
    }
    _mm256_storeu_ps(y + j, acc);
  }
  if (j < n) combine_portable(y + j, n - j, groups, s + j, c + j, p + j, ld, sums);
}
ONEBIT_TARGET_END

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)
inline void combine_avx512(float* y, std::size_t n, std::size_t groups, const float* s,
                           const float* c, const float* p, std::size_t ld,
                           const float* sums) noexcept {
  std::size_t j = 0;
  for (; j < n; j += 16) {
    const __mmask16 m =
        n - j >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - j)) - 1u);
    __m512 acc = _mm512_setzero_ps();
    for (std::size_t g = 0; g < groups; ++g) {
      const std::size_t o = g * ld + j;
      const __m512 t = _mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, c + o), _mm512_set1_ps(sums[g]),
                                       _mm512_maskz_loadu_ps(m, p + o));
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, s + o), t, acc);
    }
    _mm512_mask_storeu_ps(y + j, m, acc);
  }
}
ONEBIT_TARGET_END

#endif  // ONEBIT_X86

inline combine_fn combine_for(isa path) noexcept {
#if ONEBIT_X86
  if (path == isa::avx512 || path == isa::avx512_icl) return &combine_avx512;
  if (path == isa::avx2) return &combine_avx2;
#endif
  (void)path;
  return &combine_portable;
}

}  // namespace onebit::detail::quant
