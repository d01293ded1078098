// lowbit_matrix: a rows x cols matrix of k-bit codes (k = 1..8) with a scale s and a zero
// point z per (row, group of G columns), standing for
//
//     Ŵ(r, c) = s(r, g) · (q(r, c) − z(r, g)),   g = c / G,
//
// the format RTN (rtn.hpp) and learned rounding produce (docs/algorithms.md §3, §5).
//
// Layout:
//  * codes as k bit-planes: plane b is a sign_matrix<> (rows x cols, the standard bit layout)
//    whose bit (r, c) is bit b of q(r, c). Read as signs, plane b holds σ_b = 1 − 2·bit_b(q),
//    and q = (2^k − 1)/2 − Σ_b 2^(b−1)·σ_b: a k-bit matrix is k sign matrices, which is how
//    lowbit_linear.hpp runs it on the 1-bit kernels;
//  * groups: G = group(), or cols when group() is 0 (one group per row); groups_per_row() =
//    ceil(cols / G), the last one shorter when G does not divide cols;
//  * scales and zeros: float, rows x groups_per_row, row-major. Codes are unsigned, 0 .. 2^k − 1,
//    and the zeros are integers (stored as float: exact below 2^24). A symmetric matrix has
//    z = 2^(k−1) everywhere (so q − z runs over −(2^(k−1) − 1) .. 2^(k−1) − 1) and stores none.
//
// storage_bits() counts what the format needs, exactly: k bits per code, 32 per scale, and 32
// per zero unless symmetric (padding of the in-memory planes is not counted, as for linear).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "detail/matrix_rows.hpp"
#include "sign_matrix.hpp"

namespace onebit {

namespace detail::quant {
struct lowbit_access;  // rtn(): the writer of codes, scales and zeros
}

class lowbit_matrix {
 public:
  lowbit_matrix() = default;

