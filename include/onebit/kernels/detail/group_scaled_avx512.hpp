// Group-scaled bodies for AVX-512 (F/BW/DQ/VL): the float body on the plain layout and the lut
// body on the packed one. See kernels/group_scaled.hpp for the layouts and the bounds.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../detail/target.hpp"
#include "../../half.hpp"
#include "../group_scaled.hpp"
#include "add_only_avx512.hpp"

#if ONEBIT_X86

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)

namespace onebit::kernels::group_scaled::avx512 {

inline float reduce_add(__m512 v) noexcept {
  const __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

inline __mmask16 load_mask16(const unsigned char* p) noexcept {
  __mmask16 m;
  __asm__("kmovw %1, %0" : "=k"(m) : "m"(*reinterpret_cast<const std::uint16_t*>(p)));
  return m;
}

// R rows x B batch rows, plain layout, G a multiple of 16. Per 16 columns a masked subtract
// makes ±a and one add sums it into the group's 16 lanes; at the group's end one fused
// multiply-add per lane applies the scale. The lanes are reduced once per row.
template <int R, int B>
inline void float_tile(const args& g, std::size_t j0, std::size_t b0) noexcept {
  const __m512 zero = _mm512_setzero_ps();
  __m512 total[R][B];
  ONEBIT_UNROLL
  for (int r = 0; r < R; ++r)
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b) total[r][b] = zero;
  const std::size_t chunks16 = (g.cols + 15) / 16, per_group = g.group / 16;
  for (std::size_t grp = 0; grp < g.groups; ++grp) {
    __m512 p[R][B];
    ONEBIT_UNROLL
    for (int r = 0; r < R; ++r)
      ONEBIT_UNROLL
      for (int b = 0; b < B; ++b) p[r][b] = zero;
    const std::size_t c1 = (grp + 1) * per_group < chunks16 ? (grp + 1) * per_group : chunks16;
    for (std::size_t c = grp * per_group; c < c1; ++c) {
      __mmask16 m[R];
      ONEBIT_UNROLL
      for (int r = 0; r < R; ++r) m[r] = load_mask16(g.w + (j0 + r) * g.w_stride + 2 * c);
      ONEBIT_UNROLL
      for (int b = 0; b < B; ++b) {
        const __m512 av = _mm512_load_ps(g.a + (b0 + b) * g.lda + 16 * c);
        ONEBIT_UNROLL
        for (int r = 0; r < R; ++r)
          p[r][b] = _mm512_add_ps(p[r][b], _mm512_mask_sub_ps(av, m[r], zero, av));
      }
    }
    ONEBIT_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m512 d = _mm512_set1_ps(to_float(g.d[(j0 + r) * g.groups + grp]));
      ONEBIT_UNROLL
      for (int b = 0; b < B; ++b) total[r][b] = _mm512_fmadd_ps(d, p[r][b], total[r][b]);
    }
  }
  ONEBIT_UNROLL
  for (int r = 0; r < R; ++r)
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b) g.y[(b0 + b) * g.ldy + j0 + r] = reduce_add(total[r][b]);
}

template <int R>
inline void float_rows_of(const args& g, std::size_t j0) noexcept {
  std::size_t b = 0;
  for (; b + 2 <= g.batch; b += 2) float_tile<R, 2>(g, j0, b);
  if (b < g.batch) float_tile<R, 1>(g, j0, b);
}

inline void float_rows(const args& g, std::size_t row_begin, std::size_t row_end) noexcept {
  std::size_t j = row_begin;
  for (; j + 4 <= row_end; j += 4) float_rows_of<4>(g, j);
  for (; j < row_end; ++j) float_rows_of<1>(g, j);
}

// The float lookups of one 32-bit word of NB 16-row blocks: S subgroups of 5 signs, each one
// vpermt2ps per block over the subgroup's 32-entry table (add_only::avx512::tables5), summed
// into two accumulators per block.
template <int NB, int S>
inline void float_lookups(const __m512i* v, const float* t, __m512 (*acc)[2]) noexcept {
  ONEBIT_UNROLL
  for (int s = 0; s < S; ++s) {
    const __m512 lo = _mm512_load_ps(t + 32 * s), hi = _mm512_load_ps(t + 32 * s + 16);
    ONEBIT_UNROLL
    for (int nb = 0; nb < NB; ++nb) {
      const __m512i ix =
          s == 0 ? v[nb] : _mm512_maskz_srli_epi32(0xffff, v[nb], static_cast<unsigned>(5 * s));
      acc[nb][s % 2] = _mm512_add_ps(acc[nb][s % 2], _mm512_permutex2var_ps(lo, ix, hi));
    }
  }
}

