// LoRA-Rounding (quant/lora_rounding.hpp, ALGORITHMS.md §5.1): learned_rounding's gradients of
// A1, A2 against central differences of its own soft weights and regulariser, and of the log
// step sizes against the straight-through surrogate; lora_rounding's reported loss, its identity
// with RTN at the AdaRound start, the one-step bound of the hard rounding, that it beats RTN on
// correlated inputs, seeding, early stop and bad input.
#include <onebit/quant/gptq.hpp>
#include <onebit/quant/lora_rounding.hpp>
#include <onebit/quant/rtn.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_lora_rounding {

namespace {

using onebit::learned_rounding;
using onebit::lora_rounding_options;
using onebit::lora_rounding_progress;
using onebit::lowbit_matrix;
using onebit::rounding_init;
using onebit::rounding_regularizer;
using onebit::row_major_matrix;
using onebit::rtn_options;
using matrix = learned_rounding::matrix;

constexpr rounding_init all_inits[] = {rounding_init::fit, rounding_init::residual,
                                       rounding_init::random};

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

// ‖X(Ŵ − W)ᵀ‖² in double.
double output_error(const row_major_matrix& x, const row_major_matrix& w_hat,
                    const row_major_matrix& w) {
  const Eigen::MatrixXd d = x.cast<double>() * (w_hat.cast<double>() - w.cast<double>()).transpose();
  return d.squaredNorm();
}

double output_energy(const row_major_matrix& x, const row_major_matrix& w) {
  return (x.cast<double>() * w.cast<double>().transpose()).squaredNorm();
}

std::string describe(rounding_init init, const rtn_options& q) {
  return std::string(onebit::to_string(init)) + " W" + std::to_string(q.bits) + " group " +
         std::to_string(q.group) + (q.symmetric ? " symmetric" : " asymmetric");
}

// AdaRound's start V₀ = sigmoid⁻¹((frac(w/s₀) − γ)/(ζ − γ)) on RTN's grid, with the header's
// float operations: the frozen part of V under init residual, which the class does not expose.
matrix adaround_start(const row_major_matrix& w, const lowbit_matrix& grid,
                      const rounding_regularizer& reg) {
  matrix v0(w.rows(), w.cols());
  const std::size_t G = grid.group_size();
  for (Eigen::Index r = 0; r < w.rows(); ++r)
    for (Eigen::Index c = 0; c < w.cols(); ++c) {
      const float s = grid.scale(static_cast<std::size_t>(r), static_cast<std::size_t>(c) / G);
      const float x = w(r, c) / s;
      const float p = (x - std::floor(x) - reg.gamma) / (reg.zeta - reg.gamma);
      v0(r, c) = std::log(p / (1.0f - p));
    }
  return v0;
}

float rectified_sigmoid(float v, const rounding_regularizer& reg) {
  const float sig = 1.0f / (1.0f + std::exp(-v));
  return std::clamp(sig * (reg.zeta - reg.gamma) + reg.gamma, 0.0f, 1.0f);
}

// Σ dW ⊙ Ŵ_soft + λ·R(β), the loss whose gradient backward(dW, β, true) returns.
double soft_loss(const learned_rounding& lr, const matrix& dW, double beta) {
  matrix soft(dW.rows(), dW.cols());
  lr.weights(soft.data(), static_cast<std::size_t>(dW.cols()), false);
  double e = 0;
  for (Eigen::Index i = 0; i < dW.size(); ++i)
    e += static_cast<double>(dW.data()[i]) * soft.data()[i];
  return e + static_cast<double>(lr.regularizer().lambda) * lr.regularization(beta);
}

}  // namespace

