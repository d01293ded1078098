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
// Each kernel is written once for the SIMD paths (kernels/detail/rank1_simd.inl, instantiated
// for AVX-512 and AVX2+FMA) and once portably in blocks of 16 the compiler vectorises at the
// build's own width, chosen per call like the products' kernels. Sums are in float with many independent accumulators; callers add the
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

// ---------------------------------------------------------------- AVX2 + FMA, AVX-512
// One body each (kernels/detail/rank1_simd.inl) over the operations below.
ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX2)
namespace avx2_rank1 {
struct ops {
  using vec = __m256;
  using ivec = __m256i;
  using mask = __m256i;  // lanes [0, rem) all ones, for maskload / maskstore
  static constexpr std::size_t width = 8;
  static vec load(const float* p) noexcept { return _mm256_loadu_ps(p); }
  static void store(float* p, vec v) noexcept { _mm256_storeu_ps(p, v); }
  static vec load_masked(mask m, const float* p) noexcept { return _mm256_maskload_ps(p, m); }
  static void store_masked(float* p, mask m, vec v) noexcept { _mm256_maskstore_ps(p, m, v); }
  static vec set1(float v) noexcept { return _mm256_set1_ps(v); }
  static vec zero() noexcept { return _mm256_setzero_ps(); }
  static ivec izero() noexcept { return _mm256_setzero_si256(); }
  static vec add(vec a, vec b) noexcept { return _mm256_add_ps(a, b); }
  static vec mul(vec a, vec b) noexcept { return _mm256_mul_ps(a, b); }
  static vec fmadd(vec a, vec b, vec c) noexcept { return _mm256_fmadd_ps(a, b, c); }
  static vec fnmadd(vec a, vec b, vec c) noexcept { return _mm256_fnmadd_ps(a, b, c); }
  static vec abs(vec a) noexcept {
    return _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
  }
  static ivec abs_bits(vec a) noexcept {
    return _mm256_and_si256(_mm256_castps_si256(a), _mm256_set1_epi32(0x7fffffff));
  }
  static ivec max_i32(ivec a, ivec b) noexcept { return _mm256_max_epi32(a, b); }
  static vec min(vec a, vec b) noexcept { return _mm256_min_ps(a, b); }
  static vec min_masked(vec mn, mask m, vec a, float x0) noexcept {
    return _mm256_min_ps(mn, _mm256_blendv_ps(_mm256_set1_ps(x0), a, _mm256_castsi256_ps(m)));
  }
  static mask first(std::size_t rem) noexcept {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rem)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static std::uint32_t sign_bits(vec a) noexcept {
    return static_cast<std::uint32_t>(
        _mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_LT_OQ)));
  }
  static std::uint32_t sign_bits_masked(mask m, vec a) noexcept {
    return sign_bits(a) & static_cast<std::uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(m)));
  }
  static void spill(float* out, vec v) noexcept { _mm256_storeu_ps(out, v); }
  static void ispill(std::uint32_t* out, ivec v) noexcept {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), v);
  }
  static float hsum(vec v) noexcept {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
};
#include "../../kernels/detail/rank1_simd.inl"
}  // namespace avx2_rank1

