// projection: the linear maps inside a differentiable block (attention's wq wk wv wo, SwiGLU's
// w1 w2 w3), so that one attention or SwiGLU code serves both a float model (cross-block
// reconstruction, a distillation teacher) and a OneBit student (knowledge transfer):
//
//   float_projection   y = x·Wᵀ                                  lists W as a block weight
//   onebit_projection  y = LN?(((x ⊙ g)·sign(W)ᵀ) ⊙ h)           W latent, g, h trained
//
// Contract (the caller is a block, llama_blocks.hpp):
//  * forward(x, tokens, y): y (tokens x out) from x (tokens x in). x is not copied: the caller
//    keeps it unchanged until the matching backward (blocks hold their inputs anyway);
//  * backward(dy, dx, accumulate): from ∂E/∂y of the last forward, the parameters' gradients
//    (overwritten) and, when dx is not null, ∂E/∂x written (accumulate false) or added
//    (accumulate true: attention's x feeds three projections).
// Not thread-safe: forward keeps state for backward.
//
// onebit_projection reads its parameters from a onebit_parameters it does not own, so that
// several replicas of a student (one per thread) share one set of weights and each writes its
// own gradients. Its backward, with A = X ⊙ g, Z = A·Sᵀ, P = Z ⊙ h (gradients.hpp has the
// derivation and the double-precision reference the tests hold this to):
//
//   dP = LN'(dY) = (dY − mean(dY) − Y ⊙ mean(dY ⊙ Y)) / s      (norm on; else dP = dY)
//   ∂h = Σ_t dP ⊙ Z      dZ = dP ⊙ h      ∂W = (dZᵀ·A) ⊙ (1.001 − tanh(W)²)
//   dA = dZ·S            ∂g = Σ_t dA ⊙ X  dX = dA ⊙ g
//
// The norm's statistics are taken in double per row, as kernels/layer_norm.hpp does.
//
// Both are aliases of class templates in projection_detail whose only parameter is unused, so
// that their Eigen products are compiled only where a projection is built (llama_blocks.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "../half.hpp"
#include "../linear.hpp"
#include "../sign_matrix.hpp"
#include "../quant/block.hpp"

namespace onebit {

namespace projection_detail {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using floats = std::vector<float, Eigen::aligned_allocator<float>>;

inline Eigen::Map<row_matrix> mat(float* p, std::size_t rows, std::size_t cols) {
  return Eigen::Map<row_matrix>(p, static_cast<Eigen::Index>(rows),
                                static_cast<Eigen::Index>(cols));
}
inline Eigen::Map<const row_matrix> mat(const float* p, std::size_t rows, std::size_t cols) {
  return Eigen::Map<const row_matrix>(p, static_cast<Eigen::Index>(rows),
                                      static_cast<Eigen::Index>(cols));
}
inline Eigen::Map<Eigen::VectorXf> vec(float* p, std::size_t n) {
  return Eigen::Map<Eigen::VectorXf>(p, static_cast<Eigen::Index>(n));
}
inline Eigen::Map<const Eigen::VectorXf> vec(const float* p, std::size_t n) {
  return Eigen::Map<const Eigen::VectorXf>(p, static_cast<Eigen::Index>(n));
}

// Grows only, so that after the largest call nothing is allocated.
inline float* at_least(floats& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

[[noreturn]] inline void fail(const char* who, const std::string& what) {
  throw std::invalid_argument(std::string("onebit::") + who + ": " + what);
}

}  // namespace projection_detail

class projection {
 public:
  virtual ~projection() = default;
  virtual std::size_t in_features() const noexcept = 0;
  virtual std::size_t out_features() const noexcept = 0;
  virtual void forward(const float* x, std::size_t tokens, float* y) = 0;
  virtual void backward(const float* dy, float* dx, bool accumulate) = 0;
  // The block weights it lists under `name` (a float matrix quantisation may replace); none
  // for a OneBit projection, whose parameters its trainer holds.
  virtual void list_weights(const std::string& name, std::vector<block_weight>& out) = 0;
};

// y = x·Wᵀ in float, the products exactly as llama_blocks.hpp always computed them (one Eigen
// GEMM each), so that blocks built on it give the same bits as before.
namespace projection_detail {
template <class Lazy>
class float_projection final : public projection {
 public:
  // `who` and `field` name the shape in the exception for a wrong number of weights.
  float_projection(std::size_t out, std::size_t in, const std::vector<float>& weights,
                   const char* who = "float_projection", const char* field = "weights")
      : out_(out), in_(in), w_(weights.begin(), weights.end()) {
    if (w_.size() != out_ * in_)
      projection_detail::fail(who, std::string(field) + " has " + std::to_string(w_.size()) +
                                       " floats, not " + std::to_string(out_) + " x " +
                                       std::to_string(in_));
    g_.assign(w_.size(), 0.0f);
  }

