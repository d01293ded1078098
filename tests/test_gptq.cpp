// GPTQ against a straightforward evaluation written here: the explicit inverse of the damped H,
// one column at a time, every later column updated at once and the inverse reduced by Gaussian
// elimination (the OBQ form GPTQ's Cholesky rows are a rearrangement of), no blocks, no lazy
// updates, its own ties-to-even rounding. Same codes, scales and zeros for every block size,
// act_order, groups (dividing or not), symmetric and clip search; dead inputs; bad input; and
// the output error against RTN on correlated inputs and on the real layers of stories260K.
#include <onebit/quant/gptq.hpp>
#include <onebit/quant/rtn.hpp>
#include <onebit/models/llama.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/LU>

namespace test_gptq {

namespace {

using onebit::gptq_options;
using onebit::lowbit_matrix;
using onebit::row_major_matrix;
using onebit::rtn_options;

row_major_matrix gaussian(std::mt19937_64& rng, std::size_t rows, std::size_t cols,
                          double sigma = 1.0) {
  std::normal_distribution<double> d(0.0, sigma);
  row_major_matrix m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(d(rng));
  return m;
}

// Calibration rows with a non-identity covariance: X = Z·L, Z standard normal, L random.
row_major_matrix correlated_inputs(std::mt19937_64& rng, std::size_t samples, std::size_t cols) {
  const row_major_matrix Z = gaussian(rng, samples, cols);
  row_major_matrix L = gaussian(rng, cols, cols, 1.0 / std::sqrt(static_cast<double>(cols)));
  L.diagonal().array() += 0.3f;
  return (Z * L).eval();
}

double output_error(const row_major_matrix& x, const row_major_matrix& w_hat,
                    const row_major_matrix& w) {
  return (x.cast<double>() * (w_hat.cast<double>() - w.cast<double>()).transpose()).squaredNorm();
}

double round_half_even(double x) {
  const double r = std::floor(x), d = x - r;
  if (d > 0.5) return r + 1;
  if (d < 0.5) return r;
  return std::fmod(r, 2.0) == 0.0 ? r : r + 1;
}

struct oracle_result {
  std::vector<unsigned> q;  // rows x cols
  std::vector<float> s, z;  // rows x groups
};

// The grid of a group of values: rtn() of them as one row (rtn's own rules are test_rtn's).
void grid_of(const std::vector<float>& v, const rtn_options& q, float& s, float& z) {
  rtn_options one = q;
  one.group = 0;
  const lowbit_matrix m = onebit::rtn(v.data(), 1, v.size(), v.size(), one);
  s = m.scale(0, 0);
  z = m.zero(0, 0);
}

oracle_result oracle(const row_major_matrix& w0, const row_major_matrix& x, const gptq_options& o) {
  const Eigen::Index R = w0.rows(), C = w0.cols();
  const std::size_t cols = static_cast<std::size_t>(C), rows = static_cast<std::size_t>(R);
  const std::size_t G = o.quant.group == 0 ? cols : o.quant.group, groups = (cols + G - 1) / G;
  Eigen::MatrixXd W = w0.cast<double>();
  Eigen::MatrixXd H = 2.0 * x.cast<double>().transpose() * x.cast<double>();
  for (Eigen::Index i = 0; i < C; ++i)
    if (H(i, i) == 0) {
      H(i, i) = 1;
      W.col(i).setZero();
    }
  std::vector<Eigen::Index> order(cols);
  std::iota(order.begin(), order.end(), Eigen::Index{0});
  if (o.act_order)
    std::stable_sort(order.begin(), order.end(), [&](Eigen::Index a, Eigen::Index b) { return H(a, a) > H(b, b); });
  H.diagonal().array() += static_cast<double>(o.damp) * H.diagonal().mean();
  Eigen::MatrixXd Hinv = H.inverse();  // in the original column order throughout

  oracle_result res;
  res.q.assign(rows * cols, 0);
  res.s.assign(rows * groups, 0);
  res.z.assign(rows * groups, 0);
  auto find = [&](std::size_t g) {
    const std::size_t c0 = g * G, n = std::min(G, cols - c0);
    for (std::size_t r = 0; r < rows; ++r) {
      std::vector<float> v(n);
      for (std::size_t i = 0; i < n; ++i)
        v[i] = static_cast<float>(W(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c0 + i)));
      grid_of(v, o.quant, res.s[r * groups + g], res.z[r * groups + g]);
    }
  };
  const bool dynamic = o.quant.group != 0 && !o.act_order;
  if (!dynamic)
    for (std::size_t g = 0; g < groups; ++g) find(g);
  const double m = std::pow(2.0, o.quant.bits - 1) - 1, top = std::pow(2.0, o.quant.bits) - 1;
  std::vector<bool> done(cols, false);
  for (std::size_t k = 0; k < cols; ++k) {
    const Eigen::Index j = order[k];
    const std::size_t c = static_cast<std::size_t>(j), g = c / G;
    if (dynamic && c % G == 0) find(g);
    const double d = Hinv(j, j);
    Eigen::VectorXd err(R);
    for (Eigen::Index r = 0; r < R; ++r) {
      const double s = res.s[static_cast<std::size_t>(r) * groups + g], z = res.z[static_cast<std::size_t>(r) * groups + g];
      const double v = round_half_even(W(r, j) / s);
      const double q = o.quant.symmetric ? std::clamp(v, -m, m) + z : std::clamp(v + z, 0.0, top);
      res.q[static_cast<std::size_t>(r) * cols + c] = static_cast<unsigned>(q);
      const double wq = static_cast<float>(s * (q - z));
      err(r) = (W(r, j) - wq) / d;
    }
    done[c] = true;
    for (Eigen::Index l = 0; l < C; ++l)
      if (!done[static_cast<std::size_t>(l)]) W.col(l) -= err * Hinv(j, l);
    // Remove column j from the inverse: the inverse Hessian of the columns still free.
    const Eigen::VectorXd h = Hinv.col(j);
    Hinv -= h * h.transpose() / d;
    Hinv(j, j) = 1;  // no longer read; keeps the matrix free of 0/0 later
  }
  return res;
}

struct comparison {
  std::size_t codes = 0, scales = 0, zeros = 0;
};
comparison compare(const lowbit_matrix& m, const oracle_result& o) {
  comparison c;
  const std::size_t groups = m.groups_per_row();
  for (std::size_t r = 0; r < m.rows(); ++r) {
    for (std::size_t col = 0; col < m.cols(); ++col) c.codes += m.code(r, col) != o.q[r * m.cols() + col];
    for (std::size_t g = 0; g < groups; ++g) {
      c.scales += m.scale(r, g) != o.s[r * groups + g];
      c.zeros += m.zero(r, g) != o.z[r * groups + g];
    }
  }
  return c;
}

std::string describe(const gptq_options& o) {
  return "W" + std::to_string(o.quant.bits) + " group " + std::to_string(o.quant.group) +
         (o.quant.symmetric ? " symmetric" : "") + (o.quant.clip_search ? " clip" : "") +
         (o.act_order ? " act_order" : "") + " block " + std::to_string(o.block) + " damp " +
         std::to_string(o.damp);
}

}  // namespace

