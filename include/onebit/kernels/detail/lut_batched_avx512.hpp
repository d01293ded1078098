// lut for batches on AVX-512BW: the packed lut layout (kernels/lut.hpp) read once per group of
// up to 4 batch rows instead of once per batch row.
//
// The batch-1 body (lut_avx512.hpp) runs every batch row over the whole layer on its own: per
// row and 15 columns of a 32-row block it loads the index words, shifts them twice, and looks
// up 3 tables. At batch 64 the tables of all rows (52 KB per batch row at in = 4096) no longer
// fit L2, and the index words are loaded and shifted 64 times.
//
// Here a group of B batch rows shares each index load and its shifts (one load and 2 shifts
// feed 3·B lookups per block), two blocks share each table vector, and the columns are cut
// into tiles of `widen_every` chunks (240 columns, 48 lookups: the int16 bound of lut.hpp) so
// the tables of the group's tile (B · 16 · 192 bytes, 12 KB at B = 4) stay in L1 while every
// block of the row range runs over them. Between tiles the int32 partial sums of a (block,
// batch row) wait in y itself, as int32 bits: only rows of this range are written, so ranges on
// other threads never meet, and the last tile turns them into floats.
//
// Exactness: the same int16 table entries, at most 48 lookups per int16 accumulation, int32
// sums of the same integers: Σ_i q_i·W_ji exactly, then y = (float(dot) · scale) · h, the order
// of every int8 body. The bits equal lut's batch-1 body, popcount_int8 and reference_int.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../detail/target.hpp"
#include "../../half.hpp"
#include "../lut.hpp"
#include "gemm_args.hpp"

#if ONEBIT_X86

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)

namespace onebit::kernels::lut::avx512_batched {

// Batch rows per group, and blocks per table load: 2 blocks x 4 batch rows make 8 int16
// accumulators, with 2 index vectors and their shifted copies (one shift at a time), well
// inside the 32 registers. Measured at 4096x4096, batch 64 (min of many runs on a shared
// machine): 2 x 4 about 450-520 Gweights/s; 4 x 4 and 4 x 3 400-480 (g++ spills accumulators
// there); 2 x 6 and 2 x 8 345-420; 1 x 8 and 1 x 12 about 430 (a table load per lookup).
inline constexpr int group_rows = 4;

// NB blocks x B batch rows over the chunks [c0, c1) of one column tile; the partial int32 sums
// go to y (first tile: stored, later tiles: added).
template <int NB, int B>
inline void tile(const detail::gemm_args& g, std::size_t block0, std::size_t b0,
                 const __mmask32* keep, std::size_t c0, std::size_t c1, bool first) noexcept {
  const unsigned char* idx[NB];
  __m512i acc[NB][B];
  ONEBIT_UNROLL
  for (int nb = 0; nb < NB; ++nb) {
    idx[nb] = g.w + (block0 + nb) * g.w_stride;
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b) acc[nb][b] = _mm512_setzero_si512();
  }
  const std::size_t ldt = g.ldit / 2;  // int16 per batch row of tables
  const auto* tables = static_cast<const std::int16_t*>(g.itables) + b0 * ldt;
  for (std::size_t c = c0; c < c1; ++c) {
    __m512i v[NB];
    ONEBIT_UNROLL
    for (int nb = 0; nb < NB; ++nb) {
      v[nb] = _mm512_load_si512(idx[nb] + 64 * c);
      // Index words come from L3 or memory: ask for them 8 chunks (512 bytes) ahead.
      _mm_prefetch(reinterpret_cast<const char*>(idx[nb] + 64 * (c + 8)), _MM_HINT_T0);
    }
    ONEBIT_UNROLL
    for (int k = 0; k < 3; ++k) {
      __m512i ix[NB];
      ONEBIT_UNROLL
      for (int nb = 0; nb < NB; ++nb)  // vpermw reads the low 5 bits of each index
        ix[nb] = k == 0 ? v[nb] : _mm512_srli_epi16(v[nb], 5u * static_cast<unsigned>(k));
      ONEBIT_UNROLL
      for (int b = 0; b < B; ++b) {
        const __m512i table = _mm512_load_si512(tables + b * ldt + (3 * c + k) * 32);
        ONEBIT_UNROLL
        for (int nb = 0; nb < NB; ++nb)
          acc[nb][b] = _mm512_add_epi16(acc[nb][b], _mm512_permutexvar_epi16(ix[nb], table));
      }
    }
  }
  ONEBIT_UNROLL
  for (int nb = 0; nb < NB; ++nb) {
    const std::size_t j0 = (block0 + nb) * block_rows;
    const auto keep_lo = static_cast<__mmask16>(keep[nb]);
    const auto keep_hi = static_cast<__mmask16>(keep[nb] >> 16);
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b) {
      float* y = g.y + (b0 + b) * g.ldy + j0;
      // The low half by vextracti64x4, not a cast: g++ 12 reads a cast as a sub-register of
      // the accumulator and then no longer keeps acc in one register across the loop above
      // (8 register copies per chunk at 2 x 4; batch 64 at 4096x4096 481 -> 537 Gweights/s).
      __m512i lo = _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(acc[nb][b], 0));
      __m512i hi = _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(acc[nb][b], 1));
      if (!first) {
        lo = _mm512_add_epi32(lo, _mm512_maskz_loadu_epi32(keep_lo, y));
        hi = _mm512_add_epi32(hi, _mm512_maskz_loadu_epi32(keep_hi, y + 16));
      }
      _mm512_mask_storeu_epi32(y, keep_lo, lo);
      _mm512_mask_storeu_epi32(y + 16, keep_hi, hi);
    }
  }
}

