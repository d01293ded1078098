// LoRA-Rounding (CBQ, ALGORITHMS.md §5.1): learned rounding of W to a k-bit grid whose
// rounding variables form a rank-r matrix V = A1·A2 (AdaRound with (rows + cols)·r variables
// instead of rows·cols), learned jointly with the step sizes; the result is an ordinary RTN-format
// lowbit_matrix.
//
// Per weight w of group g (scale s, zero z, codes lo..hi as RTN's grid, rtn.hpp):
//
//     ρ(V)  = clamp(sigmoid(V)·(ζ − γ) + γ, 0, 1),          ζ = 1.1, γ = −0.1
//     ŵ     = s·(clamp(floor(w/s) + ρ(V) + z, lo, hi) − z)   (soft; hard: ρ ≥ 1/2 → 1, else 0)
//     R     = Σ (1 − |2ρ − 1|^β),   β annealed from beta_start to beta_end after a warm-up
//     E     = reconstruction + λ·R
//
// Gradients are closed-form: ∂ŵ/∂ρ = s inside the grid, 0 where clamped; floor is
// straight-through, so ∂ŵ/∂s = floor(w/s) + ρ − w/s inside and (code − z) where clamped. The step
// sizes learn as s = s₀·exp(u) (u from 0), so one learning rate moves every group's step by the
// same relative amount whatever its magnitude; z stays RTN's.
//
// Hard rounding keeps ŵ within one step of w wherever w lies on the grid's range
// [s·(lo − z), s·(hi − z)] (|ŵ − w| < s, plus float rounding of ŵ), and at the range's end
// elsewhere.
//
// Where V starts (rounding_init):
//  * fit:      A1·A2 = the rank-r truncated SVD of AdaRound's start, V₀ = sigmoid⁻¹((frac(w/s) − γ)
//              /(ζ − γ)) (so that ρ(V₀) = frac(w/s)), found by randomised subspace iteration;
//  * residual: V = V₀ + A1·A2 with V₀ frozen and A1·A2 = 0 at the start (LoRA proper: a low-rank
//              update of AdaRound's full start, whose hard rounding is RTN's; rows·cols floats of
//              memory but still (rows + cols)·r learned variables);
//  * random:   A1, A2 small and random (ρ ≈ 1/2 everywhere at the start).
// Measured on stories260K at W2 per row (examples/tinyllama_cbq, KL to FP32 on 2,000 tokens;
// RTN 4.87): CBQ fit 1.38, residual 1.59, random 1.99; per layer fit 3.01, residual 3.06,
// random 3.54. Hence fit. Rank: r = 4, 8, 16, 32 gave CBQ 2.46, 1.71, 1.38, 1.29; 16 is the
// default as the largest rank at most a quarter of every matrix's smaller side there (r = 32
// is full rank for the 32 x 64 wk and wv: no longer low-rank).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <Eigen/QR>
#include <Eigen/SVD>

#include "../lowbit_matrix.hpp"
#include "matrix.hpp"
#include "gptq.hpp"
#include "optim.hpp"
#include "rtn.hpp"

namespace onebit {

enum class rounding_init { fit, residual, random };

// The grid (s, z) learning starts from, and the rounding V₀ stands for: RTN's (with
// rtn_options::clip_search, clipped RTN's), or GPTQ's (gptq.hpp; its grids follow the same
// clip_search), whose codes then replace frac(w/s) as the start of ρ.
enum class init_grid { rtn, gptq };

inline const char* to_string(init_grid g) noexcept { return g == init_grid::gptq ? "gptq" : "rtn"; }

inline const char* to_string(rounding_init i) noexcept {
  switch (i) {
    case rounding_init::fit: return "fit";
    case rounding_init::residual: return "residual";
    case rounding_init::random: break;
  }
  return "random";
}

// AdaRound's rectified sigmoid and its annealed regulariser.
struct rounding_regularizer {
  float zeta = 1.1f, gamma = -0.1f;
  float lambda = 0.01f;      // weight of R in the loss
  float beta_start = 20.0f;  // β at the end of the warm-up ...
  float beta_end = 2.0f;     // ... falling linearly to this at the last iteration
  float warmup = 0.2f;       // fraction of the iterations with R off (AdaRound's warm start)

