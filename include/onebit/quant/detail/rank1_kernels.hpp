// The row kernels of rank1 and svid: every pass over the matrix is made of these, one row at a
// time, so the matrix streams from memory once per pass while the vectors (length cols) stay
// in cache.
//
//  * scan: one pass that checks the values (max |x| as bit patterns catches inf and NaN), finds
//    the smallest value, sums the squares and, for svid, writes the sign bits of the row in the
//    bit layout of sign_matrix (bit 1 where x < 0, so -0.0 gives +1).
//  * fused: one step of power iteration (or of rank-1 ALS) for one row, both mat-vec halves
//    while the row is in cache: t = coef · Σ_c |x_c|·v_c, then acc_c += t·|x_c|.
//  * residual: Σ_c (|x_c| − h·g_c)², the error of a stored rank-1 factor on one row.
//
// Each kernel exists per instruction set (AVX-512, AVX2+FMA, and a portable one written in
// blocks of 16 the compiler vectorises at the build's own width), chosen per call like the
// products' kernels. Sums are in float with many independent accumulators; callers add the
// per-row results in double. The order of the float sums differs between paths, so results
// agree across paths to float rounding, not bit for bit.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../../cpu.hpp"
#include "../../detail/target.hpp"

namespace onebit::detail::quant {

struct row_scan {
  std::uint32_t max_abs_bits = 0;  // max of the |x| bit patterns: >= 0x7f800000 is inf or NaN
  float min = 0;                   // the smallest value (meaningless where a NaN is)
  float sum_squares = 0;           // Σ (scale·x)²
};

// signs: null, or (n + 7) / 8 bytes to receive the sign bits, element c at bit c % 8 of byte
// c / 8 (the bytes of a sign_matrix row on a little-endian machine).
using scan_fn = row_scan (*)(const float* x, std::size_t n, float scale,
                             unsigned char* signs) noexcept;
// Returns t = coef · Σ_c (scale·|x_c|)·v_c and adds t·scale·|x_c| to acc_c. The unscaled body
// ignores `scale` (it must be 1).
using fused_fn = float (*)(const float* x, std::size_t n, const float* v, float* acc, float coef,
                           float scale) noexcept;
using residual_fn = float (*)(const float* x, std::size_t n, const float* g, float h) noexcept;

struct rank1_kernels {
  scan_fn scan = nullptr;
  fused_fn fused = nullptr;         // scale 1
  fused_fn fused_scaled = nullptr;  // any power-of-two scale
  residual_fn residual = nullptr;
};

inline std::uint32_t abs_bits(float x) noexcept {
  std::uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b & 0x7fffffffu;
}

// ---------------------------------------------------------------- portable
// Blocks of 16 independent lanes: loops of constant trip count the compiler vectorises at -O2
// whatever its cost model, with no reassociation of any one sum; the tail (n % 16, known to be
// below 16) goes through the same lanes.

inline row_scan scan_portable(const float* x, std::size_t n, float scale,
                              unsigned char* signs) noexcept {
  // All in float so that it vectorises: inf or NaN makes v − v a NaN, which the sum `bad`
  // keeps; the max of |v| is then only taken over finite values.
  float mx[16] = {}, bad[16] = {}, mn[16], sq[16] = {};
  for (float& m : mn) m = n != 0 ? x[0] : 0.0f;
  auto lanes = [&](const float* p, std::size_t count) {
    for (std::size_t t = 0; t < count; ++t) {
      const float v = p[t], a = std::fabs(v), s = v * scale;
      bad[t] += v - v;
      mx[t] = a > mx[t] ? a : mx[t];
      mn[t] = v < mn[t] ? v : mn[t];
      sq[t] += s * s;
    }
  };
  const std::size_t blocks = n / 16, tail = n % 16;
  for (std::size_t k = 0; k < blocks; ++k) lanes(x + 16 * k, 16);
  lanes(x + 16 * blocks, tail);
  if (signs != nullptr) {
    const std::size_t bytes = n / 8, rest = n % 8;
    for (std::size_t byte = 0; byte < bytes; ++byte) {
      // Eight 0/1 bytes gathered into one: in b · 0x0102040810204080 byte i lands on bit
      // 56 + i with no carries (every product term is a distinct bit).
#if ONEBIT_X86 && defined(__SSE2__)
      // SSE is part of x86-64: four signs per compare and movemask.
      const __m128 zero = _mm_setzero_ps();
      const int lo = _mm_movemask_ps(_mm_cmplt_ps(_mm_loadu_ps(x + 8 * byte), zero));
      const int hi = _mm_movemask_ps(_mm_cmplt_ps(_mm_loadu_ps(x + 8 * byte + 4), zero));
      signs[byte] = static_cast<unsigned char>(lo | (hi << 4));
#else
      unsigned char negative[8];
      for (unsigned t = 0; t < 8; ++t) negative[t] = x[8 * byte + t] < 0.0f;
      std::uint64_t b = 0;
      for (unsigned t = 0; t < 8; ++t) b |= static_cast<std::uint64_t>(negative[t]) << (8 * t);
      signs[byte] = static_cast<unsigned char>((b * 0x0102040810204080ull) >> 56);
#endif
    }
    if (rest != 0) {
      unsigned bits = 0;
      for (std::size_t t = 0; t < rest; ++t)
        bits |= static_cast<unsigned>(x[8 * bytes + t] < 0.0f) << t;
      signs[bytes] = static_cast<unsigned char>(bits);
    }
  }
  row_scan r;
  r.min = mn[0];
  float m = 0, b = 0;
  for (int t = 0; t < 16; ++t) {
    m = mx[t] > m ? mx[t] : m;
    b += bad[t];
    r.min = mn[t] < r.min ? mn[t] : r.min;
  }
  r.max_abs_bits = b == 0.0f ? abs_bits(m) : 0x7fc00000u;
  for (int w = 8; w >= 1; w /= 2)
    for (int t = 0; t < w; ++t) sq[t] += sq[t + w];
  r.sum_squares = sq[0];
  return r;
}

template <bool Scaled>
inline float fused_portable(const float* x, std::size_t n, const float* v, float* acc,
                            float coef, float scale) noexcept {
  float s[16] = {};
  const std::size_t blocks = n / 16, tail = n % 16;
  auto dot = [&](const float* p, const float* q, std::size_t count) {
    for (std::size_t t = 0; t < count; ++t) {
      float a = std::fabs(p[t]);
      if constexpr (Scaled) a *= scale;
      s[t] += a * q[t];
    }
  };
  for (std::size_t k = 0; k < blocks; ++k) dot(x + 16 * k, v + 16 * k, 16);
  dot(x + 16 * blocks, v + 16 * blocks, tail);
  for (int w = 8; w >= 1; w /= 2)
    for (int t = 0; t < w; ++t) s[t] += s[t + w];
  const float t_row = s[0] * coef;
  const float k = Scaled ? t_row * scale : t_row;
  auto axpy = [&](const float* p, float* out, std::size_t count) {
    for (std::size_t t = 0; t < count; ++t) out[t] += k * std::fabs(p[t]);
  };
  for (std::size_t b = 0; b < blocks; ++b) axpy(x + 16 * b, acc + 16 * b, 16);
  axpy(x + 16 * blocks, acc + 16 * blocks, tail);
  return t_row;
}

inline float residual_portable(const float* x, std::size_t n, const float* g, float h) noexcept {
  float s[16] = {};
  auto lanes = [&](const float* p, const float* q, std::size_t count) {
    for (std::size_t t = 0; t < count; ++t) {
      const float d = std::fabs(p[t]) - h * q[t];
      s[t] += d * d;
    }
  };
  const std::size_t blocks = n / 16, tail = n % 16;
  for (std::size_t k = 0; k < blocks; ++k) lanes(x + 16 * k, g + 16 * k, 16);
  lanes(x + 16 * blocks, g + 16 * blocks, tail);
  for (int w = 8; w >= 1; w /= 2)
    for (int t = 0; t < w; ++t) s[t] += s[t + w];
  return s[0];
}

#if ONEBIT_X86

// ---------------------------------------------------------------- AVX2 + FMA
ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX2)

