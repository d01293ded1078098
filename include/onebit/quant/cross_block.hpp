// Cross-block reconstruction (CBQ, ALGORITHMS.md §5.3): the weights of a chain of blocks
// quantised by LoRA-Rounding (lora_rounding.hpp), a sliding window of K blocks at a time, so that
// errors that cross block boundaries are compensated.
//
// Windows [0, K), [stride, stride + K), ... (the last one ends at the last block). In each, the
// rounding variables and step sizes of every weight in the window are optimised together by Adam
// to minimise
//
//     E = ‖F(X) − F̂(X̂)‖² / ‖F(X)‖²  +  kl_weight · mean over tokens of
//         KL(softmax(F(X)) ‖ softmax(F̂(X̂)))  +  λ · R / (weights in the window)
//
// F is the window in full precision on the full-precision input X, F̂ the window with soft
// quantised weights on X̂, the input the already-quantised blocks before it produce; softmax runs
// over the features of each token. (The L2 term is relative, so kl_weight and λ mean the same
// whatever the scale of the hidden states.) When the window moves on, the blocks it leaves are
// hard-rounded and X̂ is pushed through them; blocks still in the next window keep their
// rounding variables and continue from them.
//
// Every iteration uses `batch_sequences` sequences of the calibration set drawn at random
// (seeded), so attention sees whole sequences. On return every block holds its quantised weights
// (the dequantised values, so the chain runs quantised in float) and the result holds them as
// lowbit_matrix, in the order of each block's weights().
//
// With a low-rank V the regulariser cannot drive every ρ to 0 or 1, so the soft optimum and its
// hard rounding part ways: each window evaluates its hard rounding at the start and every
// eval_every iterations and keeps the best (measured on stories260K: the hard loss at the end of
// a window is 3-8x below its start).
//
// Never worse than the start. Each weight's start is a matrix: rtn() of its (truncated) values,
// or start_grid's. A low-rank V cannot reproduce those codes exactly, and a lower window loss
// need not mean a better model (measured on stories260K at W4 from GPTQ, docs/results_cbq.md:
// no learned rounding of the first two windows got back to GPTQ's window loss, and in the last
// two those below it had a higher model KL; the result's KL was 81% above GPTQ's). So:
//  * in every window the start matrices of its blocks compete as one more candidate;
//  * candidates are compared by the selection criterion: `objective` when set (a model-level
//    loss of the chain's output, the blocks after the window still in float), else the window's
//    L2 + KL;
//  * at the end the whole chain with every weight at its start is compared with the windows'
//    result on the chain's criterion (`objective`, else L2 + KL at the last block's output), and
//    from the better of the two each block in turn switches to its other matrices (start or
//    learned) where that lowers the criterion: result.end_objective <= result.start_objective
//    always (n + 2 evaluations of the chain).
// Candidates are evaluated on the calibration sequences, or with validation_sequences > 0 on the
// last ones of the layout, which the learning then never sees (a held-out check against
// fitting the calibration tokens).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "block.hpp"
#include "cfp.hpp"
#include "lora_rounding.hpp"

