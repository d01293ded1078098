// lut bodies for AVX-512BW: vpermw lookups of 5-sign int16 tables over 32 interleaved rows.
// See kernels/lut.hpp for the layout and the int16 bound.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../../detail/target.hpp"
#include "../../half.hpp"
#include "../lut.hpp"
#include "../quantize.hpp"
#include "gemm_args.hpp"

#if ONEBIT_X86

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)

namespace onebit::kernels::lut::avx512 {

// 32-entry int16 tables of every 5 q: entry p = Σ_t ±q_t, minus where bit t of p is set, computed
// as S − 2·E_p with E_p = Σ_t bit_t(p)·q_t and S = E_31. vpmaddubsw makes E_p from byte pairs:
// bytes (bit_t(p), bit_t+1(p)) of lane p times the pair (q_t, q_t+1) broadcast to every lane;
// q_4 comes from the pair (q_3, q_4) against (0, bit_4(p)), so no byte past the group is read.
// Exact (|E_p| ≤ 5·127), the same integers as five broadcasts and negations per group, and
// 4x faster (1.0 against 4.3 µs at 4096 inputs): tables were half of lut's prepare.
inline void tables5(const std::int8_t* q, std::size_t groups, void* out) noexcept {
  auto* tables = static_cast<std::int16_t*>(out);
  const __m512i lane = _mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18,
                                        17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2,
                                        1, 0);
  const __m512i one = _mm512_set1_epi16(1);
  // bit t of p in the low byte of lane p and bit t + 1 in its high byte.
  const auto pair = [&](unsigned t) {
    return _mm512_or_si512(
        _mm512_and_si512(_mm512_srli_epi16(lane, t), one),
        _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(lane, t + 1), one), 8));
  };
  const __m512i bits01 = pair(0), bits23 = pair(2);
  const __m512i bits_4 = _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(lane, 4), one), 8);
  const __m512i last = _mm512_set1_epi16(31);
  for (std::size_t grp = 0; grp < groups; ++grp) {
    const std::int8_t* qg = q + 5 * grp;
    std::int16_t q01, q23, q34;
    std::memcpy(&q01, qg, 2);
    std::memcpy(&q23, qg + 2, 2);
    std::memcpy(&q34, qg + 3, 2);
    const __m512i e = _mm512_add_epi16(
        _mm512_add_epi16(_mm512_maddubs_epi16(bits01, _mm512_set1_epi16(q01)),
                         _mm512_maddubs_epi16(bits23, _mm512_set1_epi16(q23))),
        _mm512_maddubs_epi16(bits_4, _mm512_set1_epi16(q34)));
    const __m512i sum = _mm512_permutexvar_epi16(last, e);
    _mm512_store_si512(tables + 32 * grp, _mm512_sub_epi16(sum, _mm512_add_epi16(e, e)));
  }
}

inline __m512i widen_add(__m512i acc32, __m256i half16) noexcept {
  return _mm512_add_epi32(acc32, _mm512_cvtepi16_epi32(half16));
}

