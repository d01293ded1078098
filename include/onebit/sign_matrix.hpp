// A bit-packed matrix of signs (+1 / -1), owning (`sign_matrix`) or over a caller's bytes
// (`sign_matrix_view`), in the one layout every kernel, the file format and the tests share:
//
//  * row-major: row r holds the `cols` signs of output r;
//  * bit 1 means -1, bit 0 means +1 (an IEEE sign bit: a flip is an XOR, and for two packed
//    sign vectors a·w = n - 2·popcount(a XOR w));
//  * element c of a row is bit c % B of word c / B (B = bits of Word), least significant bit
//    first, so on a little-endian machine the bytes of a row are the same whatever the Word;
//  * every row starts on a 64-byte boundary: stride_bytes() is ceil(cols / 8) rounded up to a
//    multiple of 64 (the same for every Word), or larger for a view that says so;
//  * bits past `cols` are padding: written 0 here, and no kernel's result depends on them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "detail/aligned_buffer.hpp"

namespace onebit {

namespace detail {

template <class Word>
inline constexpr bool is_sign_word =
    std::is_same_v<Word, std::uint8_t> || std::is_same_v<Word, std::uint16_t> ||
    std::is_same_v<Word, std::uint32_t> || std::is_same_v<Word, std::uint64_t>;

inline std::string shape_string(std::size_t rows, std::size_t cols) {
  return std::to_string(rows) + "x" + std::to_string(cols);
}

}  // namespace detail

// Bytes of one row in the standard layout: the packed bits rounded up to a cache line.
constexpr std::size_t sign_row_stride_bytes(std::size_t cols) noexcept {
  return detail::round_up((cols + 7) / 8, detail::cache_line);
}

// A rows x cols sign matrix over memory the caller owns. `Word` may be const-qualified:
// sign_matrix_view<const std::uint64_t> reads, sign_matrix_view<std::uint64_t> also writes.
// A view is a pointer and three sizes: cheap to copy, valid while the caller's buffer is.
template <class Word = const std::uint64_t>
class sign_matrix_view {
 public:
  using word_type = std::remove_const_t<Word>;
  static_assert(detail::is_sign_word<word_type>,
                "sign_matrix words are uint8_t, uint16_t, uint32_t or uint64_t");
  static constexpr std::size_t word_bits = 8 * sizeof(word_type);
  static constexpr bool is_mutable = !std::is_const_v<Word>;

  sign_matrix_view() = default;

  // Checks the caller's buffer: non-null (unless the matrix is empty), 64-byte aligned, at
  // least rows * stride_bytes long, stride a multiple of 64 covering the row's bits.
  sign_matrix_view(Word* data, std::size_t buffer_bytes, std::size_t rows, std::size_t cols)
      : sign_matrix_view(data, buffer_bytes, rows, cols, sign_row_stride_bytes(cols)) {}

  sign_matrix_view(Word* data, std::size_t buffer_bytes, std::size_t rows, std::size_t cols,
                   std::size_t stride_bytes)
      : data_(data), rows_(rows), cols_(cols), stride_bytes_(stride_bytes) {
    const std::string shape = detail::shape_string(rows, cols);
    if (stride_bytes % detail::cache_line != 0 || stride_bytes < sign_row_stride_bytes(cols))
      throw std::invalid_argument("onebit::sign_matrix_view: stride_bytes " +
                                  std::to_string(stride_bytes) + " for a " + shape +
                                  " matrix must be a multiple of 64 and at least " +
                                  std::to_string(sign_row_stride_bytes(cols)));
    if (rows != 0 && stride_bytes > std::numeric_limits<std::size_t>::max() / rows)
      throw std::invalid_argument("onebit::sign_matrix_view: " + shape +
                                  " matrix is larger than memory");
    if (rows * stride_bytes == 0) return;
    if (data == nullptr)
      throw std::invalid_argument("onebit::sign_matrix_view: null buffer for a " + shape +
                                  " matrix");
    if (reinterpret_cast<std::uintptr_t>(data) % detail::cache_line != 0)
      throw std::invalid_argument(
          "onebit::sign_matrix_view: buffer for a " + shape +
          " matrix is misaligned (rows must start on 64-byte boundaries)");
    if (buffer_bytes < rows * stride_bytes)
      throw std::invalid_argument("onebit::sign_matrix_view: buffer of " +
                                  std::to_string(buffer_bytes) + " bytes is too small for a " +
                                  shape + " matrix with row stride " +
                                  std::to_string(stride_bytes) + " (needs " +
                                  std::to_string(rows * stride_bytes) + ")");
  }