// The loss L = Σ dW ⊙ Ŵ_soft + λ·R(β) (dW fixed, N(0, 1); λ = 0.05 and β = 4 so that both terms
// weigh) at a point moved off the start (A1, A2 += N(0, 0.3²), u = N(0, 0.05²)), on a 12 x 16
// matrix, rank 4, for every init, per row and group 8, W3 asymmetric and symmetric.
//
// A1, A2: central differences of L as the class computes it (weights(soft) and regularization()),
// ε = 5e-3 (1e-3 leaves the float rounding of Ŵ at up to 2.5e-3 of the largest gradient; 5e-3
// brings it to ≤ 3.2e-4 measured, the truncation error staying below that). ρ's clamp (at V = ±ln 11 for ζ = 1.1, γ = −0.1; with integer zeros the grid's clamp
// falls on the same points) is a kink: an entry of A1 (A2) is checked only when no V of its row
// (column) lies within 2·ε·|A2| (2·ε·|A1|) + 1e-3 of ±ln 11, which keeps most entries (at least
// half are required; measured 45..48 of 48 and 61..64 of 64). Error held to 2e-3 of the tensor's
// largest gradient (measured worst 3.2e-4; a wrong or missing term is off by O(0.1..1)).
//
// u: floor(w/s) is straight-through, ∂floor(w/s)/∂s taken as ∂(w/s)/∂s (ALGORITHMS.md §5.1:
// "straight-through for floor"; the header: ∂ŵ/∂s = floor(w/s) + ρ − w/s inside the grid,
// code − z where clamped). The surrogate, evaluated here in double from public values: with s
// the current step (step_size(r, g), checked against RTN's s₀·exp(u)), f = floor(w/s), ρ from
// V = A1·A2 (+ V₀) and the clamp branch frozen as at the current point,
//     ŵ(s') = s'·(f + (w/s' − w/s) + ρ)          inside
//     ŵ(s') = s'·(clamp(f + ρ + z, lo, hi) − z)  clamped,    s' = s·exp(u' − u),
// and L(u') = Σ dW ⊙ ŵ(s'), by central differences in u' (ε = 1e-3). The surrogate is smooth
// and evaluated in double (the header's gradient is summed in float over ≤ 16 terms), so held to
// 1e-4 of the largest (measured ≤ 3.2e-7). (Freezing floor(w/s) instead, i.e. the derivative of
// the true function between its jumps, would miss the −w/s term: not what §5.1 specifies.)
TEST_CASE("learned_rounding: gradients of A1, A2 and the log step sizes match finite differences") {
  std::mt19937_64 rng(1001);
  const std::size_t rows = 12, cols = 16, rank = 4;
  const double beta = 4.0, eps = 5e-3, eps_u = 1e-3;
  const double kink = std::log(11.0);
  for (rounding_init init : all_inits)
    for (std::size_t group : {std::size_t{0}, std::size_t{8}})
      for (bool symmetric : {false, true}) {
        const rtn_options quant{3, group, symmetric};
        CAPTURE(describe(init, quant));
        const row_major_matrix w = gaussian(rng, rows, cols);
        rounding_regularizer reg;
        reg.lambda = 0.05f;
        learned_rounding lr(w.data(), rows, cols, cols, quant, rank, init, rng(), reg);
        const lowbit_matrix grid = onebit::rtn(w, quant);
        const matrix V0 = init == rounding_init::residual ? adaround_start(w, grid, reg)
                                                          : matrix::Zero(rows, cols).eval();
        std::normal_distribution<float> move(0.0f, 0.3f), shift(0.0f, 0.05f);
        for (Eigen::Index i = 0; i < lr.A1().size(); ++i) lr.A1().data()[i] += move(rng);
        for (Eigen::Index i = 0; i < lr.A2().size(); ++i) lr.A2().data()[i] += move(rng);
        for (float& u : lr.log_steps()) u = shift(rng);
        const matrix dW = gaussian(rng, rows, cols);

        const double R = lr.backward(dW.data(), cols, beta, true);
        CHECK(R == doctest::Approx(lr.regularization(beta)).epsilon(1e-12));
        const matrix gA1 = lr.A1_gradient(), gA2 = lr.A2_gradient();
        const std::vector<float> gu = lr.log_steps_gradient();
        REQUIRE(gA1.rows() == static_cast<Eigen::Index>(rows));
        REQUIRE(gA1.cols() == static_cast<Eigen::Index>(rank));
        REQUIRE(gA2.rows() == static_cast<Eigen::Index>(rank));
        REQUIRE(gA2.cols() == static_cast<Eigen::Index>(cols));
        REQUIRE(gu.size() == grid.scales().size());

        const matrix V = (lr.A1() * lr.A2() + V0).eval();
        auto near_kink = [&](float v, float slope) {
          return std::fabs(std::fabs(static_cast<double>(v)) - kink) <
                 2.0 * eps * std::fabs(slope) + 1e-3;
        };
        // A1(i, j) moves V(i, ·) by ε·A2(j, ·); A2(j, c) moves V(·, c) by ε·A1(·, j).
        for (int which = 0; which < 2; ++which) {
          matrix& A = which == 0 ? lr.A1() : lr.A2();
          const matrix& g = which == 0 ? gA1 : gA2;
          double scale = 0, worst = 0;
          std::size_t checked = 0;
          for (Eigen::Index i = 0; i < A.rows(); ++i)
            for (Eigen::Index j = 0; j < A.cols(); ++j) {
              bool kinked = false;
              if (which == 0) {
                for (Eigen::Index c = 0; c < V.cols(); ++c) kinked |= near_kink(V(i, c), lr.A2()(j, c));
              } else {
                for (Eigen::Index r = 0; r < V.rows(); ++r) kinked |= near_kink(V(r, j), lr.A1()(r, i));
              }
              if (kinked) continue;
              const float keep = A(i, j);
              A(i, j) = static_cast<float>(keep + eps);
              const double plus = soft_loss(lr, dW, beta);
              const double h_plus = static_cast<double>(A(i, j)) - keep;
              A(i, j) = static_cast<float>(keep - eps);
              const double minus = soft_loss(lr, dW, beta);
              const double h_minus = keep - static_cast<double>(A(i, j));
              A(i, j) = keep;
              const double numeric = (plus - minus) / (h_plus + h_minus);
              scale = std::max(scale, std::fabs(numeric));
              worst = std::max(worst, std::fabs(numeric - g(i, j)));
              ++checked;
            }
          CAPTURE(which);
          CAPTURE(checked);
          CHECK(checked * 2 >= static_cast<std::size_t>(A.size()));
          CHECK(scale > 1e-3);
          CHECK(worst <= 2e-3 * scale);
        }

        // u against the straight-through surrogate.
        const std::size_t G = grid.group_size(), groups = grid.groups_per_row();
        const float lo = symmetric ? 1.0f : 0.0f, hi = static_cast<float>((1 << quant.bits) - 1);
        auto surrogate = [&](std::size_t r, std::size_t gi, double du) {
          const float s = lr.step_size(r, gi), z = grid.zero(r, gi);
          const double s_new = s * std::exp(du);
          double e = 0;
          for (std::size_t c = gi * G; c < std::min(cols, (gi + 1) * G); ++c) {
            const Eigen::Index R_ = static_cast<Eigen::Index>(r), C_ = static_cast<Eigen::Index>(c);
            const float wv = w(R_, C_), f = std::floor(wv / s), rho = rectified_sigmoid(V(R_, C_), reg);
            const float code = f + rho + z;
            const bool clamped = code <= lo || code >= hi;
            const double q = clamped ? static_cast<double>(std::clamp(code, lo, hi)) - z
                                     : f + (wv / s_new - static_cast<double>(wv) / s) + rho;
            e += static_cast<double>(dW(R_, C_)) * s_new * q;
          }
          return e;
        };
        double scale = 0, worst = 0;
        for (std::size_t r = 0; r < rows; ++r)
          for (std::size_t gi = 0; gi < groups; ++gi) {
            const std::size_t k = r * groups + gi;
            CHECK(lr.step_size(r, gi) ==
                  doctest::Approx(grid.scale(r, gi) * std::exp(lr.log_steps()[k])).epsilon(1e-6));
            const double numeric = (surrogate(r, gi, eps_u) - surrogate(r, gi, -eps_u)) / (2 * eps_u);
            scale = std::max(scale, std::fabs(numeric));
            worst = std::max(worst, std::fabs(numeric - gu[k]));
          }
        CHECK(scale > 1e-3);
        CHECK(worst <= 1e-4 * scale);
      }
}