// y = (float(dot) · scale) · h over the int32 sums the tiles left in y, 16 rows at a time.
inline void finish_block(const detail::gemm_args& g, std::size_t block, std::size_t b,
                         __mmask32 keep) noexcept {
  const std::size_t j0 = block * block_rows;
  float* y = g.y + b * g.ldy + j0;
  const __m512 scale = _mm512_set1_ps(g.row_scale[b]);
  for (int part = 0; part < 2; ++part) {
    const auto keep16 = static_cast<__mmask16>(keep >> (16 * part));
    const __m512 h =
        _mm512_maskz_cvtph_ps(0xffff, _mm256_maskz_loadu_epi16(keep16, g.h + j0 + 16 * part));
    const __m512 dot = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(keep16, y + 16 * part));
    _mm512_mask_storeu_ps(y + 16 * part, keep16, _mm512_mul_ps(_mm512_mul_ps(dot, scale), h));
  }
}

template <int B>
inline void group(const detail::gemm_args& g, std::size_t first, std::size_t last,
                  const __mmask32* keep, std::size_t b0) noexcept {
  const std::size_t n_chunks = chunks(g.cols);
  for (std::size_t c0 = 0; c0 < n_chunks; c0 += widen_every) {
    const std::size_t c1 = n_chunks - c0 < widen_every ? n_chunks : c0 + widen_every;
    std::size_t block = first;
    for (; block + 2 <= last; block += 2)
      tile<2, B>(g, block, b0, keep + (block - first), c0, c1, c0 == 0);
    for (; block < last; ++block) tile<1, B>(g, block, b0, keep + (block - first), c0, c1, c0 == 0);
  }
  for (std::size_t block = first; block < last; ++block)
    for (std::size_t b = b0; b < b0 + B; ++b) finish_block(g, block, b, keep[block - first]);
}

// Rows [row_begin, row_end) for batch rows [b, b + B). A range that starts or ends inside a
// block computes the whole block and writes only its own rows. Ranges go 64 blocks (2,048 rows)
// at a time so their keep masks fit on the stack.
template <int B>
inline void spans(const detail::gemm_args& g, std::size_t row_begin, std::size_t row_end,
                  std::size_t b) noexcept {
  constexpr std::size_t span = 64;
  __mmask32 keep[span];
  const std::size_t last_block = (row_end + block_rows - 1) / block_rows;
  for (std::size_t first = row_begin / block_rows; first < last_block; first += span) {
    const std::size_t last = last_block - first < span ? last_block : first + span;
    for (std::size_t blk = first; blk < last; ++blk) {
      const std::size_t j0 = blk * block_rows;
      const std::size_t lo = j0 < row_begin ? row_begin - j0 : 0;
      const std::size_t hi = row_end - j0 < block_rows ? row_end - j0 : block_rows;
      keep[blk - first] = static_cast<__mmask32>(((std::uint64_t{1} << hi) - 1u) &
                                                 ~((std::uint64_t{1} << lo) - 1u));
    }
    group<B>(g, first, last, keep, b);
  }
}

// Groups of batch rows outside, spans of rows inside: a group's tables (210 KB at in = 4096)
// stay in L2 over every span, where spans outside would read all the batch's tables once per
// span (27 MB at batch 512).
inline void packed_rows(const detail::gemm_args& g, std::size_t row_begin,
                        std::size_t row_end) noexcept {
  std::size_t b = 0;
  for (; b + group_rows <= g.batch; b += group_rows) spans<group_rows>(g, row_begin, row_end, b);
  switch (g.batch - b) {
    case 3: spans<3>(g, row_begin, row_end, b); break;
    case 2: spans<2>(g, row_begin, row_end, b); break;
    case 1: spans<1>(g, row_begin, row_end, b); break;
    default: break;
  }
}

}  // namespace onebit::kernels::lut::avx512_batched

ONEBIT_TARGET_END

#endif  // ONEBIT_X86
