// The group-scaled 1-bit layer: y = x · Wᵀ with W_ji = d_{j,⌊i/G⌋}·s_ji, an out x in matrix
// of signs s (sign_matrix.hpp: bit 1 = −1) and one FP16 scale d per output and group of G
// consecutive inputs. This is what 1-bit GGUF models ship (ggml's Q1_0: G = 128), and what
// RTN-style 1-bit quantisation with group scales makes. No g, no h, no bias.
//
// G is a multiple of 8 (one byte of signs: a group never splits a byte, so the kernels'
// tables never straddle two scales); the last group of a row may be shorter when in is not a
// multiple of G. gemm/gemv/prepare/pack run it (group_gemm.hpp), with the group scale applied
// inside the kernels to each group's partial sum.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "half.hpp"
#include "sign_matrix.hpp"

namespace onebit {

class group_scaled_linear {
 public:
  group_scaled_linear() = default;

  // out x in, every sign +1 and every scale 0. Throws std::invalid_argument on a zero size or
  // a group that is not a positive multiple of 8.
  group_scaled_linear(std::size_t out, std::size_t in, std::size_t group)
      : W_(checked(out, in, group), in), group_(group),
        groups_((in + group - 1) / group), d_(out * groups_) {}

  // From signs and scales (out x groups, row-major).
  group_scaled_linear(sign_matrix<> W, std::vector<half> d, std::size_t group)
      : group_(group) {
    checked(W.rows(), W.cols(), group);
    groups_ = (W.cols() + group - 1) / group;
    if (d.size() != W.rows() * groups_)
      throw std::invalid_argument("onebit::group_scaled_linear: " + std::to_string(d.size()) +
                                  " scales for a " + detail::shape_string(W.rows(), W.cols()) +
                                  " (out x in) layer of group " + std::to_string(group) +
                                  "; it needs " + std::to_string(W.rows() * groups_));
    W_ = std::move(W);
    d_ = std::move(d);
  }

  std::size_t in_features() const noexcept { return W_.cols(); }
  std::size_t out_features() const noexcept { return W_.rows(); }
  std::size_t group_size() const noexcept { return group_; }
  std::size_t groups_per_row() const noexcept { return groups_; }
  bool empty() const noexcept { return W_.rows() == 0; }

  const sign_matrix<>& signs() const noexcept { return W_; }
  sign_matrix<>& signs() noexcept { return W_; }
  const std::vector<half>& scales() const noexcept { return d_; }
  half scale(std::size_t j, std::size_t group) const noexcept { return d_[j * groups_ + group]; }
  void set_scale(std::size_t j, std::size_t group, half d) noexcept { d_[j * groups_ + group] = d; }
  // The weight as a float: d·s.
  float weight(std::size_t j, std::size_t i) const noexcept {
    const float d = to_float(scale(j, i / group_));
    return W_(j, i) < 0 ? -d : d;
  }

  // Writes the signs of one group of row j from bytes in onebit's convention (bit i % 8 of
  // byte i / 8 set: column i is −1); bits past the row's end are dropped.
  void set_group_signs(std::size_t j, std::size_t group, const unsigned char* bits) noexcept {
    auto* row = reinterpret_cast<unsigned char*>(W_.row(j));
    const std::size_t c0 = group * group_;
    const std::size_t n = W_.cols() - c0 < group_ ? W_.cols() - c0 : group_;
    std::memcpy(row + c0 / 8, bits, (n + 7) / 8);
    if (n % 8 != 0)  // the padding bits of the row stay 0
      row[(c0 + n) / 8] = static_cast<unsigned char>(row[(c0 + n) / 8] & ((1u << (n % 8)) - 1u));
  }

  // Storage: one bit per sign, 16 per scale.
  std::size_t storage_bits() const noexcept {
    return W_.rows() * W_.cols() + 16 * d_.size();
  }

 private:
  static std::size_t checked(std::size_t out, std::size_t in, std::size_t group) {
    if (out == 0 || in == 0)
      throw std::invalid_argument("onebit::group_scaled_linear: zero-size layer " +
                                  detail::shape_string(out, in) + " (out x in)");
    if (group == 0 || group % 8 != 0)
      throw std::invalid_argument("onebit::group_scaled_linear: group " + std::to_string(group) +
                                  " for a " + detail::shape_string(out, in) +
                                  " layer is not a positive multiple of 8");
    return out;
  }

  sign_matrix<> W_;
  std::size_t group_ = 0, groups_ = 0;
  std::vector<half> d_;  // out x groups, row-major
};

}  // namespace onebit