inline float hsum_avx2(__m256 v) noexcept {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// Lanes [0, rem) set, for maskload / maskstore of a tail of rem < 8 floats.
inline __m256i tail_mask_avx2(std::size_t rem) noexcept {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rem)), lanes);
}

inline row_scan scan_avx2(const float* x, std::size_t n, float scale,
                          unsigned char* signs) noexcept {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  const __m256 zero = _mm256_setzero_ps(), vs = _mm256_set1_ps(scale);
  __m256i mx = _mm256_setzero_si256();
  __m256 mn = _mm256_set1_ps(n != 0 ? x[0] : 0.0f), sq0 = zero, sq1 = zero;
  std::size_t c = 0;
  for (; c + 16 <= n; c += 16) {
    const __m256 a = _mm256_loadu_ps(x + c), b = _mm256_loadu_ps(x + c + 8);
    mx = _mm256_max_epi32(mx, _mm256_and_si256(_mm256_castps_si256(a), abs_mask));
    mx = _mm256_max_epi32(mx, _mm256_and_si256(_mm256_castps_si256(b), abs_mask));
    mn = _mm256_min_ps(mn, _mm256_min_ps(a, b));
    const __m256 as = _mm256_mul_ps(a, vs), bs = _mm256_mul_ps(b, vs);
    sq0 = _mm256_fmadd_ps(as, as, sq0);
    sq1 = _mm256_fmadd_ps(bs, bs, sq1);
    if (signs != nullptr) {
      signs[c / 8] =
          static_cast<unsigned char>(_mm256_movemask_ps(_mm256_cmp_ps(a, zero, _CMP_LT_OQ)));
      signs[c / 8 + 1] =
          static_cast<unsigned char>(_mm256_movemask_ps(_mm256_cmp_ps(b, zero, _CMP_LT_OQ)));
    }
  }
  for (; c < n; c += 8) {
    const std::size_t rem = n - c < 8 ? n - c : 8;
    const __m256i m = tail_mask_avx2(rem);
    // Lanes past n load 0: |0| and 0² change nothing; min takes x[0] there instead.
    const __m256 a = _mm256_maskload_ps(x + c, m);
    mx = _mm256_max_epi32(mx, _mm256_and_si256(_mm256_castps_si256(a), abs_mask));
    mn = _mm256_min_ps(mn, _mm256_blendv_ps(_mm256_set1_ps(x[0]), a, _mm256_castsi256_ps(m)));
    const __m256 as = _mm256_mul_ps(a, vs);
    sq0 = _mm256_fmadd_ps(as, as, sq0);
    if (signs != nullptr) {
      const unsigned bits =
          static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(a, zero, _CMP_LT_OQ)));
      signs[c / 8] = static_cast<unsigned char>(bits & ((1u << rem) - 1u));
    }
  }
  alignas(32) std::uint32_t mxs[8];
  alignas(32) float mns[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(mxs), mx);
  _mm256_store_ps(mns, mn);
  row_scan r;
  r.min = mns[0];
  for (int t = 0; t < 8; ++t) {
    r.max_abs_bits = mxs[t] > r.max_abs_bits ? mxs[t] : r.max_abs_bits;
    r.min = mns[t] < r.min ? mns[t] : r.min;
  }
  r.sum_squares = hsum_avx2(_mm256_add_ps(sq0, sq1));
  return r;
}

