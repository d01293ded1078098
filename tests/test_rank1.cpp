// rank1 (power iteration and rank-1 NMF) against Eigen's JacobiSVD, on every instruction-set path
// this CPU runs; reproducibility, inputs of every type and stride, extreme magnitudes, and bad
// input.
#include <onebit/quant/rank1.hpp>

#include <doctest/doctest.h>

#include <Eigen/SVD>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_rank1 {

namespace {

using onebit::isa;
using onebit::rank1_method;
using onebit::row_major_matrix;

// |G| ⊙ (row and column structure): non-negative, a clear top singular value.
row_major_matrix structured(std::size_t rows, std::size_t cols, bool magnitudes = true) {
  std::lognormal_distribution<float> scale(0.0f, 0.5f);
  std::vector<float> rs(rows), cs(cols);
  for (float& v : rs) v = scale(onebit_test::rng());
  for (float& v : cs) v = scale(onebit_test::rng());
  const std::vector<float> g = onebit_test::gaussian(rows * cols);
  row_major_matrix m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) {
      const float v = g[r * cols + c] * rs[r] * cs[c];
      m(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)) = magnitudes ? std::fabs(v) : v;
    }
  return m;
}

struct oracle {
  double sigma, sigma2, norm;
  Eigen::VectorXd u, v;
};

oracle svd_of(const row_major_matrix& a) {
  const Eigen::MatrixXd d = a.cast<double>();
  // JacobiSVD, not BDCSVD: as exact on these small matrices, and 9 s of compile instead of 37.
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(d, Eigen::ComputeThinU | Eigen::ComputeThinV);
  oracle o;
  o.sigma = svd.singularValues()[0];
  o.sigma2 = svd.singularValues().size() > 1 ? svd.singularValues()[1] : 0.0;
  o.norm = d.norm();
  o.u = svd.matrixU().col(0);
  o.v = svd.matrixV().col(0);
  if (o.u.sum() < 0) {  // Perron–Frobenius: the non-negative pair
    o.u = -o.u;
    o.v = -o.v;
  }
  return o;
}

double exact_error(const oracle& o) {
  const double f = 1.0 - (o.sigma * o.sigma) / (o.norm * o.norm);
  return std::sqrt(f > 0 ? f : 0.0);
}

}  // namespace

TEST_CASE("rank1 equals the SVD's top triplet on small matrices, both methods, every path") {
  const std::size_t shapes[][2] = {{1, 1}, {1, 7}, {7, 1}, {5, 3}, {17, 33}, {64, 65}, {100, 37}, {3, 200}};
  for (const auto& shape : shapes) {
    const row_major_matrix a = structured(shape[0], shape[1]);
    const oracle o = svd_of(a);
    for (isa path : onebit_test::runnable_paths()) {
      for (rank1_method method : {rank1_method::svd, rank1_method::nmf}) {
        onebit::rank1_options opt;
        opt.method = method;
        opt.path = path;
        opt.tolerance = 1e-10;  // below the float floor: runs to it (or to the cap)
        opt.max_iterations = 300;
        const onebit::rank1_result r = onebit::rank1(a, opt);
        INFO(shape[0], "x", shape[1], " ", onebit::to_string(path), " ", onebit::to_string(method),
             " sigma ", r.sigma, " vs ", o.sigma, " (sigma2 ", o.sigma2, "), ", r.iterations,
             " iterations");
        CHECK(r.sigma == doctest::Approx(o.sigma).epsilon(2e-6));
        CHECK(r.frobenius_norm == doctest::Approx(o.norm).epsilon(1e-6));
        // The identity ‖A − a bᵀ‖² = ‖A‖² − σ² holds to float sums: err² to ~1e-7.
        const double exact = exact_error(o);
        CHECK(std::fabs(r.relative_error * r.relative_error - exact * exact) <= 1e-6);
        // Balanced: ‖a‖ = ‖b‖ = √σ; directions those of u and v; a bᵀ = σ u vᵀ.
        const Eigen::VectorXd ad = r.a.cast<double>(), bd = r.b.cast<double>();
        CHECK(ad.norm() == doctest::Approx(std::sqrt(r.sigma)).epsilon(1e-5));
        CHECK(bd.norm() == doctest::Approx(std::sqrt(r.sigma)).epsilon(1e-5));
        CHECK(r.a.minCoeff() >= 0.0f);
        CHECK(r.b.minCoeff() >= 0.0f);
        CHECK((ad / ad.norm() - o.u).norm() <= 1e-4);
        CHECK((bd / bd.norm() - o.v).norm() <= 1e-4);
        const Eigen::MatrixXd approx = ad * bd.transpose(), best = o.sigma * o.u * o.v.transpose();
        CHECK((approx - best).norm() <= 1e-4 * o.sigma);
        // Its error, measured directly, is the reported one.
        const double direct = (a.cast<double>() - approx).norm() / o.norm;
        CHECK(std::fabs(direct * direct - r.relative_error * r.relative_error) <= 1e-6);
      }
    }
  }
}

