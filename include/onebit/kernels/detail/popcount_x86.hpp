// popcount_int8 and popcount_binary bodies for avx512_icl (VPOPCNTDQ), avx512 (BW: nibble
// tables) and avx2 (nibble tables). See kernels/popcount.hpp for the techniques.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../detail/target.hpp"
#include "../../half.hpp"
#include "../quantize.hpp"
#include "gemm_args.hpp"

#if ONEBIT_X86

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512_ICL)
namespace onebit::kernels::popcount::avx512_icl {

inline std::uint64_t reduce_add(__m512i v) noexcept {
  const __m256i s = _mm256_add_epi64(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  const __m128i q = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  return static_cast<std::uint64_t>(_mm_cvtsi128_si64(q)) +
         static_cast<std::uint64_t>(_mm_extract_epi64(q, 1));
}

// R rows share each load of the 8 planes; 8·R accumulators of 64-bit counts.
template <int R>
inline void int8_tile(const detail::gemm_args& g, std::size_t j0, std::size_t b) noexcept {
  const std::size_t chunks = (g.cols + 511) / 512;
  const unsigned char* planes = g.planes + b * g.ldp;
  __m512i count[R][8];
  ONEBIT_UNROLL
  for (int r = 0; r < R; ++r)
    ONEBIT_UNROLL
    for (int p = 0; p < 8; ++p) count[r][p] = _mm512_setzero_si512();
  for (std::size_t c = 0; c < chunks; ++c) {
    __m512i w[R];
    ONEBIT_UNROLL
    for (int r = 0; r < R; ++r) w[r] = _mm512_load_si512(g.w + (j0 + r) * g.w_stride + 64 * c);
    ONEBIT_UNROLL
    for (int p = 0; p < 8; ++p) {
      const __m512i plane = _mm512_load_si512(planes + p * g.plane_stride + 64 * c);
      ONEBIT_UNROLL
      for (int r = 0; r < R; ++r)
        count[r][p] = _mm512_add_epi64(count[r][p],
                                       _mm512_popcnt_epi64(_mm512_and_si512(plane, w[r])));
    }
  }
  ONEBIT_UNROLL
  for (int r = 0; r < R; ++r) {
    std::uint64_t counts[8];
    ONEBIT_UNROLL
    for (int p = 0; p < 8; ++p) counts[p] = reduce_add(count[r][p]);
    g.y[b * g.ldy + j0 + r] = quantize::scale_dot(quantize::int8_dot(g.q_sum[b], counts),
                                                  g.row_scale[b], to_float(g.h[j0 + r]));
  }
}

inline void int8_rows(const detail::gemm_args& g, std::size_t row_begin,
                      std::size_t row_end) noexcept {
  for (std::size_t b = 0; b < g.batch; ++b) {
    std::size_t j = row_begin;
    for (; j + 2 <= row_end; j += 2) int8_tile<2>(g, j, b);
    if (j < row_end) int8_tile<1>(g, j, b);
  }
}

// (s XOR w) AND valid in one vpternlogd (truth table 0x28), then VPOPCNTQ; R rows share the
// loads of s and valid.
template <int R>
inline void binary_tile(const detail::gemm_args& g, std::size_t j0, std::size_t b) noexcept {
  const std::size_t chunks = (g.cols + 511) / 512;
  const unsigned char* signs = g.planes + b * g.ldp;
  __m512i count[R];
  ONEBIT_UNROLL
  for (int r = 0; r < R; ++r) count[r] = _mm512_setzero_si512();
  for (std::size_t c = 0; c < chunks; ++c) {
    const __m512i s = _mm512_load_si512(signs + 64 * c);
    const __m512i v = _mm512_load_si512(g.valid + 64 * c);
    ONEBIT_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m512i w = _mm512_load_si512(g.w + (j0 + r) * g.w_stride + 64 * c);
      count[r] = _mm512_add_epi64(count[r],
                                  _mm512_popcnt_epi64(_mm512_ternarylogic_epi64(s, w, v, 0x28)));
    }
  }
  ONEBIT_UNROLL
  for (int r = 0; r < R; ++r) {
    const auto dot = static_cast<std::int64_t>(g.cols) -
                     2 * static_cast<std::int64_t>(reduce_add(count[r]));
    g.y[b * g.ldy + j0 + r] = quantize::scale_dot(dot, g.row_scale[b], to_float(g.h[j0 + r]));
  }
}

// The eight 8-lane counts of 8 rows summed into one vector [row 0, ..., row 7] by a transpose
// tree (21 instructions, against 48 for eight separate reductions: at 4096 inputs a row has
// only 8 chunks, so the reductions were half the work).
inline __m512i sum_rows8(const __m512i* c) noexcept {
  __m512i pair[4];
  for (int i = 0; i < 4; ++i)
    pair[i] = _mm512_add_epi64(_mm512_unpacklo_epi64(c[2 * i], c[2 * i + 1]),
                               _mm512_unpackhi_epi64(c[2 * i], c[2 * i + 1]));
  const __m512i q0 = _mm512_add_epi64(_mm512_shuffle_i64x2(pair[0], pair[1], 0x88),
                                      _mm512_shuffle_i64x2(pair[0], pair[1], 0xdd));
  const __m512i q1 = _mm512_add_epi64(_mm512_shuffle_i64x2(pair[2], pair[3], 0x88),
                                      _mm512_shuffle_i64x2(pair[2], pair[3], 0xdd));
  return _mm512_add_epi64(_mm512_shuffle_i64x2(q0, q1, 0x88), _mm512_shuffle_i64x2(q0, q1, 0xdd));
}

// 8 rows at once, the results scaled as §4 orders it: (float(dot) · β) · h, 8 lanes wide.
inline void binary_tile8(const detail::gemm_args& g, std::size_t j0, std::size_t b) noexcept {
  const std::size_t chunks = (g.cols + 511) / 512;
  const unsigned char* signs = g.planes + b * g.ldp;
  __m512i count[8];
  ONEBIT_UNROLL
  for (int r = 0; r < 8; ++r) count[r] = _mm512_setzero_si512();
  for (std::size_t c = 0; c < chunks; ++c) {
    const __m512i s = _mm512_load_si512(signs + 64 * c);
    const __m512i v = _mm512_load_si512(g.valid + 64 * c);
    ONEBIT_UNROLL
    for (int r = 0; r < 8; ++r) {
      const __m512i w = _mm512_load_si512(g.w + (j0 + r) * g.w_stride + 64 * c);
      count[r] = _mm512_add_epi64(count[r],
                                  _mm512_popcnt_epi64(_mm512_ternarylogic_epi64(s, w, v, 0x28)));
    }
  }
  const __m512i sums = sum_rows8(count);
  const __m512i dot = _mm512_sub_epi64(_mm512_set1_epi64(static_cast<long long>(g.cols)),
                                       _mm512_add_epi64(sums, sums));
  const __m256 h = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g.h + j0)));
  const __m256 y = _mm256_mul_ps(_mm256_mul_ps(_mm512_cvtepi64_ps(dot), _mm256_set1_ps(g.row_scale[b])), h);
  _mm256_storeu_ps(g.y + b * g.ldy + j0, y);
}

