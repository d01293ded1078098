// exp of float vectors that returns, lane for lane, what glibc's expf returns on x86-64, so the
// engine's softmax and SwiGLU keep run.c's values while running 8 or 16 lanes at a time.
//
// glibc's expf (from Arm's optimized-routines) works in double: with N = 32,
//   z = x·N/ln2,  k = round(z),  r = z − k,  s = 2^(k/N) = T[k mod N] with k/N added to its
//   exponent,  exp(x) ≈ s·(C0·r³ + C1·r² + C2·r + 1),  rounded once to float.
// On CPUs with FMA and AVX2 (every CPU the avx2 and avx512 paths run on) glibc picks its build
// of that code with fused multiply-adds; the bodies below do the same operations in the same
// order, each fused where that build fuses, so the results are its bits (checked against
// std::exp over every float by the author, and on a sample by test_llama_engine).
// The error is glibc's: at most 0.502 ulp. Elsewhere (another libc, or the portable path's
// std::exp) the bits may differ from these in rare last places, never by more than that bound.
#pragma once

#include <onebit/detail/target.hpp>

#include <cstdint>

namespace onebit::llama::detail {

struct expf_data {
  static constexpr double inv_ln2_n = 0x1.71547652b82fep+0 * 32;  // N / ln 2
  static constexpr double shift = 0x1.8p+52;  // adding it rounds a double below 2^51 to an integer
  // The polynomial for 2^(r/N), r in [−1/2, 1/2]: its terms of degree 3, 2 and 1.
  static constexpr double c0 = 0x1.c6af84b912394p-5 / 32 / 32 / 32;
  static constexpr double c1 = 0x1.ebfce50fac4f3p-3 / 32 / 32;
  static constexpr double c2 = 0x1.62e42ff0c52d6p-1 / 32;
  // The bits of 2^(i/32), correctly rounded, minus i << 47, so that adding k << 47 (k = the
  // rounded z) both picks up k / 32 in the exponent and cancels the table index.
  static constexpr std::uint64_t table[32] = {
      0x3ff0000000000000u, 0x3fefd9b0d3158574u, 0x3fefb5586cf9890fu, 0x3fef9301d0125b51u,
      0x3fef72b83c7d517bu, 0x3fef54873168b9aau, 0x3fef387a6e756238u, 0x3fef1e9df51fdee1u,
      0x3fef06fe0a31b715u, 0x3feef1a7373aa9cbu, 0x3feedea64c123422u, 0x3feece086061892du,
      0x3feebfdad5362a27u, 0x3feeb42b569d4f82u, 0x3feeab07dd485429u, 0x3feea47eb03a5585u,
      0x3feea09e667f3bcdu, 0x3fee9f75e8ec5f74u, 0x3feea11473eb0187u, 0x3feea589994cce13u,
      0x3feeace5422aa0dbu, 0x3feeb737b0cdc5e5u, 0x3feec49182a3f090u, 0x3feed503b23e255du,
      0x3feee89f995ad3adu, 0x3feeff76f2fb5e47u, 0x3fef199bdd85529cu, 0x3fef3720dcef9069u,
      0x3fef5818dcfba487u, 0x3fef7c97337b9b5fu, 0x3fefa4afa2a490dau, 0x3fefd0765b6e4540u,
  };
  // Past these the result is +inf or 0 (glibc's overflow and underflow cases).
  static constexpr float overflow = 0x1.62e42ep6f;    // log(0x1p128)
  static constexpr float underflow = -0x1.9fe368p6f;  // log(0x1p-150)
};

#if ONEBIT_X86

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)