TEST_CASE("rank1 converges with the default options and both methods reach the same error") {
  for (std::size_t rows : {8u, 50u, 300u}) {
    const row_major_matrix a = structured(rows, 97);
    const oracle o = svd_of(a);
    const onebit::rank1_result s = onebit::rank1_svd(a), n = onebit::rank1_nmf(a);
    INFO(rows, "x97: svd ", s.iterations, " iterations, nmf ", n.iterations, ", sigma2/sigma ",
         o.sigma2 / o.sigma);
    CHECK(s.converged);
    CHECK(n.converged);
    CHECK(s.iterations < 30);
    CHECK(s.sigma == doctest::Approx(o.sigma).epsilon(1e-5));
    CHECK(n.sigma == doctest::Approx(o.sigma).epsilon(1e-5));
    CHECK(std::fabs(s.relative_error - exact_error(o)) <= 1e-4);
    CHECK(std::fabs(n.relative_error - exact_error(o)) <= 1e-4);
  }
}

TEST_CASE("a rank-1 matrix is reproduced, and an equal top pair still gives the least error") {
  std::vector<float> u{0.5f, 2.0f, 0.0f, 1.25f}, v{3.0f, 0.25f, 1.0f};
  row_major_matrix a(4, 3);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 3; ++c) a(r, c) = u[static_cast<std::size_t>(r)] * v[static_cast<std::size_t>(c)];
  for (rank1_method method : {rank1_method::svd, rank1_method::nmf}) {
    onebit::rank1_options opt;
    opt.method = method;
    const onebit::rank1_result r = onebit::rank1(a, opt);
    const row_major_matrix approx = r.a * r.b.transpose();
    CHECK((approx - a).norm() <= 1e-6 * a.norm());
    CHECK(r.relative_error <= 1e-3);  // by the identity: float sums leave ~sqrt(1e-7)
    CHECK(r.a[2] == 0.0f);
  }
  // σ₁ = σ₂ = ... = 1: every unit direction is optimal, with error sqrt(1 − 1/4).
  const row_major_matrix eye = row_major_matrix::Identity(4, 4);
  const onebit::rank1_result r = onebit::rank1(eye);
  CHECK(r.sigma == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(r.relative_error == doctest::Approx(std::sqrt(0.75)).epsilon(1e-6));
}

TEST_CASE("rank1 is reproducible: same seed, same bits; another seed, the same optimum") {
  const row_major_matrix a = structured(40, 60);
  for (rank1_method method : {rank1_method::svd, rank1_method::nmf}) {
    onebit::rank1_options opt;
    opt.method = method;
    opt.seed = 7;
    const onebit::rank1_result r1 = onebit::rank1(a, opt), r2 = onebit::rank1(a, opt);
    CHECK(r1.a == r2.a);
    CHECK(r1.b == r2.b);
    CHECK(r1.sigma == r2.sigma);
    CHECK(r1.iterations == r2.iterations);
    opt.seed = 123456789;
    const onebit::rank1_result r3 = onebit::rank1(a, opt);
    CHECK(r3.sigma == doctest::Approx(r1.sigma).epsilon(1e-6));
    CHECK((r3.a - r1.a).norm() <= 1e-3 * r1.a.norm());
  }
}