// The first report (iterations 1) is the relative output error ‖X(Ŵ − W)ᵀ‖²/‖X Wᵀ‖² of the
// start's soft weights, recomputed in double from a learned_rounding made with the same
// arguments (rank min(rank, rows, cols)); the header evaluates it through H = XᵀX in float, so
// held to 1e-4 relative. Then over 12 iterations reported every one, a mirror driven by this
// file's own gradient of that loss, 2·(Ŵ − W)·XᵀX/‖X Wᵀ‖² in double, with λ/(rows·cols), the
// same Adam steps and the β schedule, follows the reported losses (1e-3 relative: the two only
// differ by float rounding), and β, the warm-up and R are as documented.
TEST_CASE("lora_rounding: the reported loss is the soft weights' relative output error") {
  std::mt19937_64 rng(2002);
  const std::size_t rows = 24, cols = 40, samples = 96;
  const row_major_matrix w = gaussian(rng, rows, cols, 0.2);
  const row_major_matrix x = correlated_inputs(rng, samples, cols);
  const double energy = output_energy(x, w);
  const Eigen::MatrixXd H = x.cast<double>().transpose() * x.cast<double>();
  for (rounding_init init : all_inits)
    for (std::size_t group : {std::size_t{0}, std::size_t{8}}) {
      lora_rounding_options o;
      o.quant = {3, group, false};
      o.rank = 6;
      o.init = init;
      o.seed = 77;
      CAPTURE(describe(init, o.quant));
      std::vector<lora_rounding_progress> seen;
      o.progress = [&](const lora_rounding_progress& p) {
        seen.push_back(p);
        return true;
      };
      o.report_every = 1;
      o.iterations = 12;
      onebit::lora_rounding(w.data(), rows, cols, cols, x.data(), samples, cols, o);
      REQUIRE(seen.size() == 12);

      learned_rounding mirror(w.data(), rows, cols, cols, o.quant, o.rank, init, o.seed,
                              o.regularizer);
      mirror.regularizer().lambda = static_cast<float>(o.regularizer.lambda / double(rows * cols));
      row_major_matrix soft(rows, cols);
      for (int t = 0; t < o.iterations; ++t) {
        const lora_rounding_progress& p = seen[static_cast<std::size_t>(t)];
        CAPTURE(t);
        CHECK(p.iteration == t + 1);
        CHECK(p.iterations == o.iterations);
        CHECK(p.beta == doctest::Approx(o.regularizer.beta(t, o.iterations)));
        const bool on = o.regularizer.active(t, o.iterations);
        CHECK(on == (t >= 3));  // warm-up 0.2 of 12 iterations: t < 2.4
        mirror.weights(soft.data(), cols, false);
        const double rec = output_error(x, soft, w) / energy;
        CHECK(p.reconstruction == doctest::Approx(rec).epsilon(t == 0 ? 1e-4 : 1e-3));
        const double R = mirror.regularization(p.beta);
        if (on)
          CHECK(p.regularization == doctest::Approx(R).epsilon(1e-3));
        else
          CHECK(p.regularization == 0.0);
        const matrix dW = (2.0 / energy * (soft.cast<double>() - w.cast<double>()) * H).cast<float>();
        mirror.backward(dW.data(), cols, p.beta, on);
        mirror.step(o.rounding_adam, o.step_adam);
      }
    }
}

