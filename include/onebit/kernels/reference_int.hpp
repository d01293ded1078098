// The scalar twins of the integer kernels (popcount_int8, lut and vnni_int8 share one; and
// popcount_binary): ALGORITHMS.md §4 written out one multiply-add at a time, independently of
// the prepare step and of every fast body, so the tests can hold those to it bit for bit.
//
// Input is a = x ⊙ g rounded to float, as every kernel prepares it (batch rows lda floats
// apart), and W in the standard layout. Per batch row:
//  * int8: m = max|a_i|, q_i = clamp(nearbyint(a_i · (127/m)), −127, 127) (ties to even, the
//    default rounding mode), y_j = (float(Σ_i q_i W_ji) · (m/127)) · h_j; m = 0 gives 0.
//  * binary: β = (Σ|a_i|)/n summed in float in index order, y_j = (float(Σ_i s_i W_ji) · β) · h_j
//    with s_i = −1 where a_i < 0, else +1.
// The integer sums are exact, and the float roundings are the kernels' own, so every path
// gives exactly these bits. Slow on purpose (q is recomputed per output); no allocation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../half.hpp"

namespace onebit::kernels::reference_int {

inline int w_sign(const unsigned char* row, std::size_t i) noexcept {
  return ((row[i / 8] >> (i % 8)) & 1u) != 0 ? -1 : 1;
}

inline void int8_gemm(const unsigned char* w, std::size_t w_stride, std::size_t rows,
                      std::size_t cols, const half* h, const float* a, std::size_t batch,
                      std::size_t lda, float* y, std::size_t ldy) noexcept {
  for (std::size_t b = 0; b < batch; ++b) {
    const float* ab = a + b * lda;
    float m = 0;
    for (std::size_t i = 0; i < cols; ++i) m = std::max(m, std::fabs(ab[i]));
    const float inverse = m > 0 ? 127.0f / m : 0.0f, scale = m > 0 ? m / 127.0f : 0.0f;
    for (std::size_t j = 0; j < rows; ++j) {
      const unsigned char* row = w + j * w_stride;
      std::int64_t dot = 0;
      if (m > 0)
        for (std::size_t i = 0; i < cols; ++i)
          dot += static_cast<std::int64_t>(std::clamp(std::nearbyint(ab[i] * inverse), -127.0f,
                                                      127.0f)) *
                 w_sign(row, i);
      y[b * ldy + j] = (static_cast<float>(dot) * scale) * to_float(h[j]);
    }
  }
}

inline void binary_gemm(const unsigned char* w, std::size_t w_stride, std::size_t rows,
                        std::size_t cols, const half* h, const float* a, std::size_t batch,
                        std::size_t lda, float* y, std::size_t ldy) noexcept {
  for (std::size_t b = 0; b < batch; ++b) {
    const float* ab = a + b * lda;
    float total = 0;
    for (std::size_t i = 0; i < cols; ++i) total += std::fabs(ab[i]);
    const float beta = total / static_cast<float>(cols);
    for (std::size_t j = 0; j < rows; ++j) {
      const unsigned char* row = w + j * w_stride;
      std::int64_t dot = 0;
      for (std::size_t i = 0; i < cols; ++i) dot += (ab[i] < 0 ? -1 : 1) * w_sign(row, i);
      y[b * ldy + j] = (static_cast<float>(dot) * beta) * to_float(h[j]);
    }
  }
}

}  // namespace onebit::kernels::reference_int