// NB 16-row blocks of the packed float layout for one batch row: per group, its words'
// lookups summed in float, then total ← fma(d, Σ, total) for the 16 rows at once. WPG and
// LAST as for lut_blocks (G = 128: 5 words, the last with 2 subgroups).
template <int NB, int WPG = 0, int LAST = 0>
inline void float_blocks(const args& g, std::size_t block0, std::size_t b,
                         const __mmask16* keep) noexcept {
  constexpr std::size_t R = float_geometry.rows;
  const std::size_t wpg = WPG != 0 ? WPG : words_per_group(g.group, 6);
  const std::size_t sg = WPG != 0 ? 6 * (WPG - 1) + LAST : subgroups(g.group);
  const std::size_t last_count = sg - 6 * (wpg - 1);
  const float* tables = g.tables + b * g.ldt;
  const unsigned char* idx[NB];
  const half* scales[NB];
  __m512 total[NB];
  ONEBIT_UNROLL
  for (int nb = 0; nb < NB; ++nb) {
    idx[nb] = g.w + (block0 + nb) * g.w_stride;
    scales[nb] = g.d + (block0 + nb) * g.groups * R;
    total[nb] = _mm512_setzero_ps();
  }
  for (std::size_t grp = 0; grp < g.groups; ++grp) {
    __m512 acc[NB][2];
    ONEBIT_UNROLL
    for (int nb = 0; nb < NB; ++nb) acc[nb][0] = acc[nb][1] = _mm512_setzero_ps();
    const float* t = tables + grp * sg * 32;
    for (std::size_t k = 0; k < wpg; ++k) {
      const std::size_t word = grp * wpg + k;
      __m512i v[NB];
      ONEBIT_UNROLL
      for (int nb = 0; nb < NB; ++nb) {
        v[nb] = _mm512_load_si512(idx[nb] + 64 * word);
        _mm_prefetch(reinterpret_cast<const char*>(idx[nb] + 64 * (word + 8)), _MM_HINT_T0);
      }
      const float* tk = t + 6 * k * 32;
      switch (k + 1 == wpg ? last_count : 6) {
        case 6: float_lookups<NB, 6>(v, tk, acc); break;
        case 5: float_lookups<NB, 5>(v, tk, acc); break;
        case 4: float_lookups<NB, 4>(v, tk, acc); break;
        case 3: float_lookups<NB, 3>(v, tk, acc); break;
        case 2: float_lookups<NB, 2>(v, tk, acc); break;
        default: float_lookups<NB, 1>(v, tk, acc); break;
      }
    }
    ONEBIT_UNROLL
    for (int nb = 0; nb < NB; ++nb) {
      const __m512 d = _mm512_cvtph_ps(
          _mm256_load_si256(reinterpret_cast<const __m256i*>(scales[nb] + grp * R)));
      total[nb] = _mm512_fmadd_ps(d, _mm512_add_ps(acc[nb][0], acc[nb][1]), total[nb]);
    }
  }
  ONEBIT_UNROLL
  for (int nb = 0; nb < NB; ++nb)
    _mm512_mask_storeu_ps(g.y + b * g.ldy + (block0 + nb) * R, keep[nb], total[nb]);
}

template <int WPG, int LAST>
inline void run_float_blocks(const args& g, std::size_t nb, std::size_t block, std::size_t b,
                             const __mmask16* keep) noexcept {
  if (nb == 4)
    float_blocks<4, WPG, LAST>(g, block, b, keep);
  else if (nb == 2)
    float_blocks<2, WPG, LAST>(g, block, b, keep);
  else
    float_blocks<1, WPG, LAST>(g, block, b, keep);
}