// With no iteration, init residual rounds exactly as RTN: ρ(V₀) = frac(w/s) and A1·A2 = 0, so
// ρ ≥ 1/2 is w/s rounded to nearest, on RTN's own s and z (u = 0). Same codes, scales and zeros,
// bit for bit, for W2..W4, per row and groups, both grids.
TEST_CASE("lora_rounding: init residual with 0 iterations is RTN exactly") {
  std::mt19937_64 rng(3003);
  const std::size_t rows = 20, cols = 48, samples = 30;
  const row_major_matrix x = gaussian(rng, samples, cols);
  for (int bits : {2, 3, 4})
    for (std::size_t group : {std::size_t{0}, std::size_t{16}, std::size_t{7}})
      for (bool symmetric : {false, true}) {
        const row_major_matrix w = gaussian(rng, rows, cols, 0.05);
        lora_rounding_options o;
        o.quant = {bits, group, symmetric};
        o.init = rounding_init::residual;
        o.iterations = 0;
        CAPTURE(describe(o.init, o.quant));
        const lowbit_matrix got = onebit::lora_rounding(w, x, o);
        const lowbit_matrix want = onebit::rtn(w, o.quant);
        REQUIRE(got.rows() == rows);
        REQUIRE(got.cols() == cols);
        CHECK(got.bits() == bits);
        CHECK(got.group() == group);
        CHECK(got.symmetric() == symmetric);
        CHECK(got.scales() == want.scales());
        CHECK(got.zeros() == want.zeros());
        std::size_t differ = 0;
        for (std::size_t r = 0; r < rows; ++r)
          for (std::size_t c = 0; c < cols; ++c) differ += got.code(r, c) != want.code(r, c);
        CHECK(differ == 0);
      }
}

