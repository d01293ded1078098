// popcount_int8 and popcount_binary bodies for aarch64 NEON: bytes counted with cnt, widened
// by pairwise adds into 64-bit lanes. See kernels/popcount.hpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../detail/target.hpp"
#include "../../half.hpp"
#include "../quantize.hpp"
#include "gemm_args.hpp"

#if ONEBIT_ARM64

namespace onebit::kernels::popcount::neon {

inline uint64x2_t add_counts(uint64x2_t total, uint8x16_t bits) noexcept {
  return vpadalq_u32(total, vpaddlq_u16(vpaddlq_u8(vcntq_u8(bits))));
}

inline void int8_rows(const detail::gemm_args& g, std::size_t row_begin,
                      std::size_t row_end) noexcept {
  const std::size_t chunks = (g.cols + 127) / 128;
  for (std::size_t b = 0; b < g.batch; ++b) {
    const unsigned char* planes = g.planes + b * g.ldp;
    for (std::size_t j = row_begin; j < row_end; ++j) {
      const unsigned char* row = g.w + j * g.w_stride;
      uint64x2_t count[8];
      for (int p = 0; p < 8; ++p) count[p] = vdupq_n_u64(0);
      for (std::size_t c = 0; c < chunks; ++c) {
        const uint8x16_t w = vld1q_u8(row + 16 * c);
        for (int p = 0; p < 8; ++p)
          count[p] = add_counts(count[p], vandq_u8(vld1q_u8(planes + p * g.plane_stride + 16 * c), w));
      }
      std::uint64_t counts[8];
      for (int p = 0; p < 8; ++p) counts[p] = vaddvq_u64(count[p]);
      g.y[b * g.ldy + j] = quantize::scale_dot(quantize::int8_dot(g.q_sum[b], counts),
                                               g.row_scale[b], to_float(g.h[j]));
    }
  }
}

inline void binary_rows(const detail::gemm_args& g, std::size_t row_begin,
                        std::size_t row_end) noexcept {
  const std::size_t chunks = (g.cols + 127) / 128;
  for (std::size_t b = 0; b < g.batch; ++b) {
    const unsigned char* signs = g.planes + b * g.ldp;
    for (std::size_t j = row_begin; j < row_end; ++j) {
      const unsigned char* row = g.w + j * g.w_stride;
      uint64x2_t count = vdupq_n_u64(0);
      for (std::size_t c = 0; c < chunks; ++c)
        count = add_counts(count, vandq_u8(veorq_u8(vld1q_u8(signs + 16 * c), vld1q_u8(row + 16 * c)),
                                           vld1q_u8(g.valid + 16 * c)));
      const auto dot = static_cast<std::int64_t>(g.cols) -
                       2 * static_cast<std::int64_t>(vaddvq_u64(count));
      g.y[b * g.ldy + j] = quantize::scale_dot(dot, g.row_scale[b], to_float(g.h[j]));
    }
  }
}

}  // namespace onebit::kernels::popcount::neon

#endif  // ONEBIT_ARM64