template <bool Scaled>
inline float fused_avx2(const float* x, std::size_t n, const float* v, float* acc, float coef,
                        float scale) noexcept {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 vs = _mm256_set1_ps(scale);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  auto load_abs = [&](const float* p) {
    __m256 a = _mm256_and_ps(_mm256_loadu_ps(p), abs_mask);
    if constexpr (Scaled) a = _mm256_mul_ps(a, vs);
    return a;
  };
  std::size_t c = 0;
  for (; c + 32 <= n; c += 32) {
    s0 = _mm256_fmadd_ps(load_abs(x + c), _mm256_loadu_ps(v + c), s0);
    s1 = _mm256_fmadd_ps(load_abs(x + c + 8), _mm256_loadu_ps(v + c + 8), s1);
    s2 = _mm256_fmadd_ps(load_abs(x + c + 16), _mm256_loadu_ps(v + c + 16), s2);
    s3 = _mm256_fmadd_ps(load_abs(x + c + 24), _mm256_loadu_ps(v + c + 24), s3);
  }
  for (; c + 8 <= n; c += 8) s0 = _mm256_fmadd_ps(load_abs(x + c), _mm256_loadu_ps(v + c), s0);
  const std::size_t tail = n - c;
  const __m256i m = tail_mask_avx2(tail);
  if (tail != 0) {
    __m256 a = _mm256_and_ps(_mm256_maskload_ps(x + c, m), abs_mask);
    if constexpr (Scaled) a = _mm256_mul_ps(a, vs);
    s1 = _mm256_fmadd_ps(a, _mm256_maskload_ps(v + c, m), s1);
  }
  const float t_row = hsum_avx2(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3))) * coef;
  const __m256 k = _mm256_set1_ps(Scaled ? t_row * scale : t_row);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask);
    const __m256 b = _mm256_and_ps(_mm256_loadu_ps(x + i + 8), abs_mask);
    _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(k, a, _mm256_loadu_ps(acc + i)));
    _mm256_storeu_ps(acc + i + 8, _mm256_fmadd_ps(k, b, _mm256_loadu_ps(acc + i + 8)));
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask);
    _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(k, a, _mm256_loadu_ps(acc + i)));
  }
  if (tail != 0) {
    const __m256 a = _mm256_and_ps(_mm256_maskload_ps(x + i, m), abs_mask);
    _mm256_maskstore_ps(acc + i, m, _mm256_fmadd_ps(k, a, _mm256_maskload_ps(acc + i, m)));
  }
  return t_row;
}