inline row_scan scan_avx2(const float* x, std::size_t n, float scale,
                          unsigned char* signs) noexcept {
  return avx2_rank1::scan_simd<avx2_rank1::ops>(x, n, scale, signs);
}
template <bool Scaled>
inline float fused_avx2(const float* x, std::size_t n, const float* v, float* acc, float coef,
                        float scale) noexcept {
  return avx2_rank1::fused_simd<avx2_rank1::ops, Scaled>(x, n, v, acc, coef, scale);
}
inline float residual_avx2(const float* x, std::size_t n, const float* g, float h) noexcept {
  return avx2_rank1::residual_simd<avx2_rank1::ops>(x, n, g, h);
}
ONEBIT_TARGET_END

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)
namespace avx512_rank1 {
struct ops {
  using vec = __m512;
  using ivec = __m512i;
  using mask = __mmask16;
  static constexpr std::size_t width = 16;
  static vec load(const float* p) noexcept { return _mm512_loadu_ps(p); }
  static void store(float* p, vec v) noexcept { _mm512_storeu_ps(p, v); }
  static vec load_masked(mask m, const float* p) noexcept { return _mm512_maskz_loadu_ps(m, p); }
  static void store_masked(float* p, mask m, vec v) noexcept { _mm512_mask_storeu_ps(p, m, v); }
  static vec set1(float v) noexcept { return _mm512_set1_ps(v); }
  static vec zero() noexcept { return _mm512_setzero_ps(); }
  static ivec izero() noexcept { return _mm512_setzero_si512(); }
  static vec add(vec a, vec b) noexcept { return _mm512_add_ps(a, b); }
  static vec mul(vec a, vec b) noexcept { return _mm512_mul_ps(a, b); }
  static vec fmadd(vec a, vec b, vec c) noexcept { return _mm512_fmadd_ps(a, b, c); }
  static vec fnmadd(vec a, vec b, vec c) noexcept { return _mm512_fnmadd_ps(a, b, c); }
  static vec abs(vec a) noexcept {
    return _mm512_and_ps(a, _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff)));
  }
  static ivec abs_bits(vec a) noexcept {
    return _mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x7fffffff));
  }
  static ivec max_i32(ivec a, ivec b) noexcept { return _mm512_max_epi32(a, b); }
  static vec min(vec a, vec b) noexcept { return _mm512_min_ps(a, b); }
  static vec min_masked(vec mn, mask m, vec a, float) noexcept {
    return _mm512_mask_min_ps(mn, m, mn, a);
  }
  static mask first(std::size_t rem) noexcept { return static_cast<mask>((1u << rem) - 1u); }
  static std::uint32_t sign_bits(vec a) noexcept {
    return _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_LT_OQ);
  }
  static std::uint32_t sign_bits_masked(mask m, vec a) noexcept {
    return _mm512_mask_cmp_ps_mask(m, a, _mm512_setzero_ps(), _CMP_LT_OQ);
  }
  static void spill(float* out, vec v) noexcept { _mm512_storeu_ps(out, v); }
  static void ispill(std::uint32_t* out, ivec v) noexcept { _mm512_storeu_si512(out, v); }
  // Written out: g++ 12's _mm512_reduce_add_ps raises a false -Wuninitialized once inlined.
  static float hsum(vec v) noexcept {
    const __m256 h = _mm256_add_ps(
        _mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
};
#include "../../kernels/detail/rank1_simd.inl"
}  // namespace avx512_rank1

inline row_scan scan_avx512(const float* x, std::size_t n, float scale,
                            unsigned char* signs) noexcept {
  return avx512_rank1::scan_simd<avx512_rank1::ops>(x, n, scale, signs);
}
template <bool Scaled>
inline float fused_avx512(const float* x, std::size_t n, const float* v, float* acc, float coef,
                          float scale) noexcept {
  return avx512_rank1::fused_simd<avx512_rank1::ops, Scaled>(x, n, v, acc, coef, scale);
}
inline float residual_avx512(const float* x, std::size_t n, const float* g, float h) noexcept {
  return avx512_rank1::residual_simd<avx512_rank1::ops>(x, n, g, h);
}
ONEBIT_TARGET_END

#endif  // ONEBIT_X86

// The bodies per path (cpu.hpp, table_for): AVX-512 (avx512_icl takes it), AVX2, and the
// portable ones elsewhere (sse41 and neon: the compiler's own vectorisation at the build's
// width).
struct rank1_family {
  using table = rank1_kernels;
  static constexpr bool has(isa path) noexcept {
    return path == isa::portable || (ONEBIT_X86 != 0 && (path == isa::avx2 || path == isa::avx512));
  }
  static table make(isa path) noexcept {
#if ONEBIT_X86
    if (path == isa::avx512)
      return {&scan_avx512, &fused_avx512<false>, &fused_avx512<true>, &residual_avx512};
    if (path == isa::avx2)
      return {&scan_avx2, &fused_avx2<false>, &fused_avx2<true>, &residual_avx2};
#endif
    (void)path;
    return {&scan_portable, &fused_portable<false>, &fused_portable<true>, &residual_portable};
  }
};

inline const rank1_kernels& rank1_kernels_for(isa path) noexcept {
  return table_for<rank1_family>(path);
}

}  // namespace onebit::detail::quant