  // A mutable view converts to a read-only one.
  template <class Other, class = std::enable_if_t<std::is_same_v<const Other, Word> &&
                                                  !std::is_same_v<Other, Word>>>
  sign_matrix_view(const sign_matrix_view<Other>& other) noexcept  // NOLINT: implicit by design
      : data_(other.data()), rows_(other.rows()), cols_(other.cols()),
        stride_bytes_(other.stride_bytes()) {}

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t words_per_row() const noexcept { return (cols_ + word_bits - 1) / word_bits; }
  std::size_t stride_bytes() const noexcept { return stride_bytes_; }
  std::size_t stride_words() const noexcept { return stride_bytes_ / sizeof(word_type); }
  // Bytes the matrix spans, padding included: rows * stride_bytes.
  std::size_t bytes() const noexcept { return rows_ * stride_bytes_; }
  bool empty() const noexcept { return rows_ == 0 || cols_ == 0; }

  Word* data() const noexcept { return data_; }
  // Row r: words_per_row() words, the last one possibly holding padding bits.
  Word* row(std::size_t r) const noexcept { return data_ + r * stride_words(); }

  // +1 or -1. Unchecked, like operator[] of the standard containers.
  int operator()(std::size_t r, std::size_t c) const noexcept {
    return ((row(r)[c / word_bits] >> (c % word_bits)) & 1u) ? -1 : 1;
  }

  template <bool M = is_mutable, class = std::enable_if_t<M>>
  void set(std::size_t r, std::size_t c, int sign) const {
    if (sign != 1 && sign != -1)
      throw std::invalid_argument("onebit::sign_matrix::set: sign " + std::to_string(sign) +
                                  " is not +1 or -1");
    if (r >= rows_ || c >= cols_)
      throw std::invalid_argument("onebit::sign_matrix::set: (" + std::to_string(r) + ", " +
                                  std::to_string(c) + ") is outside a " +
                                  detail::shape_string(rows_, cols_) + " matrix");
    word_type& w = row(r)[c / word_bits];
    const word_type bit = static_cast<word_type>(word_type{1} << (c % word_bits));
    w = static_cast<word_type>(sign < 0 ? (w | bit) : (w & ~bit));
  }

  // Mask of the bits of the last word of a row that hold elements (all ones if cols fills it).
  word_type last_word_mask() const noexcept {
    const std::size_t tail = cols_ % word_bits;
    return tail == 0 ? static_cast<word_type>(~word_type{0})
                     : static_cast<word_type>((word_type{1} << tail) - 1u);
  }

 private:
  Word* data_ = nullptr;
  std::size_t rows_ = 0, cols_ = 0, stride_bytes_ = 0;
};

// Equal shapes and equal signs; padding bits and strides do not take part.
template <class A, class B,
          class = std::enable_if_t<std::is_same_v<std::remove_const_t<A>, std::remove_const_t<B>>>>
bool operator==(const sign_matrix_view<A>& a, const sign_matrix_view<B>& b) noexcept {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  const std::size_t words = a.words_per_row();
  if (words == 0) return true;
  const auto mask = a.last_word_mask();
  for (std::size_t r = 0; r < a.rows(); ++r) {
    const auto* x = a.row(r);
    const auto* y = b.row(r);
    for (std::size_t w = 0; w + 1 < words; ++w)
      if (x[w] != y[w]) return false;
    if (((x[words - 1] ^ y[words - 1]) & mask) != 0) return false;
  }
  return true;
}
template <class A, class B>
bool operator!=(const sign_matrix_view<A>& a, const sign_matrix_view<B>& b) noexcept {
  return !(a == b);
}

// An owning rows x cols sign matrix in the standard layout (64-byte-aligned rows, padding 0).
template <class Word = std::uint64_t>
class sign_matrix {
  static_assert(detail::is_sign_word<Word>,
                "sign_matrix words are uint8_t, uint16_t, uint32_t or uint64_t");

 public:
  using word_type = Word;
  using view_type = sign_matrix_view<Word>;
  using const_view_type = sign_matrix_view<const Word>;
  static constexpr std::size_t word_bits = 8 * sizeof(Word);

  sign_matrix() = default;

  // All +1.
  sign_matrix(std::size_t rows, std::size_t cols)
      : buffer_(checked_bytes(rows, cols)),
        view_(reinterpret_cast<Word*>(buffer_.data()), buffer_.size(), rows, cols) {}

  // An owning copy of any sign matrix, of any word type: the signs are copied, the padding
  // becomes 0. On a little-endian machine this is a copy of each row's bytes.
  template <class Other>
  explicit sign_matrix(const sign_matrix_view<Other>& other)
      : sign_matrix(other.rows(), other.cols()) {
    const std::size_t bytes_per_row = (cols() + 7) / 8;
    for (std::size_t r = 0; r < rows(); ++r) {
      if constexpr (little_endian()) {
        std::memcpy(view_.row(r), other.row(r), bytes_per_row);
      } else {
        for (std::size_t c = 0; c < cols(); ++c)
          if (other(r, c) < 0) view_.set(r, c, -1);
      }
      clear_padding(r);  // the source's padding may hold anything
    }
  }
  template <class Other>
  explicit sign_matrix(const sign_matrix<Other>& other) : sign_matrix(other.view()) {}