TEST_CASE("rank1_abs of W equals rank1 of |W|; strides, half and bfloat16 inputs") {
  const row_major_matrix w = structured(33, 70, false);
  const row_major_matrix m = w.cwiseAbs();
  const onebit::rank1_result of_abs = onebit::rank1_abs(w), of_m = onebit::rank1(m);
  CHECK(of_abs.a == of_m.a);
  CHECK(of_abs.b == of_m.b);
  CHECK(of_abs.sigma == of_m.sigma);

  // A row stride past the columns (an Eigen block of a wider matrix, and raw pointers).
  row_major_matrix wide = row_major_matrix::Constant(33, 83, std::numeric_limits<float>::quiet_NaN());
  wide.leftCols(70) = w;
  const onebit::rank1_result strided = onebit::rank1_abs(wide.leftCols(70));
  CHECK(strided.a == of_abs.a);
  CHECK(strided.sigma == of_abs.sigma);
  const onebit::rank1_result raw = onebit::rank1_abs(wide.data(), 33, 70, 83);
  CHECK(raw.b == of_abs.b);

  // half and bfloat16: converted exactly, a row at a time: the same as their float values.
  std::vector<onebit::half> h(33 * 71);
  std::vector<onebit::bfloat16> bf(33 * 71);
  row_major_matrix hf(33, 70), bff(33, 70);
  for (Eigen::Index r = 0; r < 33; ++r)
    for (Eigen::Index c = 0; c < 70; ++c) {
      const std::size_t i = static_cast<std::size_t>(r * 71 + c);
      h[i] = onebit::to_half(w(r, c));
      bf[i] = onebit::to_bfloat16(w(r, c));
      hf(r, c) = onebit::to_float(h[i]);
      bff(r, c) = onebit::to_float(bf[i]);
    }
  const onebit::rank1_result rh = onebit::rank1_abs(h.data(), 33, 70, 71);
  const onebit::rank1_result rb = onebit::rank1_abs(bf.data(), 33, 70, 71);
  CHECK(rh.a == onebit::rank1_abs(hf).a);
  CHECK(rb.b == onebit::rank1_abs(bff).b);
  CHECK(rh.sigma == doctest::Approx(of_abs.sigma).epsilon(1e-3));
  CHECK(rb.sigma == doctest::Approx(of_abs.sigma).epsilon(1e-2));
}

