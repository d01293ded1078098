// The scalar reference: the oracle every fast kernel is tested against.
//
// y[b, j] = h_j * sum_i (x[b, i] * g_i) * W(j, i), with each product x_i * g_i rounded once to
// float (as every kernel does, so kernels and oracle see the same addends), the sum in double
// and one final rounding: |y - exact| <= |h_j| * sum_i |x_i g_i| * (2^-24 + n * 2^-53) + 2^-24 |y|,
// far inside the bound any float-summing kernel is held to.
#pragma once

#include <cstddef>

#include "../half.hpp"
#include "../sign_matrix.hpp"

namespace onebit::kernels::reference {

template <class T>
inline float activation(T v) noexcept {
  if constexpr (std::is_same_v<T, half>)
    return to_float(v);
  else
    return v;
}

// Rows [row_begin, row_end) of y for every batch row. Never throws, never allocates.
template <class Word, class T>
void gemm_rows(sign_matrix_view<const Word> W, const half* g, const half* h, const T* x,
               std::size_t batch, std::size_t ldx, float* y, std::size_t ldy,
               std::size_t row_begin, std::size_t row_end) noexcept {
  const std::size_t n = W.cols();
  for (std::size_t b = 0; b < batch; ++b) {
    const T* xb = x + b * ldx;
    for (std::size_t j = row_begin; j < row_end; ++j) {
      double sum = 0.0;
      for (std::size_t i = 0; i < n; ++i) {
        const double a = static_cast<double>(activation(xb[i]) * to_float(g[i]));
        sum += W(j, i) < 0 ? -a : a;
      }
      y[b * ldy + j] = static_cast<float>(sum * static_cast<double>(to_float(h[j])));
    }
  }
}

}  // namespace onebit::kernels::reference
