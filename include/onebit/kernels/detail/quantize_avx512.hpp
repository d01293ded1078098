// The quantisation of kernels/quantize.hpp with AVX-512, bit-identical to the scalar one: the
// maximum is order-free, _mm512_cvtps_epi32 rounds in the current mode as nearbyint does, and
// the planes and signs are exact. Inputs are read in whole vectors: a must be zero-padded to a
// multiple of 16 floats and q to a multiple of 64 bytes (prepare does both).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../../detail/target.hpp"
#include "../quantize.hpp"

#if ONEBIT_X86

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)

namespace onebit::kernels::quantize::avx512 {

// Products are rounded once each, as the scalar loop's are. Not left to the compiler: prepare
// is compiled for the consumer's target, and g++ at -O2 kept the loop scalar (45% of lut's and
// vnni_int8's prepare at 4096 inputs).
inline void hadamard(const float* x, const float* g, std::size_t n, float* a) noexcept {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(a + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(g + i)));
  if (i < n) {
    const auto m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 p =
        _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, g + i));
    _mm512_mask_storeu_ps(a + i, m, p);
  }
}

inline int8_row int8(const float* a, std::size_t n, std::int8_t* q) noexcept {
  const std::size_t vectors = (n + 15) / 16;
  const __m512 largest = _mm512_set1_ps(std::numeric_limits<float>::max());
  __m512 m = _mm512_setzero_ps();
  __mmask16 finite = 0xffff;
  for (std::size_t v = 0; v < vectors; ++v) {
    const __m512 x = _mm512_abs_ps(_mm512_load_ps(a + 16 * v));
    finite &= _mm512_cmp_ps_mask(x, largest, _CMP_LE_OQ);  // false for inf and NaN
    m = _mm512_max_ps(m, x);
  }
  __m256 m8 = _mm256_max_ps(_mm512_castps512_ps256(m), _mm512_extractf32x8_ps(m, 1));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float max_abs = _mm_cvtss_f32(m4);
  if (finite != 0xffff || max_abs == 0.0f) {
    std::memset(q, 0, n);
    return {finite != 0xffff ? std::numeric_limits<float>::quiet_NaN() : 0.0f, 0};
  }
  const __m512 inverse = _mm512_set1_ps(127.0f / max_abs);
  const __m512i hi = _mm512_set1_epi32(127), lo = _mm512_set1_epi32(-127);
  __m512i sum = _mm512_setzero_si512();
  for (std::size_t v = 0; v < vectors; ++v) {
    __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(a + 16 * v), inverse));
    r = _mm512_max_epi32(_mm512_min_epi32(r, hi), lo);
    sum = _mm512_add_epi32(sum, r);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16 * v), _mm512_cvtepi32_epi8(r));
  }
  const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(sum), _mm512_extracti64x4_epi64(sum, 1));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
  return {max_abs / 127.0f, _mm_cvtsi128_si32(s4)};
}

inline void int8_planes(const std::int8_t* q, std::size_t n, unsigned char* planes,
                        std::size_t plane_stride) noexcept {
  std::memset(planes, 0, 8 * plane_stride);
  const std::size_t vectors = (n + 63) / 64;
  for (std::size_t v = 0; v < vectors; ++v) {
    const __m512i x = _mm512_loadu_si512(q + 64 * v);
    for (int p = 0; p < 8; ++p) {
      const __mmask64 bits = _mm512_test_epi8_mask(x, _mm512_set1_epi8(static_cast<char>(1 << p)));
      std::memcpy(planes + p * plane_stride + 8 * v, &bits, 8);
    }
  }
}

inline void sign_plane(const float* a, std::size_t n, unsigned char* plane,
                       std::size_t plane_bytes) noexcept {
  std::memset(plane, 0, plane_bytes);
  const std::size_t vectors = (n + 15) / 16;
  const __m512 zero = _mm512_setzero_ps();
  for (std::size_t v = 0; v < vectors; ++v) {
    const __mmask16 negative = _mm512_cmp_ps_mask(_mm512_load_ps(a + 16 * v), zero, _CMP_LT_OQ);
    std::memcpy(plane + 2 * v, &negative, 2);
  }
}

}  // namespace onebit::kernels::quantize::avx512

ONEBIT_TARGET_END

#endif  // ONEBIT_X86