inline void binary_rows(const detail::gemm_args& g, std::size_t row_begin,
                        std::size_t row_end) noexcept {
  for (std::size_t b = 0; b < g.batch; ++b) {
    std::size_t j = row_begin;
    for (; j + 8 <= row_end; j += 8) binary_tile8(g, j, b);
    for (; j < row_end; ++j) binary_tile<1>(g, j, b);
  }
}

// Batches: the bits of R rows are expanded once per 64 columns to 0/1 bytes (one masked move
// each) and multiplied with the int8 activations of B batch rows by vpdpbusd (u8 × s8, 4 per
// lane): Σ_{W=−1} q_i exactly in int32, the same sum the planes give, so the same bits.
inline __mmask64 load_mask64(const unsigned char* p) noexcept {
  __mmask64 m;
  __asm__("kmovq %1, %0" : "=k"(m) : "m"(*reinterpret_cast<const std::uint64_t*>(p)));
  return m;
}

template <int R, int B>
inline void vnni_tile(const detail::gemm_args& g, std::size_t j0, std::size_t b0) noexcept {
  const std::size_t chunks = (g.cols + 63) / 64;
  const __m512i one = _mm512_set1_epi8(1);
  __m512i acc[R][B];
  ONEBIT_UNROLL
  for (int r = 0; r < R; ++r)
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b) acc[r][b] = _mm512_setzero_si512();
  for (std::size_t c = 0; c < chunks; ++c) {
    __m512i bits[R];
    ONEBIT_UNROLL
    for (int r = 0; r < R; ++r)
      bits[r] = _mm512_maskz_mov_epi8(load_mask64(g.w + (j0 + r) * g.w_stride + 8 * c), one);
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b) {
      const __m512i q = _mm512_load_si512(g.q + (b0 + b) * g.ldq + 64 * c);
      ONEBIT_UNROLL
      for (int r = 0; r < R; ++r) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], bits[r], q);
    }
  }
  ONEBIT_UNROLL
  for (int r = 0; r < R; ++r) {
    const float h = to_float(g.h[j0 + r]);
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b) {
      // The compiler's own reduction: a hand-written one through _mm512_castsi512_si256 made
      // g++ 12 copy every accumulator to another register and back, and spill some, on each
      // pass of the loop above (bench_gemm, batch 64 at 4096x4096: 211 -> 365 Gweights/s).
      const std::int64_t dot =
          g.q_sum[b0 + b] - 2 * static_cast<std::int64_t>(_mm512_reduce_add_epi32(acc[r][b]));
      g.y[(b0 + b) * g.ldy + j0 + r] = quantize::scale_dot(dot, g.row_scale[b0 + b], h);
    }
  }
}

