// Kernels of the group-scaled 1-bit layer (group_scaled_linear.hpp): y_j = Σ_g d_jg·P_jg with
// P_jg = Σ_{i in group g} a_i·s_ji. Each group's partial sum P is computed exactly as the
// OneBit kernels compute a whole row's, and the scale is applied to it inside the kernel, in
// registers, before the next group starts: one fused multiply-add per row and group, never one
// product per group.
//
//  * float (add_only family; exact): P in float from the activations a = x (half converted
//    exactly). With u = 2^-24, G the group size, n_g the groups of a row and
//    S_j = Σ_i |d_{j,g(i)}|·|x_i|, every body here keeps
//
//        |y_j − exact_j| ≤ (G + n_g + 6)·u·S_j
//
//    (G − 1 roundings inside a group's sum in any order, one per fused multiply-add of the
//    n_g-term chain, up to 4 for a final reduction of 16 lanes, and slack).
//  * int8 (lut; popcount_int8 and vnni_int8 run the same body): the activations quantised as
//    kernels/quantize.hpp does for every integer kernel (m = max|a|, q = round(a·127/m)); each
//    group's Σ q_i·s_ji is an exact integer, and every path then computes, in group order,
//    acc ← fma(float(d_jg), float(Σ_g), acc) from acc = 0, and y_j = acc·(m/127): the same
//    operations on the same numbers, so the same bits on every path and layout.
//
// Layouts. Plain: the standard sign layout and scales row-major (out x n_g). Packed on avx512:
// rows in blocks of R; within a block, for each group, its columns cut into ceil(G/5)
// subgroups of 5 (the last one shorter; a subgroup never spans two groups), S subgroups per
// word (bits 5t..5t+4 for subgroup t of the word, column order, bit 1 = −1), the R rows' words
// side by side (64 bytes); the block's scales group-major, R halves a group. lut: R = 32,
// S = 3 in 16-bit words, int16 tables and vpermw; add_only: R = 16, S = 6 in 32-bit words,
// float tables (32 entries in two vectors) and vpermt2ps. The tables are built per subgroup
// from activations regrouped with zeros past each group's end, so one lookup covers 5 signs
// of R rows whatever G is.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../detail/target.hpp"
#include "../half.hpp"
#include "quantize.hpp"

