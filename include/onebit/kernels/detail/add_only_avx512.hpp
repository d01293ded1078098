// add_only bodies for AVX-512 (F/BW/DQ/VL). See kernels/add_only.hpp for the techniques, the
// packed layout and the error bound.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../../detail/target.hpp"
#include "../add_only.hpp"
#include "gemm_args.hpp"

#if ONEBIT_X86

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)

namespace onebit::kernels::add_only::avx512 {

// Written out rather than _mm512_reduce_add_ps, whose g++ 12 expansion trips -Wuninitialized.
inline float reduce_add(__m512 v) noexcept {
  const __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

// Loads 16 signs straight into a mask register (kmovw from memory: a load, no port-5 move
// from a general register, which is what g++ 12 makes of _cvtu32_mask16 of a load).
inline __mmask16 load_mask16(const unsigned char* p) noexcept {
  __mmask16 m;
  __asm__("kmovw %1, %0" : "=k"(m) : "m"(*reinterpret_cast<const std::uint16_t*>(p)));
  return m;
}

// R rows x B batch rows of the plain layout. Per 16 columns: one load of a per batch row and
// one 16-bit mask per row. With Total, one masked add per (row, batch row) sums the
// activations under −1 signs and y = Σa − 2·Σ_{−1} a (one instruction per 16 weights: 49
// against 34 Gweights/s for the two-instruction form on the development machine); without,
// a masked subtract negates them and an add sums ±a (used when Σ|a| could overflow or is not
// finite, where Σa − 2·Σ_{−1} would give inf − inf). R = 4 rows give 4·B accumulators,
// enough to cover the add latency at B = 1.
template <bool Total, int R, int B>
inline void plain_tile(const detail::gemm_args& g, std::size_t j0, std::size_t b0) noexcept {
  const std::size_t chunks16 = (g.cols + 15) / 16;
  const __m512 zero = _mm512_setzero_ps();
  __m512 acc[R][B];
  ONEBIT_UNROLL
  for (int r = 0; r < R; ++r)
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b) acc[r][b] = zero;
  const unsigned char* rows[R];
  ONEBIT_UNROLL
  for (int r = 0; r < R; ++r) rows[r] = g.w + (j0 + r) * g.w_stride;
  const float* a = g.a + b0 * g.lda;
  for (std::size_t c = 0; c < chunks16; ++c) {
    __mmask16 m[R];
    ONEBIT_UNROLL
    for (int r = 0; r < R; ++r) m[r] = load_mask16(rows[r] + 2 * c);  // strides cover 64 bytes
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b) {
      const __m512 av = _mm512_load_ps(a + b * g.lda + 16 * c);
      ONEBIT_UNROLL
      for (int r = 0; r < R; ++r) {
        if constexpr (Total)
          acc[r][b] = _mm512_mask_add_ps(acc[r][b], m[r], acc[r][b], av);
        else
          acc[r][b] = _mm512_add_ps(acc[r][b], _mm512_mask_sub_ps(av, m[r], zero, av));
      }
    }
  }
  ONEBIT_UNROLL
  for (int r = 0; r < R; ++r) {
    const float h = to_float(g.h[j0 + r]);
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b) {
      const float s = reduce_add(acc[r][b]);
      g.y[(b0 + b) * g.ldy + j0 + r] = (Total ? g.sums[b0 + b] - 2.0f * s : s) * h;
    }
  }
}

template <bool Total, int R>
inline void plain_rows_of(const detail::gemm_args& g, std::size_t j0) noexcept {
  std::size_t b = 0;
  for (; b + 4 <= g.batch; b += 4) plain_tile<Total, R, 4>(g, j0, b);
  switch (g.batch - b) {
    case 3: plain_tile<Total, R, 3>(g, j0, b); break;
    case 2: plain_tile<Total, R, 2>(g, j0, b); break;
    case 1: plain_tile<Total, R, 1>(g, j0, b); break;
    default: break;
  }
}

template <bool Total>
inline void plain_rows_t(const detail::gemm_args& g, std::size_t row_begin,
                         std::size_t row_end) noexcept {
  std::size_t j = row_begin;
  for (; j + 4 <= row_end; j += 4) plain_rows_of<Total, 4>(g, j);
  for (; j < row_end; ++j) plain_rows_of<Total, 1>(g, j);
}

inline void plain_rows(const detail::gemm_args& g, std::size_t row_begin,
                       std::size_t row_end) noexcept {
  plain_rows_t<true>(g, row_begin, row_end);
}
inline void plain_rows_signed(const detail::gemm_args& g, std::size_t row_begin,
                              std::size_t row_end) noexcept {
  plain_rows_t<false>(g, row_begin, row_end);
}