// Fewer batch rows take more rows per tile, so that enough vpdpbusd chains (latency 5) are in
// flight: 8 rows at batch 1 and 2, 4 from batch 3 on.
template <int B>
inline void vnni_batch_tile(const detail::gemm_args& g, std::size_t row_begin,
                            std::size_t row_end, std::size_t b0) noexcept {
  constexpr int R = B <= 2 ? 8 : 4;  // 8 x 3 accumulators and 8 expanded rows would spill
  std::size_t j = row_begin;
  for (; j + R <= row_end; j += R) vnni_tile<R, B>(g, j, b0);
  for (; j < row_end; ++j) vnni_tile<1, B>(g, j, b0);
}

// Batch tiles outside, rows inside: the int8 activations of 4 batch rows (4 KiB per 1,024
// columns) stay in L1 while the rows stream past; the bits are 8 times smaller than q and
// cheap to read again (6.8 -> 5.9 ms at 4096x4096, batch 64, on the development machine).
inline void vnni_rows(const detail::gemm_args& g, std::size_t row_begin,
                      std::size_t row_end) noexcept {
  std::size_t b = 0;
  for (; b + 4 <= g.batch; b += 4) vnni_batch_tile<4>(g, row_begin, row_end, b);
  switch (g.batch - b) {
    case 3: vnni_batch_tile<3>(g, row_begin, row_end, b); break;
    case 2: vnni_batch_tile<2>(g, row_begin, row_end, b); break;
    case 1: vnni_batch_tile<1>(g, row_begin, row_end, b); break;
    default: break;
  }
}

}  // namespace onebit::kernels::popcount::avx512_icl
ONEBIT_TARGET_END