inline float residual_avx2(const float* x, std::size_t n, const float* g, float h) noexcept {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 vh = _mm256_set1_ps(h);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  std::size_t c = 0;
  for (; c + 16 <= n; c += 16) {
    const __m256 d0 = _mm256_fnmadd_ps(vh, _mm256_loadu_ps(g + c),
                                       _mm256_and_ps(_mm256_loadu_ps(x + c), abs_mask));
    const __m256 d1 = _mm256_fnmadd_ps(vh, _mm256_loadu_ps(g + c + 8),
                                       _mm256_and_ps(_mm256_loadu_ps(x + c + 8), abs_mask));
    s0 = _mm256_fmadd_ps(d0, d0, s0);
    s1 = _mm256_fmadd_ps(d1, d1, s1);
  }
  for (; c < n; c += 8) {
    const __m256i m = tail_mask_avx2(n - c < 8 ? n - c : 8);
    const __m256 d = _mm256_fnmadd_ps(vh, _mm256_maskload_ps(g + c, m),
                                      _mm256_and_ps(_mm256_maskload_ps(x + c, m), abs_mask));
    s0 = _mm256_fmadd_ps(d, d, s0);
  }
  return hsum_avx2(_mm256_add_ps(s0, s1));
}

ONEBIT_TARGET_END

// ---------------------------------------------------------------- AVX-512
ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)

