// The OneBit linear layer: y = ((x ⊙ g) · Wᵀ) ⊙ h, with W an out x in matrix of signs (one bit
// each) and the value vectors g (length in) and h (length out) in FP16. No bias. Optionally
// followed, as OneBit's authors ship it (their BitLinear), by a LayerNorm over the out features
// of each token without affine parameters: y ← (y − mean(y)) / sqrt(var(y) + eps), var biased.
//
// `linear` owns its W, g and h; `linear_view` is the same layer over memory someone else owns
// (a memory-mapped file, an engine's arena). gemm.hpp runs products on either; this header
// knows nothing of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "half.hpp"
#include "sign_matrix.hpp"

namespace onebit {

namespace detail {

// The OneBit paper's count: one bit per sign, 16 per value-vector entry.
constexpr std::size_t storage_bits(std::size_t out, std::size_t in) noexcept {
  return out * in + 16 * (in + out);
}
constexpr double bits_per_parameter(std::size_t out, std::size_t in) noexcept {
  const std::size_t parameters = out * in + in + out;
  return parameters == 0 ? 0.0
                         : static_cast<double>(storage_bits(out, in)) /
                               static_cast<double>(parameters);
}

}  // namespace detail

// OneBit's post-LayerNorm (nn.LayerNorm(out_features, elementwise_affine=False)): off by
// default, so a layer is the plain product unless it says otherwise. Not counted in
// storage_bits: it has no parameters.
struct post_norm {
  bool enabled = false;
  float eps = 1e-5f;
};

inline bool operator==(const post_norm& a, const post_norm& b) noexcept {
  // Off is off whatever eps says.
  return a.enabled == b.enabled && (!a.enabled || a.eps == b.eps);
}
inline bool operator!=(const post_norm& a, const post_norm& b) noexcept { return !(a == b); }

// A OneBit layer over caller-owned memory: W's bytes, in values of g and out values of h.
template <class Word = std::uint64_t>
struct linear_view {
  sign_matrix_view<const Word> W;  // out x in
  const half* g = nullptr;         // in values
  const half* h = nullptr;         // out values
  post_norm norm{};                // applied after ⊙ h when enabled

  std::size_t in_features() const noexcept { return W.cols(); }
  std::size_t out_features() const noexcept { return W.rows(); }
  std::size_t storage_bits() const noexcept {
    return detail::storage_bits(out_features(), in_features());
  }
  double bits_per_parameter() const noexcept {
    return detail::bits_per_parameter(out_features(), in_features());
  }

};

// A OneBit layer that owns its data.
template <class Word = std::uint64_t>
struct linear {
  sign_matrix<Word> W;  // out x in
  std::vector<half> g;  // in values
  std::vector<half> h;  // out values
  post_norm norm{};     // applied after ⊙ h when enabled

  std::size_t in_features() const noexcept { return W.cols(); }
  std::size_t out_features() const noexcept { return W.rows(); }
  std::size_t storage_bits() const noexcept {
    return detail::storage_bits(out_features(), in_features());
  }
  double bits_per_parameter() const noexcept {
    return detail::bits_per_parameter(out_features(), in_features());
  }

  // The layer as a view; throws std::invalid_argument when g or h has the wrong length.
  linear_view<Word> view() const {
    const std::string shape = detail::shape_string(out_features(), in_features());
    if (g.size() != in_features())
      throw std::invalid_argument("onebit::linear: g has " + std::to_string(g.size()) +
                                  " values for a " + shape + " (out x in) layer; it needs " +
                                  std::to_string(in_features()));
    if (h.size() != out_features())
      throw std::invalid_argument("onebit::linear: h has " + std::to_string(h.size()) +
                                  " values for a " + shape + " (out x in) layer; it needs " +
                                  std::to_string(out_features()));
    return linear_view<Word>{W.view(), g.data(), h.data(), norm};
  }

};

}  // namespace onebit
