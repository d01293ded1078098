// The finishing step of a layer with OneBit's post-LayerNorm (linear.hpp's post_norm): one
// batch row of y, normalised in place over its n outputs,
//
//   y_j ← (y_j − μ) / sqrt(σ² + eps),   μ = Σ y_j / n,   σ² = Σ (y_j − μ)² / n  (biased),
//
// as nn.LayerNorm(n, elementwise_affine=False) computes it. Two passes in double: the float
// inputs are exact in double, so μ and σ² carry only the summation error of n double additions
// (≤ n·2^-53 relative, far below float resolution), and each output is (y_j − μ)·r rounded once
// to float, r = 1/sqrt(σ² + eps) in double: |out_j − exact_j| ≤ 2^-24·|exact_j| + O(n·2^-53).
//
// The sums run in four interleaved lanes (a fixed order the compiler can keep in vector
// registers), and the same code serves every instruction-set path, so the result depends only
// on the pre-norm row: integer kernels that agree bit for bit still agree after the norm, and
// any split of a product over threads gives the same bits. Never throws, never allocates.
#pragma once

#include <cmath>
#include <cstddef>

namespace onebit::kernels::layer_norm {

inline void row(float* y, std::size_t n, float eps) noexcept {
  if (n == 0) return;
  const std::size_t n4 = n - n % 4;
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (std::size_t j = 0; j < n4; j += 4) {
    s0 += static_cast<double>(y[j]);
    s1 += static_cast<double>(y[j + 1]);
    s2 += static_cast<double>(y[j + 2]);
    s3 += static_cast<double>(y[j + 3]);
  }
  for (std::size_t j = n4; j < n; ++j) s0 += static_cast<double>(y[j]);
  const double count = static_cast<double>(n);
  const double mean = ((s0 + s1) + (s2 + s3)) / count;
  double q0 = 0, q1 = 0, q2 = 0, q3 = 0;
  for (std::size_t j = 0; j < n4; j += 4) {
    const double d0 = static_cast<double>(y[j]) - mean, d1 = static_cast<double>(y[j + 1]) - mean;
    const double d2 = static_cast<double>(y[j + 2]) - mean,
                 d3 = static_cast<double>(y[j + 3]) - mean;
    q0 += d0 * d0;
    q1 += d1 * d1;
    q2 += d2 * d2;
    q3 += d3 * d3;
  }
  for (std::size_t j = n4; j < n; ++j) {
    const double d = static_cast<double>(y[j]) - mean;
    q0 += d * d;
  }
  const double variance = ((q0 + q1) + (q2 + q3)) / count;
  const double r = 1.0 / std::sqrt(variance + static_cast<double>(eps));
  for (std::size_t j = 0; j < n; ++j)
    y[j] = static_cast<float>((static_cast<double>(y[j]) - mean) * r);
}

}  // namespace onebit::kernels::layer_norm