// 9 x 37 and 6 x 20 matrices on 80 correlated rows: bits 2, 3, 4, 8; per row and groups 8 (of 37:
// a last group of 5) and 5; blocks 1, 3, 8 (groups crossing blocks), 16 and 128; symmetric and
// asymmetric, clip search on and off, act_order on and off. Codes, scales and zeros identical to
// the oracle's (both in double; they could part only on a value within ~1e-15 of a rounding
// boundary).
TEST_CASE("gptq: same codes, scales and zeros as the explicit-inverse evaluation") {
  std::mt19937_64 rng(4242);
  std::size_t cases = 0;
  for (std::size_t cols : {std::size_t{37}, std::size_t{20}}) {
    const std::size_t rows = cols == 37 ? 9 : 6;
    const row_major_matrix x = correlated_inputs(rng, 80, cols);
    const row_major_matrix w = gaussian(rng, rows, cols, 0.2);
    for (int bits : {2, 3, 4, 8})
      for (std::size_t group : {std::size_t{0}, std::size_t{8}, std::size_t{5}})
        for (std::size_t block : {std::size_t{1}, std::size_t{3}, std::size_t{8}, std::size_t{16}, std::size_t{128}})
          for (int variant = 0; variant < 8; ++variant) {
            gptq_options o;
            o.quant = {bits, group, (variant & 1) != 0, (variant & 2) != 0};
            o.act_order = (variant & 4) != 0;
            o.block = block;
            CAPTURE(describe(o));
            const lowbit_matrix m = onebit::gptq(w, x, o);
            REQUIRE(m.bits() == bits);
            REQUIRE(m.group() == group);
            REQUIRE(m.symmetric() == o.quant.symmetric);
            const comparison c = compare(m, oracle(w, x, o));
            CHECK(c.codes == 0);
            CHECK(c.scales == 0);
            CHECK(c.zeros == 0);
            ++cases;
          }
  }
  MESSAGE(cases, " configurations");
}

