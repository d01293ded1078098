#include <onebit/quant/gradients.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "support.hpp"

namespace test_gradients {

namespace {

using dmatrix = onebit::latent_linear<double>::matrix;
using dvector = onebit::latent_linear<double>::vector;

std::mt19937_64& rng() {
  static std::mt19937_64 engine(99);
  return engine;
}
dmatrix random_matrix(Eigen::Index r, Eigen::Index c, double sigma = 1.0) {
  std::normal_distribution<double> n(0.0, sigma);
  dmatrix m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = n(rng());
  return m;
}
dvector random_vector(Eigen::Index n, double sigma = 1.0) {
  return random_matrix(n, 1, sigma);
}

onebit::latent_linear<double> random_latent(Eigen::Index out, Eigen::Index in) {
  return {random_matrix(out, in), random_vector(in), random_vector(out)};
}

// The layer with an arbitrary matrix S in place of sign(W): Y = ((X ⊙ g) · Sᵀ) ⊙ h.
dmatrix forward_with(const dmatrix& S, const dvector& g, const dvector& h, const dmatrix& X) {
  return ((X * g.asDiagonal()) * S.transpose()) * h.asDiagonal();
}

// The surrogate whose derivative is OneBit's straight-through estimator.
dmatrix surrogate(const dmatrix& W) {
  return W.unaryExpr([](double w) { return std::tanh(w) + 0.001 * w; });
}

double max_relative(const dmatrix& a, const dmatrix& b) {
  const double scale = std::max(1.0, b.cwiseAbs().maxCoeff());
  return (a - b).cwiseAbs().maxCoeff() / scale;
}

}  // namespace

TEST_CASE("gradients for x, g and h match central finite differences (quadratic loss, batched)") {
  const Eigen::Index out = 5, in = 7, batch = 4;
  const auto layer = random_latent(out, in);
  const dmatrix X = random_matrix(batch, in);
  const dmatrix T = random_matrix(batch, out);
  const dmatrix S = layer.signs();
  auto loss = [&](const dmatrix& x, const dvector& g, const dvector& h) {
    return (forward_with(S, g, h, x) - T).squaredNorm();
  };
  const dmatrix Y = layer.forward(X);
  CHECK(max_relative(Y, forward_with(S, layer.g, layer.h, X)) < 1e-14);
  const dmatrix dY = 2.0 * (Y - T);
  dmatrix dX;
  const auto grads = layer.backward(X, dY, &dX);

  const double eps = 1e-6;
  dmatrix fd_x(batch, in);
  for (Eigen::Index b = 0; b < batch; ++b)
    for (Eigen::Index i = 0; i < in; ++i) {
      dmatrix p = X, m = X;
      p(b, i) += eps;
      m(b, i) -= eps;
      fd_x(b, i) = (loss(p, layer.g, layer.h) - loss(m, layer.g, layer.h)) / (2 * eps);
    }
  dvector fd_g(in), fd_h(out);
  for (Eigen::Index i = 0; i < in; ++i) {
    dvector p = layer.g, m = layer.g;
    p(i) += eps;
    m(i) -= eps;
    fd_g(i) = (loss(X, p, layer.h) - loss(X, m, layer.h)) / (2 * eps);
  }
  for (Eigen::Index j = 0; j < out; ++j) {
    dvector p = layer.h, m = layer.h;
    p(j) += eps;
    m(j) -= eps;
    fd_h(j) = (loss(X, layer.g, p) - loss(X, layer.g, m)) / (2 * eps);
  }
  CHECK(max_relative(dX, fd_x) < 1e-7);
  CHECK(max_relative(grads.g, fd_g) < 1e-7);
  CHECK(max_relative(grads.h, fd_h) < 1e-7);
}

TEST_CASE("the latent-weight gradient is the STE: finite differences of the tanh + 0.001 w surrogate") {
  // For a loss linear in Y (fixed dY) the gradient through the STE is exactly the gradient of
  // the layer with s(W) = tanh(W) + 0.001 W in place of sign(W); s' = 1.001 − tanh².
  const Eigen::Index out = 6, in = 9, batch = 5;
  auto layer = random_latent(out, in);
  const dmatrix X = random_matrix(batch, in);
  const dmatrix C = random_matrix(batch, out);  // dL/dY
  auto loss = [&](const dmatrix& W) {
    return (forward_with(surrogate(W), layer.g, layer.h, X).array() * C.array()).sum();
  };
  const auto grads = layer.backward(X, C);
  const double eps = 1e-6;
  dmatrix fd(out, in);
  for (Eigen::Index j = 0; j < out; ++j)
    for (Eigen::Index i = 0; i < in; ++i) {
      dmatrix p = layer.W, m = layer.W;
      p(j, i) += eps;
      m(j, i) -= eps;
      fd(j, i) = (loss(p) - loss(m)) / (2 * eps);
    }
  CHECK(max_relative(grads.W, fd) < 1e-7);
  CHECK(onebit::sign_ste(0.0) == doctest::Approx(1.001));
  CHECK(onebit::sign_ste(3.0) == doctest::Approx(1.001 - std::tanh(3.0) * std::tanh(3.0)));
}

TEST_CASE("a batch's gradients are the sums of its rows'; leading dimensions are honoured") {
  const Eigen::Index out = 4, in = 11, batch = 3;
  const auto layer = random_latent(out, in);
  const std::size_t ldx = 13, lddy = 6, lddx = 12;
  std::vector<double> x(batch * ldx, 7.0), dy(batch * lddy, -3.0), dx(batch * lddx, 42.0);
  std::normal_distribution<double> n;
  for (Eigen::Index b = 0; b < batch; ++b) {
    for (Eigen::Index i = 0; i < in; ++i) x[b * ldx + i] = n(rng());
    for (Eigen::Index j = 0; j < out; ++j) dy[b * lddy + j] = n(rng());
  }
  const auto all = layer.backward(x.data(), batch, ldx, dy.data(), lddy, dx.data(), lddx);
  onebit::linear_gradients<double> sum{dmatrix::Zero(out, in), dvector::Zero(in), dvector::Zero(out)};
  for (Eigen::Index b = 0; b < batch; ++b) {
    std::vector<double> dxb(in);
    const auto one = layer.backward(x.data() + b * ldx, 1, in, dy.data() + b * lddy, out, dxb.data(), in);
    sum.W += one.W;
    sum.g += one.g;
    sum.h += one.h;
    for (Eigen::Index i = 0; i < in; ++i) CHECK(dx[b * lddx + i] == doctest::Approx(dxb[i]).epsilon(1e-12));
    CHECK(dx[b * lddx + in] == 42.0);  // past `in`: untouched
  }
  CHECK(max_relative(all.W, sum.W) < 1e-12);
  CHECK(max_relative(all.g, sum.g) < 1e-12);
  CHECK(max_relative(all.h, sum.h) < 1e-12);

  // batch 0: zero gradients.
  const auto none = layer.backward(x.data(), 0, ldx, dy.data(), lddy);
  CHECK(none.W.isZero());
  CHECK(none.g.size() == in);
}

TEST_CASE("float and double agree; a deployed layer's sign gradient is the latent one without the STE") {
  const auto layer = onebit_test::random_layer(6, 10);
  const auto latent = onebit::latent_linear<float>::from_linear(layer);
  const auto latent_d = onebit::latent_linear<double>::from_linear(layer);
  CHECK(latent.W(0, 0) == doctest::Approx(0.01f * layer.W(0, 0)));
  const std::size_t batch = 3;
  const std::vector<float> x = onebit_test::gaussian(batch * 10), dy = onebit_test::gaussian(batch * 6);
  std::vector<double> xd(x.begin(), x.end()), dyd(dy.begin(), dy.end());
  std::vector<float> dx(batch * 10), dx2(batch * 10);
  std::vector<double> dxd(batch * 10);
  const auto gf = latent.backward(x.data(), batch, 10, dy.data(), 6, dx.data(), 10);
  const auto gd = latent_d.backward(xd.data(), batch, 10, dyd.data(), 6, dxd.data(), 10);
  CHECK(max_relative(gf.W.cast<double>(), gd.W) < 1e-5);
  CHECK(max_relative(gf.g.cast<double>(), gd.g) < 1e-5);
  CHECK(max_relative(gf.h.cast<double>(), gd.h) < 1e-5);
  for (std::size_t i = 0; i < dx.size(); ++i) CHECK(dx[i] == doctest::Approx(dxd[i]).epsilon(1e-5));

  const auto deployed = onebit::backward(layer, x.data(), batch, 10, dy.data(), 6, dx2.data(), 10);
  const float ste = onebit::sign_ste(0.01f);
  CHECK(max_relative((deployed.W * ste).cast<double>(), gf.W.cast<double>()) < 1e-6);
  CHECK(max_relative(deployed.g.cast<double>(), gf.g.cast<double>()) < 1e-6);
  CHECK(max_relative(deployed.h.cast<double>(), gf.h.cast<double>()) < 1e-6);
  CHECK(dx2 == dx);
}

TEST_CASE("latent_linear exports to the OneBit layer it came from, and forwards like it") {
  const auto layer = onebit_test::random_layer<std::uint8_t>(9, 37);
  const auto latent = onebit::latent_linear<float>::from_linear(layer);
  const auto back = latent.to_linear<std::uint8_t>();
  CHECK(back.W.view() == layer.W.view());
  CHECK(back.g == layer.g);
  CHECK(back.h == layer.h);
  const std::size_t batch = 4;
  const std::vector<float> x = onebit_test::gaussian(batch * 37);
  std::vector<float> y(batch * 9), y_gemm(batch * 9);
  latent.forward(x.data(), batch, 37, y.data(), 9);
  onebit::gemm(layer, x.data(), batch, 37, y_gemm.data(), 9);
  const auto exact = onebit_test::exact_gemm(layer, x.data(), batch, 37);
  for (std::size_t i = 0; i < y.size(); ++i) {
    CHECK(std::fabs(y[i] - exact.y[i]) <= 1e-5 * exact.scale[i] + 1e-30);
    CHECK(std::fabs(y_gemm[i] - exact.y[i]) <= 1e-5 * exact.scale[i] + 1e-30);
  }
  // sign(0) = +1 on export, and a NaN latent weight is refused.
  auto zero = latent;
  zero.W.setZero();
  const auto plus = zero.to_linear();
  CHECK(plus.W(3, 5) == 1);
  zero.W(2, 2) = std::nanf("");
  CHECK_THROWS_AS(zero.to_linear(), std::invalid_argument);
}

TEST_CASE("bad shapes and buffers are refused naming the shapes") {
  const auto layer = random_latent(3, 4);
  std::vector<double> x(8), y(6);
  CHECK_THROWS_WITH_AS(layer.forward(x.data(), 2, 3, y.data(), 3),
                       "onebit::latent_linear::forward: for a 3x4 (out x in) layer and batch 2, ldx 3 < in 4",
                       std::invalid_argument);
  CHECK_THROWS_AS(layer.forward(nullptr, 2, 4, y.data(), 3), std::invalid_argument);
  CHECK_THROWS_AS(layer.backward(x.data(), 2, 4, y.data(), 2), std::invalid_argument);
  CHECK_THROWS_AS(layer.backward(x.data(), 2, 4, y.data(), 3, x.data(), 3), std::invalid_argument);
  CHECK_THROWS_AS(layer.backward(random_matrix(2, 5), random_matrix(2, 3)), std::invalid_argument);
  CHECK_THROWS_AS(onebit::latent_linear<double>(random_matrix(3, 4), random_vector(5), random_vector(3)),
                  std::invalid_argument);
  onebit::latent_linear<double> empty;
  CHECK_THROWS_AS(empty.forward(x.data(), 1, 4, y.data(), 3), std::invalid_argument);
  onebit::adam_state<double> state(3);
  std::vector<double> p(3), g(3);
  onebit::adam_options bad;
  bad.beta2 = 1.0;
  CHECK_THROWS_AS(state.step(p.data(), g.data(), bad), std::invalid_argument);
}

TEST_CASE("Adam minimises a known quadratic; its first step and AdamW's decay are exact") {
  // f(p) = Σ a_i (p_i − c_i)², very different curvatures: Adam's per-coordinate scaling
  // reaches every minimum.
  const std::vector<double> a{100.0, 1.0, 0.01, 5.0}, c{1.0, -2.0, 0.5, 3.0};
  std::vector<double> p{0.0, 0.0, 0.0, 0.0}, grad(4);
  onebit::adam_state<double> state(4);
  onebit::adam_options o;
  o.learning_rate = 0.05;
  for (int step = 0; step < 3000; ++step) {
    for (std::size_t i = 0; i < 4; ++i) grad[i] = 2 * a[i] * (p[i] - c[i]);
    if (step == 0) {
      const std::vector<double> before = p;
      state.step(p.data(), grad.data(), o);
      // Bias correction makes the first step lr·g/(|g| + eps): lr in every coordinate.
      for (std::size_t i = 0; i < 4; ++i)
        CHECK(std::fabs(p[i] - before[i]) == doctest::Approx(0.05).epsilon(1e-6));
      continue;
    }
    state.step(p.data(), grad.data(), o);
  }
  CHECK(state.steps() == 3000);
  for (std::size_t i = 0; i < 4; ++i) CHECK(p[i] == doctest::Approx(c[i]).epsilon(1e-3));

  // A hand-computed second step with OneBit's β2 = 0.98.
  onebit::adam_state<double> s2(1);
  onebit::adam_options o2;
  o2.learning_rate = 0.1;
  o2.beta2 = 0.98;
  double q = 1.0, g1 = 2.0, g2 = -1.0;
  s2.step(&q, &g1, o2);
  s2.step(&q, &g2, o2);
  const double m1 = 0.1 * 2.0, v1 = 0.02 * 4.0;
  const double after1 = 1.0 - 0.1 * (m1 / 0.1) / (std::sqrt(v1 / 0.02) + 1e-8);
  const double m = 0.9 * m1 + 0.1 * -1.0, v = 0.98 * v1 + 0.02 * 1.0;
  const double expected = after1 - 0.1 * (m / (1 - 0.81)) / (std::sqrt(v / (1 - 0.98 * 0.98)) + 1e-8);
  CHECK(q == doctest::Approx(expected).epsilon(1e-12));

  // AdamW: with zero gradients only the decoupled decay acts, p ← p (1 − lr·wd).
  onebit::adam_state<float> s3(2);
  onebit::adam_options o3;
  o3.learning_rate = 0.01;
  o3.weight_decay = 0.5;
  std::vector<float> w{2.0f, -4.0f}, zero(2, 0.0f);
  for (int i = 0; i < 10; ++i) s3.step(w.data(), zero.data(), o3);
  CHECK(w[0] == doctest::Approx(2.0 * std::pow(0.995, 10)).epsilon(1e-5));
  CHECK(w[1] == doctest::Approx(-4.0 * std::pow(0.995, 10)).epsilon(1e-5));
}

TEST_CASE("training through the STE recovers a OneBit teacher's flipped signs") {
  // A teacher that is itself a OneBit layer; the student starts from its signs with 15%
  // flipped and g = h = 1, latent weights at ±0.01 (§1), and fits the teacher's output.
  const Eigen::Index out = 24, in = 32, batch = 256;
  std::normal_distribution<float> n;
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  std::mt19937 r(5);
  onebit::latent_linear<float>::matrix S(out, in), X(batch, in);
  Eigen::VectorXf g(in), h(out);
  for (Eigen::Index i = 0; i < S.size(); ++i) S.data()[i] = n(r) < 0 ? -1.0f : 1.0f;
  for (auto& v : g) v = u(r);
  for (auto& v : h) v = u(r);
  for (Eigen::Index i = 0; i < X.size(); ++i) X.data()[i] = n(r);
  const onebit::latent_linear<float> teacher(S, g, h);
  const onebit::latent_linear<float>::matrix Y0 = teacher.forward(X);
  onebit::latent_linear<float>::matrix W = 0.01f * S;
  std::bernoulli_distribution flip(0.15);
  for (Eigen::Index i = 0; i < W.size(); ++i)
    if (flip(r)) W.data()[i] = -W.data()[i];
  onebit::latent_linear<float> layer(W, Eigen::VectorXf::Ones(in), Eigen::VectorXf::Ones(out));
  auto wrong = [&] { return static_cast<int>((layer.signs() - S).cwiseAbs().sum() / 2); };
  const int wrong_at_start = wrong();

  onebit::latent_linear_adam<float> adam(layer);
  onebit::adam_options o;
  o.learning_rate = 3e-3;
  onebit::latent_linear<float>::matrix dY(batch, out);
  double first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    const auto Y = layer.forward(X);
    last = onebit::mean_squared_error(Y.data(), out, Y0.data(), out, batch, out, dY.data());
    if (step == 0) first = last;
    adam.step(layer, layer.backward(X, dY), o);
  }
  MESSAGE("STE training: MSE " << first << " -> " << last << ", wrong signs " << wrong_at_start
                               << " -> " << wrong());
  CHECK(adam.steps() == 300);
  CHECK(last < 0.05 * first);
  CHECK(wrong() * 5 < wrong_at_start);
}

}  // namespace test_gradients