  // β at iteration t of n, and whether R is on.
  double beta(int t, int n) const noexcept {
    const double start = static_cast<double>(warmup) * n;
    const double f = n <= start ? 1.0 : (t - start) / (n - start);
    return beta_start + (beta_end - beta_start) * std::clamp(f, 0.0, 1.0);
  }
  bool active(int t, int n) const noexcept { return t >= static_cast<double>(warmup) * n; }
};

namespace detail::quant {

// The rounding variables and step sizes of one weight matrix, and their gradients. The building
// block of lora_rounding (one layer) and cross_block (a window of blocks). Used as the alias
// onebit::learned_rounding below; a class template only so that the Eigen code it runs (QR and
// SVD in double, float GEMMs) is compiled where learned rounding is used, not in every
// translation unit that includes this header (docs/design.md, "Compile cost").
template <class Lazy>
class learned_rounding {
 public:
  using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  // W (rows x cols, rows row_stride apart) on the grid rtn(W, quant) would use, or on the grid
  // of `start` (a rows x cols matrix in quant's format, e.g. gptq's result), whose codes then
  // give ρ's start: ρ₀ = 3/4 where its code is floor(w/s) + 1 or above, 1/4 where floor(w/s) or
  // below (decided for the hard rounding, yet off ρ's clamp so that gradients still flow; a code
  // two or more steps from w/s is out of reach of the learned rounding and clamps to the nearer).
  learned_rounding(const float* w, std::size_t rows, std::size_t cols, std::size_t row_stride,
                   const rtn_options& quant, std::size_t rank, rounding_init init,
                   std::uint64_t seed, const rounding_regularizer& reg = {},
                   const lowbit_matrix* start_grid = nullptr)
      : quant_(quant), reg_(reg), init_(init) {
    // rtn() checks the shape, the pointer, the stride, finiteness and the options, and gives the
    // grid (s, z) learning starts from.
    const lowbit_matrix start = rtn(w, rows, cols, row_stride, quant);
    if (start_grid != nullptr &&
        (start_grid->rows() != rows || start_grid->cols() != cols ||
         start_grid->bits() != quant.bits || start_grid->group() != quant.group ||
         start_grid->symmetric() != quant.symmetric))
      throw std::invalid_argument("onebit::learned_rounding: the start grid is not a " +
                                  detail::shape_string(rows, cols) + " matrix of " +
                                  std::to_string(quant.bits) + " bits, group " +
                                  std::to_string(quant.group) + " as quant asks");
    start_ = start_grid;
    if (rank == 0 || rank > std::min(rows, cols))
      throw std::invalid_argument("onebit::learned_rounding: rank " + std::to_string(rank) +
                                  " outside 1..min(rows, cols) = " +
                                  std::to_string(std::min(rows, cols)) + " for a " +
                                  detail::shape_string(rows, cols) + " matrix");
    if (!(reg.zeta > 1.0f) || !(reg.gamma < 0.0f) || !(reg.lambda >= 0.0f) ||
        !(reg.beta_start > 0.0f) || !(reg.beta_end > 0.0f) || !(reg.warmup >= 0.0f) ||
        !(reg.warmup < 1.0f))
      throw std::invalid_argument(
          "onebit::learned_rounding: regularizer needs zeta > 1, gamma < 0, lambda >= 0, "
          "beta_start, beta_end > 0 and 0 <= warmup < 1");
    rows_ = rows;
    cols_ = cols;
    group_ = start.group_size();
    groups_ = start.groups_per_row();
    w_.resize(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c) w_(idx(r), idx(c)) = w[r * row_stride + c];
    s0_ = (start_grid != nullptr ? *start_grid : start).scales();
    z_ = (start_grid != nullptr ? *start_grid : start).zeros();
    u_.assign(s0_.size(), 0.0f);
    lo_ = quant.symmetric ? 1.0f : 0.0f;
    hi_ = static_cast<float>((1 << quant.bits) - 1);

    const Eigen::Index R = idx(rows), C = idx(cols), r = idx(rank);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto randn = [&](Eigen::Index m, Eigen::Index n, float sigma) {
      matrix a(m, n);
      for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = sigma * normal(rng);
      return a;
    };
    if (init == rounding_init::random) {
      // Small enough that ρ starts within ~0.01 of 1/2, large enough to break symmetry.
      A1_ = randn(R, r, 0.1f);
      A2_ = randn(r, C, 0.1f);
    } else {
      matrix v0 = adaround_start();
      if (init == rounding_init::residual) {
        v0_ = std::move(v0);
        A1_ = randn(R, r, 0.1f);  // LoRA's start: A1 random, A2 zero, so A1·A2 = 0
        A2_ = matrix::Zero(r, C);
      } else {
        low_rank_fit(v0, r, rng);
      }
    }
    gA1_.resize(A1_.rows(), A1_.cols());
    gA2_.resize(A2_.rows(), A2_.cols());
    gu_.assign(u_.size(), 0.0f);
    adam_A1_ = adam_state<float>(static_cast<std::size_t>(A1_.size()));
    adam_A2_ = adam_state<float>(static_cast<std::size_t>(A2_.size()));
    adam_u_ = adam_state<float>(u_.size());
    start_ = nullptr;  // only the constructor reads it
  }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t rank() const noexcept { return static_cast<std::size_t>(A1_.cols()); }
  // Learned values: (rows + cols)·rank rounding variables and one step size per group.
  std::size_t parameters() const noexcept {
    return static_cast<std::size_t>(A1_.size() + A2_.size()) + u_.size();
  }
  const rounding_regularizer& regularizer() const noexcept { return reg_; }
  rounding_regularizer& regularizer() noexcept { return reg_; }
  float step_size(std::size_t r, std::size_t g) const noexcept {
    return step(r * groups_ + g);
  }
  // The learned values and their gradients after backward(), for inspection and for tests:
  // A1 (rows x rank), A2 (rank x cols), u (log of each group's step relative to RTN's,
  // rows x groups_per_row).
  matrix& A1() noexcept { return A1_; }
  matrix& A2() noexcept { return A2_; }
  std::vector<float>& log_steps() noexcept { return u_; }
  // The learned values as they stand, and back: how the best state seen is kept.
  struct snapshot {
    matrix A1, A2;
    std::vector<float> u;
  };
  snapshot save() const { return {A1_, A2_, u_}; }
  void restore(const snapshot& s) {
    if (s.A1.rows() != A1_.rows() || s.A1.cols() != A1_.cols() || s.A2.cols() != A2_.cols() ||
        s.u.size() != u_.size())
      throw std::invalid_argument("onebit::learned_rounding::restore: a snapshot of another matrix");
    A1_ = s.A1;
    A2_ = s.A2;
    u_ = s.u;
  }