// Inputs that never fire (zero columns of X): their weights are zeroed before the grids are
// chosen, so they dequantise to the grid's value nearest 0 (exactly 0 when 0 is on the grid:
// always for asymmetric, whose zero point is an integer code), and the result is the oracle's.
// With damp = 0 the dead columns' H_ii = 1 is what keeps H invertible.
TEST_CASE("gptq: dead inputs") {
  std::mt19937_64 rng(77);
  const std::size_t rows = 8, cols = 24;
  row_major_matrix x = correlated_inputs(rng, 100, cols);
  const std::size_t dead[] = {0, 5, 6, 23};
  for (std::size_t c : dead) x.col(static_cast<Eigen::Index>(c)).setZero();
  const row_major_matrix w = gaussian(rng, rows, cols, 0.3);
  for (float damp : {0.0f, 0.01f})
    for (std::size_t group : {std::size_t{0}, std::size_t{8}})
      for (bool act_order : {false, true}) {
        gptq_options o;
        o.quant = {3, group, false, false};
        o.damp = damp;
        o.act_order = act_order;
        o.block = 5;
        CAPTURE(describe(o));
        const lowbit_matrix m = onebit::gptq(w, x, o);
        const comparison c = compare(m, oracle(w, x, o));
        CHECK(c.codes == 0);
        CHECK(c.scales == 0);
        const row_major_matrix d = onebit::dequantized(m);
        for (std::size_t col : dead)
          for (Eigen::Index r = 0; r < d.rows(); ++r) CHECK(d(r, static_cast<Eigen::Index>(col)) == 0.0f);
      }
}

// Deterministic, and the raw-pointer overload with strides equals the Eigen one.
TEST_CASE("gptq: deterministic, strides") {
  std::mt19937_64 rng(91);
  const std::size_t rows = 10, cols = 33, samples = 60;
  const row_major_matrix x = correlated_inputs(rng, samples, cols);
  const row_major_matrix w = gaussian(rng, rows, cols, 0.1);
  gptq_options o;
  o.quant = {3, 16, false, true};
  o.act_order = true;
  o.block = 7;
  const row_major_matrix a = onebit::dequantized(onebit::gptq(w, x, o));
  std::vector<float> ws(rows * 40, 99.0f), xs(samples * 35, -7.0f);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) ws[r * 40 + c] = w(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
  for (std::size_t t = 0; t < samples; ++t)
    for (std::size_t c = 0; c < cols; ++c) xs[t * 35 + c] = x(static_cast<Eigen::Index>(t), static_cast<Eigen::Index>(c));
  const row_major_matrix b =
      onebit::dequantized(onebit::gptq(ws.data(), rows, cols, 40, xs.data(), samples, 35, o));
  CHECK(a == b);
  CHECK(a == onebit::dequantized(onebit::gptq(w, x, o)));
}

