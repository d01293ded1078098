// add_only bodies for AVX2 (+FMA, F16C). See kernels/add_only.hpp for the techniques, the
// packed layout and the error bound.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../../detail/target.hpp"
#include "../add_only.hpp"
#include "gemm_args.hpp"

#if ONEBIT_X86

namespace onebit::kernels::add_only::avx2 {

// For every byte of signs, the 8 float sign masks it stands for (bit t set: lane t = 0x80000000).
struct byte_sign_masks {
  alignas(32) std::uint32_t lanes[256][8];
};
constexpr byte_sign_masks make_byte_sign_masks() noexcept {
  byte_sign_masks m{};
  for (unsigned byte = 0; byte < 256; ++byte)
    for (unsigned t = 0; t < 8; ++t) m.lanes[byte][t] = ((byte >> t) & 1u) ? 0x80000000u : 0u;
  return m;
}
inline constexpr byte_sign_masks sign_masks = make_byte_sign_masks();

}  // namespace onebit::kernels::add_only::avx2

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX2)

namespace onebit::kernels::add_only::avx2 {

inline float reduce_add(__m256 v) noexcept {
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

// R rows x B batch rows of the plain layout: per 8 columns, each row's byte of signs picks its
// 8 sign masks, XOR flips the shared activations, one add. R = 4 rows share each load of a.
template <int R, int B>
inline void plain_tile(const detail::gemm_args& g, std::size_t j0, std::size_t b0) noexcept {
  const std::size_t bytes = (g.cols + 7) / 8;
  __m256 acc[R][B];
  ONEBIT_UNROLL
  for (int r = 0; r < R; ++r)
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b) acc[r][b] = _mm256_setzero_ps();
  const unsigned char* rows[R];
  ONEBIT_UNROLL
  for (int r = 0; r < R; ++r) rows[r] = g.w + (j0 + r) * g.w_stride;
  const float* a = g.a + b0 * g.lda;
  for (std::size_t c = 0; c < bytes; ++c) {
    __m256 s[R];
    ONEBIT_UNROLL
    for (int r = 0; r < R; ++r)
      s[r] = _mm256_load_ps(reinterpret_cast<const float*>(sign_masks.lanes[rows[r][c]]));
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b) {
      const __m256 av = _mm256_load_ps(a + b * g.lda + 8 * c);
      ONEBIT_UNROLL
      for (int r = 0; r < R; ++r) acc[r][b] = _mm256_add_ps(acc[r][b], _mm256_xor_ps(av, s[r]));
    }
  }
  ONEBIT_UNROLL
  for (int r = 0; r < R; ++r) {
    const float h = to_float(g.h[j0 + r]);
    ONEBIT_UNROLL
    for (int b = 0; b < B; ++b) g.y[(b0 + b) * g.ldy + j0 + r] = reduce_add(acc[r][b]) * h;
  }
}

template <int R>
inline void plain_rows_of(const detail::gemm_args& g, std::size_t j0) noexcept {
  std::size_t b = 0;
  for (; b + 2 <= g.batch; b += 2) plain_tile<R, 2>(g, j0, b);
  if (b < g.batch) plain_tile<R, 1>(g, j0, b);
}

inline void plain_rows(const detail::gemm_args& g, std::size_t row_begin,
                       std::size_t row_end) noexcept {
  std::size_t j = row_begin;
  for (; j + 4 <= row_end; j += 4) plain_rows_of<4>(g, j);
  for (; j < row_end; ++j) plain_rows_of<1>(g, j);
}

// 8-entry tables of every 3 columns: entry p = ((±a0 ± a1) ± a2), minus where bit t of p is set.
inline void tables3(const float* a, std::size_t groups, float* tables) noexcept {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256 sign[3];
  ONEBIT_UNROLL
  for (int k = 0; k < 3; ++k)
    sign[k] = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_and_si256(_mm256_srli_epi32(lane, k), _mm256_set1_epi32(1)), 31));
  for (std::size_t grp = 0; grp < groups; ++grp) {
    const float* ag = a + 3 * grp;
    __m256 t = _mm256_xor_ps(_mm256_set1_ps(ag[0]), sign[0]);
    t = _mm256_add_ps(t, _mm256_xor_ps(_mm256_set1_ps(ag[1]), sign[1]));
    t = _mm256_add_ps(t, _mm256_xor_ps(_mm256_set1_ps(ag[2]), sign[2]));
    _mm256_store_ps(tables + 8 * grp, t);
  }
}

// One 8-row block of the packed layout for B batch rows: per 30 columns one load of 8 index
// words, 9 shifts (vpermps reads the low 3 bits), and per batch row 10 lookups and adds.
template <int B>
inline void packed_tile(const detail::gemm_args& g, std::size_t block, std::size_t b0,
                        std::size_t lo, std::size_t hi) noexcept {
  constexpr int A = 2;  // fixed, so a row's sum order does not depend on the batch
  const std::size_t n_chunks = chunks(g.cols);
  const auto* idx = reinterpret_cast<const std::uint32_t*>(g.w + block * g.w_stride);
  __m256 acc[B][A];
  ONEBIT_UNROLL
  for (int b = 0; b < B; ++b)
    ONEBIT_UNROLL
    for (int k = 0; k < A; ++k) acc[b][k] = _mm256_setzero_ps();
  for (std::size_t c = 0; c < n_chunks; ++c) {
    const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx + 8 * c));
    ONEBIT_UNROLL
    for (int k = 0; k < 10; ++k) {
      const __m256i ix = k == 0 ? v : _mm256_srli_epi32(v, 3 * k);
      ONEBIT_UNROLL
      for (int b = 0; b < B; ++b) {
        const float* t = g.tables + (b0 + b) * g.ldt + (10 * c + k) * 8;
        acc[b][k % A] =
            _mm256_add_ps(acc[b][k % A], _mm256_permutevar8x32_ps(_mm256_load_ps(t), ix));
      }
    }
  }
  const std::size_t j0 = block * 8;
  ONEBIT_UNROLL
  for (int b = 0; b < B; ++b) {
    __m256 s = acc[b][0];
    ONEBIT_UNROLL
    for (int k = 1; k < A; ++k) s = _mm256_add_ps(s, acc[b][k]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, s);
    for (std::size_t r = lo; r < hi; ++r)
      g.y[(b0 + b) * g.ldy + j0 + r] = lanes[r] * to_float(g.h[j0 + r]);
  }
}

// A range that starts or ends inside a block computes the whole block and stores only its rows.
inline void packed_rows(const detail::gemm_args& g, std::size_t row_begin,
                        std::size_t row_end) noexcept {
  for (std::size_t block = row_begin / 8; block * 8 < row_end; ++block) {
    const std::size_t lo = block * 8 < row_begin ? row_begin - block * 8 : 0;
    const std::size_t hi = row_end - block * 8 < 8 ? row_end - block * 8 : 8;
    std::size_t b = 0;
    for (; b + 4 <= g.batch; b += 4) packed_tile<4>(g, block, b, lo, hi);
    for (; b < g.batch; ++b) packed_tile<1>(g, block, b, lo, hi);
  }
}

}  // namespace onebit::kernels::add_only::avx2

ONEBIT_TARGET_END

#endif  // ONEBIT_X86