namespace {

struct one_step_count {
  std::size_t inside = 0, outside = 0, bad = 0;
};

// Elements of the hard result m of W with w/s + z in [lo, hi] (s, z m's own) within one step of
// w, |ŵ − w| ≤ s·(1 + 1e-5) (float rounding of w/s and of ŵ); the others exactly at the grid's
// end s·(lo − z) or s·(hi − z).
one_step_count one_step(const row_major_matrix& w, const lowbit_matrix& m) {
  const row_major_matrix wq = onebit::dequantized(m);
  const double lo = m.symmetric() ? 1 : 0, hi = (1 << m.bits()) - 1;
  one_step_count n;
  for (std::size_t r = 0; r < m.rows(); ++r)
    for (std::size_t c = 0; c < m.cols(); ++c) {
      const std::size_t g = c / m.group_size();
      const float s = m.scale(r, g), z = m.zero(r, g);
      const float wv = w(Eigen::Index(r), Eigen::Index(c)), got = wq(Eigen::Index(r), Eigen::Index(c));
      const double pos = static_cast<double>(wv) / s + z;
      if (pos >= lo && pos <= hi) {
        ++n.inside;
        n.bad += !(std::fabs(static_cast<double>(got) - wv) <= s * (1 + 1e-5));
      } else {
        ++n.outside;
        const float end = static_cast<float>(static_cast<double>(s) * ((pos < lo ? lo : hi) - z));
        n.bad += got != end;
      }
    }
  return n;
}

}  // namespace

// The one-step bound of the hard rounding, W2, W3, W4, per row and group 32, asymmetric (lo = 0)
// and symmetric (lo = 1):
//  * learned_rounding::result() with learned values set at random, A1, A2 ~ N(0, 1) (ρ spread
//    over [0, 1], many at the clamp) and u ~ N(0, 0.3²) (steps both shrunk, so that part of W
//    falls off the grid's range and the end case is exercised, and grown), every init;
//  * lora_rounding's result after 150 iterations (defaults otherwise).
TEST_CASE("learned_rounding and lora_rounding: the hard result is within one step of W on the grid's range") {
  std::mt19937_64 rng(4004);
  const std::size_t rows = 24, cols = 64, samples = 128;
  const row_major_matrix x = correlated_inputs(rng, samples, cols);
  std::size_t learned_steps = 0, off_range = 0;
  for (int bits : {2, 3, 4})
    for (std::size_t group : {std::size_t{0}, std::size_t{32}})
      for (bool symmetric : {false, true}) {
        const row_major_matrix w = gaussian(rng, rows, cols, 0.1);
        const rtn_options quant{bits, group, symmetric};
        for (rounding_init init : all_inits) {
          CAPTURE(describe(init, quant));
          learned_rounding lr(w.data(), rows, cols, cols, quant, 8, init, rng());
          std::normal_distribution<float> unit(0.0f, 1.0f), shift(0.0f, 0.3f);
          for (Eigen::Index i = 0; i < lr.A1().size(); ++i) lr.A1().data()[i] = unit(rng);
          for (Eigen::Index i = 0; i < lr.A2().size(); ++i) lr.A2().data()[i] = unit(rng);
          for (float& u : lr.log_steps()) u = shift(rng);
          const lowbit_matrix m = lr.result();
          CHECK(m.bits() == bits);
          CHECK(m.group() == group);
          CHECK(m.symmetric() == symmetric);
          for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t g = 0; g < m.groups_per_row(); ++g)
              CHECK(m.scale(r, g) == lr.step_size(r, g));
          const one_step_count n = one_step(w, m);
          CAPTURE(n.inside);
          CAPTURE(n.outside);
          CHECK(n.bad == 0);
          off_range += n.outside;
          // The hard weights() are the result's dequantised values, bit for bit.
          row_major_matrix hard(rows, cols);
          lr.weights(hard.data(), cols, true);
          CHECK(hard == onebit::dequantized(m));
        }
        lora_rounding_options o;
        o.quant = quant;
        o.iterations = 150;
        o.seed = rng();
        CAPTURE(describe(o.init, o.quant));
        const lowbit_matrix m = onebit::lora_rounding(w, x, o);
        learned_steps += m.scales() != onebit::rtn(w, quant).scales();
        const one_step_count n = one_step(w, m);
        CAPTURE(n.inside);
        CAPTURE(n.outside);
        CHECK(n.bad == 0);
        CHECK(n.inside > rows * cols / 2);
      }
  MESSAGE("one-step bound: ", off_range, " elements off the range with random steps; ",
          learned_steps, " of 12 lora_rounding results with steps other than RTN's");
  CHECK(off_range > 0);
}