  std::size_t in_features() const noexcept override { return in_; }
  std::size_t out_features() const noexcept override { return out_; }

  void forward(const float* x, std::size_t tokens, float* y) override {
    namespace d = projection_detail;
    x_ = x;
    tokens_ = tokens;
    if (tokens == 0) return;
    d::mat(y, tokens, out_).noalias() = d::mat(x, tokens, in_) * d::mat(w_.data(), out_, in_).transpose();
  }

  void backward(const float* dy, float* dx, bool accumulate) override {
    namespace d = projection_detail;
    if (tokens_ == 0) {
      std::fill(g_.begin(), g_.end(), 0.0f);
      return;
    }
    const auto dY = d::mat(dy, tokens_, out_);
    const auto W = d::mat(w_.data(), out_, in_);
    d::mat(g_.data(), out_, in_).noalias() = dY.transpose() * d::mat(x_, tokens_, in_);
    if (dx == nullptr) return;
    if (accumulate)
      d::mat(dx, tokens_, in_).noalias() += dY * W;
    else
      d::mat(dx, tokens_, in_).noalias() = dY * W;
  }

  void list_weights(const std::string& name, std::vector<block_weight>& out) override {
    out.push_back(block_weight{name, out_, in_, w_.data(), g_.data()});
  }

  const float* weights() const noexcept { return w_.data(); }

 private:
  std::size_t out_, in_;
  projection_detail::floats w_, g_;
  const float* x_ = nullptr;
  std::size_t tokens_ = 0;
};
}  // namespace projection_detail
using float_projection = projection_detail::float_projection<void>;

// The trainable parameters of one OneBit layer: latent W (out x in, row-major), g (in), h
// (out), the post-norm, and two values derived from W that refresh() recomputes after every
// change of W: S = sign(W) as ±1 (sign(0) = +1, as everywhere in onebit) and the
// straight-through factor 1.001 − tanh(W)².
struct onebit_parameters {
  std::size_t out = 0, in = 0;
  projection_detail::floats W, g, h;
  post_norm norm{};
  projection_detail::floats S, ste;

  onebit_parameters() = default;
  // From a OneBit layer (SVID's, say): W = latent_scale · sign, g and h exactly from FP16; the
  // layer's post-norm unless `norm` is given.
  template <class Word>
  static onebit_parameters from_linear(const linear<Word>& layer, float latent_scale = 0.01f) {
    const linear_view<Word> v = layer.view();
    onebit_parameters p;
    p.out = v.out_features();
    p.in = v.in_features();
    p.W.resize(p.out * p.in);
    for (std::size_t j = 0; j < p.out; ++j)
      for (std::size_t i = 0; i < p.in; ++i)
        p.W[j * p.in + i] = latent_scale * static_cast<float>(v.W(j, i));
    p.g.resize(p.in);
    p.h.resize(p.out);
    for (std::size_t i = 0; i < p.in; ++i) p.g[i] = to_float(v.g[i]);
    for (std::size_t j = 0; j < p.out; ++j) p.h[j] = to_float(v.h[j]);
    p.norm = layer.norm;
    p.refresh();
    return p;
  }

