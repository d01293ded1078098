// The two formulas of a Llama-2 layer that both of onebit's Llama implementations compute (the
// token-by-token forward pass of llama.hpp and the differentiable, all-tokens-at-once blocks
// of llama_blocks.hpp), written once, in float and in run.c's order of operations, so that the
// two agree to the last bit wherever they sum in the same order.
#pragma once

#include <cmath>
#include <cstddef>

namespace onebit::llama {

// RMSNorm's 1 / sqrt(mean(x²) + eps) of x[0..n): squares summed in index order, then / n,
// + eps, 1 / sqrt, as run.c (llama2.c's default eps is 1e-5).
inline float inverse_rms(const float* x, std::size_t n, float eps = 1e-5f) noexcept {
  float ss = 0.0f;
  for (std::size_t j = 0; j < n; ++j) ss += x[j] * x[j];
  ss /= static_cast<float>(n);
  ss += eps;
  return 1.0f / std::sqrt(ss);
}

// RoPE's frequency of the pair that starts at offset `i` (even) within a head:
// 1 / theta^(i / head_size), by powf as run.c, so angles pos·freq match run.c's.
inline float rope_frequency(std::size_t i, std::size_t head_size, float theta = 10000.0f) noexcept {
  return 1.0f / std::pow(theta, static_cast<float>(i) / static_cast<float>(head_size));
}

}  // namespace onebit::llama
