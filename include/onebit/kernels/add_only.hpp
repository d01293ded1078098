// add_only: the exact kernel. Activations stay float (a = x ⊙ g, half input converted exactly,
// one rounding per product), and the signs choose whether a_i is added or subtracted: there is
// no multiply in any inner loop, only adds, table lookups and masks.
//
// Error bound (tested): every technique below except one computes y_j as a float sum, in some
// order, of the n terms ±a_i, then one multiply by h_j. With u = 2^-24 and
// S_j = |h_j|·Σ_i |x_i g_i|:
//
//     |y_j − exact_j| ≤ (n + 2) · u · S_j
//
// (one rounding per product, n − 1 for any summation order, one for the multiply by h; the
// γ-terms of the classical bound are absorbed by the slack of 1). The exception, AVX-512 on
// the plain layout, computes Σa − 2·Σ_{−1} a, two sums of which the second is doubled:
//
//     |y_j − exact_j| ≤ (3n + 4) · u · S_j
//
// Typical errors are √n smaller. Infinite activations give the infinity the exact sum has, and
// NaN only where it has inf − inf (the two-sum form steps aside for a call where some Σ|a| is
// not finite or not below 2^125). Padding bits select columns whose a is 0: they change
// nothing.
//
// Techniques, chosen per instruction set by what its permutes can look up (measured, see the
// README's benchmark table):
//
//  * portable, sse41, neon — 8-sign tables: for every 8 columns, a 256-entry float table of all
//    ±a sums over them, built once per call; each byte of a row then costs one load and one
//    add. Scalar lookups beat 4-lane sign flips (one add per 8 weights instead of three
//    vector ops per 4), and they read the standard layout as it is, so on these paths a
//    packed layer keeps the standard layout.
//  * avx2 — plain layout: each byte of signs selects one of 256 sign masks (8 KiB, built at
//    compile time), XOR-ed into 8 activations and added; 4 rows share each load of a. Packed:
//    8 interleaved rows, 3-sign groups whose 8-entry tables one `vpermps` looks up for all
//    8 rows at once.
//  * avx512 — plain layout: 16 signs are a mask register; one masked add sums the activations
//    under −1 signs, y = Σa − 2·Σ_{−1} a; 4 rows share each load of a. Packed: 16
//    interleaved rows, 5-sign groups whose 32-entry tables one `vpermt2ps` looks up for all
//    16 rows (the prototype's fastest exact technique).
//
// Packed index layout (avx2 and avx512): rows in blocks of R (16 or 8; rows past `out` are
// zero), columns in chunks of 30; for each block and chunk, R 32-bit words, one per row, word
// r holding the row's 30 signs of the chunk as 30/k groups of k bits (k = 5 or 3), group t in
// bits [k·t, k·t + k), each group's signs least significant first (bit 1 = −1). A group's
// table entry p is Σ_t (bit t of p ? −a : +a) over its k columns; columns past `in` have a = 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../detail/target.hpp"
#include "../half.hpp"
#include "detail/gemm_args.hpp"
#include "layout.hpp"