  void refresh() {
    if (W.size() != out * in || g.size() != in || h.size() != out)
      projection_detail::fail("onebit_parameters", "W, g, h hold " + std::to_string(W.size()) +
                                                       ", " + std::to_string(g.size()) + ", " +
                                                       std::to_string(h.size()) + " values for " +
                                                       std::to_string(out) + " x " +
                                                       std::to_string(in));
    S.resize(W.size());
    ste.resize(W.size());
    for (std::size_t k = 0; k < W.size(); ++k) {
      S[k] = W[k] < 0.0f ? -1.0f : 1.0f;
      const float t = std::tanh(W[k]);
      ste[k] = 1.001f - t * t;
    }
  }

  // The deployable layer: sign(W) packed, g and h rounded to FP16 (nearest even), the norm.
  template <class Word = std::uint64_t>
  linear<Word> to_linear() const {
    sign_matrix<Word> signs(out, in);
    for (std::size_t j = 0; j < out; ++j)
      for (std::size_t i = 0; i < in; ++i) {
        const float w = W[j * in + i];
        if (std::isnan(w))
          projection_detail::fail("onebit_parameters::to_linear",
                                  "W(" + std::to_string(j) + ", " + std::to_string(i) + ") is NaN");
        if (w < 0.0f) signs.set(j, i, -1);
      }
    std::vector<half> gh(in), hh(out);
    for (std::size_t i = 0; i < in; ++i) gh[i] = to_half(g[i]);
    for (std::size_t j = 0; j < out; ++j) hh[j] = to_half(h[j]);
    return linear<Word>{std::move(signs), std::move(gh), std::move(hh), norm};
  }
};

// A OneBit layer inside a block, reading shared parameters (which must outlive it and hold S
// and ste refreshed for the current W) and writing its own gradients: ∂W (through the
// straight-through factor), ∂g, ∂h.
namespace projection_detail {
template <class Lazy>
class onebit_projection final : public projection {
 public:
  explicit onebit_projection(const onebit_parameters& p) : p_(&p) {
    if (p.out == 0 || p.in == 0)
      projection_detail::fail("onebit_projection", "an empty layer (" + std::to_string(p.out) +
                                                       " x " + std::to_string(p.in) + ")");
    if (p.S.size() != p.out * p.in || p.ste.size() != p.out * p.in)
      projection_detail::fail("onebit_projection", "parameters without refresh()");
    gW_.assign(p.out * p.in, 0.0f);
    gg_.assign(p.in, 0.0f);
    gh_.assign(p.out, 0.0f);
  }

  std::size_t in_features() const noexcept override { return p_->in; }
  std::size_t out_features() const noexcept override { return p_->out; }

  void forward(const float* x, std::size_t tokens, float* y) override {
    namespace d = projection_detail;
    const std::size_t out = p_->out, in = p_->in;
    x_ = x;
    tokens_ = tokens;
    if (tokens == 0) return;
    auto A = d::mat(d::at_least(a_, tokens * in), tokens, in);
    auto Z = d::mat(d::at_least(z_, tokens * out), tokens, out);
    A.noalias() = d::mat(x, tokens, in) * d::vec(p_->g.data(), in).asDiagonal();
    Z.noalias() = A * d::mat(p_->S.data(), out, in).transpose();
    auto Y = d::mat(y, tokens, out);
    Y.noalias() = Z * d::vec(p_->h.data(), out).asDiagonal();
    if (!p_->norm.enabled) return;
    float* s = d::at_least(s_, tokens);
    float* yn = d::at_least(y_, tokens * out);
    for (std::size_t t = 0; t < tokens; ++t) {
      float* row = y + t * out;
      double sum = 0, squares = 0;
      for (std::size_t j = 0; j < out; ++j) sum += row[j];
      const double mean = sum / static_cast<double>(out);
      for (std::size_t j = 0; j < out; ++j) {
        const double c = row[j] - mean;
        squares += c * c;
      }
      const double inv = 1.0 / std::sqrt(squares / static_cast<double>(out) + p_->norm.eps);
      s[t] = static_cast<float>(1.0 / inv);
      for (std::size_t j = 0; j < out; ++j)
        yn[t * out + j] = row[j] = static_cast<float>((row[j] - mean) * inv);
    }
  }