// NB 32-row blocks for one batch row. Per 15 columns and block: one load of 32 index words,
// 2 shifts (vpermw reads the low 5 bits of each index), 3 lookups and adds; every table
// vector serves all NB blocks.
template <int NB>
inline void blocks(const detail::gemm_args& g, std::size_t block0, std::size_t b,
                   const __mmask32* keep) noexcept {
  const std::size_t n_chunks = chunks(g.cols);
  const auto* tables = static_cast<const std::int16_t*>(g.itables) + b * (g.ldit / 2);
  const unsigned char* idx[NB];
  __m512i acc16[NB], lo32[NB], hi32[NB];
  ONEBIT_UNROLL
  for (int nb = 0; nb < NB; ++nb) {
    idx[nb] = g.w + (block0 + nb) * g.w_stride;
    acc16[nb] = lo32[nb] = hi32[nb] = _mm512_setzero_si512();
  }
  const std::size_t next_group = (NB - 1) * g.w_stride;
  for (std::size_t c0 = 0; c0 < n_chunks; c0 += widen_every) {
    const std::size_t c1 = n_chunks - c0 < widen_every ? n_chunks : c0 + widen_every;
    for (std::size_t c = c0; c < c1; ++c) {
      __m512i v[NB];
      ONEBIT_UNROLL
      for (int nb = 0; nb < NB; ++nb) {
        v[nb] = _mm512_load_si512(idx[nb] + 64 * c);
        // Weights streamed from memory: ask for them 32 chunks (2 KB) ahead per block. At 8
        // chunks a 7B-shaped model's products took 54-62 ms per decoded token on one thread,
        // at 32 48-52 ms, at 64 51 ms (bench_model --models=7b, A/B runs on one machine); a
        // second prefetch into L2 further ahead (64-128 chunks) and prefetchnta were slower or
        // no faster. Near a block's end the prefetch runs on into the same block of the next
        // group (blocks are contiguous, so `+ next_group`), which the next call starts with:
        // otherwise that call began with every block's first lines cold (16384x1024, 4.3 KB
        // blocks: 17.3 -> 20.4 GB/s). A prefetch past the end of the weights never faults.
        _mm_prefetch(reinterpret_cast<const char*>(idx[nb] + 64 * (c + 32) +
                                                   (c + 32 >= n_chunks ? next_group : 0)),
                     _MM_HINT_T0);
      }
      ONEBIT_UNROLL
      for (int k = 0; k < 3; ++k) {
        const __m512i table = _mm512_load_si512(tables + (3 * c + k) * 32);
        ONEBIT_UNROLL
        for (int nb = 0; nb < NB; ++nb) {
          const __m512i ix =
              k == 0 ? v[nb] : _mm512_maskz_srli_epi16(~__mmask32{0}, v[nb], 5u * k);
          acc16[nb] = _mm512_add_epi16(acc16[nb], _mm512_permutexvar_epi16(ix, table));
        }
      }
    }
    ONEBIT_UNROLL
    for (int nb = 0; nb < NB; ++nb) {
      // vextracti64x4 for the low half, not a cast, which g++ 12 answers with register copies
      // of the accumulators inside the loop above (as in lut_batched_avx512.hpp).
      lo32[nb] = widen_add(lo32[nb], _mm512_extracti64x4_epi64(acc16[nb], 0));
      hi32[nb] = widen_add(hi32[nb], _mm512_extracti64x4_epi64(acc16[nb], 1));
      acc16[nb] = _mm512_setzero_si512();
    }
  }
  // y = (float(dot) · scale) · h, in that order, 16 rows at a time.
  const __m512 scale = _mm512_set1_ps(g.row_scale[b]);
  ONEBIT_UNROLL
  for (int nb = 0; nb < NB; ++nb) {
    const std::size_t j0 = (block0 + nb) * 32;
    float* y = g.y + b * g.ldy + j0;
    const __m512i halves[2] = {lo32[nb], hi32[nb]};
    for (int part = 0; part < 2; ++part) {
      const auto keep16 = static_cast<__mmask16>(keep[nb] >> (16 * part));
      const __m512 h = _mm512_maskz_cvtph_ps(
          0xffff, _mm256_maskz_loadu_epi16(keep16, g.h + j0 + 16 * part));
      const __m512 dot = _mm512_cvtepi32_ps(halves[part]);
      _mm512_mask_storeu_ps(y + 16 * part, keep16, _mm512_mul_ps(_mm512_mul_ps(dot, scale), h));
    }
  }
}

// A range that starts or ends inside a block computes the whole block and stores only its
// rows, so ranges on different threads never write the same y.
inline void packed_rows(const detail::gemm_args& g, std::size_t row_begin,
                        std::size_t row_end) noexcept {
  const std::size_t first = row_begin / 32, last = (row_end + 31) / 32;
  for (std::size_t block = first; block < last;) {
    // Six blocks per table load where there are six: each table vector then serves six
    // lookups (18 accumulators and 6 index vectors still fit the 32 registers). At 4096x4096,
    // batch 1, one thread, best of 300 calls on the development VM, alternating builds: four
    // blocks 384-438 Gweights/s, six 407-501; streamed from memory 17-21 against 18-23 GB/s.
    // (Two blocks per load took 80 us there, four 65.)
    const std::size_t left = last - block;
    const std::size_t nb = left >= 6 ? 6 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
    __mmask32 keep[6] = {0, 0, 0, 0, 0, 0};
    for (std::size_t i = 0; i < nb; ++i) {
      const std::size_t j0 = (block + i) * 32;
      const std::size_t lo = j0 < row_begin ? row_begin - j0 : 0;
      const std::size_t hi = row_end - j0 < 32 ? row_end - j0 : 32;
      const std::uint64_t bits = ((std::uint64_t{1} << hi) - 1u) & ~((std::uint64_t{1} << lo) - 1u);
      keep[i] = static_cast<__mmask32>(bits);
    }
    for (std::size_t b = 0; b < g.batch; ++b) {
      if (nb == 6)
        blocks<6>(g, block, b, keep);
      else if (nb == 4)
        blocks<4>(g, block, b, keep);
      else if (nb == 2)
        blocks<2>(g, block, b, keep);
      else
        blocks<1>(g, block, b, keep);
    }
    block += nb;
  }
}

}  // namespace onebit::kernels::lut::avx512

ONEBIT_TARGET_END

#endif  // ONEBIT_X86