// X = Z·L (correlated inputs), W 32 x 64 ~ N(0, 1/64), defaults but the grid: ‖X(Ŵ − W)ᵀ‖² of
// lora_rounding below RTN's on the same grid, W2 and W3, per row and group 32.
TEST_CASE("lora_rounding: beats RTN on the output error with correlated inputs") {
  std::mt19937_64 rng(5005);
  const std::size_t rows = 32, cols = 64, samples = 256;
  const row_major_matrix x = correlated_inputs(rng, samples, cols);
  const row_major_matrix w = gaussian(rng, rows, cols, 1.0 / 8);
  for (int bits : {2, 3})
    for (std::size_t group : {std::size_t{0}, std::size_t{32}}) {
      lora_rounding_options o;
      o.quant = {bits, group, false};
      CAPTURE(describe(o.init, o.quant));
      const double learned = output_error(x, onebit::dequantized(onebit::lora_rounding(w, x, o)), w);
      const double rtn = output_error(x, onebit::dequantized(onebit::rtn(w, o.quant)), w);
      MESSAGE(describe(o.init, o.quant), ": ‖X(Ŵ−W)ᵀ‖² lora_rounding ", learned, ", rtn ", rtn,
              " (‖XWᵀ‖² ", output_energy(x, w), ")");
      CHECK(learned < rtn);
    }
}

// Never worse than RTN on its own objective, whatever the init and the grid (W4 included, where
// a low-rank V started by init fit or random cannot express RTN's choices and RTN's are kept).
TEST_CASE("lora_rounding: never worse than RTN on the calibration inputs") {
  std::mt19937_64 rng(5006);
  const std::size_t rows = 24, cols = 48, samples = 128;
  const row_major_matrix x = correlated_inputs(rng, samples, cols);
  const row_major_matrix w = gaussian(rng, rows, cols, 1.0 / 7);
  for (rounding_init init : all_inits)
    for (int bits : {2, 3, 4}) {
      lora_rounding_options o;
      o.quant = {bits, 0, false};
      o.init = init;
      o.iterations = 100;
      CAPTURE(describe(o.init, o.quant));
      const double learned = output_error(x, onebit::dequantized(onebit::lora_rounding(w, x, o)), w);
      const double rtn = output_error(x, onebit::dequantized(onebit::rtn(w, o.quant)), w);
      CHECK(learned <= rtn * (1 + 1e-5));
    }
}

// The same seed gives the same matrix (codes, scales, zeros); with init random another seed
// starts from other A1, A2, and the learned steps (at least) come out different. At W2 per row,
// where learned rounding beats RTN's (which lora_rounding returns when it does not).
TEST_CASE("lora_rounding: reproducible from its seed") {
  std::mt19937_64 rng(6006);
  const std::size_t rows = 16, cols = 32, samples = 64;
  const row_major_matrix x = correlated_inputs(rng, samples, cols);
  const row_major_matrix w = gaussian(rng, rows, cols, 0.1);
  auto same = [&](const lowbit_matrix& a, const lowbit_matrix& b) {
    if (a.scales() != b.scales() || a.zeros() != b.zeros()) return false;
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c)
        if (a.code(r, c) != b.code(r, c)) return false;
    return true;
  };
  for (rounding_init init : all_inits) {
    lora_rounding_options o;
    o.quant = {2, 0, false};
    o.init = init;
    o.iterations = 100;
    o.seed = 12345;
    CAPTURE(std::string(onebit::to_string(init)));
    const lowbit_matrix a = onebit::lora_rounding(w, x, o);
    const lowbit_matrix b = onebit::lora_rounding(w, x, o);
    CHECK(same(a, b));
    if (init == rounding_init::random) {
      o.seed = 54321;
      CHECK_FALSE(same(a, onebit::lora_rounding(w, x, o)));
    }
  }
}