  sign_matrix(const sign_matrix& other)
      : buffer_(other.buffer_),
        view_(reinterpret_cast<Word*>(buffer_.data()), buffer_.size(), other.rows(),
              other.cols()) {}
  sign_matrix& operator=(const sign_matrix& other) {
    if (this != &other) *this = sign_matrix(other);
    return *this;
  }
  sign_matrix(sign_matrix&& other) noexcept
      : buffer_(std::move(other.buffer_)), view_(other.view_) {
    other.view_ = view_type();
  }
  sign_matrix& operator=(sign_matrix&& other) noexcept {
    buffer_ = std::move(other.buffer_);
    view_ = other.view_;
    other.view_ = view_type();
    return *this;
  }

  // sign(v) of a rows x cols row-major float matrix whose rows are row_stride floats apart:
  // -1 where v < 0, +1 where v >= 0 (so sign(0) = sign(-0.0) = +1). NaN has no sign: it throws.
  static sign_matrix from_dense(const float* data, std::size_t rows, std::size_t cols,
                                std::size_t row_stride) {
    const std::string shape = detail::shape_string(rows, cols);
    if (rows != 0 && cols != 0 && data == nullptr)
      throw std::invalid_argument("onebit::sign_matrix::from_dense: null data for a " + shape +
                                  " matrix");
    if (rows > 1 && row_stride < cols)
      throw std::invalid_argument("onebit::sign_matrix::from_dense: row_stride " +
                                  std::to_string(row_stride) + " < cols " +
                                  std::to_string(cols) + " for a " + shape + " matrix");
    sign_matrix m(rows, cols);
    for (std::size_t r = 0; r < rows; ++r) {
      const float* src = data + r * row_stride;
      Word* dst = m.view_.row(r);
      for (std::size_t w = 0; w * word_bits < cols; ++w) {
        Word bits = 0;
        const std::size_t n = std::min(word_bits, cols - w * word_bits);
        for (std::size_t b = 0; b < n; ++b) {
          const float v = src[w * word_bits + b];
          if (v != v)
            throw std::invalid_argument("onebit::sign_matrix::from_dense: NaN at (" +
                                        std::to_string(r) + ", " +
                                        std::to_string(w * word_bits + b) + ") of a " + shape +
                                        " matrix");
          bits = static_cast<Word>(bits | (static_cast<Word>(v < 0.0f) << b));
        }
        dst[w] = bits;
      }
    }
    return m;
  }

  std::size_t rows() const noexcept { return view_.rows(); }
  std::size_t cols() const noexcept { return view_.cols(); }
  std::size_t words_per_row() const noexcept { return view_.words_per_row(); }
  std::size_t stride_bytes() const noexcept { return view_.stride_bytes(); }
  std::size_t stride_words() const noexcept { return view_.stride_words(); }
  std::size_t bytes() const noexcept { return view_.bytes(); }
  bool empty() const noexcept { return view_.empty(); }

  const Word* data() const noexcept { return view_.data(); }
  Word* data() noexcept { return view_.data(); }
  const Word* row(std::size_t r) const noexcept { return view_.row(r); }
  Word* row(std::size_t r) noexcept { return view_.row(r); }

  int operator()(std::size_t r, std::size_t c) const noexcept { return view_(r, c); }
  void set(std::size_t r, std::size_t c, int sign) { view_.set(r, c, sign); }

  view_type view() noexcept { return view_; }
  const_view_type view() const noexcept { return view_; }
  operator const_view_type() const noexcept { return view_; }  // NOLINT: implicit by design

  friend bool operator==(const sign_matrix& a, const sign_matrix& b) noexcept {
    return a.view() == b.view();
  }
  friend bool operator!=(const sign_matrix& a, const sign_matrix& b) noexcept {
    return !(a == b);
  }

 private:
  static constexpr bool little_endian() noexcept {
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
    return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
#else
    return false;  // the element-wise copy is right on any byte order
#endif
  }

  static std::size_t checked_bytes(std::size_t rows, std::size_t cols) {
    const std::size_t stride = sign_row_stride_bytes(cols);
    if (rows != 0 && stride > std::numeric_limits<std::size_t>::max() / rows)
      throw std::invalid_argument("onebit::sign_matrix: " + detail::shape_string(rows, cols) +
                                  " matrix is larger than memory");
    return rows * stride;
  }

  void clear_padding(std::size_t r) noexcept {
    const std::size_t words = words_per_row();
    if (words == 0) return;
    Word* w = view_.row(r);
    w[words - 1] = static_cast<Word>(w[words - 1] & view_.last_word_mask());
    std::memset(w + words, 0, stride_bytes() - words * sizeof(Word));
  }

  detail::aligned_buffer buffer_;
  view_type view_;
};

}  // namespace onebit