// Written out: g++ 12's _mm512_reduce_add_ps raises a false -Wuninitialized once inlined.
inline float hsum_avx512(__m512 v) noexcept {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

inline __mmask16 tail_mask_avx512(std::size_t rem) noexcept {
  return static_cast<__mmask16>((1u << rem) - 1u);
}

inline row_scan scan_avx512(const float* x, std::size_t n, float scale,
                            unsigned char* signs) noexcept {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  const __m512 zero = _mm512_setzero_ps(), vs = _mm512_set1_ps(scale);
  __m512i mx = _mm512_setzero_si512();
  __m512 mn = _mm512_set1_ps(n != 0 ? x[0] : 0.0f), sq0 = zero, sq1 = zero;
  std::size_t c = 0;
  for (; c + 32 <= n; c += 32) {
    const __m512 a = _mm512_loadu_ps(x + c), b = _mm512_loadu_ps(x + c + 16);
    mx = _mm512_max_epi32(mx, _mm512_and_si512(_mm512_castps_si512(a), abs_mask));
    mx = _mm512_max_epi32(mx, _mm512_and_si512(_mm512_castps_si512(b), abs_mask));
    mn = _mm512_min_ps(mn, _mm512_min_ps(a, b));
    const __m512 as = _mm512_mul_ps(a, vs), bs = _mm512_mul_ps(b, vs);
    sq0 = _mm512_fmadd_ps(as, as, sq0);
    sq1 = _mm512_fmadd_ps(bs, bs, sq1);
    if (signs != nullptr) {
      const std::uint32_t bits =
          static_cast<std::uint32_t>(_mm512_cmp_ps_mask(a, zero, _CMP_LT_OQ)) |
          (static_cast<std::uint32_t>(_mm512_cmp_ps_mask(b, zero, _CMP_LT_OQ)) << 16);
      std::memcpy(signs + c / 8, &bits, 4);  // little-endian: element c + t at bit t
    }
  }
  for (; c < n; c += 16) {
    const std::size_t rem = n - c < 16 ? n - c : 16;
    const __mmask16 m = tail_mask_avx512(rem);
    const __m512 a = _mm512_maskz_loadu_ps(m, x + c);
    mx = _mm512_max_epi32(mx, _mm512_and_si512(_mm512_castps_si512(a), abs_mask));
    mn = _mm512_mask_min_ps(mn, m, mn, a);
    const __m512 as = _mm512_mul_ps(a, vs);
    sq0 = _mm512_fmadd_ps(as, as, sq0);
    if (signs != nullptr) {
      const unsigned bits = _mm512_mask_cmp_ps_mask(m, a, zero, _CMP_LT_OQ);
      for (std::size_t byte = 0; byte < (rem + 7) / 8; ++byte)
        signs[c / 8 + byte] = static_cast<unsigned char>(bits >> (8 * byte));
    }
  }
  alignas(64) std::uint32_t mxs[16];
  alignas(64) float mns[16];
  _mm512_store_si512(reinterpret_cast<__m512i*>(mxs), mx);
  _mm512_store_ps(mns, mn);
  row_scan r;
  r.min = mns[0];
  for (int t = 0; t < 16; ++t) {
    r.max_abs_bits = mxs[t] > r.max_abs_bits ? mxs[t] : r.max_abs_bits;
    r.min = mns[t] < r.min ? mns[t] : r.min;
  }
  r.sum_squares = hsum_avx512(_mm512_add_ps(sq0, sq1));
  return r;
}

template <bool Scaled>
inline float fused_avx512(const float* x, std::size_t n, const float* v, float* acc, float coef,
                          float scale) noexcept {
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  const __m512 vs = _mm512_set1_ps(scale);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  auto load_abs = [&](const float* p) {
    __m512 a = _mm512_and_ps(_mm512_loadu_ps(p), abs_mask);
    if constexpr (Scaled) a = _mm512_mul_ps(a, vs);
    return a;
  };
  std::size_t c = 0;
  for (; c + 64 <= n; c += 64) {
    s0 = _mm512_fmadd_ps(load_abs(x + c), _mm512_loadu_ps(v + c), s0);
    s1 = _mm512_fmadd_ps(load_abs(x + c + 16), _mm512_loadu_ps(v + c + 16), s1);
    s2 = _mm512_fmadd_ps(load_abs(x + c + 32), _mm512_loadu_ps(v + c + 32), s2);
    s3 = _mm512_fmadd_ps(load_abs(x + c + 48), _mm512_loadu_ps(v + c + 48), s3);
  }
  for (; c + 16 <= n; c += 16) s0 = _mm512_fmadd_ps(load_abs(x + c), _mm512_loadu_ps(v + c), s0);
  const std::size_t tail = n - c;
  const __mmask16 m = tail_mask_avx512(tail);
  if (tail != 0) {
    __m512 a = _mm512_and_ps(_mm512_maskz_loadu_ps(m, x + c), abs_mask);
    if constexpr (Scaled) a = _mm512_mul_ps(a, vs);
    s1 = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, v + c), s1);
  }
  const float t_row =
      hsum_avx512(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3))) * coef;
  const __m512 k = _mm512_set1_ps(Scaled ? t_row * scale : t_row);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a = _mm512_and_ps(_mm512_loadu_ps(x + i), abs_mask);
    const __m512 b = _mm512_and_ps(_mm512_loadu_ps(x + i + 16), abs_mask);
    _mm512_storeu_ps(acc + i, _mm512_fmadd_ps(k, a, _mm512_loadu_ps(acc + i)));
    _mm512_storeu_ps(acc + i + 16, _mm512_fmadd_ps(k, b, _mm512_loadu_ps(acc + i + 16)));
  }
  for (; i + 16 <= n; i += 16) {
    const __m512 a = _mm512_and_ps(_mm512_loadu_ps(x + i), abs_mask);
    _mm512_storeu_ps(acc + i, _mm512_fmadd_ps(k, a, _mm512_loadu_ps(acc + i)));
  }
  if (tail != 0) {
    const __m512 a = _mm512_and_ps(_mm512_maskz_loadu_ps(m, x + i), abs_mask);
    _mm512_mask_storeu_ps(acc + i, m, _mm512_fmadd_ps(k, a, _mm512_maskz_loadu_ps(m, acc + i)));
  }
  return t_row;
}