  const matrix& A1_gradient() const noexcept { return gA1_; }
  const matrix& A2_gradient() const noexcept { return gA2_; }
  const std::vector<float>& log_steps_gradient() const noexcept { return gu_; }

  // Ŵ into out (rows x cols, row-major, ld floats apart): soft (ρ) or hard (ρ ≥ 1/2 → 1).
  void weights(float* out, std::size_t ld, bool hard) const {
    const matrix V = rounding_variables();
    for (std::size_t r = 0; r < rows_; ++r)
      for (std::size_t c = 0; c < cols_; ++c) {
        const std::size_t g = r * groups_ + c / group_;
        const float s = step(g), rho = hard_or_soft(V(idx(r), idx(c)), hard);
        const float code = std::clamp(std::floor(w_(idx(r), idx(c)) / s) + rho + z_[g], lo_, hi_);
        out[r * ld + c] = s * (code - z_[g]);
      }
  }

  // From dW = ∂E/∂Ŵ of the soft weights (rows x cols, ld apart): the gradients of A1, A2 and
  // the step sizes, with λ·∂R/∂ρ at `beta` added when regularize. Returns R (at beta).
  double backward(const float* dW, std::size_t ld, double beta, bool regularize) {
    const matrix V = rounding_variables();
    matrix gV(V.rows(), V.cols());
    std::fill(gu_.begin(), gu_.end(), 0.0f);
    const float scale = reg_.zeta - reg_.gamma, lambda = regularize ? reg_.lambda : 0.0f;
    double R = 0;
    for (std::size_t r = 0; r < rows_; ++r)
      for (std::size_t c = 0; c < cols_; ++c) {
        const std::size_t g = r * groups_ + c / group_;
        const float s = step(g), w = w_(idx(r), idx(c)), d = dW[r * ld + c];
        const float sig = 1.0f / (1.0f + std::exp(-V(idx(r), idx(c))));
        const float raw = sig * scale + reg_.gamma;
        const float rho = std::clamp(raw, 0.0f, 1.0f);
        const float f = std::floor(w / s), code = f + rho + z_[g];
        float dcode_drho = 0.0f;
        if (code <= lo_ || code >= hi_) {
          gu_[g] += d * (std::clamp(code, lo_, hi_) - z_[g]) * s;
        } else {
          gu_[g] += d * (f + rho - w / s) * s;
          dcode_drho = s;
        }
        const double t = std::fabs(2.0 * rho - 1.0);
        R += 1.0 - std::pow(t, beta);
        float dE_drho = d * dcode_drho;
        if (lambda > 0.0f && t > 0.0) {
          // ∂(1 − |2ρ − 1|^β)/∂ρ = −2β·|2ρ − 1|^(β−1)·sign(2ρ − 1)
          const double dR = -2.0 * beta * std::pow(t, beta - 1.0) * (rho > 0.5f ? 1.0 : -1.0);
          dE_drho += lambda * static_cast<float>(dR);
        }
        const bool inside = raw > 0.0f && raw < 1.0f;
        gV(idx(r), idx(c)) = inside ? dE_drho * scale * sig * (1.0f - sig) : 0.0f;
      }
    gA1_.noalias() = gV * A2_.transpose();
    gA2_.noalias() = A1_.transpose() * gV;
    return R;
  }