// Reports at every report_every-th iteration and at the last (23 iterations by 5: 5 reports);
// returning false on the first report stops there (one call) and still gives a valid matrix of
// the asked format.
TEST_CASE("lora_rounding: progress reports and early stop") {
  std::mt19937_64 rng(7007);
  const std::size_t rows = 12, cols = 20, samples = 40;
  const row_major_matrix x = gaussian(rng, samples, cols);
  const row_major_matrix w = gaussian(rng, rows, cols);
  lora_rounding_options o;
  o.quant = {3, 0, true};
  o.iterations = 23;
  o.report_every = 5;
  std::vector<int> at;
  o.progress = [&](const lora_rounding_progress& p) {
    at.push_back(p.iteration);
    return true;
  };
  onebit::lora_rounding(w, x, o);
  CHECK(at == std::vector<int>{5, 10, 15, 20, 23});

  int calls = 0;
  o.iterations = 500;
  o.progress = [&](const lora_rounding_progress& p) {
    ++calls;
    CHECK(p.iteration == 5);
    return false;
  };
  const lowbit_matrix m = onebit::lora_rounding(w, x, o);
  CHECK(calls == 1);
  REQUIRE(m.rows() == rows);
  REQUIRE(m.cols() == cols);
  CHECK(m.bits() == 3);
  CHECK(m.symmetric());
  const row_major_matrix d = onebit::dequantized(m);
  CHECK(d.allFinite());
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) CHECK(m.code(r, c) >= 1u);  // symmetric: codes 1..7
}

TEST_CASE("lora_rounding and learned_rounding: bad input throws std::invalid_argument") {
  std::mt19937_64 rng(8008);
  const std::size_t rows = 8, cols = 12, samples = 10;
  const row_major_matrix w = gaussian(rng, rows, cols);
  const row_major_matrix x = gaussian(rng, samples, cols);
  const rtn_options q{3, 0, false};
  auto make = [&](std::size_t rank, const rounding_regularizer& reg = {}) {
    learned_rounding lr(w.data(), rows, cols, cols, q, rank, rounding_init::fit, 1, reg);
    return lr.rank();
  };
  CHECK_THROWS_AS(make(0), std::invalid_argument);
  CHECK_THROWS_AS(make(9), std::invalid_argument);  // > min(8, 12)
  CHECK(make(8) == 8);
  for (auto bad : {+[](rounding_regularizer& r) { r.zeta = 1.0f; },
                   +[](rounding_regularizer& r) { r.zeta = 0.5f; },
                   +[](rounding_regularizer& r) { r.warmup = 1.0f; }}) {
    rounding_regularizer reg;
    bad(reg);
    CHECK_THROWS_AS(make(2, reg), std::invalid_argument);
    lora_rounding_options o;
    o.regularizer = reg;
    CHECK_THROWS_AS(onebit::lora_rounding(w, x, o), std::invalid_argument);
  }

  auto run = [&](lora_rounding_options o) { return onebit::lora_rounding(w, x, o); };
  lora_rounding_options o;
  o.iterations = 2;
  CHECK_NOTHROW(run(o));
  {
    auto b = o;
    b.rank = 0;
    CHECK_THROWS_AS(run(b), std::invalid_argument);
  }
  {
    auto b = o;
    b.iterations = -1;
    CHECK_THROWS_AS(run(b), std::invalid_argument);
  }
  {
    auto b = o;
    b.report_every = 0;
    CHECK_THROWS_AS(run(b), std::invalid_argument);
  }
  for (int bits : {0, 9}) {
    auto b = o;
    b.quant.bits = bits;
    CHECK_THROWS_AS(run(b), std::invalid_argument);
  }
  {
    auto b = o;
    b.quant.group = cols + 1;
    CHECK_THROWS_AS(run(b), std::invalid_argument);
  }
  CHECK_THROWS_AS(onebit::lora_rounding(nullptr, rows, cols, cols, x.data(), samples, cols, o),
                  std::invalid_argument);
  CHECK_THROWS_AS(onebit::lora_rounding(w.data(), rows, cols, cols, nullptr, samples, cols, o),
                  std::invalid_argument);
  {
    row_major_matrix bad = w;
    bad(3, 5) = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_AS(onebit::lora_rounding(bad, x, o), std::invalid_argument);
  }
  {
    row_major_matrix bad = x;
    bad(7, 2) = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_AS(onebit::lora_rounding(w, bad, o), std::invalid_argument);
  }
  {
    const row_major_matrix narrow = gaussian(rng, samples, cols - 1);
    CHECK_THROWS_AS(onebit::lora_rounding(w, narrow, o), std::invalid_argument);
  }
}

