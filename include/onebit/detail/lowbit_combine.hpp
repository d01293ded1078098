// The last step of a low-bit product (lowbit_linear.hpp): per output j of a row tile,
//
//     y_j = Σ_g s_gj · (c_gj · X_g − P_gj)
//
// over the groups g, from the groups' sign products P, their activation sums X and the
// per-(group, row) scale s and offset c = (2^k − 1)/2 − z. Written once for the SIMD paths
// (kernels/detail/combine_simd.inl, 16 or 8 outputs per vector, the groups summed in
// registers) and portably in blocks of 16 the compiler vectorises; every path sums the groups
// in the same order with the same roundings except that the SIMD ones fuse c·X − P and the
// accumulation into FMAs.
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
namespace avx2_combine {
struct ops {
  using vec = __m256;
  using mask = unsigned;  // unused: the tail runs the portable body, as it always has
  static constexpr std::size_t width = 8;
  static constexpr bool masked_tail = false;
  static vec load(const float* q) noexcept { return _mm256_loadu_ps(q); }
  static void store(float* q, vec v) noexcept { _mm256_storeu_ps(q, v); }
  static vec set1(float v) noexcept { return _mm256_set1_ps(v); }
  static vec zero() noexcept { return _mm256_setzero_ps(); }
  static vec fmsub(vec a, vec b, vec c) noexcept { return _mm256_fmsub_ps(a, b, c); }
  static vec fmadd(vec a, vec b, vec c) noexcept { return _mm256_fmadd_ps(a, b, c); }
  static mask first(std::size_t) noexcept { return 0; }
  static vec load_masked(mask, const float* q) noexcept { return load(q); }
  static void store_masked(float* q, mask, vec v) noexcept { store(q, v); }
};
#include "../kernels/detail/combine_simd.inl"
}  // namespace avx2_combine
inline void combine_avx2(float* y, std::size_t n, std::size_t groups, const float* s,
                         const float* c, const float* p, std::size_t ld,
                         const float* sums) noexcept {
  avx2_combine::combine_simd<avx2_combine::ops>(y, n, groups, s, c, p, ld, sums);
}
ONEBIT_TARGET_END

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)
namespace avx512_combine {
struct ops {
  using vec = __m512;
  using mask = __mmask16;
  static constexpr std::size_t width = 16;
  static constexpr bool masked_tail = true;
  static vec load(const float* q) noexcept { return _mm512_loadu_ps(q); }
  static void store(float* q, vec v) noexcept { _mm512_storeu_ps(q, v); }
  static vec set1(float v) noexcept { return _mm512_set1_ps(v); }
  static vec zero() noexcept { return _mm512_setzero_ps(); }
  static vec fmsub(vec a, vec b, vec c) noexcept { return _mm512_fmsub_ps(a, b, c); }
  static vec fmadd(vec a, vec b, vec c) noexcept { return _mm512_fmadd_ps(a, b, c); }
  static mask first(std::size_t rem) noexcept { return static_cast<mask>((1u << rem) - 1u); }
  static vec load_masked(mask m, const float* q) noexcept { return _mm512_maskz_loadu_ps(m, q); }
  static void store_masked(float* q, mask m, vec v) noexcept { _mm512_mask_storeu_ps(q, m, v); }
};
#include "../kernels/detail/combine_simd.inl"
}  // namespace avx512_combine
inline void combine_avx512(float* y, std::size_t n, std::size_t groups, const float* s,
                           const float* c, const float* p, std::size_t ld,
                           const float* sums) noexcept {
  avx512_combine::combine_simd<avx512_combine::ops>(y, n, groups, s, c, p, ld, sums);
}
ONEBIT_TARGET_END

#endif  // ONEBIT_X86

// The bodies per path (cpu.hpp, table_for): AVX-512 (avx512_icl takes it), AVX2, portable.
struct combine_family {
  struct table {
    combine_fn combine = nullptr;
  };
  static constexpr bool has(isa path) noexcept {
    return path == isa::portable || (ONEBIT_X86 != 0 && (path == isa::avx2 || path == isa::avx512));
  }
  static table make(isa path) noexcept {
#if ONEBIT_X86
    if (path == isa::avx512) return {&combine_avx512};
    if (path == isa::avx2) return {&combine_avx2};
#endif
    (void)path;
    return {&combine_portable};
  }
};

inline combine_fn combine_for(isa path) noexcept { return table_for<combine_family>(path).combine; }

}  // namespace onebit::detail::quant