TEST_CASE("bfloat16 rounds to nearest even and converts back exactly") {
  CHECK(onebit::to_bfloat16(1.0f).bits == 0x3f80);
  CHECK(onebit::to_float(onebit::bfloat16::from_bits(0x3f81)) == 1.0078125f);
  CHECK(onebit::to_bfloat16(1.00390625f).bits == 0x3f80);   // halfway: to even
  CHECK(onebit::to_bfloat16(1.01171875f).bits == 0x3f82);   // halfway: to even (up)
  CHECK(onebit::to_bfloat16(-0.0f).bits == 0x8000);
  CHECK(onebit::to_bfloat16(std::numeric_limits<float>::infinity()).bits == 0x7f80);
  CHECK(std::isnan(onebit::to_float(onebit::to_bfloat16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(onebit::to_bfloat16(3.4e38f).bits == 0x7f80);  // past the largest bfloat16: infinity
}

TEST_CASE("extreme magnitudes are scaled inside the passes: nothing overflows or underflows") {
  const row_major_matrix a = structured(20, 30);
  const onebit::rank1_result base = onebit::rank1(a);
  for (int e : {100, -100, 60, -60, 127}) {
    const row_major_matrix big = a * (std::ldexp(1.0f, e) / (e == 127 ? a.maxCoeff() : 1.0f));
    const float factor = big(0, 0) / a(0, 0);
    const onebit::rank1_result r = onebit::rank1(big);
    INFO("scale 2^", e);
    CHECK(std::isfinite(r.sigma));
    CHECK(r.sigma == doctest::Approx(base.sigma * factor).epsilon(1e-5));
    CHECK(r.frobenius_norm == doctest::Approx(base.frobenius_norm * factor).epsilon(1e-5));
    CHECK(r.relative_error == doctest::Approx(base.relative_error).epsilon(1e-4));
    const Eigen::MatrixXd approx = r.a.cast<double>() * r.b.cast<double>().transpose();
    CHECK((approx - big.cast<double>()).norm() / big.cast<double>().norm() ==
          doctest::Approx(base.relative_error).epsilon(1e-3));
  }
}

TEST_CASE("the iteration cap is reported") {
  const row_major_matrix a = structured(30, 30);
  onebit::rank1_options opt;
  opt.max_iterations = 1;
  for (rank1_method method : {rank1_method::svd, rank1_method::nmf}) {
    opt.method = method;
    const onebit::rank1_result r = onebit::rank1(a, opt);
    CHECK(r.iterations == 1);
    CHECK_FALSE(r.converged);
    CHECK(r.relative_error >= 0.0);
  }
}

TEST_CASE("rank1 bad input throws std::invalid_argument naming what is wrong") {
  row_major_matrix a = structured(4, 5);
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  auto contains = [](const std::string& s, const char* part) { return s.find(part) != std::string::npos; };

  row_major_matrix bad = a;
  bad(2, 3) = std::numeric_limits<float>::quiet_NaN();
  CHECK(contains(message([&] { onebit::rank1(bad); }), "NaN at (2, 3) of a 4x5"));
  bad(2, 3) = -std::numeric_limits<float>::infinity();
  CHECK(contains(message([&] { onebit::rank1_abs(bad); }), "infinity at (2, 3)"));
  bad(2, 3) = -0.5f;
  CHECK(contains(message([&] { onebit::rank1(bad); }), "negative value"));
  CHECK_NOTHROW(onebit::rank1_abs(bad));
  bad(2, 3) = -0.0f;  // not negative
  CHECK_NOTHROW(onebit::rank1(bad));
  CHECK(contains(message([&] { onebit::rank1(row_major_matrix::Zero(3, 3)); }), "all zeros"));
  CHECK(contains(message([&] { onebit::rank1(row_major_matrix(0, 3)); }), "zero-size matrix 0x3"));
  CHECK(contains(message([&] { onebit::rank1(row_major_matrix(3, 0)); }), "zero-size"));
  CHECK(contains(message([&] { onebit::rank1(nullptr, 3, 3, 3); }), "null"));
  CHECK(contains(message([&] { onebit::rank1(a.data(), 4, 5, 4); }), "row_stride 4 < cols 5"));
  onebit::rank1_options opt;
  opt.max_iterations = 0;
  CHECK(contains(message([&] { onebit::rank1(a, opt); }), "max_iterations"));
  opt.max_iterations = 10;
  opt.tolerance = std::numeric_limits<double>::quiet_NaN();
  CHECK(contains(message([&] { onebit::rank1(a, opt); }), "tolerance"));
  // NaN in the last, partial vector of a row, on every path.
  row_major_matrix tail = structured(3, 37);
  tail(1, 36) = std::numeric_limits<float>::quiet_NaN();
  for (isa path : onebit_test::runnable_paths()) {
    onebit::rank1_options p;
    p.path = path;
    CHECK(contains(message([&] { onebit::rank1(tail, p); }), "NaN at (1, 36)"));
  }
}

}  // namespace test_rank1
