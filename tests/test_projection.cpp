// models/projection.hpp: the OneBit projection's forward and gradients (latent W through the
// straight-through factor, g, h, x; with and without the post-norm) against latent_linear<double>
// (quant/gradients.hpp, itself held to finite differences by test_gradients and
// test_post_norm_gradients) and against central differences of its own forward for x, g, h;
// the float projection against a double product; blocks built on projections give the same bits
// as the float-matrix constructors.
#include <onebit/models/llama_blocks.hpp>
#include <onebit/models/projection.hpp>
#include <onebit/quant/gradients.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace test_projection {

namespace {

using onebit::onebit_parameters;
using onebit::onebit_projection;

std::vector<float> gaussian(std::mt19937_64& rng, std::size_t n, double sigma = 1.0,
                            double mean = 0.0) {
  std::normal_distribution<double> d(mean, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(d(rng));
  return v;
}

onebit_parameters random_parameters(std::mt19937_64& rng, std::size_t out, std::size_t in,
                                    bool norm) {
  onebit_parameters p;
  p.out = out;
  p.in = in;
  const auto W = gaussian(rng, out * in, 0.5), g = gaussian(rng, in, 0.3, 1.0),
             h = gaussian(rng, out, 0.3, 1.0);
  p.W.assign(W.begin(), W.end());
  p.g.assign(g.begin(), g.end());
  p.h.assign(h.begin(), h.end());
  p.norm.enabled = norm;
  p.refresh();
  return p;
}

onebit::latent_linear<double> reference(const onebit_parameters& p) {
  onebit::latent_linear<double> r;
  r.W.resize(static_cast<Eigen::Index>(p.out), static_cast<Eigen::Index>(p.in));
  for (std::size_t k = 0; k < p.W.size(); ++k) r.W.data()[k] = p.W[k];
  r.g.resize(static_cast<Eigen::Index>(p.in));
  r.h.resize(static_cast<Eigen::Index>(p.out));
  for (std::size_t i = 0; i < p.in; ++i) r.g(static_cast<Eigen::Index>(i)) = p.g[i];
  for (std::size_t j = 0; j < p.out; ++j) r.h(static_cast<Eigen::Index>(j)) = p.h[j];
  r.norm = p.norm;
  return r;
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// Σ dy ⊙ forward(x) in double, for central differences.
double linear_loss(onebit_projection& f, const std::vector<float>& x, std::size_t tokens,
                   const std::vector<float>& dy) {
  std::vector<float> y(dy.size());
  f.forward(x.data(), tokens, y.data());
  double s = 0;
  for (std::size_t k = 0; k < y.size(); ++k) s += static_cast<double>(dy[k]) * y[k];
  return s;
}

}  // namespace

TEST_CASE("onebit_projection: forward and gradients match latent_linear<double>, norm on and off") {
  std::mt19937_64 rng(1301);
  for (bool norm : {false, true})
    for (const auto& shape : std::vector<std::array<std::size_t, 3>>{
             {7, 13, 5}, {64, 1, 3}, {1, 65, 2}, {33, 17, 1}}) {
      // Named copies, not a structured binding: CAPTURE's lambda cannot capture a binding
      // before C++20.
      const std::size_t out = shape[0], in = shape[1], tokens = shape[2];
      CAPTURE(norm);
      CAPTURE(out);
      CAPTURE(in);
      if (norm && out == 1) continue;  // a one-value row normalises to 0: no gradient to check
      const onebit_parameters p = random_parameters(rng, out, in, norm);
      onebit_projection f(p);
      const auto x = gaussian(rng, tokens * in), dy = gaussian(rng, tokens * out);
      std::vector<float> y(tokens * out);
      f.forward(x.data(), tokens, y.data());

      const auto r = reference(p);
      Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> X(tokens, in), dY(tokens, out);
      for (std::size_t k = 0; k < x.size(); ++k) X.data()[k] = x[k];
      for (std::size_t k = 0; k < dy.size(); ++k) dY.data()[k] = dy[k];
      const auto Y = r.forward(X);
      // Float against double: sums of `in` terms of size ~|g|·|x|, each rounded once.
      const double y_scale = norm ? 1.0 : std::max(1.0, Y.cwiseAbs().maxCoeff());
      for (std::size_t k = 0; k < y.size(); ++k)
        CHECK(std::abs(y[k] - Y.data()[k]) <= 2e-5 * y_scale * std::sqrt(double(in)));

      std::vector<float> dx(tokens * in, 0.0f);
      f.backward(dy.data(), dx.data(), false);
      Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> dX;
      const auto G = r.backward(X, dY, &dX);
      // Float against double, relative to the largest value: 1e-4; with the norm 1e-3, as its
      // backward subtracts row means (dY − mean(dY) − Y·mean(dY ⊙ Y)) that cancel to a
      // thousandth when a row's outputs are all one sign times h (in = 1).
      const double bound = norm ? 1e-3 : 1e-4;
      auto close = [bound](const float* got, const double* want, std::size_t n,
                           const std::string& what) {
        std::vector<double> w(want, want + n);
        const double scale = std::max(1e-3, max_abs(w));
        for (std::size_t k = 0; k < n; ++k) {
          CAPTURE(what);
          CAPTURE(k);
          CHECK(std::abs(got[k] - want[k]) <= bound * scale);
        }
      };
      close(f.gradient_W(), G.W.data(), out * in, "W");
      close(f.gradient_g(), G.g.data(), in, "g");
      close(f.gradient_h(), G.h.data(), out, "h");
      close(dx.data(), dX.data(), tokens * in, "x");

      // accumulate adds to what dx holds.
      std::vector<float> acc(tokens * in, 1.0f);
      f.backward(dy.data(), acc.data(), true);
      for (std::size_t k = 0; k < acc.size(); ++k) CHECK(acc[k] == doctest::Approx(1.0f + dx[k]).epsilon(1e-6));
    }
}

TEST_CASE("onebit_projection: x, g and h gradients match central differences of its forward") {
  std::mt19937_64 rng(1302);
  for (bool norm : {false, true}) {
    CAPTURE(norm);
    const std::size_t out = 9, in = 11, tokens = 4;
    onebit_parameters p = random_parameters(rng, out, in, norm);
    onebit_projection f(p);
    auto x = gaussian(rng, tokens * in);
    const auto dy = gaussian(rng, tokens * out);
    std::vector<float> y(tokens * out), dx(tokens * in);
    f.forward(x.data(), tokens, y.data());
    f.backward(dy.data(), dx.data(), false);
    const std::vector<float> gg(f.gradient_g(), f.gradient_g() + in),
        gh(f.gradient_h(), f.gradient_h() + out);
    // Central differences in float with step 1e-2: truncation O(step²) and rounding
    // O(1e-7 / step) of a loss of size ~10; the bound is 2e-3 of the largest gradient.
    const float step = 1e-2f;
    auto fd = [&](float& v) {
      const float keep = v;
      v = keep + step;
      const double up = linear_loss(f, x, tokens, dy);
      v = keep - step;
      const double down = linear_loss(f, x, tokens, dy);
      v = keep;
      return (up - down) / (2.0 * step);
    };
    auto check_all = [&](std::vector<float>& values, const std::vector<float>& grads,
                         bool refresh, const char* what) {
      double scale = 0;
      for (float g : grads) scale = std::max(scale, std::abs(static_cast<double>(g)));
      for (std::size_t k = 0; k < values.size(); ++k) {
        const double numeric = fd(values[k]);
        if (refresh) p.refresh();
        CAPTURE(what);
        CAPTURE(k);
        CHECK(std::abs(numeric - grads[k]) <= 2e-3 * scale);
      }
    };
    check_all(x, dx, false, "x");
    std::vector<float> g(p.g.begin(), p.g.end());
    // g and h live in p: differences through p's own storage.
    for (std::size_t i = 0; i < in; ++i) {
      const double numeric = fd(p.g[i]);
      CAPTURE(i);
      CHECK(std::abs(numeric - gg[i]) <= 2e-3 * max_abs(std::vector<double>(gg.begin(), gg.end())));
    }
    for (std::size_t j = 0; j < out; ++j) {
      const double numeric = fd(p.h[j]);
      CAPTURE(j);
      CHECK(std::abs(numeric - gh[j]) <= 2e-3 * max_abs(std::vector<double>(gh.begin(), gh.end())));
    }
    (void)g;
  }
}

TEST_CASE("onebit_projection: W's gradient is ∂L/∂S times 1.001 − tanh(W)², an empty batch zeroes") {
  std::mt19937_64 rng(1303);
  onebit_parameters p = random_parameters(rng, 5, 6, false);
  onebit_projection f(p);
  const auto x = gaussian(rng, 3 * 6), dy = gaussian(rng, 3 * 5);
  std::vector<float> y(15);
  f.forward(x.data(), 3, y.data());
  f.backward(dy.data(), nullptr, false);
  // ∂L/∂S_ji = Σ_t (dy_tj h_j)(x_ti g_i), in double.
  for (std::size_t j = 0; j < 5; ++j)
    for (std::size_t i = 0; i < 6; ++i) {
      double dS = 0;
      for (std::size_t t = 0; t < 3; ++t)
        dS += static_cast<double>(dy[t * 5 + j]) * p.h[j] * x[t * 6 + i] * p.g[i];
      const double th = std::tanh(static_cast<double>(p.W[j * 6 + i]));
      CHECK(f.gradient_W()[j * 6 + i] == doctest::Approx(dS * (1.001 - th * th)).epsilon(1e-5));
    }
  f.forward(x.data(), 0, y.data());
  f.backward(dy.data(), nullptr, false);
  for (std::size_t k = 0; k < 30; ++k) CHECK(f.gradient_W()[k] == 0.0f);
  for (std::size_t k = 0; k < 6; ++k) CHECK(f.gradient_g()[k] == 0.0f);
  for (std::size_t k = 0; k < 5; ++k) CHECK(f.gradient_h()[k] == 0.0f);
}

TEST_CASE("onebit_parameters: from_linear and to_linear round trip, refresh checks sizes") {
  std::mt19937_64 rng(1304);
  onebit_parameters p = random_parameters(rng, 6, 70, true);
  const onebit::linear<> l = p.to_linear();
  CHECK(l.norm.enabled);
  const onebit_parameters q = onebit_parameters::from_linear(l, 0.25f);
  const onebit::linear<> back = q.to_linear();
  for (std::size_t j = 0; j < 6; ++j)
    for (std::size_t i = 0; i < 70; ++i) {
      CHECK(back.view().W(j, i) == (p.W[j * 70 + i] < 0 ? -1 : 1));
      CHECK(std::abs(q.W[j * 70 + i]) == 0.25f);
    }
  for (std::size_t i = 0; i < 70; ++i) CHECK(q.g[i] == onebit::to_float(l.view().g[i]));
  p.g.pop_back();
  CHECK_THROWS_AS(p.refresh(), std::invalid_argument);
  onebit_parameters unrefreshed;
  unrefreshed.out = 2;
  unrefreshed.in = 2;
  CHECK_THROWS_AS(onebit_projection{unrefreshed}, std::invalid_argument);
}

TEST_CASE("blocks on float projections give the bits of the float-matrix constructors") {
  std::mt19937_64 rng(1305);
  const std::size_t dim = 16, heads = 4, kv = 2, hidden = 24, kv_dim = dim / heads * kv;
  const auto wq = gaussian(rng, dim * dim, 0.25), wk = gaussian(rng, kv_dim * dim, 0.25),
             wv = gaussian(rng, kv_dim * dim, 0.25), wo = gaussian(rng, dim * dim, 0.25),
             w1 = gaussian(rng, hidden * dim, 0.25), w2 = gaussian(rng, dim * hidden, 0.25),
             w3 = gaussian(rng, hidden * dim, 0.25);
  const onebit::token_layout layout{{5, 9, 3}};
  const std::size_t T = layout.tokens();
  const auto x = gaussian(rng, T * dim), dy = gaussian(rng, T * dim);
  auto run = [&](onebit::block& b) {
    std::vector<float> y(T * dim), dx(T * dim);
    b.forward(x.data(), layout, y.data());
    b.backward(dy.data(), dx.data());
    for (const auto& w : b.weights()) y.insert(y.end(), w.gradient, w.gradient + w.rows * w.cols);
    y.insert(y.end(), dx.begin(), dx.end());
    return y;
  };
  using fp = onebit::float_projection;
  onebit::attention_block a1(dim, heads, kv, wq, wk, wv, wo);
  onebit::attention_block a2(dim, heads, kv, std::make_unique<fp>(dim, dim, wq),
                             std::make_unique<fp>(kv_dim, dim, wk),
                             std::make_unique<fp>(kv_dim, dim, wv),
                             std::make_unique<fp>(dim, dim, wo));
  CHECK(run(a1) == run(a2));
  onebit::swiglu_block s1(dim, hidden, w1, w2, w3);
  onebit::swiglu_block s2(dim, hidden, std::make_unique<fp>(hidden, dim, w1),
                          std::make_unique<fp>(dim, hidden, w2),
                          std::make_unique<fp>(hidden, dim, w3));
  CHECK(run(s1) == run(s2));
  // A projection of the wrong shape is refused by name.
  try {
    onebit::swiglu_block bad(dim, hidden, std::make_unique<fp>(hidden, dim, w1),
                             std::make_unique<fp>(hidden, dim, w3),
                             std::make_unique<fp>(hidden, dim, w3));
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("w2") != std::string::npos);
  }
}

}  // namespace test_projection