// ‖X(Ŵ − W)ᵀ‖² on the calibration rows and on held-out rows of the same distribution below RTN's
// on the same grid (and below clipped RTN's), W2, W3, W4, per row and group 16.
TEST_CASE("gptq: beats RTN on the output error with correlated inputs") {
  std::mt19937_64 rng(5005);
  const std::size_t rows = 32, cols = 64;
  row_major_matrix L = gaussian(rng, cols, cols, 1.0 / 8);
  L.diagonal().array() += 0.3f;
  const row_major_matrix x = (gaussian(rng, 512, cols) * L).eval();
  const row_major_matrix held_out = (gaussian(rng, 512, cols) * L).eval();
  const row_major_matrix w = gaussian(rng, rows, cols, 1.0 / 8);
  for (int bits : {2, 3, 4})
    for (std::size_t group : {std::size_t{0}, std::size_t{16}})
      for (bool act_order : {false, true}) {
        gptq_options o;
        o.quant = {bits, group, false, false};
        o.act_order = act_order;
        CAPTURE(describe(o));
        const row_major_matrix g = onebit::dequantized(onebit::gptq(w, x, o));
        const row_major_matrix r = onebit::dequantized(onebit::rtn(w, o.quant));
        rtn_options clip = o.quant;
        clip.clip_search = true;
        const row_major_matrix rc = onebit::dequantized(onebit::rtn(w, clip));
        for (const row_major_matrix* in : {&x, &held_out}) {
          const double eg = output_error(*in, g, w), er = output_error(*in, r, w), ec = output_error(*in, rc, w);
          MESSAGE(describe(o), std::string(in == &x ? " calibration" : " held-out"), ": gptq ", eg, ", rtn ", er,
                  ", clipped rtn ", ec);
          CHECK(eg < er);
          CHECK(eg < ec);
        }
      }
}

// The 35 linear layers of stories260K, calibrated on 2,048 tokens the model samples itself and
// measured on 2,048 others: the held-out ‖X(Ŵ − W)ᵀ‖² summed over the layers' relative errors,
// GPTQ (act_order, clip search) against clipped RTN, W2, W3 and W4 per row and group 32. The
// issue's target, 20% below clipped RTN at W2, is checked there; W3 and W4 must be below.
TEST_CASE("gptq: real layers of stories260K, held-out output error below clipped RTN") {
  namespace llama = onebit::llama;
  const auto ck = onebit::io::read_llama2c(std::string(ONEBIT_DATA_DIR) + "/tinyllamas/stories260K.bin");
  const llama::model fp32 = llama::model::from_checkpoint(ck);
  const auto calib = llama::sample_sequences(fp32, 2048, 11, 1.0f);
  const auto eval = llama::sample_sequences(fp32, 2048, 12, 1.0f);
  const llama::layer_activations ca = llama::collect_activations(fp32, calib, false);
  const llama::layer_activations ea = llama::collect_activations(fp32, eval, false);
  for (std::size_t group : {std::size_t{0}, std::size_t{32}})
    for (int bits : {2, 3, 4}) {
      double sum_gptq = 0, sum_rtn = 0;
      std::size_t worse = 0, layers = 0;
      for (std::size_t l = 0; l < fp32.blocks.size(); ++l)
        for (llama::slot s : llama::all_slots) {
          const auto m = fp32.original(l, s);
          const std::size_t in = m.cols;
          const std::vector<float>& xc = ca.input(l, s);
          const std::vector<float>& xe = ea.input(l, s);
          gptq_options o;
          o.quant = {bits, group, false, true};
          o.act_order = true;
          const lowbit_matrix g = onebit::gptq(m.w->data(), m.rows, in, in, xc.data(), xc.size() / in, in, o);
          const lowbit_matrix r = onebit::rtn(m.w->data(), m.rows, in, in, o.quant);
          const Eigen::Map<const row_major_matrix> W(m.w->data(), static_cast<Eigen::Index>(m.rows), static_cast<Eigen::Index>(in));
          const Eigen::Map<const row_major_matrix> X(xe.data(), static_cast<Eigen::Index>(xe.size() / in), static_cast<Eigen::Index>(in));
          const row_major_matrix w = W, x = X;
          const double energy = (x.cast<double>() * w.cast<double>().transpose()).squaredNorm();
          const double eg = output_error(x, onebit::dequantized(g), w) / energy;
          const double er = output_error(x, onebit::dequantized(r), w) / energy;
          sum_gptq += eg;
          sum_rtn += er;
          worse += eg > er;
          ++layers;
        }
      const double ratio = sum_gptq / sum_rtn;
      MESSAGE("stories260K W", bits, std::string(group == 0 ? " per row" : " g32"), ": mean relative held-out output error gptq ",
              sum_gptq / static_cast<double>(layers), ", clipped rtn ", sum_rtn / static_cast<double>(layers), " (",
              100.0 * (ratio - 1.0), "%), gptq worse on ", worse, " of ", layers, " layers");
      CHECK(ratio < 1.0);
      if (bits == 2) CHECK(ratio < 0.8);
    }
}

