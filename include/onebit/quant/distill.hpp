// OneBit's knowledge transfer, layer by layer (docs/algorithms.md §6): a OneBit layer (SVID's, say)
// fitted to a float layer's outputs on real inputs, through the straight-through estimator on
// latent weights (gradients.hpp), g and h trained too, Adam with OneBit's β = (0.9, 0.98) and
// its cosine schedule (optim.hpp). Seeded: the same inputs and options give the same layer.
//
// Whole-model distillation (the teacher's logits and hidden states) drives these same pieces
// from the model code (models/llama.hpp, distill_model).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <stdexcept>

#include <Eigen/Core>

#include "../linear.hpp"
#include "gradients.hpp"
#include "optim.hpp"

namespace onebit {

// Layer-wise distillation (docs/algorithms.md §6): fit a OneBit layer's output to the float
// layer's output Y = X·W0ᵀ on real inputs X, by Adam through the straight-through estimator on
// latent weights (started at sign·0.01 from `start`, SVID's layer), with g and h free.
struct distill_options {
  int steps = 600;          // Adam steps
  std::size_t batch = 256;  // rows of X per step, drawn afresh each step
  // Learning rates from a sweep on stories260K (examples/tinyllama_quality): the latent
  // weights start at ±0.01, so 3e-4 lets a consistently pushed weight flip within ~35 steps.
  adam_options adam_W{3e-4, 0.9, 0.98, 1e-8, 0.0};       // the latent weights
  adam_options adam_values{3e-3, 0.9, 0.98, 1e-8, 0.0};  // g and h
  int eval_every = 25;  // measure on all of X this often; the best layer seen is returned
  bool cosine = true;   // learning rates decay as (1 + cos(π·t/steps))/2 (OneBit's schedule)
  std::uint64_t seed = 1;
};
struct distill_report {
  double start = 0, best = 0, last = 0;  // ‖X·Ŵᵀ − X·W0ᵀ‖² / ‖X·W0ᵀ‖² over all of X
  int best_step = 0;
  std::size_t flipped = 0;  // signs of the returned layer that differ from start's
};

// Fits `start` (rows = out x cols = in) to targets y (n x out) on inputs x (n x in). (This and
// distill are templates only to be compiled where they are called: the latent layer's Eigen
// products are costly to compile; docs/design.md, "Compile cost".)
template <class Lazy = void>
linear<> distill_to(const linear<>& start, const float* x, const float* y, std::size_t n,
                    const distill_options& o = {}, distill_report* report = nullptr) {
  using matrix = latent_linear<float>::matrix;
  const std::size_t rows = start.out_features(), cols = start.in_features();
  const Eigen::Index in = static_cast<Eigen::Index>(cols), out = static_cast<Eigen::Index>(rows);
  if (n == 0) throw std::invalid_argument("distill: no calibration rows");
  const Eigen::Map<const matrix> X(x, static_cast<Eigen::Index>(n), in);
  const Eigen::Map<const matrix> Y0(y, static_cast<Eigen::Index>(n), out);
  const double norm = std::max(static_cast<double>(Y0.squaredNorm()), 1e-30);

  latent_linear<float> layer = latent_linear<float>::from_linear(start);
  auto relative = [&](const latent_linear<float>& l) {
    return static_cast<double>((l.forward(X) - Y0).squaredNorm()) / norm;
  };
  adam_state<float> aW(static_cast<std::size_t>(layer.W.size())),
      ag(static_cast<std::size_t>(in)), ah(static_cast<std::size_t>(out));
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<std::size_t> pick(0, n - 1);
  const std::size_t batch = std::min(o.batch, n);
  matrix Xb(static_cast<Eigen::Index>(batch), in), Yb(static_cast<Eigen::Index>(batch), out),
      dY(static_cast<Eigen::Index>(batch), out);

  distill_report r;
  r.start = r.best = r.last = relative(layer);
  latent_linear<float> best = layer;
  for (int step = 1; step <= o.steps; ++step) {
    for (Eigen::Index b = 0; b < Xb.rows(); ++b) {
      const Eigen::Index i = static_cast<Eigen::Index>(pick(rng));
      Xb.row(b) = X.row(i);
      Yb.row(b) = Y0.row(i);
    }
    const matrix Y = layer.forward(Xb);
    mean_squared_error(Y.data(), rows, Yb.data(), rows, batch, rows, dY.data());
    const auto grads = layer.backward(Xb, dY);
    const double decay =
        o.cosine ? cosine_schedule(static_cast<std::size_t>(step - 1),
                                   static_cast<std::size_t>(o.steps))
                 : 1.0;
    const adam_options step_W = scaled(o.adam_W, decay), step_values = scaled(o.adam_values, decay);
    aW.step(layer.W.data(), grads.W.data(), step_W);
    ag.step(layer.g.data(), grads.g.data(), step_values);
    ah.step(layer.h.data(), grads.h.data(), step_values);
    if (step % o.eval_every == 0 || step == o.steps) {
      r.last = relative(layer);
      if (r.last < r.best) {
        r.best = r.last;
        r.best_step = step;
        best = layer;
      }
    }
  }
  linear<> result = best.to_linear();
  for (std::size_t j = 0; j < rows; ++j)
    for (std::size_t i = 0; i < cols; ++i) r.flipped += result.W(j, i) != start.W(j, i);
  if (report != nullptr) *report = r;
  return result;
}

// Fits `start` to the float layer W0 (rows x cols): targets X·W0ᵀ on inputs x (n x cols).
template <class Lazy = void>
linear<> distill(const linear<>& start, const float* w0, const float* x, std::size_t n,
                 const distill_options& o = {}, distill_report* report = nullptr) {
  using matrix = latent_linear<float>::matrix;
  const Eigen::Index in = static_cast<Eigen::Index>(start.in_features()),
                     out = static_cast<Eigen::Index>(start.out_features());
  const matrix Y0 = Eigen::Map<const matrix>(x, static_cast<Eigen::Index>(n), in) *
                    Eigen::Map<const matrix>(w0, out, in).transpose();
  return distill_to<Lazy>(start, x, Y0.data(), n, o, report);
}

}  // namespace onebit