namespace onebit {

struct cross_block_progress {
  std::size_t window = 0, windows = 0;            // this window and how many in all
  std::size_t first_block = 0, end_block = 0;     // the window's blocks [first, end)
  int iteration = 0, iterations = 0;              // within the window
  double l2 = 0, kl = 0, regularization = 0;      // the terms of E on this iteration's batch
  double beta = 0;
};

struct cross_block_options {
  rtn_options quant;  // bits, group, symmetric, clip_search of every weight
  // Rounding variables and their optimisation (defaults from the sweeps of
  // examples/tinyllama_cbq on stories260K, README: KL to FP32 at W2 per row with K = 1, 2, 3
  // was 1.48, 1.38, 1.50; rank and init in lora_rounding.hpp).
  std::size_t rank = 16;  // used as min(rank, rows, cols) per weight
  rounding_init init = rounding_init::fit;
  rounding_regularizer regularizer = default_regularizer();
  adam_options rounding_adam{1e-2, 0.9, 0.999, 1e-8, 0.0};
  adam_options step_adam{1e-2, 0.9, 0.999, 1e-8, 0.0};
  std::size_t window = 2;  // K blocks per window
  std::size_t stride = 1;  // blocks the window moves by: overlap K − stride
  int iterations = 400;    // per window
  std::size_t batch_sequences = 2;  // per iteration; 0: all
  float kl_weight = 1.0f;
  bool truncate_outliers = true;  // CFP on each weight matrix before its grid is chosen
  cfp_options cfp;
  // The grid each weight starts from (after CFP's truncation): unset, rtn(W, quant); set,
  // start_grid(block, weight, its truncated values), a matrix in quant's format whose scales,
  // zeros and codes the learned rounding starts from (learned_rounding's start_grid) — e.g.
  // gptq() on the inputs the float model gives that weight (examples/tinyllama_cbq).
  std::function<lowbit_matrix(std::size_t block, const block_weight& weight, const float* values)>
      start_grid;
  std::uint64_t seed = 0;
  // Called every report_every iterations and at the end of each window; returning false stops:
  // the window keeps the best hard rounding evaluated so far, every weight not yet final is
  // hard-rounded as it stands, and the result says stopped.
  std::function<bool(const cross_block_progress&)> progress;
  int report_every = 10;
  // The window's hard rounding is evaluated at its start and every eval_every iterations, and
  // the best of those and of the start matrices is kept (as lora_rounding does; 0: only the
  // end). See "Never worse than the start" above.
  int eval_every = 50;
  // The model-level criterion candidates are chosen by (lower is better), optional: y holds the
  // last block's output (layout.tokens() x its output_size(), row-major) for the calibration
  // sequences `sequences` (indices into the layout given to cross_block_reconstruction, laid
  // end to end as `layout` says). E.g. the KL of the model's next-token distributions to the
  // float model's (examples/tinyllama_cbq). Unset: the window's L2 + KL in each window and the
  // last block's at the end.
  std::function<double(const float* y, const token_layout& layout,
                       const std::vector<std::size_t>& sequences)>
      objective;
  // The last validation_sequences calibration sequences only judge candidates and are never
  // learned from; 0: every sequence does both.
  std::size_t validation_sequences = 0;
};

// One evaluation of a window's hard rounding (cross_block_result::evaluations).
struct cross_block_evaluation {
  std::size_t window = 0;
  int iteration = 0;   // iterations done; -1: the start matrices of the window's blocks
  double loss = 0;     // the window's L2 + KL on the selection sequences
  double objective = std::numeric_limits<double>::quiet_NaN();  // options.objective, if set
};

struct cross_block_result {
  std::vector<std::vector<lowbit_matrix>> weights;  // [block][weight, in weights() order]
  // E's first two terms on the selection sequences (all, or the validation ones) for each
  // window, with the hard rounding of its weights at the start and the candidate kept at the end.
  std::vector<double> window_start_loss, window_end_loss;
  std::vector<std::size_t> outliers_truncated;  // per block, CFP's count over its weights
  bool stopped = false;
  // Every candidate evaluated, in order.
  std::vector<cross_block_evaluation> evaluations;
  // The chain's criterion (objective, else L2 + KL at the last block) on the selection
  // sequences: every weight at its start matrix, the windows' result, and what is returned
  // (at most the lower of the two).
  double start_objective = 0, learned_objective = 0, end_objective = 0;
  // Per block: its weights are its start matrices (chosen in its last window or at the end);
  // kept_start: every block's are.
  std::vector<bool> from_start;
  bool kept_start = false;
};

namespace detail::quant {

// Buffers handed to blocks start on Eigen's packet alignment, so that Eigen's reductions inside
// the blocks sum in the same order on every run (llama_blocks.hpp says why).
using aligned_floats = std::vector<float, Eigen::aligned_allocator<float>>;

// The L2 + KL terms between target rows F and output rows Fh (tokens x n), and when dFh is not
// null their gradient. Softmax in double: the features of one token are few.
inline void window_loss(const float* F, const float* Fh, std::size_t tokens, std::size_t n,
                        float kl_weight, double& l2, double& kl, float* dFh) {
  double energy = 0, err = 0, kl_sum = 0;
  for (std::size_t i = 0; i < tokens * n; ++i) {
    const double d = static_cast<double>(Fh[i]) - F[i];
    err += d * d;
    energy += static_cast<double>(F[i]) * F[i];
  }
  const double norm = energy > 0 ? 1.0 / energy : 1.0;
  std::vector<double> p(n), q(n);
  auto softmax = [n](const float* v, std::vector<double>& out) {
    double mx = v[0];
    for (std::size_t j = 1; j < n; ++j) mx = std::max(mx, static_cast<double>(v[j]));
    double sum = 0;
    for (std::size_t j = 0; j < n; ++j) sum += out[j] = std::exp(v[j] - mx);
    for (std::size_t j = 0; j < n; ++j) out[j] /= sum;
  };
  for (std::size_t t = 0; t < tokens; ++t) {
    softmax(F + t * n, p);
    softmax(Fh + t * n, q);
    for (std::size_t j = 0; j < n; ++j)
      if (p[j] > 0) kl_sum += p[j] * (std::log(p[j]) - std::log(std::max(q[j], 1e-300)));
    if (dFh != nullptr)
      for (std::size_t j = 0; j < n; ++j) {
        const std::size_t i = t * n + j;
        // ∂KL(p‖q)/∂Fh = q − p, per token; the mean over tokens divides by tokens.
        dFh[i] = static_cast<float>(2.0 * (static_cast<double>(Fh[i]) - F[i]) * norm +
                                    kl_weight * (q[j] - p[j]) / static_cast<double>(tokens));
      }
  }
  l2 = err * norm;
  kl = kl_sum / static_cast<double>(tokens);
}

}  // namespace detail::quant

// Quantises the weights of blocks[0..n) (a chain: each block's output feeds the next) from
// calibration input x (layout.tokens() x blocks[0]->input_size(), row-major, rows ldx apart).
// (A template only to be compiled where it is called; see learned_rounding.)
template <class Lazy = void>
cross_block_result cross_block_reconstruction(const std::vector<block*>& blocks, const float* x,
                                              std::size_t ldx, const token_layout& layout,
                                              const cross_block_options& o = {}) {
  const std::string where = "onebit::cross_block_reconstruction: ";
  auto fail = [&](const std::string& what) { throw std::invalid_argument(where + what); };
  const std::size_t n = blocks.size(), tokens = layout.tokens();
  if (n == 0) fail("no blocks");
  for (std::size_t b = 0; b < n; ++b) {
    if (blocks[b] == nullptr) fail("block " + std::to_string(b) + " is null");
    if (b > 0 && blocks[b]->input_size() != blocks[b - 1]->output_size())
      fail("block " + std::to_string(b) + " takes " + std::to_string(blocks[b]->input_size()) +
           " features but block " + std::to_string(b - 1) + " gives " +
           std::to_string(blocks[b - 1]->output_size()));
  }
  if (x == nullptr) fail("null calibration input");
  if (tokens == 0) fail("no calibration tokens");
  const std::size_t in = blocks[0]->input_size();
  if (tokens > 1 && ldx < in) fail("ldx " + std::to_string(ldx) + " < input size " + std::to_string(in));
  if (o.window == 0) fail("window 0");
  if (o.stride == 0 || o.stride > o.window)
    fail("stride " + std::to_string(o.stride) + " outside 1..window (" + std::to_string(o.window) + ")");
  if (o.iterations < 0) fail("iterations " + std::to_string(o.iterations) + " < 0");
  if (o.report_every <= 0) fail("report_every " + std::to_string(o.report_every) + " <= 0");
  if (o.eval_every < 0) fail("eval_every " + std::to_string(o.eval_every) + " < 0");
  if (o.rank == 0) fail("rank 0");
  if (!(o.kl_weight >= 0.0f)) fail("kl_weight must be >= 0");

  const std::vector<std::size_t>& lengths = layout.lengths;
  if (o.validation_sequences >= lengths.size() && o.validation_sequences > 0)
    fail("validation_sequences " + std::to_string(o.validation_sequences) +
         " leaves none of the " + std::to_string(lengths.size()) + " calibration sequences to learn from");

  // Rows of x packed, and the start of each sequence.
  std::vector<std::size_t> starts(lengths.size() + 1, 0);
  for (std::size_t i = 0; i < lengths.size(); ++i) starts[i + 1] = starts[i] + lengths[i];
  // The sequences learning draws from, and those candidates are judged on.
  const std::size_t learn = lengths.size() - o.validation_sequences;
  std::vector<std::size_t> select;
  token_layout select_layout;
  for (std::size_t i = o.validation_sequences > 0 ? learn : 0; i < lengths.size(); ++i) {
    select.push_back(i);
    select_layout.lengths.push_back(lengths[i]);
  }
  const std::size_t select_tokens = select_layout.tokens();
  // dst = the rows (width floats each) of src that belong to the selection sequences.
  auto gather = [&](const detail::quant::aligned_floats& src, std::size_t width,
                    detail::quant::aligned_floats& dst) {
    dst.clear();
    for (std::size_t sq : select)
      dst.insert(dst.end(), src.begin() + static_cast<std::ptrdiff_t>(starts[sq] * width),
                 src.begin() + static_cast<std::ptrdiff_t>(starts[sq + 1] * width));
  };

  // Full-precision activations at every block boundary: the targets.
  std::vector<detail::quant::aligned_floats> fp(n + 1);
  fp[0].resize(tokens * in);
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t j = 0; j < in; ++j) {
      const float v = x[t * ldx + j];
      if (!std::isfinite(v)) fail("calibration input (" + std::to_string(t) + ", " + std::to_string(j) + ") is not finite");
      fp[0][t * in + j] = v;
    }
  for (std::size_t b = 0; b < n; ++b) {
    fp[b + 1].resize(tokens * blocks[b]->output_size());
    blocks[b]->forward(fp[b].data(), layout, fp[b + 1].data());
  }

