#include <onebit/sign_matrix.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "support.hpp"

namespace test_sign_matrix {

using onebit::sign_matrix;
using onebit::sign_matrix_view;

namespace {

std::vector<std::size_t> packing_sizes() {
  std::vector<std::size_t> sizes;
  for (std::size_t n = 1; n <= 130; ++n) sizes.push_back(n);
  for (std::size_t n : {4095u, 4096u, 4097u}) sizes.push_back(n);
  return sizes;
}

// Values whose signs cover every case: negatives, positives, +0, -0, tiny and huge magnitudes.
std::vector<float> dense_values(std::size_t rows, std::size_t cols, std::size_t row_stride) {
  std::uniform_int_distribution<int> pick(0, 7);
  std::vector<float> v(rows * row_stride, std::numeric_limits<float>::quiet_NaN());
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) {
      float x = 0;
      switch (pick(onebit_test::rng())) {
        case 0: x = 0.0f; break;
        case 1: x = -0.0f; break;
        case 2: x = -std::numeric_limits<float>::denorm_min(); break;
        case 3: x = std::numeric_limits<float>::infinity(); break;
        case 4: x = -std::numeric_limits<float>::max(); break;
        default: x = onebit_test::gaussian(1)[0];
      }
      v[r * row_stride + c] = x;  // NaN stays only in the gaps past cols: never read
    }
  return v;
}

template <class Word>
void check_round_trip(std::size_t rows, std::size_t cols) {
  const std::size_t row_stride = cols + 3;
  const std::vector<float> dense = dense_values(rows, cols, row_stride);
  const auto m = sign_matrix<Word>::from_dense(dense.data(), rows, cols, row_stride);
  constexpr std::size_t bits = 8 * sizeof(Word);

  REQUIRE(m.rows() == rows);
  REQUIRE(m.cols() == cols);
  REQUIRE(m.words_per_row() == (cols + bits - 1) / bits);
  REQUIRE(m.stride_bytes() == ((cols + 7) / 8 + 63) / 64 * 64);
  REQUIRE(m.bytes() == rows * m.stride_bytes());
  REQUIRE(reinterpret_cast<std::uintptr_t>(m.data()) % 64 == 0);

  const auto* bytes = reinterpret_cast<const unsigned char*>(m.data());
  bool all_match = true;
  for (std::size_t r = 0; r < rows; ++r) {
    const unsigned char* row = bytes + r * m.stride_bytes();
    for (std::size_t c = 0; c < cols; ++c) {
      const int expected = std::signbit(dense[r * row_stride + c]) &&
                                   dense[r * row_stride + c] != 0.0f
                               ? -1
                               : 1;
      // The layout, read byte by byte: bit c % 8 of byte c / 8, bit 1 meaning -1.
      const int from_bytes = (row[c / 8] >> (c % 8)) & 1 ? -1 : 1;
      all_match = all_match && m(r, c) == expected && from_bytes == expected;
    }
    for (std::size_t c = cols; c < m.stride_bytes() * 8; ++c)
      all_match = all_match && ((row[c / 8] >> (c % 8)) & 1) == 0;  // padding written as 0
  }
  CHECK_MESSAGE(all_match, "word bits ", bits, ", ", rows, "x", cols);
}

template <class Word>
void round_trips_for_all_sizes() {
  for (std::size_t cols : packing_sizes()) check_round_trip<Word>(3, cols);
  for (std::size_t rows : {1u, 2u, 65u}) check_round_trip<Word>(rows, 33);
}

}  // namespace

TEST_CASE_TEMPLATE("from_dense packs every size in the documented bit layout", Word,
                   std::uint8_t, std::uint16_t, std::uint32_t, std::uint64_t) {
  round_trips_for_all_sizes<Word>();
}

TEST_CASE_TEMPLATE("set and element access round-trip, padding untouched", Word, std::uint8_t,
                   std::uint16_t, std::uint32_t, std::uint64_t) {
  for (std::size_t cols : packing_sizes()) {
    sign_matrix<Word> m(2, cols);
    std::vector<int> signs(2 * cols);
    std::bernoulli_distribution coin(0.5);
    for (std::size_t r = 0; r < 2; ++r)
      for (std::size_t c = 0; c < cols; ++c) {
        REQUIRE(m(r, c) == 1);  // a new matrix is all +1
        signs[r * cols + c] = coin(onebit_test::rng()) ? -1 : 1;
        m.set(r, c, signs[r * cols + c]);
      }
    bool ok = true;
    for (std::size_t r = 0; r < 2; ++r)
      for (std::size_t c = 0; c < cols; ++c) ok = ok && m(r, c) == signs[r * cols + c];
    std::vector<float> dense(signs.begin(), signs.end());
    ok = ok && m == sign_matrix<Word>::from_dense(dense.data(), 2, cols, cols);
    CHECK_MESSAGE(ok, "cols ", cols);
  }
}

TEST_CASE_TEMPLATE("conversion between word types keeps the bytes", Word, std::uint8_t,
                   std::uint16_t, std::uint32_t, std::uint64_t) {
  for (std::size_t cols : packing_sizes()) {
    const std::vector<float> dense = dense_values(3, cols, cols);
    const auto m64 = sign_matrix<std::uint64_t>::from_dense(dense.data(), 3, cols, cols);
    const auto direct = sign_matrix<Word>::from_dense(dense.data(), 3, cols, cols);
    const sign_matrix<Word> converted(m64);
    const sign_matrix<std::uint64_t> back(converted);
    REQUIRE(converted.stride_bytes() == m64.stride_bytes());
    CHECK(converted == direct);
    CHECK(back == m64);
    // Little-endian: every byte, padding included, is the same whatever the word type.
    CHECK(std::memcmp(converted.data(), m64.data(), m64.bytes()) == 0);
    CHECK(std::memcmp(direct.data(), m64.data(), m64.bytes()) == 0);
  }
}