// Without VPOPCNTDQ: bytes are counted by looking up each nibble in a 16-entry table
// (vpshufb) and the byte counts summed into 64-bit lanes by vpsadbw against zero. The same
// body serves AVX-512BW (64 bytes at a time) and AVX2 (32), written once over the vector type.
#define ONEBIT_DETAIL_NIBBLE_BODIES(VEC, LOAD, AND, XOR, SRLI16, SHUFFLE, ADD8, ADD64, SAD, ZERO, \
                                    SET1_8, BYTES, REDUCE)                                       \
  inline VEC byte_counts(VEC x, VEC table, VEC low) noexcept {                                   \
    return ADD8(SHUFFLE(table, AND(x, low)), SHUFFLE(table, AND(SRLI16(x, 4), low)));            \
  }                                                                                               \
  inline VEC nibble_table() noexcept {                                                            \
    return LOAD(reinterpret_cast<const VEC*>(nibble_counts));                                     \
  }                                                                                               \
  inline void int8_rows(const detail::gemm_args& g, std::size_t row_begin,                       \
                        std::size_t row_end) noexcept {                                           \
    const std::size_t chunks = (g.cols + 8 * BYTES - 1) / (8 * BYTES);                            \
    const VEC table = nibble_table(), low = SET1_8(0x0f), zero = ZERO();                          \
    for (std::size_t b = 0; b < g.batch; ++b) {                                                   \
      const unsigned char* planes = g.planes + b * g.ldp;                                         \
      for (std::size_t j = row_begin; j < row_end; ++j) {                                         \
        const unsigned char* row = g.w + j * g.w_stride;                                          \
        VEC count[8];                                                                             \
        ONEBIT_UNROLL                                                                             \
        for (int p = 0; p < 8; ++p) count[p] = zero;                                              \
        for (std::size_t c = 0; c < chunks; ++c) {                                                \
          const VEC w = LOAD(reinterpret_cast<const VEC*>(row + BYTES * c));                      \
          ONEBIT_UNROLL                                                                           \
          for (int p = 0; p < 8; ++p) {                                                           \
            const VEC plane =                                                                     \
                LOAD(reinterpret_cast<const VEC*>(planes + p * g.plane_stride + BYTES * c));      \
            count[p] = ADD64(count[p], SAD(byte_counts(AND(plane, w), table, low), zero));        \
          }                                                                                       \
        }                                                                                         \
        std::uint64_t counts[8];                                                                  \
        for (int p = 0; p < 8; ++p) counts[p] = REDUCE(count[p]);                                 \
        g.y[b * g.ldy + j] = quantize::scale_dot(quantize::int8_dot(g.q_sum[b], counts),         \
                                                 g.row_scale[b], to_float(g.h[j]));               \
      }                                                                                           \
    }                                                                                             \
  }                                                                                               \
  inline void binary_rows(const detail::gemm_args& g, std::size_t row_begin,                     \
                          std::size_t row_end) noexcept {                                         \
    const std::size_t chunks = (g.cols + 8 * BYTES - 1) / (8 * BYTES);                            \
    const VEC table = nibble_table(), low = SET1_8(0x0f), zero = ZERO();                          \
    for (std::size_t b = 0; b < g.batch; ++b) {                                                   \
      const unsigned char* signs = g.planes + b * g.ldp;                                          \
      for (std::size_t j = row_begin; j < row_end; ++j) {                                         \
        const unsigned char* row = g.w + j * g.w_stride;                                          \
        VEC count = zero;                                                                         \
        for (std::size_t c = 0; c < chunks; ++c) {                                                \
          const VEC x = AND(XOR(LOAD(reinterpret_cast<const VEC*>(signs + BYTES * c)),            \
                                LOAD(reinterpret_cast<const VEC*>(row + BYTES * c))),             \
                            LOAD(reinterpret_cast<const VEC*>(g.valid + BYTES * c)));             \
          count = ADD64(count, SAD(byte_counts(x, table, low), zero));                            \
        }                                                                                         \
        const auto dot = static_cast<std::int64_t>(g.cols) -                                      \
                         2 * static_cast<std::int64_t>(REDUCE(count));                            \
        g.y[b * g.ldy + j] = quantize::scale_dot(dot, g.row_scale[b], to_float(g.h[j]));         \
      }                                                                                           \
    }                                                                                             \
  }

namespace onebit::kernels::popcount {
// Bits set in each nibble value, repeated for every 128-bit lane (vpshufb looks up per lane).
alignas(64) inline constexpr unsigned char nibble_counts[64] = {
    0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
    0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};
}  // namespace onebit::kernels::popcount

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)
namespace onebit::kernels::popcount::avx512 {
inline std::uint64_t reduce512(__m512i v) noexcept {
  const __m256i s = _mm256_add_epi64(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  const __m128i q = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  return static_cast<std::uint64_t>(_mm_cvtsi128_si64(q)) +
         static_cast<std::uint64_t>(_mm_extract_epi64(q, 1));
}
ONEBIT_DETAIL_NIBBLE_BODIES(__m512i, _mm512_load_si512, _mm512_and_si512, _mm512_xor_si512,
                            _mm512_srli_epi16, _mm512_shuffle_epi8, _mm512_add_epi8,
                            _mm512_add_epi64, _mm512_sad_epu8, _mm512_setzero_si512,
                            _mm512_set1_epi8, 64, reduce512)
}  // namespace onebit::kernels::popcount::avx512
ONEBIT_TARGET_END

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX2)
namespace onebit::kernels::popcount::avx2 {
inline std::uint64_t reduce256(__m256i v) noexcept {
  const __m128i q = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return static_cast<std::uint64_t>(_mm_cvtsi128_si64(q)) +
         static_cast<std::uint64_t>(_mm_extract_epi64(q, 1));
}
inline __m256i load256(const __m256i* p) noexcept { return _mm256_load_si256(p); }
ONEBIT_DETAIL_NIBBLE_BODIES(__m256i, load256, _mm256_and_si256, _mm256_xor_si256,
                            _mm256_srli_epi16, _mm256_shuffle_epi8, _mm256_add_epi8,
                            _mm256_add_epi64, _mm256_sad_epu8, _mm256_setzero_si256,
                            _mm256_set1_epi8, 32, reduce256)
}  // namespace onebit::kernels::popcount::avx2
ONEBIT_TARGET_END

#undef ONEBIT_DETAIL_NIBBLE_BODIES

#endif  // ONEBIT_X86