inline float residual_avx512(const float* x, std::size_t n, const float* g, float h) noexcept {
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  const __m512 vh = _mm512_set1_ps(h);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  std::size_t c = 0;
  for (; c + 32 <= n; c += 32) {
    const __m512 d0 = _mm512_fnmadd_ps(vh, _mm512_loadu_ps(g + c),
                                       _mm512_and_ps(_mm512_loadu_ps(x + c), abs_mask));
    const __m512 d1 = _mm512_fnmadd_ps(vh, _mm512_loadu_ps(g + c + 16),
                                       _mm512_and_ps(_mm512_loadu_ps(x + c + 16), abs_mask));
    s0 = _mm512_fmadd_ps(d0, d0, s0);
    s1 = _mm512_fmadd_ps(d1, d1, s1);
  }
  for (; c < n; c += 16) {
    const __mmask16 m = tail_mask_avx512(n - c < 16 ? n - c : 16);
    const __m512 d = _mm512_fnmadd_ps(vh, _mm512_maskz_loadu_ps(m, g + c),
                                      _mm512_and_ps(_mm512_maskz_loadu_ps(m, x + c), abs_mask));
    s0 = _mm512_fmadd_ps(d, d, s0);
  }
  return hsum_avx512(_mm512_add_ps(s0, s1));
}

ONEBIT_TARGET_END

#endif  // ONEBIT_X86

// The bodies for a path: AVX-512 on both AVX-512 paths, AVX2 on avx2, the portable ones
// elsewhere (sse41, neon and portable: the compiler's own vectorisation at the build's width).
inline rank1_kernels rank1_kernels_for(isa path) noexcept {
#if ONEBIT_X86
  if (path == isa::avx512 || path == isa::avx512_icl)
    return {&scan_avx512, &fused_avx512<false>, &fused_avx512<true>, &residual_avx512};
  if (path == isa::avx2)
    return {&scan_avx2, &fused_avx2<false>, &fused_avx2<true>, &residual_avx2};
#endif
  (void)path;
  return {&scan_portable, &fused_portable<false>, &fused_portable<true>, &residual_portable};
}

}  // namespace onebit::detail::quant
