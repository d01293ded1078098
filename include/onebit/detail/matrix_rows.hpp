// A row-major matrix of float, half or bfloat16 read one float row at a time (converted into a
// buffer when it is not float), and the checks every quantiser makes of its arguments.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../bfloat16.hpp"
#include "../half.hpp"
#include "../sign_matrix.hpp"
#include "aligned_buffer.hpp"

namespace onebit {

namespace detail::quant {

template <class T>
inline constexpr bool is_weight_type = std::is_same_v<T, float> || std::is_same_v<T, half> ||
                                       std::is_same_v<T, bfloat16>;

template <class T>
const char* type_name() noexcept {
  if constexpr (std::is_same_v<T, float>) return "float";
  if constexpr (std::is_same_v<T, half>) return "half";
  return "bfloat16";
}

// Zero sizes, a null pointer, a row stride shorter than a row: std::invalid_argument naming
// the function and the shape.
template <class T>
void check_matrix(const char* function, const T* data, std::size_t rows, std::size_t cols,
                  std::size_t row_stride) {
  const std::string where = std::string("onebit::") + function + ": ";
  const std::string shape = shape_string(rows, cols);
  if (rows == 0 || cols == 0)
    throw std::invalid_argument(where + "zero-size matrix " + shape + " (rows x cols)");
  if (data == nullptr) throw std::invalid_argument(where + "null data for a " + shape + " matrix");
  if (rows > 1 && row_stride < cols)
    throw std::invalid_argument(where + "row_stride " + std::to_string(row_stride) + " < cols " +
                                std::to_string(cols) + " for a " + shape + " matrix");
}

// Rows of a checked matrix as floats: a pointer into the data for float, else a conversion
// (exact for both half and bfloat16) into a buffer of its own. One reader per thread.
template <class T>
class row_reader {
 public:
  row_reader(const T* data, std::size_t cols, std::size_t row_stride)
      : data_(data), cols_(cols), stride_(row_stride) {
    if constexpr (!std::is_same_v<T, float>) buffer_.reserve(cols * sizeof(float));
  }
  const float* row(std::size_t r) {
    const T* src = data_ + r * stride_;
    if constexpr (std::is_same_v<T, float>) {
      return src;
    } else {
      float* dst = reinterpret_cast<float*>(buffer_.data());
      to_float(src, dst, cols_);
      return dst;
    }
  }

 private:
  const T* data_;
  std::size_t cols_, stride_;
  aligned_buffer buffer_;
};

// "NaN at (r, c) of a RxC matrix" for the first non-finite value of row r (known to hold one).
inline std::string nonfinite_message(const char* function, const float* row, std::size_t r,
                                     std::size_t rows, std::size_t cols) {
  std::size_t c = 0;
  while (c < cols && row[c] - row[c] == 0.0f) ++c;  // finite x gives x - x = 0
  const bool nan = c < cols && row[c] != row[c];
  return std::string("onebit::") + function + ": " + (nan ? "NaN" : "infinity") + " at (" +
         std::to_string(r) + ", " + std::to_string(c) + ") of a " + shape_string(rows, cols) +
         " matrix";
}

}  // namespace detail::quant

}  // namespace onebit