// 32-entry tables of every 5 columns: entries 0..15 in one vector, 16..31 (a_4 negated) in the
// next. Lane p of sign_k is bit k of p moved to the float sign, so XOR gives ±a_k; the sum is
// ((((±a0 ± a1) ± a2) ± a3) ± a4), left to right as the bound assumes.
inline void tables5(const float* a, std::size_t groups, float* tables) noexcept {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512 sign[4];
  ONEBIT_UNROLL
  for (int k = 0; k < 4; ++k)
    sign[k] = _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_and_si512(_mm512_srli_epi32(lane, static_cast<unsigned>(k)),
                         _mm512_set1_epi32(1)),
        31));
  for (std::size_t grp = 0; grp < groups; ++grp) {
    const float* ag = a + 5 * grp;
    __m512 lo = _mm512_xor_ps(_mm512_set1_ps(ag[0]), sign[0]);
    ONEBIT_UNROLL
    for (int k = 1; k < 4; ++k)
      lo = _mm512_add_ps(lo, _mm512_xor_ps(_mm512_set1_ps(ag[k]), sign[k]));
    const __m512 a4 = _mm512_set1_ps(ag[4]);
    _mm512_store_ps(tables + 32 * grp, _mm512_add_ps(lo, a4));
    _mm512_store_ps(tables + 32 * grp + 16, _mm512_sub_ps(lo, a4));
  }
}

// Two partial sums per (row, batch row), and columns in tiles of 10 chunks, whatever the
// tiling of rows and batch: each y is then summed in one fixed order, so results do not depend
// on how rows are split into ranges or how many rows share the batch.
inline constexpr int accumulators = 2;
inline constexpr std::size_t tile_chunks = 10;

// NB 16-row blocks of the packed layout for B batch rows. Per 30 columns: one load of the 16
// index words of each block, 5 shifts each (vpermt2ps reads only the low 5 bits of an index),
// and per batch row 6 table lookups and adds per block. The tables (128 bytes per 5 columns
// and batch row) outgrow L1 at in = 4096, so each pair of table vectors, once loaded, serves
// NB blocks: at NB = 1 the loop waited on L2 (60 Gweights/s on the development machine), at
// NB = 4 it is bound by the permutes. A accumulators per (block, batch row) keep enough add
// chains in flight.
//
// With several batch rows their tables no longer fit L1 together, so the columns are cut into
// tiles whose tables do, and every block of the range runs one tile before the next: partial
// sums go to y between tiles (first tile stores, later ones add, the last one scales by h).
template <int NB, int B>
inline void packed_tile(const detail::gemm_args& g, std::size_t block0, std::size_t b0,
                        const __mmask16* keep, std::size_t c_begin, std::size_t c_end,
                        bool first, bool last) noexcept {
  constexpr int A = accumulators;
  const std::uint32_t* idx[NB];
  ONEBIT_UNROLL
  for (int nb = 0; nb < NB; ++nb)
    idx[nb] = reinterpret_cast<const std::uint32_t*>(g.w + (block0 + nb) * g.w_stride);
  __m512 acc[NB][B][A];
  const __m512 one = _mm512_set1_ps(1.0f);
  ONEBIT_UNROLL
  for (int nb = 0; nb < NB; ++nb)
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b)
      ONEBIT_UNROLL
      for (int k = 0; k < A; ++k) acc[nb][b][k] = _mm512_setzero_ps();
  for (std::size_t c = c_begin; c < c_end; ++c) {
    __m512i v[NB];
    ONEBIT_UNROLL
    for (int nb = 0; nb < NB; ++nb) {
      v[nb] = _mm512_load_si512(idx[nb] + 16 * c);
      // Weights streamed from memory: ask for them 8 chunks (512 bytes) ahead per block.
      _mm_prefetch(reinterpret_cast<const char*>(idx[nb] + 16 * (c + 8)), _MM_HINT_T0);
    }
    ONEBIT_UNROLL
    for (int k = 0; k < 6; ++k) {
      __m512i ix[NB];
      ONEBIT_UNROLL
      for (int nb = 0; nb < NB; ++nb)
        ix[nb] = k == 0 ? v[nb]
                        : _mm512_maskz_srli_epi32(0xffff, v[nb], static_cast<unsigned>(5 * k));
      ONEBIT_UNROLL
      for (int b = 0; b < B; ++b) {
        const float* t = g.tables + (b0 + b) * g.ldt + (6 * c + k) * 32;
        const __m512 lo = _mm512_load_ps(t), hi = _mm512_load_ps(t + 16);
        ONEBIT_UNROLL
        for (int nb = 0; nb < NB; ++nb) {
          const __m512 p = _mm512_permutex2var_ps(lo, ix[nb], hi);
          // Half the sums go to the FMA units as fma(p, 1, acc), which rounds p + acc exactly
          // as an add does (p · 1 is exact): the same bits, but the adds no longer queue on
          // the two add pipes beside the permutes (4096x4096 on Zen 5, min of many runs:
          // batch 8 215 -> 265, batch 64 180 -> 225 Gweights/s; batch 1 unchanged).
          if ((k + nb + b) & 1)
            acc[nb][b][k % A] = _mm512_fmadd_ps(p, one, acc[nb][b][k % A]);
          else
            acc[nb][b][k % A] = _mm512_add_ps(acc[nb][b][k % A], p);
        }
      }
    }
  }
  ONEBIT_UNROLL
  for (int nb = 0; nb < NB; ++nb) {
    const std::size_t j0 = (block0 + nb) * 16;
    const __m512 h =
        _mm512_maskz_cvtph_ps(0xffff, _mm256_maskz_loadu_epi16(keep[nb], g.h + j0));
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b) {
      __m512 s = acc[nb][b][0];
      ONEBIT_UNROLL
      for (int k = 1; k < A; ++k) s = _mm512_add_ps(s, acc[nb][b][k]);
      float* y = g.y + (b0 + b) * g.ldy + j0;
      if (!first) s = _mm512_add_ps(_mm512_maskz_loadu_ps(keep[nb], y), s);
      _mm512_mask_storeu_ps(y, keep[nb], last ? _mm512_mul_ps(s, h) : s);
    }
  }
}