  // One Adam step of A1, A2 (rate `rounding`) and the log step sizes (rate `steps`).
  void step(const adam_options& rounding, const adam_options& steps) {
    adam_A1_.step(A1_.data(), gA1_.data(), rounding);
    adam_A2_.step(A2_.data(), gA2_.data(), rounding);
    adam_u_.step(u_.data(), gu_.data(), steps);
  }

  // R at beta, and the share of weights whose ρ is still strictly between 0 and 1.
  double regularization(double beta, double* undecided = nullptr) const {
    const matrix V = rounding_variables();
    double R = 0;
    std::size_t open = 0;
    for (Eigen::Index i = 0; i < V.size(); ++i) {
      const float rho = hard_or_soft(V.data()[i], false);
      R += 1.0 - std::pow(std::fabs(2.0 * rho - 1.0), beta);
      open += rho > 0.0f && rho < 1.0f;
    }
    if (undecided != nullptr) *undecided = static_cast<double>(open) / static_cast<double>(V.size());
    return R;
  }

  // The hard-rounded matrix in RTN's format, with the learned step sizes.
  lowbit_matrix result() const {
    const matrix V = rounding_variables();
    std::vector<std::uint8_t> q(rows_ * cols_);
    std::vector<float> scales(s0_.size());
    for (std::size_t g = 0; g < scales.size(); ++g) scales[g] = step(g);
    for (std::size_t r = 0; r < rows_; ++r)
      for (std::size_t c = 0; c < cols_; ++c) {
        const std::size_t g = r * groups_ + c / group_;
        const float code = std::clamp(
            std::floor(w_(idx(r), idx(c)) / scales[g]) + hard_or_soft(V(idx(r), idx(c)), true) + z_[g],
            lo_, hi_);
        q[r * cols_ + c] = static_cast<std::uint8_t>(code);
      }
    return lowbit_matrix::from_codes(q.data(), rows_, cols_, cols_, quant_.bits, quant_.group,
                                     scales.data(), quant_.symmetric ? nullptr : z_.data());
  }

 private:
  static Eigen::Index idx(std::size_t i) noexcept { return static_cast<Eigen::Index>(i); }

  float step(std::size_t g) const noexcept { return s0_[g] * std::exp(u_[g]); }

  float hard_or_soft(float v, bool hard) const noexcept {
    const float sig = 1.0f / (1.0f + std::exp(-v));
    const float rho = std::clamp(sig * (reg_.zeta - reg_.gamma) + reg_.gamma, 0.0f, 1.0f);
    return hard ? (rho >= 0.5f ? 1.0f : 0.0f) : rho;
  }

