// gemm and gemv against a double-precision evaluation of the formula, and every bad input.
#include <onebit/gemm.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "support.hpp"

namespace test_gemm {

namespace {

constexpr std::size_t in_sizes[] = {1, 7, 63, 64, 65, 127, 129, 4095};
constexpr std::size_t out_sizes[] = {1, 7, 63, 64, 65, 127};

// Runs gemm with x and y unaligned (offsets of 1 and 3 elements past a 64-byte boundary) and
// strided (ldx = in + 3, ldy = out + 5), checks every y against the exact value within the
// reference's bound, and that the gaps between y rows are left alone.
template <class Word, class T>
void check_against_exact(const onebit::linear<Word>& layer, std::size_t batch, onebit::kernel k) {
  const std::size_t in = layer.in_features(), out = layer.out_features();
  const std::size_t ldx = in + 3, ldy = out + 5;
  onebit_test::offset_buffer<T> x(batch * ldx, 1);
  onebit_test::offset_buffer<float> y(batch * ldy, 3, -12345.0f);
  const std::vector<float> values = onebit_test::gaussian(batch * ldx);
  for (std::size_t i = 0; i < batch * ldx; ++i) {
    if constexpr (std::is_same_v<T, float>)
      x.data()[i] = values[i];
    else
      x.data()[i] = onebit::to_half(values[i]);
  }
  onebit::gemm(layer, x.data(), batch, ldx, y.data(), ldy, k);
  const auto exact = onebit_test::exact_gemm(layer, x.data(), batch, ldx);

  std::size_t bad = 0, gaps_touched = 0;
  double worst = 0;
  for (std::size_t b = 0; b < batch; ++b) {
    for (std::size_t j = 0; j < out; ++j) {
      const double got = y.data()[b * ldy + j], want = exact.y[b * out + j];
      // reference: one float rounding per product and one at the end (kernels/reference.hpp);
      // float-summing kernels: (n + 2) u S (kernels/add_only.hpp).
      const double bound =
          k == onebit::kernel::reference
              ? std::ldexp(1.0, -23) * (exact.scale[b * out + j] + std::fabs(want))
              : static_cast<double>(in + 2) * std::ldexp(1.0, -24) * exact.scale[b * out + j];
      const double err = std::fabs(got - want);
      if (!(err <= bound)) ++bad;
      if (bound > 0) worst = std::max(worst, err / bound);
    }
    for (std::size_t j = out; j < ldy && b + 1 < batch; ++j)
      gaps_touched += y.data()[b * ldy + j] != -12345.0f;
  }
  CHECK_MESSAGE(bad == 0, out, "x", in, " batch ", batch, ": ", bad,
                " outputs outside the bound; worst error/bound ", worst);
  CHECK(gaps_touched == 0);
}

}  // namespace

TEST_CASE_TEMPLATE("reference gemm equals the exact formula on odd shapes, float input", Word,
                   std::uint8_t, std::uint16_t, std::uint32_t, std::uint64_t) {
  for (std::size_t out : out_sizes)
    for (std::size_t in : in_sizes) {
      auto layer = onebit_test::random_layer<Word>(out, in);
      onebit_test::fill_padding_with_garbage(layer.W);
      for (std::size_t batch : {1u, 2u, 5u})
        check_against_exact<Word, float>(layer, batch, onebit::kernel::reference);
    }
}

TEST_CASE("reference gemm equals the exact formula for every batch 1 to 70, half and float") {
  auto layer = onebit_test::random_layer(65, 127);
  onebit_test::fill_padding_with_garbage(layer.W);
  for (std::size_t batch = 1; batch <= 70; ++batch) {
    check_against_exact<std::uint64_t, float>(layer, batch, onebit::kernel::automatic);
    check_against_exact<std::uint64_t, onebit::half>(layer, batch, onebit::kernel::reference);
  }
}

TEST_CASE("a 4097x4097 layer, batch 2") {
  const auto layer = onebit_test::random_layer<std::uint32_t>(4097, 4097);
  check_against_exact<std::uint32_t, onebit::half>(layer, 2, onebit::kernel::automatic);
}

TEST_CASE_TEMPLATE("garbage in the padding bits changes no result", Word, std::uint8_t,
                   std::uint16_t, std::uint32_t, std::uint64_t) {
  for (std::size_t in : in_sizes) {
    const auto clean = onebit_test::random_layer<Word>(33, in);
    auto dirty = clean;
    onebit_test::fill_padding_with_garbage(dirty.W);
    const std::vector<float> x = onebit_test::gaussian(4 * in);
    std::vector<float> y_clean(4 * 33), y_dirty(4 * 33);
    for (onebit::kernel k : onebit::all_kernels) {
      onebit::gemm(clean, x.data(), 4, in, y_clean.data(), 33, k);
      onebit::gemm(dirty, x.data(), 4, in, y_dirty.data(), 33, k);
      CHECK_MESSAGE(y_clean == y_dirty, "in ", in, ", kernel ", onebit::to_string(k));
    }
  }
}

TEST_CASE("gemv is gemm of one row") {
  const auto layer = onebit_test::random_layer(70, 300);
  const std::vector<float> x = onebit_test::gaussian(300);
  std::vector<float> y1(70), y2(70);
  onebit::gemv(layer, x.data(), y1.data());
  onebit::gemm(layer, x.data(), 1, 300, y2.data(), 70);
  CHECK(y1 == y2);
}

TEST_CASE("special values pass through: zero activations give zero, inf gives inf") {
  auto layer = onebit_test::random_layer(4, 10);
  std::vector<float> x(10, 0.0f), y(4, 1.0f);
  onebit::gemv(layer, x.data(), y.data());
  for (float v : y) CHECK(v == 0.0f);
  for (auto& g : layer.g) g = onebit::to_half(1.0f);
  for (auto& h : layer.h) h = onebit::to_half(1.0f);
  x[3] = std::numeric_limits<float>::infinity();
  onebit::gemv(layer, x.data(), y.data());
  for (std::size_t j = 0; j < 4; ++j) CHECK(y[j] == layer.W(j, 3) * x[3]);
}

TEST_CASE("bad input throws std::invalid_argument naming the shapes") {
  const auto layer = onebit_test::random_layer(3, 7);
  std::vector<float> x(2 * 7), y(2 * 3);
  using onebit::gemm;
  CHECK_THROWS_WITH_AS(gemm(layer, static_cast<const float*>(nullptr), 2, 7, y.data(), 3),
                       "onebit::gemm: for a 3x7 (out x in) layer and batch 2, x is null",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(gemm(layer, x.data(), 2, 7, nullptr, 3),
                       doctest::Contains("y is null"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(gemm(layer, x.data(), 2, 6, y.data(), 3),
                       "onebit::gemm: for a 3x7 (out x in) layer and batch 2, ldx 6 < in 7",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(gemm(layer, x.data(), 2, 7, y.data(), 2),
                       "onebit::gemm: for a 3x7 (out x in) layer and batch 2, ldy 2 < out 3",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(gemm(layer, x.data(), 2, 7, reinterpret_cast<float*>(x.data()) + 5, 3),
                       doctest::Contains("y overlaps x"), std::invalid_argument);

  const onebit::linear<> empty{onebit::sign_matrix<>(0, 7), std::vector<onebit::half>(7), {}};
  CHECK_THROWS_WITH_AS(gemm(empty, x.data(), 1, 7, y.data(), 3),
                       "onebit::gemm: zero-size layer 0x7 (out x in)", std::invalid_argument);
  onebit::linear_view<> no_h = layer.view();
  no_h.h = nullptr;
  CHECK_THROWS_WITH_AS(gemm(no_h, x.data(), 1, 7, y.data(), 3),
                       "onebit::gemm: 3x7 layer has a null h", std::invalid_argument);
  auto short_g = layer;
  short_g.g.resize(6);
  CHECK_THROWS_WITH_AS(onebit::gemv(short_g, x.data(), y.data()),
                       doctest::Contains("g has 6 values for a 3x7"), std::invalid_argument);
  // batch 0 is a valid no-op.
  CHECK_NOTHROW(gemm(layer, x.data(), 0, 7, y.data(), 3));
}

}  // namespace test_gemm