// Starting from GPTQ's grid (init_grid gptq, gptq.hpp): learned_rounding takes GPTQ's scales and
// zeros, and with init residual its hard rounding before any step is GPTQ's wherever GPTQ's code
// is floor(w/s) or floor(w/s) + 1 (the reach of a learned rounding), the nearer end elsewhere;
// lora_rounding's result is never worse than GPTQ's (nor RTN's) on the calibration inputs. W2, W3,
// per row and group 16, clip search on and off. A start grid of another shape or format throws.
TEST_CASE("lora_rounding: init_grid gptq starts from GPTQ's grid and never ends worse") {
  std::mt19937_64 rng(8008);
  const std::size_t rows = 24, cols = 48, samples = 200;
  const row_major_matrix x = correlated_inputs(rng, samples, cols);
  const row_major_matrix w = gaussian(rng, rows, cols, 1.0 / 7);
  for (int bits : {2, 3})
    for (std::size_t group : {std::size_t{0}, std::size_t{16}})
      for (bool clip : {false, true}) {
        rtn_options q{bits, group, false};
        q.clip_search = clip;
        CAPTURE(describe(rounding_init::residual, q));
        onebit::gptq_options go;
        go.quant = q;
        go.act_order = true;
        const lowbit_matrix g = onebit::gptq(w, x, go);
        learned_rounding lr(w.data(), rows, cols, cols, q, 4, rounding_init::residual, 1, {}, &g);
        const lowbit_matrix start = lr.result();
        CHECK(start.scales() == g.scales());
        CHECK(start.zeros() == g.zeros());
        std::size_t reach = 0, differ = 0;
        for (std::size_t r = 0; r < rows; ++r)
          for (std::size_t c = 0; c < cols; ++c) {
            const std::size_t k = r * g.groups_per_row() + c / g.group_size();
            const float s = g.scales()[k], z = g.zeros()[k];
            const float up = static_cast<float>(g.code(r, c)) - z - std::floor(w(Eigen::Index(r), Eigen::Index(c)) / s);
            if (up == 0.0f || up == 1.0f) {
              ++reach;
              differ += start.code(r, c) != g.code(r, c);
            }
          }
        CHECK(differ == 0);
        MESSAGE(describe(rounding_init::residual, q), ": ", reach, " of ", rows * cols, " GPTQ codes within the reach of learned rounding");
        CHECK(reach * 2 > rows * cols);

        lora_rounding_options o;
        o.quant = q;
        o.init_grid = onebit::init_grid::gptq;
        o.gptq = go;
        o.iterations = 150;
        const double learned = output_error(x, onebit::dequantized(onebit::lora_rounding(w, x, o)), w);
        const double from_gptq = output_error(x, onebit::dequantized(g), w);
        const double rtn = output_error(x, onebit::dequantized(onebit::rtn(w, q)), w);
        MESSAGE(describe(o.init, q), ": ‖X(Ŵ−W)ᵀ‖² lora_rounding from gptq ", learned, ", gptq ",
                from_gptq, ", rtn ", rtn);
        CHECK(learned <= from_gptq * (1 + 1e-5));
        CHECK(learned <= rtn * (1 + 1e-5));
      }
  const rtn_options q{3, 0, false};
  const lowbit_matrix other = onebit::rtn(w, rtn_options{2, 0, false});
  CHECK_THROWS_AS(learned_rounding(w.data(), rows, cols, cols, q, 4, rounding_init::fit, 1, {}, &other),
                  std::invalid_argument);
  const row_major_matrix w_small = w.topRows(5);
  const lowbit_matrix small = onebit::rtn(w_small, q);
  CHECK_THROWS_AS(learned_rounding(w.data(), rows, cols, cols, q, 4, rounding_init::fit, 1, {}, &small),
                  std::invalid_argument);
}

}  // namespace test_lora_rounding