  // A matrix from its codes: q (rows x cols bytes, rows ldq apart, each < 2^bits), and scales
  // and zeros (rows x groups_per_row floats each, row-major; zeros null: symmetric, every
  // zero 2^(bits−1)). Throws std::invalid_argument on bits outside 1..8 (2..8 symmetric), a
  // group larger than cols, zero sizes, null pointers, a short ldq, a code out of range, or a
  // scale or zero that is not finite.
  static lowbit_matrix from_codes(const std::uint8_t* q, std::size_t rows, std::size_t cols,
                                  std::size_t ldq, int bits, std::size_t group,
                                  const float* scales, const float* zeros) {
    const char* f = "lowbit_matrix::from_codes";
    check_shape(f, rows, cols, bits, group, zeros == nullptr);
    const std::string where = std::string("onebit::") + f + ": ";
    if (q == nullptr || scales == nullptr)
      throw std::invalid_argument(where + "null " + (q == nullptr ? "codes" : "scales"));
    if (rows > 1 && ldq < cols)
      throw std::invalid_argument(where + "ldq " + std::to_string(ldq) + " < cols " +
                                  std::to_string(cols));
    lowbit_matrix m(rows, cols, bits, group, zeros == nullptr);
    const std::size_t n = m.scales_.size();
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isfinite(scales[i]) || (zeros != nullptr && !std::isfinite(zeros[i])))
        throw std::invalid_argument(where + "scale or zero of (row " +
                                    std::to_string(i / m.groups_per_row()) + ", group " +
                                    std::to_string(i % m.groups_per_row()) + ") is not finite");
      m.scales_[i] = scales[i];
      if (zeros != nullptr) m.zeros_[i] = zeros[i];
    }
    const unsigned limit = 1u << bits;
    for (std::size_t r = 0; r < rows; ++r) {
      const std::uint8_t* row = q + r * ldq;
      for (std::size_t c = 0; c < cols; ++c)
        if (row[c] >= limit)
          throw std::invalid_argument(where + "code " + std::to_string(row[c]) + " at (" +
                                      std::to_string(r) + ", " + std::to_string(c) +
                                      ") does not fit in " + std::to_string(bits) + " bits");
      m.set_row_codes(r, row);
    }
    return m;
  }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  int bits() const noexcept { return bits_; }
  std::size_t group() const noexcept { return group_; }  // as asked: 0 means one per row
  std::size_t group_size() const noexcept { return group_ == 0 ? cols_ : group_; }
  std::size_t groups_per_row() const noexcept { return groups_; }
  bool symmetric() const noexcept { return symmetric_; }
  bool empty() const noexcept { return rows_ == 0 || cols_ == 0; }

  // Plane b < bits(): bit (r, c) is bit b of q(r, c).
  const sign_matrix<>& plane(int b) const { return planes_.at(static_cast<std::size_t>(b)); }

  // q(r, c), 0 .. 2^bits − 1. Unchecked, like operator[].
  unsigned code(std::size_t r, std::size_t c) const noexcept {
    unsigned q = 0;
    for (int b = 0; b < bits_; ++b) {
      const std::uint64_t word = planes_[static_cast<std::size_t>(b)].row(r)[c / 64];
      q |= static_cast<unsigned>((word >> (c % 64)) & 1u) << b;
    }
    return q;
  }
  float scale(std::size_t r, std::size_t g) const noexcept { return scales_[r * groups_ + g]; }
  float zero(std::size_t r, std::size_t g) const noexcept { return zeros_[r * groups_ + g]; }
  // rows x groups_per_row, row-major.
  const std::vector<float>& scales() const noexcept { return scales_; }
  const std::vector<float>& zeros() const noexcept { return zeros_; }

  // s·(q − z), computed in double and rounded once to float. Unchecked.
  float dequantized(std::size_t r, std::size_t c) const noexcept {
    const std::size_t g = c / group_size();
    return value(scale(r, g), zero(r, g), code(r, c));
  }
  // The whole matrix into out (rows x cols, rows ld floats apart).
  void dequantize(float* out, std::size_t ld) const {
    if (empty()) return;
    if (out == nullptr) throw std::invalid_argument("onebit::lowbit_matrix::dequantize: null out");
    if (rows_ > 1 && ld < cols_)
      throw std::invalid_argument("onebit::lowbit_matrix::dequantize: ld " + std::to_string(ld) +
                                  " < cols " + std::to_string(cols_));
    const std::size_t G = group_size();
    for (std::size_t r = 0; r < rows_; ++r)
      for (std::size_t c = 0; c < cols_; ++c)
        out[r * ld + c] = value(scale(r, c / G), zero(r, c / G), code(r, c));
  }

  // bits·rows·cols + 32·rows·groups_per_row (scales) + the same again for zeros unless
  // symmetric.
  std::size_t storage_bits() const noexcept {
    const std::size_t per_group = symmetric_ ? 32 : 64;
    return static_cast<std::size_t>(bits_) * rows_ * cols_ + per_group * rows_ * groups_;
  }

 private:
  friend struct detail::quant::lowbit_access;

  lowbit_matrix(std::size_t rows, std::size_t cols, int bits, std::size_t group, bool symmetric)
      : rows_(rows), cols_(cols), bits_(bits), group_(group), symmetric_(symmetric) {
    groups_ = (cols + group_size() - 1) / group_size();
    planes_.reserve(static_cast<std::size_t>(bits));
    for (int b = 0; b < bits; ++b) planes_.emplace_back(rows, cols);
    scales_.assign(rows * groups_, 1.0f);
    zeros_.assign(rows * groups_, symmetric ? static_cast<float>(1u << (bits - 1)) : 0.0f);
  }

  static float value(float s, float z, unsigned q) noexcept {
    return static_cast<float>(static_cast<double>(s) *
                              (static_cast<double>(q) - static_cast<double>(z)));
  }

  static void check_shape(const char* function, std::size_t rows, std::size_t cols, int bits,
                          std::size_t group, bool symmetric) {
    const std::string where = std::string("onebit::") + function + ": ";
    if (bits < 1 || bits > 8)
      throw std::invalid_argument(where + "bits " + std::to_string(bits) + " is outside 1..8");
    if (symmetric && bits < 2)
      throw std::invalid_argument(where + "symmetric quantisation needs bits >= 2 (1 bit has " +
                                  "no symmetric level but 0; a 1-bit layer is svid's)");
    if (rows == 0 || cols == 0)
      throw std::invalid_argument(where + "zero-size matrix " + detail::shape_string(rows, cols));
    if (group > cols)
      throw std::invalid_argument(where + "group " + std::to_string(group) + " > cols " +
                                  std::to_string(cols) + " (group 0 means one group per row)");
  }

  // Row r's codes (cols bytes) into the planes.
  void set_row_codes(std::size_t r, const std::uint8_t* q) noexcept {
    const std::size_t full = cols_ / 64, tail = cols_ % 64;
    for (int b = 0; b < bits_; ++b) {
      std::uint64_t* dst = planes_[static_cast<std::size_t>(b)].row(r);
      for (std::size_t w = 0; w < full; ++w) {
        std::uint64_t word = 0;
        for (unsigned byte = 0; byte < 8; ++byte) {
          // Eight codes' bit b as 0/1 bytes; times 0x0102040810204080, byte i lands on bit
          // 56 + i with no carries.
          std::uint64_t lanes = 0;
          const std::uint8_t* src = q + w * 64 + byte * 8;
          for (unsigned t = 0; t < 8; ++t)
            lanes |= static_cast<std::uint64_t>((src[t] >> b) & 1u) << (8 * t);
          word |= ((lanes * 0x0102040810204080ull) >> 56) << (8 * byte);
        }
        dst[w] = word;
      }
      if (tail != 0) {
        std::uint64_t word = 0;
        for (std::size_t t = 0; t < tail; ++t)
          word |= static_cast<std::uint64_t>((q[full * 64 + t] >> b) & 1u) << t;
        dst[full] = word;
      }
    }
  }

  std::size_t rows_ = 0, cols_ = 0;
  int bits_ = 0;
  std::size_t group_ = 0, groups_ = 0;
  bool symmetric_ = false;
  std::vector<sign_matrix<>> planes_;
  std::vector<float> scales_, zeros_;
};

namespace detail::quant {
struct lowbit_access {
  static lowbit_matrix make(const char* function, std::size_t rows, std::size_t cols, int bits,
                            std::size_t group, bool symmetric) {
    lowbit_matrix::check_shape(function, rows, cols, bits, group, symmetric);
    return lowbit_matrix(rows, cols, bits, group, symmetric);
  }
  static float* scales(lowbit_matrix& m) noexcept { return m.scales_.data(); }
  static float* zeros(lowbit_matrix& m) noexcept { return m.zeros_.data(); }
  static void set_row_codes(lowbit_matrix& m, std::size_t r, const std::uint8_t* q) noexcept {
    m.set_row_codes(r, q);
  }
};
}  // namespace detail::quant

}  // namespace onebit