// Blocks [first, last) of a row range for B = 1 or 2 batch rows, 4 blocks at a time, in column
// tiles. Per batch row only the shifts and index loads are shared, the lookups are not: a
// batch costs about what its rows cost alone (measured 155 Gweights/s at batch 1, 144 at 8,
// 126 at 64, where the tables of 64 rows, 6.7 MB, are built per call).
template <int B>
inline void packed_batch_tile(const detail::gemm_args& g, std::size_t first, std::size_t last,
                              std::size_t b0, const __mmask16* keep) noexcept {
  const std::size_t n_chunks = chunks(g.cols);
  // Tables of one tile: 768 bytes per chunk and batch row, 15 KiB for 2 rows: L1-resident.
  const std::size_t tile = tile_chunks;
  for (std::size_t c0 = 0; c0 < n_chunks; c0 += tile) {
    const std::size_t c1 = n_chunks - c0 < tile ? n_chunks : c0 + tile;
    std::size_t block = first;
    if constexpr (B <= 2)
      for (; block + 4 <= last; block += 4)
        packed_tile<4, B>(g, block, b0, keep + (block - first), c0, c1, c0 == 0, c1 == n_chunks);
    for (; block + 2 <= last; block += 2)
      packed_tile<2, B>(g, block, b0, keep + (block - first), c0, c1, c0 == 0, c1 == n_chunks);
    if (block < last)
      packed_tile<1, B>(g, block, b0, keep + (block - first), c0, c1, c0 == 0, c1 == n_chunks);
  }
}

// A range that starts or ends inside a block computes the whole block and stores only its own
// rows, so ranges on different threads never write the same y. Ranges go 64 blocks at a time
// so the keep masks fit on the stack. Batch rows are the outer loop: the tables of one pair
// (210 KB at in = 4096) stay in L2 over every span of the range, where spans outside read the
// tables of the whole batch once per span (27 MB at batch 256: 113 against 170 Gweights/s).
template <int B>
inline void packed_spans(const detail::gemm_args& g, std::size_t row_begin, std::size_t row_end,
                         std::size_t b) noexcept {
  constexpr std::size_t span = 64;
  __mmask16 keep[span];
  for (std::size_t first = row_begin / 16; first * 16 < row_end; first += span) {
    const std::size_t last_block = (row_end + 15) / 16;
    const std::size_t last = last_block - first < span ? last_block : first + span;
    for (std::size_t blk = first; blk < last; ++blk) {
      const std::size_t j0 = blk * 16;
      const std::size_t lo = j0 < row_begin ? row_begin - j0 : 0;
      const std::size_t hi = row_end - j0 < 16 ? row_end - j0 : 16;
      keep[blk - first] = static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
    }
    packed_batch_tile<B>(g, first, last, b, keep);
  }
}

inline void packed_rows(const detail::gemm_args& g, std::size_t row_begin,
                        std::size_t row_end) noexcept {
  std::size_t b = 0;
  for (; b + 2 <= g.batch; b += 2) packed_spans<2>(g, row_begin, row_end, b);
  if (b < g.batch) packed_spans<1>(g, row_begin, row_end, b);
}

}  // namespace onebit::kernels::add_only::avx512

ONEBIT_TARGET_END

#endif  // ONEBIT_X86