  cross_block_result result;
  result.weights.resize(n);
  result.outliers_truncated.assign(n, 0);
  result.from_start.assign(n, false);
  std::vector<std::vector<std::unique_ptr<learned_rounding>>> rounding(n);
  // Each weight's start matrix, and its rounding state as made (where a block that ends a window
  // at its start matrices resumes learning from).
  std::vector<std::vector<lowbit_matrix>> start(n);
  std::vector<std::vector<learned_rounding::snapshot>> initial(n);
  std::vector<char> at_start(n, 0);  // the block holds, and would return, its start matrices
  std::uint64_t seed = o.seed;
  // A block's rounding state, made when it first enters a window.
  auto start_block = [&](std::size_t b) {
    if (!rounding[b].empty()) return;
    std::vector<block_weight> ws = blocks[b]->weights();
    for (const block_weight& w : ws) {
      std::vector<float> v(w.value, w.value + w.rows * w.cols);
      if (o.truncate_outliers)
        result.outliers_truncated[b] += cfp_truncate(v.data(), w.rows, w.cols, w.cols, o.cfp).outliers.size();
      lowbit_matrix s = o.start_grid ? o.start_grid(b, w, v.data()) : rtn(v.data(), w.rows, w.cols, w.cols, o.quant);
      rounding[b].push_back(std::make_unique<learned_rounding>(
          v.data(), w.rows, w.cols, w.cols, o.quant, std::min({o.rank, w.rows, w.cols}), o.init,
          seed++, o.regularizer, o.start_grid ? &s : nullptr));
      start[b].push_back(std::move(s));
      initial[b].push_back(rounding[b].back()->save());
    }
  };
  // Block b holds the matrices m (dequantised), in the order of its weights().
  auto hold = [&](std::size_t b, const std::vector<lowbit_matrix>& m) {
    std::vector<block_weight> ws = blocks[b]->weights();
    for (std::size_t i = 0; i < ws.size(); ++i) m[i].dequantize(ws[i].value, ws[i].cols);
  };
  auto set_weights = [&](std::size_t b, bool hard) {
    if (at_start[b]) {
      hold(b, start[b]);
      return;
    }
    std::vector<block_weight> ws = blocks[b]->weights();
    for (std::size_t i = 0; i < ws.size(); ++i) rounding[b][i]->weights(ws[i].value, ws[i].cols, hard);
  };
  auto finish_block = [&](std::size_t b) {
    start_block(b);
    set_weights(b, true);
    for (std::size_t i = 0; i < rounding[b].size(); ++i)
      result.weights[b].push_back(at_start[b] ? start[b][i] : rounding[b][i]->result());
    result.from_start[b] = at_start[b] != 0;
    rounding[b].clear();
    initial[b].clear();
  };
  auto check_objective = [&](double v) {
    if (!std::isfinite(v)) fail("objective returned " + std::to_string(v));
    return v;
  };