  matrix rounding_variables() const {
    matrix V = A1_ * A2_;
    if (init_ == rounding_init::residual) V += v0_;
    return V;
  }

  // V₀ with ρ(V₀) = frac(w/s): sigmoid⁻¹((frac − γ)/(ζ − γ)), finite since (frac − γ)/(ζ − γ)
  // lies in [−γ/(ζ − γ), (1 − γ)/(ζ − γ)) ⊂ (0, 1).
  matrix adaround_start() const {
    matrix v0(idx(rows_), idx(cols_));
    for (std::size_t r = 0; r < rows_; ++r)
      for (std::size_t c = 0; c < cols_; ++c) {
        const std::size_t g = r * groups_ + c / group_;
        const float s = s0_[g], x = w_(idx(r), idx(c)) / s;
        float frac = x - std::floor(x);
        if (start_ != nullptr)
          frac = static_cast<float>(start_->code(r, c)) - z_[g] - std::floor(x) >= 1.0f ? 0.75f : 0.25f;
        const float p = (frac - reg_.gamma) / (reg_.zeta - reg_.gamma);
        v0(idx(r), idx(c)) = std::log(p / (1.0f - p));
      }
    return v0;
  }

  // A1·A2 = the best rank-r approximation of v0, by randomised subspace iteration (Halko,
  // Martinsson & Tropp): r + 8 probe vectors, four power steps, then the SVD of the small
  // projection. Exact up to rounding when rank(v0) <= r + 8.
  void low_rank_fit(const matrix& v0, Eigen::Index r, std::mt19937_64& rng) {
    using dmatrix = Eigen::MatrixXd;
    const dmatrix a = v0.cast<double>();
    const Eigen::Index p = std::min<Eigen::Index>(r + 8, std::min(a.rows(), a.cols()));
    std::normal_distribution<double> normal;
    dmatrix omega(a.cols(), p);
    for (Eigen::Index i = 0; i < omega.size(); ++i) omega.data()[i] = normal(rng);
    auto orthonormal = [](const dmatrix& m) {
      Eigen::HouseholderQR<dmatrix> qr(m);
      return dmatrix(qr.householderQ() * dmatrix::Identity(m.rows(), m.cols()));
    };
    dmatrix Q = orthonormal(a * omega);
    for (int it = 0; it < 4; ++it) Q = orthonormal(a * orthonormal(a.transpose() * Q));
    const dmatrix B = Q.transpose() * a;  // p x cols
    Eigen::JacobiSVD<dmatrix> svd(B, Eigen::ComputeThinU | Eigen::ComputeThinV);
    const Eigen::VectorXd sigma = svd.singularValues().head(r).cwiseSqrt();
    A1_ = ((Q * svd.matrixU().leftCols(r)) * sigma.asDiagonal()).cast<float>();
    A2_ = (sigma.asDiagonal() * svd.matrixV().leftCols(r).transpose()).cast<float>();
  }