// exp of 8 floats, computed in 8 doubles.
inline __m256 expf_avx512_half(__m256 x) noexcept {
  const __m512d xd = _mm512_cvtps_pd(x);
  const __m512d inv_ln2_n = _mm512_set1_pd(expf_data::inv_ln2_n);
  const __m512d shift = _mm512_set1_pd(expf_data::shift);
  const __m512d shifted = _mm512_fmadd_pd(inv_ln2_n, xd, shift);  // k + shift, rounded
  const __m512i k = _mm512_castpd_si512(shifted);                 // k in the low bits
  const __m512d kd = _mm512_sub_pd(shifted, shift);
  const __m512d r = _mm512_fmsub_pd(inv_ln2_n, xd, kd);
  // T[k mod 32]: two 16-entry lookups, bit 4 of k picks one.
  const __m512i t0 = _mm512_loadu_si512(expf_data::table), t1 = _mm512_loadu_si512(expf_data::table + 8);
  const __m512i t2 = _mm512_loadu_si512(expf_data::table + 16), t3 = _mm512_loadu_si512(expf_data::table + 24);
  const __m512i low = _mm512_permutex2var_epi64(t0, k, t1), high = _mm512_permutex2var_epi64(t2, k, t3);
  const __mmask8 upper = _mm512_test_epi64_mask(k, _mm512_set1_epi64(16));
  const __m512i t = _mm512_add_epi64(_mm512_mask_blend_epi64(upper, low, high), _mm512_slli_epi64(k, 47));
  const __m512d s = _mm512_castsi512_pd(t);
  const __m512d z = _mm512_fmadd_pd(_mm512_set1_pd(expf_data::c0), r, _mm512_set1_pd(expf_data::c1));
  const __m512d r2 = _mm512_mul_pd(r, r);
  __m512d y = _mm512_fmadd_pd(r, _mm512_set1_pd(expf_data::c2), _mm512_set1_pd(1.0));
  y = _mm512_fmadd_pd(z, r2, y);
  return _mm512_cvtpd_ps(_mm512_mul_pd(y, s));
}

inline __m512 expf_avx512(__m512 x) noexcept {
  const __m256 lo = expf_avx512_half(_mm512_castps512_ps256(x));
  const __m256 hi = expf_avx512_half(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
  __m512 y = _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
  // glibc's special cases: NaN stays NaN (x + x), above `overflow` +inf, below `underflow` 0
  // (which also covers −inf). In between, the formula is right, subnormal results included.
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  const __mmask16 big = _mm512_cmp_ps_mask(x, _mm512_set1_ps(expf_data::overflow), _CMP_GT_OQ);
  const __mmask16 small = _mm512_cmp_ps_mask(x, _mm512_set1_ps(expf_data::underflow), _CMP_LT_OQ);
  y = _mm512_mask_mov_ps(y, big, _mm512_set1_ps(__builtin_huge_valf()));
  y = _mm512_mask_mov_ps(y, small, _mm512_setzero_ps());
  return _mm512_mask_add_ps(y, nan, x, x);
}

ONEBIT_TARGET_END

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX2)

// exp of 4 floats, computed in 4 doubles.
inline __m128 expf_avx2_quarter(__m128 x) noexcept {
  const __m256d xd = _mm256_cvtps_pd(x);
  const __m256d inv_ln2_n = _mm256_set1_pd(expf_data::inv_ln2_n);
  const __m256d shift = _mm256_set1_pd(expf_data::shift);
  const __m256d shifted = _mm256_fmadd_pd(inv_ln2_n, xd, shift);
  const __m256i k = _mm256_castpd_si256(shifted);
  const __m256d kd = _mm256_sub_pd(shifted, shift);
  const __m256d r = _mm256_fmsub_pd(inv_ln2_n, xd, kd);
  const __m256i index = _mm256_and_si256(k, _mm256_set1_epi64x(31));
  const __m256i table = _mm256_i64gather_epi64(reinterpret_cast<const long long*>(expf_data::table), index, 8);
  const __m256d s = _mm256_castsi256_pd(_mm256_add_epi64(table, _mm256_slli_epi64(k, 47)));
  const __m256d z = _mm256_fmadd_pd(_mm256_set1_pd(expf_data::c0), r, _mm256_set1_pd(expf_data::c1));
  const __m256d r2 = _mm256_mul_pd(r, r);
  __m256d y = _mm256_fmadd_pd(r, _mm256_set1_pd(expf_data::c2), _mm256_set1_pd(1.0));
  y = _mm256_fmadd_pd(z, r2, y);
  return _mm256_cvtpd_ps(_mm256_mul_pd(y, s));
}

inline __m256 expf_avx2(__m256 x) noexcept {
  const __m128 lo = expf_avx2_quarter(_mm256_castps256_ps128(x));
  const __m128 hi = expf_avx2_quarter(_mm256_extractf128_ps(x, 1));
  __m256 y = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
  const __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(expf_data::overflow), _CMP_GT_OQ);
  const __m256 small = _mm256_cmp_ps(x, _mm256_set1_ps(expf_data::underflow), _CMP_LT_OQ);
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_huge_valf()), big);
  y = _mm256_andnot_ps(small, y);
  return _mm256_blendv_ps(y, _mm256_add_ps(x, x), nan);
}

ONEBIT_TARGET_END

#endif  // ONEBIT_X86

}  // namespace onebit::llama::detail
