// Gradients through OneBit's post-LayerNorm (quant/gradients.hpp): x, g, h, the sign values and
// the latent W (the straight-through estimator), against central finite differences in double.
#include <onebit/quant/gradients.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "support.hpp"

namespace test_post_norm_gradients {

namespace {

using dmatrix = onebit::latent_linear<double>::matrix;
using dvector = onebit::latent_linear<double>::vector;

std::mt19937_64& rng() {
  static std::mt19937_64 engine(1313);
  return engine;
}
dmatrix random_matrix(Eigen::Index r, Eigen::Index c) {
  std::normal_distribution<double> n(0.0, 1.0);
  dmatrix m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = n(rng());
  return m;
}

// LN(((X ⊙ g) · Sᵀ) ⊙ h) with S any real matrix, written out independently of the library.
dmatrix forward_with(const dmatrix& S, const dvector& g, const dvector& h, const dmatrix& X,
                     double eps) {
  dmatrix P = ((X * g.asDiagonal()) * S.transpose()) * h.asDiagonal();
  for (Eigen::Index b = 0; b < P.rows(); ++b) {
    double mean = 0;
    for (Eigen::Index j = 0; j < P.cols(); ++j) mean += P(b, j);
    mean /= static_cast<double>(P.cols());
    double var = 0;
    for (Eigen::Index j = 0; j < P.cols(); ++j) var += (P(b, j) - mean) * (P(b, j) - mean);
    var /= static_cast<double>(P.cols());
    for (Eigen::Index j = 0; j < P.cols(); ++j) P(b, j) = (P(b, j) - mean) / std::sqrt(var + eps);
  }
  return P;
}

double max_relative(const dmatrix& a, const dmatrix& b) {
  const double scale = std::max(1.0, b.cwiseAbs().maxCoeff());
  return (a - b).cwiseAbs().maxCoeff() / scale;
}

template <class F>
dmatrix finite_differences(const dmatrix& at, F&& loss) {
  const double step = 1e-6;
  dmatrix fd(at.rows(), at.cols());
  for (Eigen::Index i = 0; i < at.size(); ++i) {
    dmatrix p = at, m = at;
    p.data()[i] += step;
    m.data()[i] -= step;
    fd.data()[i] = (loss(p) - loss(m)) / (2 * step);
  }
  return fd;
}

}  // namespace

TEST_CASE("with the post-norm: x, g, h and sign gradients match finite differences") {
  for (const double eps : {1e-5, 0.5}) {
    const Eigen::Index out = 6, in = 9, batch = 4;
    onebit::latent_linear<double> layer{random_matrix(out, in), random_matrix(in, 1),
                                        random_matrix(out, 1)};
    layer.norm = {true, static_cast<float>(eps)};
    const double e = static_cast<double>(layer.norm.eps);
    const dmatrix X = random_matrix(batch, in), T = random_matrix(batch, out);
    const dmatrix S = layer.signs();
    // A loss that is not linear in Y, so the norm's Jacobian is exercised in full.
    auto loss_of = [&](const dmatrix& s, const dvector& g, const dvector& h, const dmatrix& x) {
      return (forward_with(s, g, h, x, e) - T).squaredNorm();
    };
    const dmatrix Y = layer.forward(X);
    CHECK(max_relative(Y, forward_with(S, layer.g, layer.h, X, e)) < 1e-13);
    const dmatrix dY = 2.0 * (Y - T);
    dmatrix dX;
    const auto grads = layer.backward(X, dY, &dX);

    CHECK(max_relative(dX, finite_differences(X, [&](const dmatrix& x) {
                         return loss_of(S, layer.g, layer.h, x);
                       })) < 1e-6);
    CHECK(max_relative(grads.g, finite_differences(layer.g, [&](const dmatrix& g) {
                         return loss_of(S, g, layer.h, X);
                       })) < 1e-6);
    CHECK(max_relative(grads.h, finite_differences(layer.h, [&](const dmatrix& h) {
                         return loss_of(S, layer.g, h, X);
                       })) < 1e-6);
    // ∂L/∂S at S = sign(W), S taken as real values; the latent W's gradient is it times the
    // STE 1.001 − tanh(W)².
    const dmatrix dS = finite_differences(S, [&](const dmatrix& s) {
      return loss_of(s, layer.g, layer.h, X);
    });
    const dmatrix ste = layer.W.unaryExpr([](double w) { return onebit::sign_ste(w); });
    CHECK(max_relative(grads.W, dS.cwiseProduct(ste)) < 1e-6);

    // The norm matters: without it the gradients differ.
    onebit::latent_linear<double> plain = layer;
    plain.norm = {};
    CHECK(max_relative(plain.backward(X, dY).h, grads.h) > 1e-3);
  }
}

TEST_CASE("a deployed layer with the norm: the sign gradient is the latent one without the STE") {
  onebit::linear<> deployed = onebit_test::random_layer(7, 12);
  deployed.norm = {true, 1e-5f};
  const auto latent = onebit::latent_linear<float>::from_linear(deployed);
  CHECK(latent.norm == deployed.norm);
  CHECK(latent.to_linear().norm == deployed.norm);
  const std::vector<float> x = onebit_test::gaussian(3 * 12), dy = onebit_test::gaussian(3 * 7);
  std::vector<float> dx_deployed(3 * 12), dx_latent(3 * 12);
  const auto a = onebit::backward(deployed, x.data(), 3, 12, dy.data(), 7, dx_deployed.data(), 12);
  const auto b = latent.backward(x.data(), 3, 12, dy.data(), 7, dx_latent.data(), 12);
  const auto ste = latent.W.unaryExpr([](float w) { return onebit::sign_ste(w); });
  CHECK((a.W.cwiseProduct(ste) - b.W).cwiseAbs().maxCoeff() <= 1e-5f * (1 + b.W.cwiseAbs().maxCoeff()));
  CHECK((a.g - b.g).cwiseAbs().maxCoeff() <= 1e-5f * (1 + b.g.cwiseAbs().maxCoeff()));
  CHECK((a.h - b.h).cwiseAbs().maxCoeff() <= 1e-5f * (1 + b.h.cwiseAbs().maxCoeff()));
  for (std::size_t i = 0; i < dx_latent.size(); ++i)
    CHECK(dx_deployed[i] == doctest::Approx(dx_latent[i]).epsilon(1e-4));
  // The float forward of the latent layer agrees with the 1-bit gemm with the norm.
  std::vector<float> y_gemm(3 * 7), y_latent(3 * 7);
  onebit::gemm(deployed, x.data(), 3, 12, y_gemm.data(), 7, onebit::kernel::reference);
  latent.forward(x.data(), 3, 12, y_latent.data(), 7);
  for (std::size_t i = 0; i < y_gemm.size(); ++i)
    CHECK(y_gemm[i] == doctest::Approx(y_latent[i]).epsilon(1e-4).scale(1));
}

}  // namespace test_post_norm_gradients