  rtn_options quant_;
  rounding_regularizer reg_;
  rounding_init init_;
  const lowbit_matrix* start_ = nullptr;
  std::size_t rows_ = 0, cols_ = 0, group_ = 0, groups_ = 0;
  matrix w_, v0_, A1_, A2_, gA1_, gA2_;
  std::vector<float> s0_, z_, u_, gu_;
  float lo_ = 0, hi_ = 0;
  adam_state<float> adam_A1_, adam_A2_, adam_u_;
};

}  // namespace detail::quant

using learned_rounding = detail::quant::learned_rounding<void>;

// λ = 0.3 rather than AdaRound's 0.01: here the reconstruction term is relative (divided by
// ‖X Wᵀ‖²) and R is divided by the number of weights, so λ weighs the mean R of a weight
// against the relative output error; 0.3 won the sweep (0.1 .. 3) on stories260K.
inline rounding_regularizer default_regularizer() noexcept {
  rounding_regularizer r;
  r.lambda = 0.3f;
  return r;
}

struct lora_rounding_progress {
  int iteration = 0, iterations = 0;
  double reconstruction = 0;  // ‖X(Ŵ − W)ᵀ‖² / ‖X Wᵀ‖² of the soft weights
  double regularization = 0;  // R (0 during the warm-up)
  double beta = 0;
  double best_hard = 0;       // the same of the best hard rounding evaluated so far
};

struct lora_rounding_options {
  rtn_options quant;  // bits, group, symmetric, clip_search: the grid, as rtn's
  // The grid to start from; with gptq, `gptq` says how (its quant is ignored: this quant is
  // used) and GPTQ's result competes with the learned one and RTN's at the end.
  onebit::init_grid init_grid = onebit::init_grid::rtn;
  gptq_options gptq;
  // Defaults from the sweep on stories260K's 35 matrices (examples/tinyllama_cbq, README):
  std::size_t rank = 16;  // used as min(rank, rows, cols)
  rounding_init init = rounding_init::fit;
  int iterations = 500;
  adam_options rounding_adam{1e-2, 0.9, 0.999, 1e-8, 0.0};  // A1, A2
  adam_options step_adam{1e-2, 0.9, 0.999, 1e-8, 0.0};      // log step sizes
  rounding_regularizer regularizer = default_regularizer();
  std::uint64_t seed = 0;
  // Called every report_every iterations and at the last; returning false stops early (the
  // result is then the best hard rounding evaluated so far). `reconstruction` is that of the
  // soft weights the iteration started from.
  std::function<bool(const lora_rounding_progress&)> progress;
  int report_every = 50;
  // The hard rounding is evaluated at the start and every eval_every iterations, and the best
  // one is returned: with a low-rank V the regulariser cannot drive every ρ to 0 or 1, so the
  // soft optimum and its hard rounding part ways (measured: without this, W4 and W3 ended worse
  // than RTN on stories260K). 0: only the end is used.
  int eval_every = 25;
};

namespace detail::quant {

inline void check_lora_options(const char* f, const lora_rounding_options& o) {
  if (o.iterations < 0)
    throw std::invalid_argument(std::string("onebit::") + f + ": iterations " +
                                std::to_string(o.iterations) + " < 0");
  if (o.report_every <= 0)
    throw std::invalid_argument(std::string("onebit::") + f + ": report_every " +
                                std::to_string(o.report_every) + " <= 0");
  if (o.eval_every < 0)
    throw std::invalid_argument(std::string("onebit::") + f + ": eval_every " +
                                std::to_string(o.eval_every) + " < 0");
}

}  // namespace detail::quant

// Learned rounding of W (rows x cols, out x in) to reconstruct X·Wᵀ on calibration rows X
// (samples x cols, rows ldx apart). The loss is ‖X(Ŵ − W)ᵀ‖² / ‖X Wᵀ‖² (relative, so λ means the
// same on every layer) + λ·R/(rows·cols), evaluated in closed form through H = XᵀX: each
// iteration costs rows·cols² whatever the number of samples. Returned: the hard rounding with
// the lowest reconstruction error among those evaluated (eval_every), RTN's on the same grid and,
// with init_grid gptq, GPTQ's: so never worse than rtn() (or gptq()) on the calibration inputs.
//
// (This and the overload below are templates only to be compiled where they are called; see
// learned_rounding.)
template <class Lazy = void>
lowbit_matrix lora_rounding(const float* w, std::size_t rows, std::size_t cols,
                            std::size_t row_stride, const float* x, std::size_t samples,
                            std::size_t ldx, const lora_rounding_options& options = {}) {
  const char* f = "lora_rounding";
  detail::quant::check_lora_options(f, options);
  detail::quant::check_matrix(f, x, samples, cols, ldx);
  if (options.rank == 0) throw std::invalid_argument("onebit::lora_rounding: rank 0");
  lowbit_matrix start;
  if (options.init_grid == init_grid::gptq) {
    gptq_options go = options.gptq;
    go.quant = options.quant;
    start = gptq(w, rows, cols, row_stride, x, samples, ldx, go);
  }
  learned_rounding rounding(w, rows, cols, row_stride, options.quant,
                            std::min({options.rank, rows, cols}), options.init, options.seed,
                            options.regularizer, start.empty() ? nullptr : &start);
  using matrix = learned_rounding::matrix;
  using cmap = Eigen::Map<const matrix, 0, Eigen::OuterStride<>>;
  const cmap X(x, static_cast<Eigen::Index>(samples), static_cast<Eigen::Index>(cols),
               Eigen::OuterStride<>(static_cast<Eigen::Index>(samples > 1 ? ldx : cols)));
  const cmap W(w, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols),
               Eigen::OuterStride<>(static_cast<Eigen::Index>(rows > 1 ? row_stride : cols)));
  for (Eigen::Index i = 0; i < X.rows(); ++i)
    if (!X.row(i).allFinite())
      throw std::invalid_argument("onebit::lora_rounding: calibration row " + std::to_string(i) +
                                  " is not finite");
  const Eigen::MatrixXd Hd = X.cast<double>().transpose() * X.cast<double>();
  const matrix H = Hd.cast<float>();
  const double energy = (W.cast<double>() * Hd).cwiseProduct(W.cast<double>()).sum();
  const double norm = energy > 0 ? 1.0 / energy : 1.0;
  const double per_weight = 1.0 / static_cast<double>(rows * cols);
  rounding_regularizer& reg = rounding.regularizer();
  const float lambda = reg.lambda;
  reg.lambda = static_cast<float>(lambda * per_weight);

