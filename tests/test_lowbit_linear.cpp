// The low-bit layer (k sign-plane products plus the Σx correction) against the exact product
// with the dequantised weights, within the bound of lowbit_linear.hpp, on every instruction-set
// path this CPU runs, plain and packed; row ranges, strides, batches, half input, bad input.
#include <onebit/lowbit_linear.hpp>
#include <onebit/quant/products.hpp>
#include <onebit/quant/rtn.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_lowbit_linear {

namespace {

using onebit::isa;
using onebit::kernel;
using onebit::row_major_matrix;

row_major_matrix gaussian_matrix(std::size_t rows, std::size_t cols) {
  const std::vector<float> v = onebit_test::gaussian(rows * cols);
  row_major_matrix m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  std::copy(v.begin(), v.end(), m.data());
  return m;
}

template <class T>
double value(T v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return onebit::to_float(v);
}

double worst_seen = 0;  // the largest error/bound of any case, reported at the end

struct outcome {
  std::size_t outside = 0, gaps_touched = 0;
  double worst_ratio = 0;  // error / bound
};

// y of the layer against Σ_i x_i·Ŵ(j, i) in double with the float dequantised Ŵ, within
// (3·n_c + groups + 9)·u·T_j; x and y strided and unaligned.
template <class T>
outcome run_case(const onebit::lowbit_matrix& m, const onebit::lowbit_linear& layer,
                 const std::vector<T>& x, std::size_t batch, std::size_t ldx) {
  const std::size_t out = m.rows(), in = m.cols(), ldy = out + 5;
  const row_major_matrix w = onebit::dequantized(m);
  onebit_test::offset_buffer<float> y(batch * ldy, 3, -777.0f);
  onebit::gemm(layer, x.data(), batch, ldx, y.data(), ldy);
  const double k = m.bits(), middle = (std::pow(2.0, k) - 1) / 2;
  const double n_c = k * static_cast<double>(m.group_size());
  const double terms = 3 * n_c + static_cast<double>(m.groups_per_row()) + 9;
  outcome o;
  for (std::size_t b = 0; b < batch; ++b) {
    for (std::size_t j = 0; j < out; ++j) {
      double exact = 0, t = 0;
      for (std::size_t g = 0; g < m.groups_per_row(); ++g) {
        const std::size_t c0 = g * m.group_size(), c1 = std::min(in, c0 + m.group_size());
        double mag = 0;
        for (std::size_t i = c0; i < c1; ++i) {
          const double xi = value(x[b * ldx + i]);
          exact += xi * w(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(i));
          mag += std::fabs(xi);
        }
        const double c = middle - m.zero(j, g);
        t += std::fabs(m.scale(j, g)) * (middle + std::fabs(c)) * mag;
      }
      const double bound = terms * 0x1p-24 * t;
      const double err = std::fabs(y.data()[b * ldy + j] - exact);
      if (!(err <= bound)) ++o.outside;
      if (bound > 0) o.worst_ratio = std::max(o.worst_ratio, err / bound);
    }
    for (std::size_t j = out; j < ldy && b + 1 < batch; ++j) o.gaps_touched += y.data()[b * ldy + j] != -777.0f;
  }
  return o;
}

template <class T>
std::vector<T> activations(std::size_t count) {
  const std::vector<float> v = onebit_test::gaussian(count);
  std::vector<T> out(count);
  for (std::size_t i = 0; i < count; ++i) {
    if constexpr (std::is_same_v<T, float>)
      out[i] = v[i];
    else
      out[i] = onebit::to_half(v[i]);
  }
  return out;
}

template <class T>
void check_every_path(const onebit::lowbit_matrix& m, std::initializer_list<std::size_t> batches,
                      std::initializer_list<kernel> kernels = {kernel::automatic, kernel::reference}) {
  const std::size_t in = m.cols(), ldx = in + 3;
  const std::size_t max_batch = *std::max_element(batches.begin(), batches.end());
  const std::vector<T> x = activations<T>(max_batch * ldx);
  for (isa path : onebit_test::runnable_paths())
    for (kernel k : kernels)
      for (bool packed : {false, true}) {
        const onebit::lowbit_linear layer(m, {k, path, packed});
        CHECK(layer.path() == path);
        for (std::size_t batch : batches) {
          const outcome o = run_case(m, layer, x, batch, ldx);
          CHECK_MESSAGE(o.outside == 0, std::string(onebit::to_string(path)), " ",
                        std::string(onebit::to_string(k)), packed ? " packed " : " plain ", m.rows(),
                        "x", in, " bits ", m.bits(), " group ", m.group(), " batch ", batch, ": ",
                        o.outside, " outputs outside the bound, worst error/bound ", o.worst_ratio);
          CHECK(o.gaps_touched == 0);
          worst_seen = std::max(worst_seen, o.worst_ratio);
        }
      }
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no exception";
}
bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("lowbit_linear equals the dequantised product on every path: bits 1..8, per row") {
  for (int bits = 1; bits <= 8; ++bits)
    for (bool symmetric : {false, true}) {
      if (symmetric && bits == 1) continue;
      const onebit::lowbit_matrix m = onebit::rtn(gaussian_matrix(37, 131), {bits, 0, symmetric});
      check_every_path<float>(m, {1, 3});
    }
}

TEST_CASE("lowbit_linear with groups 1, 7, 32, 128, cols and a non-dividing one") {
  for (std::size_t group : {1u, 7u, 32u, 128u, 300u, 100u})
    for (int bits : {2, 3, 4}) {
      const onebit::lowbit_matrix m = onebit::rtn(gaussian_matrix(70, 300), {bits, group, bits == 3});
      check_every_path<float>(m, {1, 2, 8}, {kernel::automatic});
    }
}

TEST_CASE("lowbit_linear: half activations, batch 1 to 17, odd shapes") {
  for (std::size_t out : {1u, 7u, 65u, 300u})
    for (std::size_t in : {1u, 5u, 64u, 129u}) {
      const onebit::lowbit_matrix m = onebit::rtn(gaussian_matrix(out, in), {4, in > 32 ? 32u : 0u, false});
      check_every_path<onebit::half>(m, {1, 5, 17}, {kernel::automatic});
    }
}

TEST_CASE("lowbit_linear: learned-rounding style matrices (from_codes) and large zero points") {
  // Codes, scales and zeros from outside rtn: zeros beyond the code range (a one-signed group).
  const std::size_t rows = 20, cols = 50;
  std::vector<std::uint8_t> q(rows * cols);
  std::vector<float> s(rows * 2), z(rows * 2);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = static_cast<std::uint8_t>((i * 37) % 16);
  for (std::size_t i = 0; i < s.size(); ++i) {
    s[i] = 0.01f * static_cast<float>(i + 1);
    z[i] = static_cast<float>(static_cast<int>(i % 5) * 9 - 20);  // -20 .. 16
  }
  const onebit::lowbit_matrix m = onebit::lowbit_matrix::from_codes(q.data(), rows, cols, cols, 4, 25, s.data(), z.data());
  check_every_path<float>(m, {1, 4});
}

TEST_CASE("row ranges over random splits equal the whole call, any order, plain and packed") {
  std::mt19937_64& rng = onebit_test::rng();
  const onebit::lowbit_matrix m = onebit::rtn(gaussian_matrix(700, 96), {3, 32, false});
  for (bool packed : {false, true}) {
    const onebit::lowbit_linear layer(m, {kernel::automatic, std::nullopt, packed});
    for (std::size_t batch : {1u, 4u}) {
      const std::vector<float> x = onebit_test::gaussian(batch * 96);
      std::vector<float> whole(batch * 700), parts(batch * 700, -1.0f);
      onebit::gemm(layer, x.data(), batch, 96, whole.data(), 700);
      const onebit::prepared_lowbit_gemm p = onebit::prepare(layer, x.data(), batch, 96, parts.data(), 700);
      std::vector<std::size_t> cuts{0, 700};
      std::uniform_int_distribution<std::size_t> cut(0, 700);
      for (int i = 0; i < 6; ++i) cuts.push_back(cut(rng));
      std::sort(cuts.begin(), cuts.end());
      std::vector<std::size_t> order(cuts.size() - 1);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      for (std::size_t i : order) p.run_rows(cuts[i], cuts[i + 1]);
      p.run_rows(700, 800);
      CHECK(whole == parts);
    }
  }
}

TEST_CASE("a prepared low-bit product prepares again; forward, gemv and the Eigen overload agree") {
  const onebit::lowbit_matrix m = onebit::rtn(gaussian_matrix(33, 70), {2, 16, false});
  const onebit::lowbit_linear layer(m);
  CHECK(layer.in_features() == 70);
  CHECK(layer.out_features() == 33);
  CHECK(layer.bits() == 2);
  CHECK(layer.groups() == 5);
  onebit::prepared_lowbit_gemm p;
  for (std::size_t batch : {3u, 1u, 5u, 0u}) {
    const std::vector<float> x = onebit_test::gaussian(batch * 70 + 1);
    std::vector<float> y1(batch * 33 + 1, 0.0f), y2(batch * 33 + 1, 0.0f);
    p.prepare(layer, x.data(), batch, 70, y1.data(), 33);
    p.run();
    onebit::gemm(layer, x.data(), batch, 70, y2.data(), 33);
    CHECK(y1 == y2);
    CHECK(p.batch() == batch);
  }
  const row_major_matrix x = gaussian_matrix(4, 70);
  const row_major_matrix y = onebit::gemm(layer, x);
  std::vector<float> row(33);
  onebit::gemv(layer, x.data() + 70, row.data());
  for (Eigen::Index j = 0; j < 33; ++j) CHECK(y(1, j) == row[static_cast<std::size_t>(j)]);
  const Eigen::MatrixXd exact = x.cast<double>() * onebit::dequantized(m).cast<double>().transpose();
  CHECK((y.cast<double>() - exact).cwiseAbs().maxCoeff() <= 1e-4 * exact.cwiseAbs().maxCoeff());
}

TEST_CASE("the int8 and binary kernels run the planes too, as approximations") {
  const onebit::lowbit_matrix m = onebit::rtn(gaussian_matrix(64, 256), {4, 64, false});
  const row_major_matrix x = gaussian_matrix(3, 256);
  const Eigen::MatrixXd exact = x.cast<double>() * onebit::dequantized(m).cast<double>().transpose();
  for (kernel k : {kernel::popcount_int8, kernel::lut, kernel::popcount_binary}) {
    const onebit::lowbit_linear layer(m, {k, std::nullopt, true});
    const double rel = (onebit::gemm(layer, x).cast<double>() - exact).norm() / exact.norm();
    MESSAGE(std::string(onebit::to_string(k)), ": relative error ", rel, " against the dequantised product");
    CHECK(rel < (k == kernel::popcount_binary ? 1.0 : 0.05));
  }
  MESSAGE("exact kernels: the largest error of all cases above is ", worst_seen,
          " of the stated bound");
}

TEST_CASE("lowbit_linear bad input throws std::invalid_argument naming the shapes") {
  const onebit::lowbit_matrix m = onebit::rtn(gaussian_matrix(6, 10), {4, 0, false});
  const onebit::lowbit_linear layer(m);
  std::vector<float> x(30), y(30);
  CHECK(contains(message_of([&] { onebit::gemm(layer, static_cast<const float*>(nullptr), 1, 10, y.data(), 6); }),
                 "for a 6x10 (out x in) layer and batch 1, x is null"));
  CHECK(contains(message_of([&] { onebit::gemm(layer, x.data(), 1, 10, nullptr, 6); }), "y is null"));
  CHECK(contains(message_of([&] { onebit::gemm(layer, x.data(), 2, 9, y.data(), 6); }), "ldx 9 < in 10"));
  CHECK(contains(message_of([&] { onebit::gemm(layer, x.data(), 2, 10, y.data(), 5); }), "ldy 5 < out 6"));
  CHECK(contains(message_of([&] { onebit::gemm(layer, x.data(), 2, 10, x.data() + 5, 6); }), "overlaps"));
  CHECK(contains(message_of([&] { onebit::gemm(layer, gaussian_matrix(2, 9)); }), "x has 9 columns"));
  CHECK(contains(message_of([&] { onebit::lowbit_linear empty{onebit::lowbit_matrix()}; }), "empty"));
  CHECK(contains(message_of([&] { onebit::gemm(onebit::lowbit_linear(), x.data(), 1, 10, y.data(), 6); }),
                 "empty layer"));
  // A path this CPU cannot run, when there is one.
  for (isa path : onebit::all_isas)
    if (!onebit::supports(path)) {
      CHECK(contains(message_of([&] { onebit::lowbit_linear bad(m, {kernel::automatic, path, true}); }),
                     "lacks"));
      break;
    }
}

}  // namespace test_lowbit_linear