// Bad input: std::invalid_argument whose message names the function and the shapes.
TEST_CASE("gptq: bad input throws std::invalid_argument") {
  std::mt19937_64 rng(3);
  const row_major_matrix w = gaussian(rng, 4, 6), x = gaussian(rng, 10, 6);
  auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "(no exception)";
  };
  auto contains = [](const std::string& s, const char* part) { return s.find(part) != std::string::npos; };
  const row_major_matrix x5 = gaussian(rng, 10, 5);
  std::string e = message([&] { onebit::gptq(w, x5); });
  CHECK(contains(e, "onebit::gptq"));
  CHECK(contains(e, "4x6"));
  CHECK(contains(e, "10x5"));
  e = message([&] { onebit::gptq(w.data(), 0, 6, 6, x.data(), 10, 6); });
  CHECK(contains(e, "zero-size"));
  e = message([&] { onebit::gptq(w.data(), 4, 6, 6, nullptr, 10, 6); });
  CHECK(contains(e, "null"));
  e = message([&] { onebit::gptq(w.data(), 4, 6, 6, x.data(), 0, 6); });
  CHECK(contains(e, "no calibration rows"));
  e = message([&] { onebit::gptq(w.data(), 4, 6, 5, x.data(), 10, 6); });
  CHECK(contains(e, "row_stride 5 < cols 6"));
  e = message([&] { onebit::gptq(w.data(), 4, 6, 6, x.data(), 10, 4); });
  CHECK(contains(e, "row_stride 4 < cols 6 for a 10x6"));
  gptq_options o;
  o.quant.bits = 9;
  CHECK(contains(message([&] { onebit::gptq(w, x, o); }), "bits 9"));
  o = {};
  o.quant.group = 7;
  CHECK(contains(message([&] { onebit::gptq(w, x, o); }), "group 7 > cols 6"));
  o = {};
  o.quant = {1, 0, true, false};
  CHECK(contains(message([&] { onebit::gptq(w, x, o); }), "symmetric"));
  o = {};
  o.damp = -1.0f;
  CHECK(contains(message([&] { onebit::gptq(w, x, o); }), "damp"));
  o = {};
  o.block = 0;
  CHECK(contains(message([&] { onebit::gptq(w, x, o); }), "block 0"));
  row_major_matrix wn = w;
  wn(2, 3) = std::nanf("");
  CHECK(contains(message([&] { onebit::gptq(wn, x); }), "NaN at (2, 3) of a 4x6"));
  row_major_matrix xn = x;
  xn(7, 1) = INFINITY;
  CHECK(contains(message([&] { onebit::gptq(w, xn); }), "infinity at (7, 1)"));
  // Two samples for six inputs: 2·XᵀX has rank 2, singular without dampening.
  o = {};
  o.damp = 0.0f;
  const row_major_matrix x2 = gaussian(rng, 2, 6);
  e = message([&] { onebit::gptq(w, x2, o); });
  CHECK(contains(e, "not positive definite"));
  CHECK(contains(e, "2x6"));
}

}  // namespace test_gptq
