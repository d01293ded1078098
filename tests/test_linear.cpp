#include <onebit/linear.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "support.hpp"

namespace test_linear {

TEST_CASE("a 4096x4096 layer stores 16,908,288 bits, 1.0073 bits per parameter") {
  const onebit::linear<> layer{onebit::sign_matrix<>(4096, 4096),
                               std::vector<onebit::half>(4096), std::vector<onebit::half>(4096)};
  CHECK(layer.in_features() == 4096);
  CHECK(layer.out_features() == 4096);
  CHECK(layer.storage_bits() == 16908288u);
  CHECK(layer.bits_per_parameter() == doctest::Approx(16908288.0 / 16785408.0).epsilon(1e-12));
  CHECK(layer.bits_per_parameter() == doctest::Approx(1.0073).epsilon(1e-4));
  CHECK(layer.view().storage_bits() == 16908288u);
  CHECK(layer.W.bytes() == 4096u * 512u);
}

TEST_CASE("storage counts for rectangular layers") {
  const onebit::linear<std::uint8_t> layer{onebit::sign_matrix<std::uint8_t>(11008, 4096),
                                           std::vector<onebit::half>(4096),
                                           std::vector<onebit::half>(11008)};
  CHECK(layer.storage_bits() == 11008u * 4096u + 16u * (4096u + 11008u));
  CHECK(layer.out_features() == 11008);
}

TEST_CASE_TEMPLATE("gemm and gemv on a linear, its view and either Word: single row and batch, float and half", Word, std::uint8_t,
                   std::uint64_t) {
  const auto layer = onebit_test::random_layer<Word>(9, 37);
  const std::size_t batch = 3;
  const std::vector<float> x = onebit_test::gaussian(batch * 37);
  std::vector<onebit::half> xh(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) xh[i] = onebit::to_half(x[i]);

  std::vector<float> y_batch(batch * 9), y_row(9), y_gemm(batch * 9);
  onebit::gemm(layer, x.data(), batch, 37, y_batch.data(), 9);
  onebit::gemm(layer.view(), x.data(), batch, 37, y_gemm.data(), 9, onebit::kernel::automatic);
  CHECK(y_batch == y_gemm);
  onebit::gemv(layer, x.data() + 37, y_row.data());
  CHECK(std::vector<float>(y_batch.begin() + 9, y_batch.begin() + 18) == y_row);

  onebit::gemm(layer, xh.data(), batch, 37, y_batch.data(), 9, onebit::gemm_options{});
  onebit::gemm(layer.view(), xh.data(), batch, 37, y_gemm.data(), 9);
  CHECK(y_batch == y_gemm);
  onebit::gemv(layer.view(), xh.data(), y_row.data());
  CHECK(std::vector<float>(y_batch.begin(), y_batch.begin() + 9) == y_row);
}

TEST_CASE("a layer whose g or h has the wrong length is refused with the shapes") {
  auto layer = onebit_test::random_layer(3, 7);
  std::vector<float> x(7), y(3);
  layer.g.pop_back();
  CHECK_THROWS_WITH_AS(layer.view(), "onebit::linear: g has 6 values for a 3x7 (out x in) layer; it needs 7",
                       std::invalid_argument);
  CHECK_THROWS_AS(onebit::gemv(layer, x.data(), y.data()), std::invalid_argument);
  layer.g.push_back(onebit::to_half(1.0f));
  layer.h.push_back(onebit::to_half(1.0f));
  CHECK_THROWS_WITH_AS(onebit::gemv(layer, x.data(), y.data()),
                       "onebit::linear: h has 4 values for a 3x7 (out x in) layer; it needs 3",
                       std::invalid_argument);
}

}  // namespace test_linear