TEST_CASE_TEMPLATE("equality compares signs, not padding", Word, std::uint8_t, std::uint16_t,
                   std::uint32_t, std::uint64_t) {
  for (std::size_t cols : {1u, 7u, 63u, 64u, 65u, 127u, 4095u}) {
    const std::vector<float> dense = dense_values(4, cols, cols);
    const auto a = sign_matrix<Word>::from_dense(dense.data(), 4, cols, cols);
    auto b = a;
    onebit_test::fill_padding_with_garbage(b);
    CHECK(a == b);
    const sign_matrix<Word> cleaned(b.view());  // an owning copy writes padding as 0 again
    CHECK(std::memcmp(cleaned.data(), a.data(), a.bytes()) == 0);
    b.set(3, cols - 1, -a(3, cols - 1));
    CHECK(a != b);
    CHECK(a != sign_matrix<Word>(4, cols + 1));
    CHECK(a != sign_matrix<Word>(5, cols));
  }
}

TEST_CASE("copies are deep, moves leave an empty matrix") {
  auto a = onebit_test::random_layer(5, 70).W;
  auto b = a;
  CHECK(b.data() != a.data());
  CHECK(a == b);
  b.set(0, 0, -a(0, 0));
  CHECK(a != b);
  const auto* p = a.data();
  auto c = std::move(a);
  CHECK(c.data() == p);
  CHECK(a.rows() == 0);  // NOLINT(bugprone-use-after-move): the documented moved-from state
  CHECK(a.empty());
  a = c;
  CHECK(a == c);
}

TEST_CASE("views over a caller's buffer read and write the same bits") {
  const std::size_t rows = 5, cols = 100, stride = 128;  // a wider stride than the standard 64
  alignas(64) static unsigned char buffer[rows * stride + 64];
  std::memset(buffer, 0, sizeof buffer);
  using W32 = std::uint32_t;
  sign_matrix_view<W32> writable(reinterpret_cast<W32*>(buffer), sizeof buffer, rows, cols,
                                 stride);
  writable.set(4, 99, -1);
  writable.set(0, 0, -1);
  CHECK(buffer[4 * stride + 99 / 8] == (1u << (99 % 8)));
  CHECK(buffer[0] == 1u);
  sign_matrix_view<const W32> readable = writable;
  CHECK(readable(4, 99) == -1);
  CHECK(readable(4, 98) == 1);
  CHECK(readable.stride_bytes() == stride);
  CHECK(readable.bytes() == rows * stride);
  const sign_matrix<W32> copy(readable);  // owning copy in the standard (64-byte) stride
  CHECK(copy.stride_bytes() == 64);
  CHECK(copy == sign_matrix<W32>(copy));
  CHECK(copy.view() == readable);
  // A byte view reads the same signs: the bytes of a row do not depend on the word type.
  sign_matrix_view<const std::uint8_t> bytes(buffer, sizeof buffer, rows, cols, stride);
  CHECK(bytes(4, 99) == -1);
  CHECK(bytes(0, 0) == -1);
  CHECK(sign_matrix<W32>(bytes) == copy);
}

TEST_CASE("views reject buffers that are null, misaligned, too small or badly strided") {
  alignas(64) static std::uint64_t buffer[64];
  const std::size_t bytes = sizeof buffer;
  using view = sign_matrix_view<const std::uint64_t>;
  CHECK_NOTHROW(view(buffer, bytes, 8, 512));
  CHECK_THROWS_WITH_AS(view(nullptr, bytes, 2, 3), doctest::Contains("null buffer for a 2x3"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(view(reinterpret_cast<const std::uint64_t*>(
                                reinterpret_cast<const char*>(buffer) + 8),
                            bytes - 8, 2, 3),
                       doctest::Contains("misaligned"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(view(buffer, bytes, 9, 512), doctest::Contains("too small for a 9x512"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(view(buffer, bytes, 2, 600, 64), doctest::Contains("stride_bytes 64"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(view(buffer, bytes, 2, 3, 96), doctest::Contains("multiple of 64"),
                       std::invalid_argument);
  CHECK_THROWS_AS(view(buffer, bytes, std::numeric_limits<std::size_t>::max() / 32, 3),
                  std::invalid_argument);
  CHECK_NOTHROW(view(nullptr, 0, 0, 0));  // an empty view needs no memory
}

TEST_CASE("from_dense and set reject bad input with the position and shape") {
  std::vector<float> w(12, 1.0f);
  w[7] = std::nanf("");
  CHECK_THROWS_WITH_AS(sign_matrix<>::from_dense(w.data(), 3, 4, 4),
                       doctest::Contains("NaN at (1, 3) of a 3x4"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(sign_matrix<>::from_dense(nullptr, 3, 4, 4),
                       doctest::Contains("null data for a 3x4"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(sign_matrix<>::from_dense(w.data(), 3, 4, 3),
                       doctest::Contains("row_stride 3 < cols 4"), std::invalid_argument);
  sign_matrix<std::uint16_t> m(2, 3);
  CHECK_THROWS_WITH_AS(m.set(0, 0, 0), doctest::Contains("sign 0 is not +1 or -1"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(m.set(2, 0, 1), doctest::Contains("(2, 0) is outside a 2x3"),
                       std::invalid_argument);
  CHECK_THROWS_AS(sign_matrix<>(std::numeric_limits<std::size_t>::max() / 2, 1024),
                  std::invalid_argument);
}

}  // namespace test_sign_matrix