// A range that starts or ends inside a block computes the whole block and stores only its rows.
inline void float_packed_rows(const args& g, std::size_t row_begin, std::size_t row_end) noexcept {
  constexpr std::size_t R = float_geometry.rows;
  const std::size_t first = row_begin / R, last = (row_end + R - 1) / R;
  for (std::size_t block = first; block < last;) {
    const std::size_t nb = last - block >= 4 ? 4 : (last - block >= 2 ? 2 : 1);
    __mmask16 keep[4] = {0, 0, 0, 0};
    for (std::size_t i = 0; i < nb; ++i) {
      const std::size_t j0 = (block + i) * R;
      const std::size_t lo = j0 < row_begin ? row_begin - j0 : 0;
      const std::size_t hi = row_end - j0 < R ? row_end - j0 : R;
      keep[i] = static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
    }
    for (std::size_t b = 0; b < g.batch; ++b) {
      if (g.group == 128)
        run_float_blocks<5, 2>(g, nb, block, b, keep);
      else
        run_float_blocks<0, 0>(g, nb, block, b, keep);
    }
    block += nb;
  }
}

// The lookups of one word of NB blocks: S subgroups of 5 signs, each one vpermw per block.
template <int NB, int S>
inline void lookups(const __m512i* v, const std::int16_t* t, __m512i* acc16) noexcept {
  ONEBIT_UNROLL
  for (int s = 0; s < S; ++s) {
    const __m512i table = _mm512_load_si512(t + 32 * s);
    ONEBIT_UNROLL
    for (int nb = 0; nb < NB; ++nb) {
      const __m512i ix =
          s == 0 ? v[nb] : _mm512_maskz_srli_epi16(~__mmask32{0}, v[nb], static_cast<unsigned>(5 * s));
      acc16[nb] = _mm512_add_epi16(acc16[nb], _mm512_permutexvar_epi16(ix, table));
    }
  }
}

// NB 32-row blocks for one batch row: per group, its words' lookups summed in int16 (widened
// to int32 every 16 words: 48 lookups of at most 635 stay below 32,767), then
// total ← fma(d, float(Σ), total) for all 32 rows at once. WPG and LAST, when not 0, are
// the words of a group and the subgroups of its last word, known at compile time (G = 128:
// 9 and 2; G = 64: 5 and 1), so that a group's words unroll into straight-line code.
template <int NB, int WPG = 0, int LAST = 0>
inline void lut_blocks(const args& g, std::size_t block0, std::size_t b,
                       const __mmask32* keep) noexcept {
  const std::size_t wpg = WPG != 0 ? WPG : words_per_group(g.group);
  const std::size_t sg = WPG != 0 ? 3 * (WPG - 1) + LAST : subgroups(g.group);
  const std::size_t last_count = sg - 3 * (wpg - 1);  // subgroups in a group's last word
  const auto* tables = static_cast<const std::int16_t*>(g.itables) + b * (g.ldit / 2);
  const unsigned char* idx[NB];
  const half* scales[NB];
  __m512 tot_lo[NB], tot_hi[NB];
  ONEBIT_UNROLL
  for (int nb = 0; nb < NB; ++nb) {
    idx[nb] = g.w + (block0 + nb) * g.w_stride;
    scales[nb] = g.d + (block0 + nb) * g.groups * block_rows;
    tot_lo[nb] = tot_hi[nb] = _mm512_setzero_ps();
  }
  for (std::size_t grp = 0; grp < g.groups; ++grp) {
    __m512i acc16[NB], lo32[NB], hi32[NB];
    ONEBIT_UNROLL
    for (int nb = 0; nb < NB; ++nb) acc16[nb] = lo32[nb] = hi32[nb] = _mm512_setzero_si512();
    const std::int16_t* t = tables + grp * sg * 32;
    for (std::size_t k = 0; k < wpg; ++k) {
      const std::size_t word = grp * wpg + k;
      __m512i v[NB];
      ONEBIT_UNROLL
      for (int nb = 0; nb < NB; ++nb) {
        v[nb] = _mm512_load_si512(idx[nb] + 64 * word);
        _mm_prefetch(reinterpret_cast<const char*>(idx[nb] + 64 * (word + 8)), _MM_HINT_T0);
      }
      const std::int16_t* tk = t + 3 * k * 32;
      // Whole words unrolled; a group's last word may hold 1 or 2 subgroups only.
      const std::size_t count = k + 1 == wpg ? last_count : 3;
      if (count == 3)
        lookups<NB, 3>(v, tk, acc16);
      else if (count == 2)
        lookups<NB, 2>(v, tk, acc16);
      else
        lookups<NB, 1>(v, tk, acc16);
      // A group of at most 16 words widens once, at its end, straight into the scaling below.
      if ((WPG == 0 || WPG > 16) && (k % 16 == 15 || k + 1 == wpg)) {
        ONEBIT_UNROLL
        for (int nb = 0; nb < NB; ++nb) {
          lo32[nb] = _mm512_add_epi32(lo32[nb], _mm512_cvtepi16_epi32(_mm512_castsi512_si256(acc16[nb])));
          hi32[nb] = _mm512_add_epi32(hi32[nb], _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(acc16[nb], 1)));
          acc16[nb] = _mm512_setzero_si512();
        }
      }
    }
    if constexpr (WPG != 0 && WPG <= 16) {
      ONEBIT_UNROLL
      for (int nb = 0; nb < NB; ++nb) {
        lo32[nb] = _mm512_cvtepi16_epi32(_mm512_castsi512_si256(acc16[nb]));
        hi32[nb] = _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(acc16[nb], 1));
      }
    }
    ONEBIT_UNROLL
    for (int nb = 0; nb < NB; ++nb) {
      const half* d = scales[nb] + grp * block_rows;
      const __m512 d_lo = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(d)));
      const __m512 d_hi = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(d + 16)));
      tot_lo[nb] = _mm512_fmadd_ps(d_lo, _mm512_cvtepi32_ps(lo32[nb]), tot_lo[nb]);
      tot_hi[nb] = _mm512_fmadd_ps(d_hi, _mm512_cvtepi32_ps(hi32[nb]), tot_hi[nb]);
    }
  }
  const __m512 scale = _mm512_set1_ps(g.row_scale[b]);
  ONEBIT_UNROLL
  for (int nb = 0; nb < NB; ++nb) {
    float* y = g.y + b * g.ldy + (block0 + nb) * block_rows;
    _mm512_mask_storeu_ps(y, static_cast<__mmask16>(keep[nb]), _mm512_mul_ps(tot_lo[nb], scale));
    _mm512_mask_storeu_ps(y + 16, static_cast<__mmask16>(keep[nb] >> 16),
                          _mm512_mul_ps(tot_hi[nb], scale));
  }
}

