// The quantisation of kernels/quantize.hpp with AVX2, for CPUs without AVX-512: bit-identical to
// the scalar one, for the reasons quantize_avx512.hpp gives (the maximum is order-free,
// _mm256_cvtps_epi32 rounds in the current mode as nearbyint does, the planes and signs are
// exact). Inputs are read in whole vectors: a must be zero-padded to a multiple of 8 floats and
// q to a multiple of 32 bytes (prepare pads both to 64 bytes); hadamard reads and writes only
// [0, n).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../../detail/target.hpp"
#include "../quantize.hpp"

#if ONEBIT_X86

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX2)

namespace onebit::kernels::quantize::avx2 {

// Lanes [0, n) of 8.
inline __m256i first_lanes(std::size_t n) noexcept {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline void hadamard(const float* x, const float* g, std::size_t n, float* a) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(a + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(g + i)));
  if (i < n) {
    const __m256i m = first_lanes(n - i);
    const __m256 p = _mm256_mul_ps(_mm256_maskload_ps(x + i, m), _mm256_maskload_ps(g + i, m));
    _mm256_maskstore_ps(a + i, m, p);
  }
}

inline int8_row int8(const float* a, std::size_t n, std::int8_t* q) noexcept {
  const std::size_t vectors = (n + 7) / 8;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 largest = _mm256_set1_ps(std::numeric_limits<float>::max());
  __m256 m = _mm256_setzero_ps();
  int finite = 0xff;
  for (std::size_t v = 0; v < vectors; ++v) {
    const __m256 x = _mm256_andnot_ps(sign, _mm256_load_ps(a + 8 * v));
    finite &= _mm256_movemask_ps(_mm256_cmp_ps(x, largest, _CMP_LE_OQ));  // 0 for inf and NaN
    m = _mm256_max_ps(m, x);
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float max_abs = _mm_cvtss_f32(m4);
  if (finite != 0xff || max_abs == 0.0f) {
    std::memset(q, 0, n);
    return {finite != 0xff ? std::numeric_limits<float>::quiet_NaN() : 0.0f, 0};
  }
  const __m256 inverse = _mm256_set1_ps(127.0f / max_abs);
  const __m256i hi = _mm256_set1_epi32(127), lo = _mm256_set1_epi32(-127);
  __m256i sum = _mm256_setzero_si256();
  for (std::size_t v = 0; v < vectors; ++v) {
    __m256i r = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_load_ps(a + 8 * v), inverse));
    r = _mm256_max_epi32(_mm256_min_epi32(r, hi), lo);
    sum = _mm256_add_epi32(sum, r);
    // Within ±127, so the saturating packs are exact.
    const __m128i r16 = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + 8 * v), _mm_packs_epi16(r16, r16));
  }
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
  return {max_abs / 127.0f, _mm_cvtsi128_si32(s4)};
}

// Bit p of each byte moved to its top bit by a 16-bit shift of 7 − p (the low byte's bits stay
// in the low byte's top, the high byte's bit 8 + p lands on bit 15), then movemask.
inline void int8_planes(const std::int8_t* q, std::size_t n, unsigned char* planes,
                        std::size_t plane_stride) noexcept {
  std::memset(planes, 0, 8 * plane_stride);
  const std::size_t vectors = (n + 31) / 32;
  for (std::size_t v = 0; v < vectors; ++v) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * v));
    for (int p = 0; p < 8; ++p) {
      const auto bits = static_cast<std::uint32_t>(
          _mm256_movemask_epi8(_mm256_sll_epi16(x, _mm_cvtsi32_si128(7 - p))));
      std::memcpy(planes + p * plane_stride + 4 * v, &bits, 4);
    }
  }
}

inline void sign_plane(const float* a, std::size_t n, unsigned char* plane,
                       std::size_t plane_bytes) noexcept {
  std::memset(plane, 0, plane_bytes);
  const std::size_t vectors = (n + 7) / 8;
  const __m256 zero = _mm256_setzero_ps();
  for (std::size_t v = 0; v < vectors; ++v)
    plane[v] = static_cast<unsigned char>(
        _mm256_movemask_ps(_mm256_cmp_ps(_mm256_load_ps(a + 8 * v), zero, _CMP_LT_OQ)));
}

}  // namespace onebit::kernels::quantize::avx2

ONEBIT_TARGET_END

#endif  // ONEBIT_X86
