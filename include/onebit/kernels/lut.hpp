// lut: the int8 activations of kernels/quantize.hpp, multiplied with the signs by table lookup
// of exact integer partial sums (T-MAC, bitnet.cpp TL). Bit-identical to popcount_int8: both
// compute the same integer sums exactly and scale them the same way.
//
//  * avx512, avx512_icl — packed: rows in blocks of 32, columns in chunks of 15, each row's 15
//    signs of a chunk in one 16-bit word as 3 groups of 5; a group's 32-entry table of int16
//    partial sums (entry p = Σ_t (bit t of p ? −q : +q)) fills one vector, and one vpermw
//    looks it up for all 32 rows at once: 160 weights per instruction. Each table vector,
//    once loaded, serves six blocks at batch 1 (two blocks of up to four batch rows each in the
//    batched body). Entries are at most 5·127 = 635 in magnitude, so 48 lookups (≤ 30,480) fit
//    the int16 accumulators before they widen to int32 (51 would be the most that fits 32,767).
//  * every path on the plain layout, and the packed layout elsewhere — 8-sign tables: for each
//    8 columns, 256 int16 entries (at most 8·127 = 1,016 in magnitude), one lookup and one
//    int32 add per byte of a row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../half.hpp"
#include "detail/gemm_args.hpp"
#include "quantize.hpp"

namespace onebit::kernels::lut {

inline constexpr std::size_t chunk_cols = 15;   // columns per 16-bit index word
inline constexpr std::size_t block_rows = 32;   // rows interleaved in a block
inline constexpr std::size_t widen_every = 16;  // chunks (48 lookups) per int16 accumulation
// Batches of at least this many rows run the batched packed body where a path has one
// (detail/lut_batched_avx512.hpp): from batch 2 on it beats running the batch-1 body per batch
// row (4096x4096, one thread: 512 against 445 Gweights/s at batch 2, 576 against 500 at 4).
inline constexpr std::size_t batched_from = 2;

constexpr std::size_t chunks(std::size_t cols) noexcept {
  return (cols + chunk_cols - 1) / chunk_cols;
}
constexpr std::size_t block_bytes(std::size_t cols) noexcept { return chunks(cols) * 64; }

// Interleaves a plain-layout matrix into 32-row blocks of 15-column index words.
inline void pack_blocks(const unsigned char* w, std::size_t stride, std::size_t rows,
                        std::size_t cols, unsigned char* out) noexcept {
  const std::size_t n_chunks = chunks(cols);
  const std::size_t blocks = (rows + block_rows - 1) / block_rows;
  for (std::size_t blk = 0; blk < blocks; ++blk)
    for (std::size_t c = 0; c < n_chunks; ++c)
      for (std::size_t r = 0; r < block_rows; ++r) {
        const std::size_t row = blk * block_rows + r;
        std::uint16_t word = 0;
        for (std::size_t t = 0; t < chunk_cols && row < rows; ++t) {
          const std::size_t col = c * chunk_cols + t;
          if (col < cols && ((w[row * stride + col / 8] >> (col % 8)) & 1u))
            word = static_cast<std::uint16_t>(word | (1u << t));
        }
        std::memcpy(out + (blk * n_chunks + c) * 64 + 2 * r, &word, 2);
      }
}

namespace portable {

// Tables of 2^k int16 entries for every k consecutive q; exact, so any order of building
// gives the same entries on every path.
inline void build_tables(const std::int8_t* q, std::size_t groups, unsigned k,
                         std::int16_t* tables) noexcept {
  const std::size_t entries = std::size_t{1} << k;
  for (std::size_t grp = 0; grp < groups; ++grp) {
    std::int16_t* t = tables + grp * entries;
    const std::int8_t* qg = q + grp * k;
    t[0] = qg[0];
    t[1] = static_cast<std::int16_t>(-qg[0]);
    for (unsigned bit = 1; bit < k; ++bit) {
      const std::size_t half_size = std::size_t{1} << bit;
      for (std::size_t p = 0; p < half_size; ++p) {
        t[p + half_size] = static_cast<std::int16_t>(t[p] - qg[bit]);
        t[p] = static_cast<std::int16_t>(t[p] + qg[bit]);
      }
    }
  }
}

inline void byte_tables(const std::int8_t* q, std::size_t groups, void* tables) noexcept {
  build_tables(q, groups, 8, static_cast<std::int16_t*>(tables));
}
inline void tables5(const std::int8_t* q, std::size_t groups, void* tables) noexcept {
  build_tables(q, groups, 5, static_cast<std::int16_t*>(tables));
}

// Σ over the bytes of a row of T[byte], the 8-sign tables of the standard layout; padding bits
// select columns whose q is 0.
inline void byte_table_rows(const detail::gemm_args& g, std::size_t row_begin,
                            std::size_t row_end) noexcept {
  const std::size_t bytes = (g.cols + 7) / 8;
  for (std::size_t b = 0; b < g.batch; ++b) {
    const auto* tables = static_cast<const std::int16_t*>(g.itables) + b * (g.ldit / 2);
    for (std::size_t j = row_begin; j < row_end; ++j) {
      const unsigned char* row = g.w + j * g.w_stride;
      std::int32_t s0 = 0, s1 = 0;
      const std::int16_t* t = tables;
      std::size_t i = 0;
      for (; i + 2 <= bytes; i += 2, t += 512) {
        s0 += t[row[i]];
        s1 += t[256 + row[i + 1]];
      }
      if (i < bytes) s0 += t[row[i]];
      g.y[b * g.ldy + j] =
          quantize::scale_dot(std::int64_t{s0} + s1, g.row_scale[b], to_float(g.h[j]));
    }
  }
}

}  // namespace portable

}  // namespace onebit::kernels::lut