namespace onebit::kernels::add_only {

using kernels::packed_format;

inline constexpr std::size_t chunk_cols = 30;  // columns per 32-bit index word

struct index_geometry {
  std::size_t block_rows;  // rows interleaved in a block
  unsigned group_bits;     // signs per table lookup
};

constexpr index_geometry geometry(packed_format f) noexcept {
  return f == packed_format::index5_rows16 ? index_geometry{16, 5} : index_geometry{8, 3};
}

constexpr std::size_t chunks(std::size_t cols) noexcept {
  return (cols + chunk_cols - 1) / chunk_cols;
}

// Bytes of one block of a packed index layout.
constexpr std::size_t block_bytes(packed_format f, std::size_t cols) noexcept {
  return chunks(cols) * geometry(f).block_rows * 4;
}

// Activations are zero-padded to this many columns, so every technique reads whole vectors
// (16 floats) and, on the index layouts, whole chunks.
constexpr std::size_t padded_cols(packed_format f, std::size_t cols) noexcept {
  const std::size_t n = f == packed_format::standard ? cols : chunks(cols) * chunk_cols;
  return (n + 15) / 16 * 16;
}

// Signs per table lookup, and how many tables one batch row needs.
constexpr unsigned table_bits(packed_format f) noexcept {
  return f == packed_format::standard ? 8 : geometry(f).group_bits;
}
constexpr std::size_t table_groups(packed_format f, std::size_t cols) noexcept {
  return f == packed_format::standard ? (cols + 7) / 8
                                      : chunks(cols) * (chunk_cols / geometry(f).group_bits);
}

// Interleaves the rows of a plain-layout matrix into index blocks (see the header comment).
// `out` must hold ceil(rows / R) * block_bytes(f, cols) bytes.
inline void pack_index_blocks(const unsigned char* w, std::size_t stride, std::size_t rows,
                              std::size_t cols, packed_format f, unsigned char* out) noexcept {
  const index_geometry g = geometry(f);
  const std::size_t n_chunks = chunks(cols);
  const std::size_t blocks = (rows + g.block_rows - 1) / g.block_rows;
  for (std::size_t blk = 0; blk < blocks; ++blk)
    for (std::size_t c = 0; c < n_chunks; ++c)
      for (std::size_t r = 0; r < g.block_rows; ++r) {
        const std::size_t row = blk * g.block_rows + r;
        std::uint32_t word = 0;
        for (std::size_t t = 0; t < chunk_cols && row < rows; ++t) {
          const std::size_t col = c * chunk_cols + t;
          if (col < cols && ((w[row * stride + col / 8] >> (col % 8)) & 1u))
            word |= std::uint32_t{1} << t;  // groups of k bits in column order: bit t = col t
        }
        std::memcpy(out + (blk * n_chunks + c) * g.block_rows * 4 + r * 4, &word, 4);
      }
}

namespace portable {

// Tables of `1 << k` entries for every k consecutive columns: entry p is the float sum
// ((±a_0 ± a_1) ± ...) with the sign of a_t minus when bit t of p is set. Each entry is a plain
// left-to-right sum of its k signed terms, which the error bound above counts on.
inline void build_tables(const float* a, std::size_t groups, unsigned k, float* tables) noexcept {
  const std::size_t entries = std::size_t{1} << k;
  for (std::size_t grp = 0; grp < groups; ++grp) {
    float* t = tables + grp * entries;
    const float* ag = a + grp * k;
    t[0] = ag[0];
    t[1] = -ag[0];
    for (unsigned bit = 1; bit < k; ++bit) {
      const std::size_t half_size = std::size_t{1} << bit;
      for (std::size_t p = 0; p < half_size; ++p) {
        t[p + half_size] = t[p] - ag[bit];
        t[p] = t[p] + ag[bit];
      }
    }
  }
}

inline void byte_tables(const float* a, std::size_t groups, float* tables) noexcept {
  build_tables(a, groups, 8, tables);
}


// y_j = h_j · Σ_bytes T[byte] over the 8-sign tables of the standard layout. Four partial sums
// hide the add latency; tables of two batch rows are live at once, so each row's bytes are
// read once per pair and the tables (128 bytes per column each) stay in L2.
inline void byte_table_rows(const detail::gemm_args& g, std::size_t row_begin,
                            std::size_t row_end) noexcept {
  const std::size_t bytes = (g.cols + 7) / 8;
  for (std::size_t b0 = 0; b0 < g.batch; b0 += 2) {
    const std::size_t nb = g.batch - b0 < 2 ? 1 : 2;
    for (std::size_t j = row_begin; j < row_end; ++j) {
      const unsigned char* row = g.w + j * g.w_stride;
      for (std::size_t b = b0; b < b0 + nb; ++b) {
        const float* t = g.tables + b * g.ldt;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        std::size_t i = 0;
        for (; i + 4 <= bytes; i += 4, t += 4 * 256) {
          s0 += t[row[i]];
          s1 += t[256 + row[i + 1]];
          s2 += t[512 + row[i + 2]];
          s3 += t[768 + row[i + 3]];
        }
        for (; i < bytes; ++i, t += 256) s0 += t[row[i]];
        g.y[b * g.ldy + j] = ((s0 + s1) + (s2 + s3)) * to_float(g.h[j]);
      }
    }
  }
}

}  // namespace portable

}  // namespace onebit::kernels::add_only