namespace onebit::kernels::group_scaled {

struct args {
  const unsigned char* w = nullptr;  // plain: row-major signs; packed: 32-row blocks
  std::size_t w_stride = 0;          // plain: bytes per row; packed: bytes per block
  const half* d = nullptr;           // plain: out x groups; packed: per block, groups x 32
  std::size_t rows = 0, cols = 0, group = 0, groups = 0;
  std::size_t batch = 0;
  const float* a = nullptr;          // batch x lda: x as float, 0 past cols
  std::size_t lda = 0;
  const float* tables = nullptr;     // batch x ldt: 8-sign float tables of a
  std::size_t ldt = 0;
  const float* row_scale = nullptr;  // batch: m / 127
  const void* itables = nullptr;     // batch x ldit bytes: int16 tables of q
  std::size_t ldit = 0;
  float* y = nullptr;
  std::size_t ldy = 0;
};

using rows_fn = void (*)(const args&, std::size_t row_begin, std::size_t row_end) noexcept;

inline constexpr std::size_t block_rows = 32;  // the lut blocks

// A packed layout: rows per block, 5-sign subgroups per word, bytes per word (rows · bytes =
// 64: one vector of words per block and word).
struct block_geometry {
  std::size_t rows, per_word, word_bytes;
};
inline constexpr block_geometry lut_geometry{32, 3, 2};    // vpermw over int16 tables
inline constexpr block_geometry float_geometry{16, 6, 4};  // vpermt2ps over float tables

constexpr std::size_t subgroups(std::size_t group) noexcept { return (group + 4) / 5; }
constexpr std::size_t words_per_group(std::size_t group, std::size_t per_word = 3) noexcept {
  return (subgroups(group) + per_word - 1) / per_word;
}
constexpr std::size_t block_bytes(std::size_t group, std::size_t groups,
                                  std::size_t per_word = 3) noexcept {
  return groups * words_per_group(group, per_word) * 64;
}

// Interleaves plain signs into a packed layout; `out` holds ceil(rows / geo.rows) blocks.
inline void pack_blocks(const unsigned char* w, std::size_t stride, std::size_t rows,
                        std::size_t cols, std::size_t group, unsigned char* out,
                        block_geometry geo = lut_geometry) noexcept {
  const std::size_t groups = (cols + group - 1) / group;
  const std::size_t wpg = words_per_group(group, geo.per_word), sg = subgroups(group);
  const std::size_t blocks = (rows + geo.rows - 1) / geo.rows;
  for (std::size_t blk = 0; blk < blocks; ++blk)
    for (std::size_t g = 0; g < groups; ++g)
      for (std::size_t k = 0; k < wpg; ++k)
        for (std::size_t r = 0; r < geo.rows; ++r) {
          const std::size_t row = blk * geo.rows + r;
          std::uint32_t word = 0;
          for (std::size_t t = 0; t < geo.per_word && geo.per_word * k + t < sg && row < rows; ++t)
            for (std::size_t b = 0; b < 5; ++b) {
              const std::size_t in_group = 5 * (geo.per_word * k + t) + b, col = g * group + in_group;
              if (in_group < group && col < cols && ((w[row * stride + col / 8] >> (col % 8)) & 1u))
                word |= std::uint32_t{1} << (5 * t + b);
            }
          unsigned char bytes[4];
          for (std::size_t i = 0; i < 4; ++i) bytes[i] = static_cast<unsigned char>(word >> (8 * i));
          std::memcpy(out + ((blk * groups + g) * wpg + k) * 64 + geo.word_bytes * r, bytes,
                      geo.word_bytes);
        }
}

// The block-ordered scales: block, group, `rows_per_block` rows (0 past `rows`).
inline void pack_scales(const half* d, std::size_t rows, std::size_t groups, half* out,
                        std::size_t rows_per_block = block_rows) noexcept {
  const std::size_t blocks = (rows + rows_per_block - 1) / rows_per_block;
  for (std::size_t blk = 0; blk < blocks; ++blk)
    for (std::size_t g = 0; g < groups; ++g)
      for (std::size_t r = 0; r < rows_per_block; ++r) {
        const std::size_t row = blk * rows_per_block + r;
        out[(blk * groups + g) * rows_per_block + r] = row < rows ? d[row * groups + g] : half{};
      }
}

// Activations regrouped for the packed tables: each group's G values followed by zeros up to
// 5·subgroups(G), so that 5 consecutive values never cross a group.
template <class T>
void regroup(const T* q, std::size_t cols, std::size_t group, std::size_t groups,
             T* out) noexcept {
  const std::size_t span = 5 * subgroups(group);
  for (std::size_t g = 0; g < groups; ++g) {
    const std::size_t c0 = g * group, n = cols - c0 < group ? cols - c0 : group;
    std::memcpy(out + g * span, q + c0, n * sizeof(T));
    std::memset(out + g * span + n, 0, (span - n) * sizeof(T));
  }
}

// The scalar oracle: each group's sum of a_i·s in double, scaled in double, summed in double.
inline void reference_rows(const args& g, std::size_t row_begin, std::size_t row_end) noexcept {
  for (std::size_t b = 0; b < g.batch; ++b)
    for (std::size_t j = row_begin; j < row_end; ++j) {
      const unsigned char* row = g.w + j * g.w_stride;
      double total = 0;
      for (std::size_t grp = 0; grp < g.groups; ++grp) {
        double p = 0;
        const std::size_t end = (grp + 1) * g.group < g.cols ? (grp + 1) * g.group : g.cols;
        for (std::size_t i = grp * g.group; i < end; ++i) {
          const double a = g.a[b * g.lda + i];
          p += ((row[i / 8] >> (i % 8)) & 1u) ? -a : a;
        }
        total += static_cast<double>(to_float(g.d[j * g.groups + grp])) * p;
      }
      g.y[b * g.ldy + j] = static_cast<float>(total);
    }
}

}  // namespace onebit::kernels::group_scaled

// The table bodies of the plain layout, compiled once per path inside its namespace and target
// region (detail/group_scaled_tables.inl).
namespace onebit::kernels::group_scaled::portable {
#include "detail/group_scaled_tables.inl"
}  // namespace onebit::kernels::group_scaled::portable

#if ONEBIT_X86
ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_SSE41)
namespace onebit::kernels::group_scaled::sse41 {
#include "detail/group_scaled_tables.inl"
}  // namespace onebit::kernels::group_scaled::sse41
ONEBIT_TARGET_END
ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX2)
namespace onebit::kernels::group_scaled::avx2 {
#include "detail/group_scaled_tables.inl"
}  // namespace onebit::kernels::group_scaled::avx2
ONEBIT_TARGET_END
#endif
#if ONEBIT_ARM64
namespace onebit::kernels::group_scaled::neon {
#include "detail/group_scaled_tables.inl"
}  // namespace onebit::kernels::group_scaled::neon
#endif