  void backward(const float* dy, float* dx, bool accumulate) override {
    namespace d = projection_detail;
    const std::size_t out = p_->out, in = p_->in, tokens = tokens_;
    if (tokens == 0) {
      std::fill(gW_.begin(), gW_.end(), 0.0f);
      std::fill(gg_.begin(), gg_.end(), 0.0f);
      std::fill(gh_.begin(), gh_.end(), 0.0f);
      return;
    }
    auto dP = d::mat(d::at_least(dp_, tokens * out), tokens, out);
    if (p_->norm.enabled) {
      const float* yn = y_.data();
      for (std::size_t t = 0; t < tokens; ++t) {
        const float* g = dy + t * out;
        const float* yr = yn + t * out;
        double mean_g = 0, mean_gy = 0;
        for (std::size_t j = 0; j < out; ++j) {
          mean_g += g[j];
          mean_gy += static_cast<double>(g[j]) * yr[j];
        }
        mean_g /= static_cast<double>(out);
        mean_gy /= static_cast<double>(out);
        const double inv_s = 1.0 / static_cast<double>(s_[t]);
        for (std::size_t j = 0; j < out; ++j)
          dP(static_cast<Eigen::Index>(t), static_cast<Eigen::Index>(j)) =
              static_cast<float>((g[j] - mean_g - yr[j] * mean_gy) * inv_s);
      }
    } else {
      dP = d::mat(dy, tokens, out);
    }
    const auto A = d::mat(static_cast<const float*>(a_.data()), tokens, in);
    const auto Z = d::mat(static_cast<const float*>(z_.data()), tokens, out);
    const auto X = d::mat(x_, tokens, in);
    d::vec(gh_.data(), out) = (dP.array() * Z.array()).colwise().sum().transpose();
    dP = dP * d::vec(p_->h.data(), out).asDiagonal();  // dZ, in place
    auto gW = d::mat(gW_.data(), out, in);
    gW.noalias() = dP.transpose() * A;
    gW.array() *= d::mat(p_->ste.data(), out, in).array();
    auto dA = d::mat(d::at_least(da_, tokens * in), tokens, in);
    dA.noalias() = dP * d::mat(p_->S.data(), out, in);
    d::vec(gg_.data(), in) = (dA.array() * X.array()).colwise().sum().transpose();
    if (dx == nullptr) return;
    if (accumulate)
      d::mat(dx, tokens, in).noalias() += dA * d::vec(p_->g.data(), in).asDiagonal();
    else
      d::mat(dx, tokens, in).noalias() = dA * d::vec(p_->g.data(), in).asDiagonal();
  }

  void list_weights(const std::string&, std::vector<block_weight>&) override {}

  const onebit_parameters& parameters() const noexcept { return *p_; }
  const float* gradient_W() const noexcept { return gW_.data(); }
  const float* gradient_g() const noexcept { return gg_.data(); }
  const float* gradient_h() const noexcept { return gh_.data(); }

 private:
  const onebit_parameters* p_;
  projection_detail::floats gW_, gg_, gh_;
  projection_detail::floats a_, z_, y_, s_, dp_, da_;
  const float* x_ = nullptr;
  std::size_t tokens_ = 0;
};
}  // namespace projection_detail
using onebit_projection = projection_detail::onebit_projection<void>;

}  // namespace onebit