  detail::quant::aligned_floats xq = fp[0];  // X̂ at the current window's first block
  std::vector<std::size_t> window_starts;
  for (std::size_t s = 0;; s += o.stride) {
    const std::size_t s_clamped = std::min(s, n > o.window ? n - o.window : 0);
    if (!window_starts.empty() && s_clamped <= window_starts.back()) break;
    window_starts.push_back(s_clamped);
    if (s_clamped + o.window >= n) break;
  }

  std::mt19937_64 rng(o.seed ^ 0x9e3779b97f4a7c15ull);
  std::vector<detail::quant::aligned_floats> acts;  // window activations of the batch
  detail::quant::aligned_floats target, dy, dx, select_in, select_target, cur, next;
  // cur, the selection sequences' rows entering block `from`, pushed through blocks [from, to).
  auto run_selection = [&](std::size_t from, std::size_t to) {
    for (std::size_t b = from; b < to; ++b) {
      next.resize(select_tokens * blocks[b]->output_size());
      blocks[b]->forward(cur.data(), select_layout, next.data());
      cur.swap(next);
    }
  };
  // E's L2 + KL terms of cur (width features per token) against select_target.
  auto selection_loss = [&](std::size_t width) {
    double l2 = 0, kl = 0;
    detail::quant::window_loss(select_target.data(), cur.data(), select_tokens, width, o.kl_weight,
                               l2, kl, nullptr);
    return l2 + o.kl_weight * kl;
  };
  token_layout batch_layout;
  for (std::size_t wi = 0; wi < window_starts.size() && !result.stopped; ++wi) {
    const std::size_t first = window_starts[wi], end = std::min(first + o.window, n);
    for (std::size_t b = first; b < end; ++b) start_block(b);
    const std::size_t win_in = blocks[first]->input_size(), out = blocks[end - 1]->output_size();
    std::size_t weight_count = 0;
    for (std::size_t b = first; b < end; ++b)
      for (const auto& r : rounding[b]) weight_count += r->rows() * r->cols();
    // R is divided by the window's weight count, as lora_rounding divides by the layer's.
    for (std::size_t b = first; b < end; ++b)
      for (const auto& r : rounding[b])
        r->regularizer().lambda =
            static_cast<float>(o.regularizer.lambda / static_cast<double>(std::max<std::size_t>(weight_count, 1)));
    gather(xq, win_in, select_in);
    gather(fp[end], out, select_target);

    // The window's hard rounding on the selection sequences: its L2 + KL into `loss`, and the
    // criterion (objective of the chain's output, the blocks after the window in float; else
    // the L2 + KL) returned.
    double loss = 0;
    auto evaluate = [&](int iteration) {
      for (std::size_t b = first; b < end; ++b) set_weights(b, true);
      cur = select_in;
      run_selection(first, end);
      loss = selection_loss(out);
      if (o.objective) run_selection(end, n);
      cross_block_evaluation e{wi, iteration, loss, std::numeric_limits<double>::quiet_NaN()};
      if (o.objective) e.objective = check_objective(o.objective(cur.data(), select_layout, select));
      result.evaluations.push_back(e);
      return o.objective ? e.objective : loss;
    };
    // The best candidate so far: the window's rounding states and which blocks were at their
    // start matrices, or (best_is_start) every block of the window at its start matrices.
    std::vector<learned_rounding::snapshot> best_state;
    std::vector<char> best_at_start;
    bool best_is_start = false;
    auto keep = [&] {
      best_state.clear();
      for (std::size_t b = first; b < end; ++b)
        for (const auto& r : rounding[b]) best_state.push_back(r->save());
      best_at_start.assign(at_start.begin() + static_cast<std::ptrdiff_t>(first),
                           at_start.begin() + static_cast<std::ptrdiff_t>(end));
      best_is_start = false;
    };
    double best = evaluate(0), best_loss = loss;
    keep();
    result.window_start_loss.push_back(loss);
    if (std::any_of(at_start.begin() + static_cast<std::ptrdiff_t>(first),
                    at_start.begin() + static_cast<std::ptrdiff_t>(end), [](char a) { return a == 0; })) {
      for (std::size_t b = first; b < end; ++b) at_start[b] = 1;
      const double c = evaluate(-1);
      if (c < best) {
        best = c;
        best_loss = loss;
        best_is_start = true;
      }
    }
    // Learning moves the rounding variables of every block in the window.
    for (std::size_t b = first; b < end; ++b) at_start[b] = 0;

    acts.resize(end - first + 1);
    std::vector<std::size_t> order(learn);
    std::iota(order.begin(), order.end(), std::size_t{0});
    const int iters = o.iterations;
    for (int it = 0; it < iters; ++it) {
      // The batch: whole sequences, drawn without replacement.
      std::size_t take = o.batch_sequences == 0 ? order.size() : std::min(o.batch_sequences, order.size());
      for (std::size_t i = 0; i < take; ++i)
        std::swap(order[i], order[i + std::uniform_int_distribution<std::size_t>(0, order.size() - 1 - i)(rng)]);
      batch_layout.lengths.clear();
      acts[0].clear();
      target.clear();
      for (std::size_t i = 0; i < take; ++i) {
        const std::size_t sq = order[i];
        batch_layout.lengths.push_back(lengths[sq]);
        acts[0].insert(acts[0].end(), xq.begin() + static_cast<std::ptrdiff_t>(starts[sq] * win_in),
                       xq.begin() + static_cast<std::ptrdiff_t>(starts[sq + 1] * win_in));
        target.insert(target.end(), fp[end].begin() + static_cast<std::ptrdiff_t>(starts[sq] * out),
                      fp[end].begin() + static_cast<std::ptrdiff_t>(starts[sq + 1] * out));
      }
      const std::size_t bt = batch_layout.tokens();
      for (std::size_t b = first; b < end; ++b) {
        set_weights(b, false);
        detail::quant::aligned_floats& y = acts[b - first + 1];
        y.resize(bt * blocks[b]->output_size());
        blocks[b]->forward(acts[b - first].data(), batch_layout, y.data());
      }
      double l2 = 0, kl = 0;
      dy.resize(bt * out);
      detail::quant::window_loss(target.data(), acts.back().data(), bt, out, o.kl_weight, l2, kl, dy.data());
      const bool on = o.regularizer.active(it, iters);
      const double beta = o.regularizer.beta(it, iters);
      double R = 0;
      for (std::size_t b = end; b-- > first;) {
        dx.resize(bt * blocks[b]->input_size());
        blocks[b]->backward(dy.data(), b > first ? dx.data() : nullptr);
        std::vector<block_weight> ws = blocks[b]->weights();
        for (std::size_t i = 0; i < ws.size(); ++i) {
          learned_rounding& r = *rounding[b][i];
          R += r.backward(ws[i].gradient, ws[i].cols, beta, on);
          r.step(o.rounding_adam, o.step_adam);
        }
        dy.swap(dx);
      }
      if ((o.eval_every > 0 && (it + 1) % o.eval_every == 0) || it + 1 == iters) {
        const double c = evaluate(it + 1);
        if (c < best) {
          best = c;
          best_loss = loss;
          keep();
        }
      }
      if (o.progress && ((it + 1) % o.report_every == 0 || it + 1 == iters)) {
        const cross_block_progress p{wi, window_starts.size(), first, end, it + 1, iters, l2, kl,
                                     on ? R : 0.0, beta};
        if (!o.progress(p)) {
          result.stopped = true;
          break;
        }
      }
    }
    std::size_t k = 0;
    for (std::size_t b = first; b < end; ++b) {
      // A block that goes on into the next window from its start matrices learns again from
      // its rounding state as made.
      for (std::size_t i = 0; i < rounding[b].size(); ++i, ++k)
        rounding[b][i]->restore(best_is_start ? initial[b][i] : best_state[k]);
      at_start[b] = best_is_start ? 1 : best_at_start[b - first];
    }
    result.window_end_loss.push_back(best_loss);

    // Blocks the next window leaves behind become final, and X̂ moves past them.
    const std::size_t next_first = wi + 1 < window_starts.size() && !result.stopped ? window_starts[wi + 1] : n;
    for (std::size_t b = first; b < next_first; ++b) {
      finish_block(b);
      if (b + 1 < n) {
        detail::quant::aligned_floats y(tokens * blocks[b]->output_size());
        blocks[b]->forward(xq.data(), layout, y.data());
        xq.swap(y);
      }
    }
  }
  for (std::size_t b = 0; b < n; ++b)
    if (result.weights[b].empty()) finish_block(b);