  matrix soft(W.rows(), W.cols()), D(W.rows(), W.cols()), dW(W.rows(), W.cols());
  // ‖X(Ŵ − W)ᵀ‖² / ‖X Wᵀ‖² of the current hard or soft weights; leaves D·H in dW.
  auto reconstruction = [&](bool hard) {
    rounding.weights(soft.data(), cols, hard);
    D = soft - W;
    dW.noalias() = D * H;
    return (dW.cwiseProduct(D)).cast<double>().sum() * norm;
  };
  double best = reconstruction(true);
  learned_rounding::snapshot best_state = rounding.save();
  const int n = options.iterations;
  for (int t = 0; t < n; ++t) {
    const double rec = reconstruction(false);
    dW *= static_cast<float>(2.0 * norm);
    const bool on = reg.active(t, n);
    const double beta = reg.beta(t, n);
    const double R = rounding.backward(dW.data(), cols, beta, on);
    rounding.step(options.rounding_adam, options.step_adam);
    if ((options.eval_every > 0 && (t + 1) % options.eval_every == 0) || t + 1 == n) {
      const double hard = reconstruction(true);
      if (hard < best) {
        best = hard;
        best_state = rounding.save();
      }
    }
    if (options.progress && ((t + 1) % options.report_every == 0 || t + 1 == n)) {
      const lora_rounding_progress p{t + 1, n, rec, on ? R : 0.0, beta, best};
      if (!options.progress(p)) break;
    }
  }
  rounding.restore(best_state);
  // RTN's rounding of the same grid competes too: a low-rank V cannot always express it (init
  // fit and random start elsewhere), and at 4 bits it is often the better one.
  lowbit_matrix rtn_result = rtn(w, rows, cols, row_stride, options.quant);
  rtn_result.dequantize(soft.data(), cols);
  D = soft - W;
  const double rtn_error = ((D * H).cwiseProduct(D)).cast<double>().sum() * norm;
  double start_error = std::numeric_limits<double>::infinity();
  if (!start.empty()) {
    start.dequantize(soft.data(), cols);
    D = soft - W;
    start_error = ((D * H).cwiseProduct(D)).cast<double>().sum() * norm;
  }
  if (start_error <= best && start_error < rtn_error) return start;
  if (rtn_error <= best) return rtn_result;
  return rounding.result();
}

template <class Lazy = void>
lowbit_matrix lora_rounding(const Eigen::Ref<const row_major_matrix>& w,
                            const Eigen::Ref<const row_major_matrix>& x,
                            const lora_rounding_options& options = {}) {
  if (w.cols() != x.cols())
    throw std::invalid_argument("onebit::lora_rounding: W is " +
                                detail::shape_string(static_cast<std::size_t>(w.rows()),
                                                     static_cast<std::size_t>(w.cols())) +
                                " but X has " + std::to_string(x.cols()) + " columns");
  return lora_rounding<Lazy>(w.data(), static_cast<std::size_t>(w.rows()),
                             static_cast<std::size_t>(w.cols()),
                             static_cast<std::size_t>(w.outerStride()), x.data(),
                             static_cast<std::size_t>(x.rows()),
                             static_cast<std::size_t>(x.outerStride()), options);
}

}  // namespace onebit
