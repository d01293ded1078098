// The scalar reference: the oracle every fast kernel is tested against.
//
// y[b, j] = h_j · Σ_i a_i · W(j, i) with a_i = x[b, i] · g_i rounded once to float (as every
// kernel prepares it, so kernels and oracle see the same addends), the sum in double and one
// final rounding: |y − exact| ≤ |h_j| · Σ_i |x_i g_i| · (2^-24 + n · 2^-53) + 2^-24 · |y|, far
// inside the bound any float-summing kernel is held to.
#pragma once

#include <cstddef>

#include "../half.hpp"
#include "detail/gemm_args.hpp"

namespace onebit::kernels::reference {

// Rows [row_begin, row_end) of y for every batch row, reading W in the standard layout.
inline void rows(const detail::gemm_args& g, std::size_t row_begin,
                 std::size_t row_end) noexcept {
  for (std::size_t b = 0; b < g.batch; ++b) {
    const float* a = g.a + b * g.lda;
    for (std::size_t j = row_begin; j < row_end; ++j) {
      const unsigned char* row = g.w + j * g.w_stride;
      double sum = 0.0;
      for (std::size_t i = 0; i < g.cols; ++i) {
        const bool negative = (row[i / 8] >> (i % 8)) & 1u;
        sum += negative ? -static_cast<double>(a[i]) : static_cast<double>(a[i]);
      }
      g.y[b * g.ldy + j] = static_cast<float>(sum * static_cast<double>(to_float(g.h[j])));
    }
  }
}

}  // namespace onebit::kernels::reference