  // The whole chain against every weight at its start, on the chain's criterion; then each
  // block in turn takes its other matrices (start or learned) where that lowers the criterion.
  auto chain_criterion = [&] {
    gather(fp[0], in, cur);
    run_selection(0, n);
    if (o.objective) return check_objective(o.objective(cur.data(), select_layout, select));
    gather(fp[n], blocks[n - 1]->output_size(), select_target);
    return selection_loss(blocks[n - 1]->output_size());
  };
  const std::vector<std::vector<lowbit_matrix>> learned = std::move(result.weights);
  const std::vector<bool> learned_at_start = result.from_start;
  result.learned_objective = chain_criterion();
  for (std::size_t b = 0; b < n; ++b) hold(b, start[b]);
  result.start_objective = chain_criterion();
  std::vector<bool> use_start(n, result.start_objective < result.learned_objective);
  for (std::size_t b = 0; b < n; ++b) use_start[b] = use_start[b] || learned_at_start[b];
  double best = std::min(result.start_objective, result.learned_objective);
  for (std::size_t b = 0; b < n; ++b) hold(b, use_start[b] ? start[b] : learned[b]);
  for (std::size_t b = 0; b < n; ++b) {
    if (learned_at_start[b]) continue;  // its two choices are the same matrices
    hold(b, use_start[b] ? learned[b] : start[b]);
    const double c = chain_criterion();
    if (c < best) {
      best = c;
      use_start[b] = !use_start[b];
    } else {
      hold(b, use_start[b] ? start[b] : learned[b]);
    }
  }
  result.weights.assign(n, {});
  for (std::size_t b = 0; b < n; ++b) result.weights[b] = use_start[b] ? start[b] : learned[b];
  result.from_start = use_start;
  result.kept_start = std::all_of(use_start.begin(), use_start.end(), [](bool v) { return v; });
  result.end_objective = best;
  return result;
}

}  // namespace onebit