template <int WPG, int LAST>
inline void run_blocks(const args& g, std::size_t nb, std::size_t block, std::size_t b,
                       const __mmask32* keep) noexcept {
  if (nb == 4)
    lut_blocks<4, WPG, LAST>(g, block, b, keep);
  else if (nb == 2)
    lut_blocks<2, WPG, LAST>(g, block, b, keep);
  else
    lut_blocks<1, WPG, LAST>(g, block, b, keep);
}

// A range that starts or ends inside a block computes the whole block and stores only its rows.
inline void lut_rows(const args& g, std::size_t row_begin, std::size_t row_end) noexcept {
  const std::size_t first = row_begin / block_rows, last = (row_end + block_rows - 1) / block_rows;
  for (std::size_t block = first; block < last;) {
    const std::size_t nb = last - block >= 4 ? 4 : (last - block >= 2 ? 2 : 1);
    __mmask32 keep[4] = {0, 0, 0, 0};
    for (std::size_t i = 0; i < nb; ++i) {
      const std::size_t j0 = (block + i) * block_rows;
      const std::size_t lo = j0 < row_begin ? row_begin - j0 : 0;
      const std::size_t hi = row_end - j0 < block_rows ? row_end - j0 : block_rows;
      keep[i] = static_cast<__mmask32>(((std::uint64_t{1} << hi) - 1u) & ~((std::uint64_t{1} << lo) - 1u));
    }
    for (std::size_t b = 0; b < g.batch; ++b) {
      if (g.group == 128)
        run_blocks<9, 2>(g, nb, block, b, keep);
      else if (g.group == 64)
        run_blocks<5, 1>(g, nb, block, b, keep);
      else
        run_blocks<0, 0>(g, nb, block, b, keep);
    }
    block += nb;
  }
}

}  // namespace onebit::kernels::group_scaled::avx512

ONEBIT_TARGET_END

#endif  // ONEBIT_X86
