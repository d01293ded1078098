// The differentiable blocks a Llama-2 model is made of (block.hpp's interface), for
// cross-block reconstruction (docs/algorithms.md §5.3):
//
//   linear_block      y = x·Wᵀ                                            weight: its name
//   rmsnorm_block     y = scale ⊙ x / sqrt(mean(x²) + eps)                (no listed weight)
//   attention_block   y = wo·attention(RoPE(wq·n), RoPE(wk·n), wv·n)      "wq" "wk" "wv" "wo"
//   swiglu_block      y = w2·(silu(w1·n) ⊙ (w3·n))                        "w1" "w2" "w3"
//   residual_block    y = x + f(x)                                        f's
//   sequential_block  y = f_k(…f_1(x))                                    the f_i's
//   llama_transformer_block(…): one llama2.c layer as a sequential of
//     residual(sequential(rmsnorm, attention)) and residual(sequential(rmsnorm, swiglu)).
//
// The math is llama.hpp's (shared formulas in llama_math.hpp) (llama2.c's run.c): RoPE turns each pair (i, i+1) of a head
// by pos / theta^((i mod head_size) / head_size) with pos the row's index within its sequence;
// scores are q·k / sqrt(head_size), causal within each sequence; query head h reads key/value
// head h / (n_heads / n_kv_heads). Float results agree with run.c's to float rounding, not
// bit for bit: here every product is an Eigen GEMM over all tokens (or over one sequence and
// head for attention), whose summation order differs from run.c's index order.
//
// Attention and SwiGLU run their linear maps as projections (projection.hpp): built from float
// matrices they are float_projections, whose products are the ones these blocks always computed
// (the same bits); built from projections of any kind they may be OneBit layers with latent
// weights (onebit_projection, for knowledge transfer: models/onebit_kd.hpp), which list no weight.
//
// Every block owns its weights (a copy, row-major out x in, aligned) and one gradient buffer
// of the same shape per listed weight. Forward copies its input and keeps the intermediates
// backward needs in member buffers that only ever grow, so after the first call at the largest
// size the blocks allocate nothing themselves (Eigen's products may still take a packing
// workspace, on the stack for small operands, else the heap). Attention keeps its softmax
// probabilities, n_heads · Σ len² floats for the sequence lengths len (the lower triangles are
// used: 4 MB for 8 heads over two sequences of 256).
//
// linear_block, attention_block and swiglu_block (and projection.hpp's projections) are aliases
// of class templates in llama_blocks_detail whose only parameter is unused, and the factories
// below are templates too: the blocks' Eigen products are then compiled only where a block is
// built, not in every file that includes this header (clang, this header alone: 10.7 -> 4.7 s;
// docs/design.md, "Compile cost").
//
// Bad shapes in a constructor throw std::invalid_argument("onebit::<block>: …") naming the
// field; null buffers in forward / backward throw std::invalid_argument; backward before any
// forward throws std::logic_error. Input and output buffers must not overlap.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "../quant/block.hpp"
#include "llama2c.hpp"
#include "llama_math.hpp"
#include "projection.hpp"

namespace onebit {

namespace llama_blocks_detail {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using matrix_map = Eigen::Map<row_matrix>;
using const_matrix_map = Eigen::Map<const row_matrix>;
// A column band of a token-major matrix: one head's slice of every row.
using band_map = Eigen::Map<row_matrix, 0, Eigen::OuterStride<>>;
using const_band_map = Eigen::Map<const row_matrix, 0, Eigen::OuterStride<>>;

inline Eigen::Index ix(std::size_t n) { return static_cast<Eigen::Index>(n); }

// Every buffer of a block starts on Eigen's packet alignment: Eigen's vectorised reductions
// (softmax sums, dot products of short rows) peel their first elements by the address, so
// with malloc's 16-byte alignment their summation order, and the last bits of the result,
// would change from run to run with where the heap put a buffer.
using floats = std::vector<float, Eigen::aligned_allocator<float>>;
inline floats to_floats(const std::vector<float>& v) { return floats(v.begin(), v.end()); }

inline matrix_map mat(float* p, std::size_t rows, std::size_t cols) {
  return matrix_map(p, ix(rows), ix(cols));
}
inline const_matrix_map mat(const float* p, std::size_t rows, std::size_t cols) {
  return const_matrix_map(p, ix(rows), ix(cols));
}
inline band_map band(float* p, std::size_t rows, std::size_t cols, std::size_t stride) {
  return band_map(p, ix(rows), ix(cols), Eigen::OuterStride<>(ix(stride)));
}
inline const_band_map band(const float* p, std::size_t rows, std::size_t cols,
                           std::size_t stride) {
  return const_band_map(p, ix(rows), ix(cols), Eigen::OuterStride<>(ix(stride)));
}

// Through Eigen rather than std::copy: GCC 12's -Wnonnull flags the memmove of std::copy in a
// forward inlined with a literal null x, although the null check before it throws.
inline void copy_floats(const float* from, std::size_t n, float* to) {
  Eigen::Map<Eigen::VectorXf>(to, ix(n)) = Eigen::Map<const Eigen::VectorXf>(from, ix(n));
}

// Grows only: shrinking would give the capacity back and the next larger call would allocate.
inline float* at_least(floats& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// lower(M) = A·Bᵀ, the rest of M untouched. Eigen's `triangularView<Lower>() =` clears the
// triangle column by column, a strided walk through a row-major M that cost as much as the
// product; clearing row by row and accumulating does not.
template <class Product>
void product_to_lower(matrix_map& m, const Product& product) {
  for (Eigen::Index i = 0; i < m.rows(); ++i) m.row(i).head(i + 1).setZero();
  m.triangularView<Eigen::Lower>() += product;
}

[[noreturn]] inline void fail(const char* who, const std::string& what) {
  throw std::invalid_argument(std::string("onebit::") + who + ": " + what);
}

inline void require_positive(const char* who, const char* field, std::size_t value) {
  if (value == 0) fail(who, std::string(field) + " is 0");
}

inline void require_size(const char* who, const char* field, const floats& v,
                         std::size_t rows, std::size_t cols) {
  if (v.size() != rows * cols)
    fail(who, std::string(field) + " has " + std::to_string(v.size()) + " floats, not " +
                  std::to_string(rows) + " x " + std::to_string(cols));
}

inline bool missing_buffers(const float* x, const float* y, std::size_t tokens) {
  return tokens != 0 && (x == nullptr || y == nullptr);
}
[[noreturn]] inline void fail_buffers(const char* who, std::size_t tokens) {
  fail(who, "forward with a null x or y for " + std::to_string(tokens) + " tokens");
}

inline void require_backward(const char* who, bool forwarded, const float* dy,
                             std::size_t tokens) {
  if (!forwarded)
    throw std::logic_error(std::string("onebit::") + who + ": backward before any forward");
  if (tokens != 0 && dy == nullptr) fail(who, "backward with a null dy");
}

inline void check_projection(const char* who, const char* field, const projection* p,
                             std::size_t out, std::size_t in) {
  if (p == nullptr) fail(who, std::string(field) + " is null");
  if (p->out_features() != out || p->in_features() != in)
    fail(who, std::string(field) + " maps " + std::to_string(p->in_features()) + " to " +
                  std::to_string(p->out_features()) + " values, not " + std::to_string(in) +
                  " to " + std::to_string(out));
}

}  // namespace llama_blocks_detail

// y = x·Wᵀ, W out x in; no bias (a Llama has none).
namespace llama_blocks_detail {
template <class Lazy>
class linear_block final : public block {
 public:
  linear_block(std::size_t out, std::size_t in, const std::vector<float>& weights,
               std::string name = "weight")
      : out_(out), in_(in), w_(llama_blocks_detail::to_floats(weights)), name_(std::move(name)) {
    namespace d = llama_blocks_detail;
    d::require_positive("linear_block", "out", out_);
    d::require_positive("linear_block", "in", in_);
    d::require_size("linear_block", "weights", w_, out_, in_);
    g_.assign(w_.size(), 0.0f);
  }

  std::size_t input_size() const noexcept override { return in_; }
  std::size_t output_size() const noexcept override { return out_; }

  void forward(const float* x, const token_layout& layout, float* y) override {
    namespace d = llama_blocks_detail;
    const std::size_t tokens = tokens_ = layout.tokens();
    if (d::missing_buffers(x, y, tokens)) d::fail_buffers("linear_block", tokens);
    forwarded_ = true;
    if (tokens == 0) return;
    float* xs = d::at_least(x_, tokens_ * in_);
    d::copy_floats(x, tokens * in_, xs);
    d::mat(y, tokens_, out_).noalias() =
        d::mat(xs, tokens_, in_) * d::mat(w_.data(), out_, in_).transpose();
  }

  void backward(const float* dy, float* dx) override {
    namespace d = llama_blocks_detail;
    d::require_backward("linear_block", forwarded_, dy, tokens_);
    if (tokens_ == 0) {
      std::fill(g_.begin(), g_.end(), 0.0f);
      return;
    }
    const auto dY = d::mat(dy, tokens_, out_);
    const auto W = d::mat(w_.data(), out_, in_);
    d::mat(g_.data(), out_, in_).noalias() = dY.transpose() * d::mat(x_.data(), tokens_, in_);
    if (dx != nullptr) d::mat(dx, tokens_, in_).noalias() = dY * W;
  }

  std::vector<block_weight> weights() override {
    return {block_weight{name_, out_, in_, w_.data(), g_.data()}};
  }

 private:
  std::size_t out_, in_;
  llama_blocks_detail::floats w_, g_, x_;
  std::string name_;
  std::size_t tokens_ = 0;
  bool forwarded_ = false;
};
}  // namespace llama_blocks_detail
using linear_block = llama_blocks_detail::linear_block<void>;

// RMSNorm with run.c's float order (sum of squares in index order, / dim, + eps, 1/sqrt). The
// scale is a parameter quantisation leaves alone: not listed, no gradient.
class rmsnorm_block final : public block {
 public:
  rmsnorm_block(std::size_t dim, const std::vector<float>& scale, float eps = 1e-5f)
      : dim_(dim), scale_(llama_blocks_detail::to_floats(scale)), eps_(eps) {
    namespace d = llama_blocks_detail;
    d::require_positive("rmsnorm_block", "dim", dim_);
    d::require_size("rmsnorm_block", "scale", scale_, 1, dim_);
    if (!(eps_ >= 0.0f) || !std::isfinite(eps_))
      d::fail("rmsnorm_block", "eps " + std::to_string(eps_) + " is not finite and >= 0");
  }

  std::size_t input_size() const noexcept override { return dim_; }
  std::size_t output_size() const noexcept override { return dim_; }

  void forward(const float* x, const token_layout& layout, float* y) override {
    namespace d = llama_blocks_detail;
    const std::size_t tokens = tokens_ = layout.tokens();
    if (d::missing_buffers(x, y, tokens)) d::fail_buffers("rmsnorm_block", tokens);
    forwarded_ = true;
    float* xs = d::at_least(x_, tokens_ * dim_);
    float* inv = d::at_least(inv_rms_, tokens_);
    d::copy_floats(x, tokens * dim_, xs);
    for (std::size_t t = 0; t < tokens_; ++t) {
      const float* xt = xs + t * dim_;
      inv[t] = llama::inverse_rms(xt, dim_, eps_);
      float* yt = y + t * dim_;
      for (std::size_t j = 0; j < dim_; ++j) yt[j] = scale_[j] * (inv[t] * xt[j]);
    }
  }

  // With r = 1/rms: dx = r·(s ⊙ dy) − (r³/dim)·x·Σ_j s_j dy_j x_j.
  void backward(const float* dy, float* dx) override {
    namespace d = llama_blocks_detail;
    d::require_backward("rmsnorm_block", forwarded_, dy, tokens_);
    if (dx == nullptr) return;
    for (std::size_t t = 0; t < tokens_; ++t) {
      const float* xt = x_.data() + t * dim_;
      const float* dyt = dy + t * dim_;
      float* dxt = dx + t * dim_;
      const float r = inv_rms_[t];
      float dot = 0.0f;
      for (std::size_t j = 0; j < dim_; ++j) dot += scale_[j] * dyt[j] * xt[j];
      const float c = r * r * r * dot / static_cast<float>(dim_);
      for (std::size_t j = 0; j < dim_; ++j) dxt[j] = r * scale_[j] * dyt[j] - c * xt[j];
    }
  }

  std::vector<block_weight> weights() override { return {}; }

 private:
  std::size_t dim_;
  llama_blocks_detail::floats scale_;
  float eps_;
  llama_blocks_detail::floats x_, inv_rms_;
  std::size_t tokens_ = 0;
  bool forwarded_ = false;
};

// Causal multi-head attention with RoPE and grouped-query heads, from the normalised hidden
// state n (tokens x dim) to wo·attention (tokens x dim). wq, wo: dim x dim; wk, wv: kv_dim x
// dim with kv_dim = head_size · n_kv_heads.
namespace llama_blocks_detail {
template <class Lazy>
class attention_block final : public block {
 public:
  attention_block(std::size_t dim, std::size_t n_heads, std::size_t n_kv_heads,
                  const std::vector<float>& wq, const std::vector<float>& wk,
                  const std::vector<float>& wv, const std::vector<float>& wo, float rope_theta = 10000.0f)
      : dim_(dim), heads_(n_heads), kv_heads_(n_kv_heads), theta_(rope_theta) {
    check_shape();
    const char* who = "attention_block";
    using float_projection = projection_detail::float_projection<Lazy>;
    wq_ = std::make_unique<float_projection>(dim_, dim_, wq, who, "wq");
    wk_ = std::make_unique<float_projection>(kv_dim_, dim_, wk, who, "wk");
    wv_ = std::make_unique<float_projection>(kv_dim_, dim_, wv, who, "wv");
    wo_ = std::make_unique<float_projection>(dim_, dim_, wo, who, "wo");
  }

  // With projections of any kind (float, OneBit): wq, wo dim -> dim; wk, wv dim -> kv_dim.
  attention_block(std::size_t dim, std::size_t n_heads, std::size_t n_kv_heads,
                  std::unique_ptr<projection> wq, std::unique_ptr<projection> wk,
                  std::unique_ptr<projection> wv, std::unique_ptr<projection> wo,
                  float rope_theta = 10000.0f)
      : dim_(dim), heads_(n_heads), kv_heads_(n_kv_heads), theta_(rope_theta),
        wq_(std::move(wq)), wk_(std::move(wk)), wv_(std::move(wv)), wo_(std::move(wo)) {
    check_shape();
    const char* who = "attention_block";
    llama_blocks_detail::check_projection(who, "wq", wq_.get(), dim_, dim_);
    llama_blocks_detail::check_projection(who, "wk", wk_.get(), kv_dim_, dim_);
    llama_blocks_detail::check_projection(who, "wv", wv_.get(), kv_dim_, dim_);
    llama_blocks_detail::check_projection(who, "wo", wo_.get(), dim_, dim_);
  }

  std::size_t input_size() const noexcept override { return dim_; }
  std::size_t output_size() const noexcept override { return dim_; }
  std::size_t head_size() const noexcept { return head_size_; }
  projection& wq() noexcept { return *wq_; }
  projection& wk() noexcept { return *wk_; }
  projection& wv() noexcept { return *wv_; }
  projection& wo() noexcept { return *wo_; }

 private:
  void check_shape() {
    namespace d = llama_blocks_detail;
    const char* who = "attention_block";
    d::require_positive(who, "dim", dim_);
    d::require_positive(who, "n_heads", heads_);
    d::require_positive(who, "n_kv_heads", kv_heads_);
    if (dim_ % heads_ != 0)
      d::fail(who, "dim (" + std::to_string(dim_) + ") is not a multiple of n_heads (" +
                       std::to_string(heads_) + ")");
    if (heads_ % kv_heads_ != 0)
      d::fail(who, "n_heads (" + std::to_string(heads_) + ") is not a multiple of n_kv_heads (" +
                       std::to_string(kv_heads_) + ")");
    head_size_ = dim_ / heads_;
    if (head_size_ % 2 != 0)
      d::fail(who, "head_size = dim / n_heads (" + std::to_string(head_size_) +
                       ") is odd; RoPE turns pairs");
    kv_dim_ = head_size_ * kv_heads_;
    if (!(theta_ > 0.0f) || !std::isfinite(theta_))
      d::fail(who, "rope_theta " + std::to_string(theta_) + " is not finite and > 0");
  }

 public:

  void forward(const float* x, const token_layout& layout, float* y) override {
    namespace d = llama_blocks_detail;
    const std::size_t tokens = tokens_ = layout.tokens();
    if (d::missing_buffers(x, y, tokens)) d::fail_buffers("attention_block", tokens);
    lengths_.assign(layout.lengths.begin(), layout.lengths.end());
    forwarded_ = true;
    std::size_t longest = 0, probabilities = 0;
    for (std::size_t len : lengths_) {
      longest = std::max(longest, len);
      probabilities += heads_ * len * len;
    }
    float* n = d::at_least(n_, tokens_ * dim_);
    float* q = d::at_least(q_, tokens_ * dim_);
    float* k = d::at_least(k_, tokens_ * kv_dim_);
    float* v = d::at_least(v_, tokens_ * kv_dim_);
    float* a = d::at_least(a_, tokens_ * dim_);
    float* p = d::at_least(p_, probabilities);
    if (tokens == 0) {  // the projections learn of the empty batch too (their backward zeroes)
      for (auto* f : {wq_.get(), wk_.get(), wv_.get(), wo_.get()}) f->forward(x, 0, y);
      return;
    }
    d::copy_floats(x, tokens * dim_, n);
    wq_->forward(n, tokens_, q);
    wk_->forward(n, tokens_, k);
    wv_->forward(n, tokens_, v);
    rope_table(longest);
    rotate(q, dim_, +1.0f);
    rotate(k, kv_dim_, +1.0f);

    const std::size_t group = heads_ / kv_heads_;
    const float inv_scale = 1.0f / std::sqrt(static_cast<float>(head_size_));
    std::size_t row = 0;
    for (std::size_t len : lengths_) {
      for (std::size_t h = 0; h < heads_ && len != 0; ++h) {
        const std::size_t kvh = h / group;
        const auto Q = d::band(q + row * dim_ + h * head_size_, len, head_size_, dim_);
        const auto K = d::band(k + row * kv_dim_ + kvh * head_size_, len, head_size_, kv_dim_);
        const auto V = d::band(v + row * kv_dim_ + kvh * head_size_, len, head_size_, kv_dim_);
        auto P = d::mat(p, len, len);
        // Only the causal (lower) triangle is computed, stored and read.
        d::product_to_lower(P, Q * K.transpose());
        for (std::size_t i = 0; i < len; ++i) {
          auto s = P.row(d::ix(i)).head(d::ix(i + 1)).array();
          const float top = s.maxCoeff();
          s = ((s - top) * inv_scale).exp();
          s *= 1.0f / s.sum();
        }
        d::band(a + row * dim_ + h * head_size_, len, head_size_, dim_).noalias() =
            P.triangularView<Eigen::Lower>() * V;
        p += len * len;
      }
      row += len;
    }
    wo_->forward(a_.data(), tokens_, y);
  }

  // Softmax: dS = P ⊙ (dP − rowsum(dP ⊙ P)); keys and values of a kv head gather the
  // gradients of all the query heads that read them; RoPE's gradient is the reverse turn.
  void backward(const float* dy, float* dx) override {
    namespace d = llama_blocks_detail;
    d::require_backward("attention_block", forwarded_, dy, tokens_);
    if (tokens_ == 0) {
      for (auto* f : {wq_.get(), wk_.get(), wv_.get(), wo_.get()}) f->backward(dy, nullptr, false);
      return;
    }
    std::size_t longest = 0;
    for (std::size_t len : lengths_) longest = std::max(longest, len);
    float* da = d::at_least(da_, tokens_ * dim_);
    float* dq = d::at_least(dq_, tokens_ * dim_);
    float* dk = d::at_least(dk_, tokens_ * kv_dim_);
    float* dv = d::at_least(dv_, tokens_ * kv_dim_);
    float* ds = d::at_least(ds_, longest * longest);
    const float* q = q_.data();
    const float* k = k_.data();
    const float* v = v_.data();
    const float* p = p_.data();

    wo_->backward(dy, da, false);
    std::fill(dk, dk + tokens_ * kv_dim_, 0.0f);
    std::fill(dv, dv + tokens_ * kv_dim_, 0.0f);

    const std::size_t group = heads_ / kv_heads_;
    const float inv_scale = 1.0f / std::sqrt(static_cast<float>(head_size_));
    std::size_t row = 0;
    for (std::size_t len : lengths_) {
      for (std::size_t h = 0; h < heads_ && len != 0; ++h) {
        const std::size_t kvh = h / group;
        const std::size_t qoff = row * dim_ + h * head_size_;
        const std::size_t kvoff = row * kv_dim_ + kvh * head_size_;
        const auto Q = d::band(q + qoff, len, head_size_, dim_);
        const auto K = d::band(k + kvoff, len, head_size_, kv_dim_);
        const auto V = d::band(v + kvoff, len, head_size_, kv_dim_);
        const auto dA = d::band(static_cast<const float*>(da) + qoff, len, head_size_, dim_);
        const auto P = d::mat(p, len, len);
        auto dS = d::mat(ds, len, len);
        d::product_to_lower(dS, dA * V.transpose());
        for (std::size_t i = 0; i < len; ++i) {
          const auto pi = P.row(d::ix(i)).head(d::ix(i + 1)).array();
          auto di = dS.row(d::ix(i)).head(d::ix(i + 1)).array();
          const float c = (pi * di).sum();
          di = pi * (di - c) * inv_scale;
        }
        d::band(dq + qoff, len, head_size_, dim_).noalias() =
            dS.triangularView<Eigen::Lower>() * K;
        d::band(dk + kvoff, len, head_size_, kv_dim_).noalias() +=
            dS.triangularView<Eigen::Lower>().transpose() * Q;
        d::band(dv + kvoff, len, head_size_, kv_dim_).noalias() +=
            P.triangularView<Eigen::Lower>().transpose() * dA;
        p += len * len;
      }
      row += len;
    }
    rotate(dq, dim_, -1.0f);
    rotate(dk, kv_dim_, -1.0f);

    wq_->backward(dq, dx, false);
    wk_->backward(dk, dx, true);
    wv_->backward(dv, dx, true);
  }

  std::vector<block_weight> weights() override {
    std::vector<block_weight> all;
    wq_->list_weights("wq", all);
    wk_->list_weights("wk", all);
    wv_->list_weights("wv", all);
    wo_->list_weights("wo", all);
    return all;
  }

 private:
  // cos and sin of pos·freq for every position below `positions` and pair of a head, computed
  // in float as run.c does (freq = 1 / theta^(i / head_size) by powf).
  void rope_table(std::size_t positions) {
    if (positions <= table_positions_) return;
    const std::size_t pairs = head_size_ / 2;
    cos_.resize(positions * pairs);
    sin_.resize(positions * pairs);
    for (std::size_t pos = 0; pos < positions; ++pos)
      for (std::size_t i = 0; i < pairs; ++i) {
        const float freq = llama::rope_frequency(2 * i, head_size_, theta_);
        const float angle = static_cast<float>(pos) * freq;
        cos_[pos * pairs + i] = std::cos(angle);
        sin_[pos * pairs + i] = std::sin(angle);
      }
    table_positions_ = positions;
  }

  // Turns every pair of every head of each row by its position's angle (direction +1), or
  // back (−1: the transpose, which carries gradients through the turn).
  void rotate(float* m, std::size_t width, float direction) const {
    const std::size_t pairs = head_size_ / 2;
    std::size_t row = 0;
    for (std::size_t len : lengths_)
      for (std::size_t pos = 0; pos < len; ++pos, ++row) {
        const float* c = cos_.data() + pos * pairs;
        const float* s = sin_.data() + pos * pairs;
        float* r = m + row * width;
        for (std::size_t base = 0; base < width; base += head_size_)
          for (std::size_t i = 0; i < pairs; ++i) {
            const float v0 = r[base + 2 * i], v1 = r[base + 2 * i + 1];
            const float sn = direction * s[i];
            r[base + 2 * i] = v0 * c[i] - v1 * sn;
            r[base + 2 * i + 1] = v0 * sn + v1 * c[i];
          }
      }
  }

  std::size_t dim_, heads_, kv_heads_, head_size_ = 0, kv_dim_ = 0;
  float theta_;
  std::unique_ptr<projection> wq_, wk_, wv_, wo_;
  std::vector<std::size_t> lengths_;
  llama_blocks_detail::floats n_, q_, k_, v_, a_, p_;  // kept by forward for backward
  llama_blocks_detail::floats da_, dq_, dk_, dv_, ds_;  // backward's scratch
  llama_blocks_detail::floats cos_, sin_;
  std::size_t table_positions_ = 0;
  std::size_t tokens_ = 0;
  bool forwarded_ = false;
};
}  // namespace llama_blocks_detail
using attention_block = llama_blocks_detail::attention_block<void>;

// The SwiGLU MLP: w1 (gate) and w3 (up) hidden x dim, w2 (down) dim x hidden.
namespace llama_blocks_detail {
template <class Lazy>
class swiglu_block final : public block {
 public:
  swiglu_block(std::size_t dim, std::size_t hidden, const std::vector<float>& w1,
               const std::vector<float>& w2, const std::vector<float>& w3)
      : dim_(dim), hidden_(hidden) {
    check_shape();
    using float_projection = projection_detail::float_projection<Lazy>;
    w1_ = std::make_unique<float_projection>(hidden_, dim_, w1, "swiglu_block", "w1");
    w2_ = std::make_unique<float_projection>(dim_, hidden_, w2, "swiglu_block", "w2");
    w3_ = std::make_unique<float_projection>(hidden_, dim_, w3, "swiglu_block", "w3");
  }

  // With projections of any kind: w1, w3 dim -> hidden; w2 hidden -> dim.
  swiglu_block(std::size_t dim, std::size_t hidden, std::unique_ptr<projection> w1,
               std::unique_ptr<projection> w2, std::unique_ptr<projection> w3)
      : dim_(dim), hidden_(hidden), w1_(std::move(w1)), w2_(std::move(w2)), w3_(std::move(w3)) {
    check_shape();
    llama_blocks_detail::check_projection("swiglu_block", "w1", w1_.get(), hidden_, dim_);
    llama_blocks_detail::check_projection("swiglu_block", "w2", w2_.get(), dim_, hidden_);
    llama_blocks_detail::check_projection("swiglu_block", "w3", w3_.get(), hidden_, dim_);
  }

  projection& w1() noexcept { return *w1_; }
  projection& w2() noexcept { return *w2_; }
  projection& w3() noexcept { return *w3_; }

  std::size_t input_size() const noexcept override { return dim_; }
  std::size_t output_size() const noexcept override { return dim_; }

  void forward(const float* x, const token_layout& layout, float* y) override {
    namespace d = llama_blocks_detail;
    const std::size_t tokens = tokens_ = layout.tokens();
    if (d::missing_buffers(x, y, tokens)) d::fail_buffers("swiglu_block", tokens);
    forwarded_ = true;
    if (tokens == 0) {  // the projections learn of the empty batch too (their backward zeroes)
      for (auto* f : {w1_.get(), w2_.get(), w3_.get()}) f->forward(x, 0, y);
      return;
    }
    float* n = d::at_least(n_, tokens_ * dim_);
    d::copy_floats(x, tokens * dim_, n);
    auto H1 = d::mat(d::at_least(h1_, tokens_ * hidden_), tokens_, hidden_);
    auto H3 = d::mat(d::at_least(h3_, tokens_ * hidden_), tokens_, hidden_);
    auto S = d::mat(d::at_least(sig_, tokens_ * hidden_), tokens_, hidden_);
    auto G = d::mat(d::at_least(g_, tokens_ * hidden_), tokens_, hidden_);
    w1_->forward(n, tokens_, H1.data());
    w3_->forward(n, tokens_, H3.data());
    S.array() = (1.0f + (-H1.array()).exp()).inverse();
    G.array() = H1.array() * S.array() * H3.array();
    w2_->forward(G.data(), tokens_, y);
  }

  // silu'(a) = σ(a)·(1 + a·(1 − σ(a))).
  void backward(const float* dy, float* dx) override {
    namespace d = llama_blocks_detail;
    d::require_backward("swiglu_block", forwarded_, dy, tokens_);
    if (tokens_ == 0) {
      for (auto* f : {w1_.get(), w2_.get(), w3_.get()}) f->backward(dy, nullptr, false);
      return;
    }
    const auto H1 = d::mat(static_cast<const float*>(h1_.data()), tokens_, hidden_);
    const auto H3 = d::mat(static_cast<const float*>(h3_.data()), tokens_, hidden_);
    const auto S = d::mat(static_cast<const float*>(sig_.data()), tokens_, hidden_);
    auto dH1 = d::mat(d::at_least(dh1_, tokens_ * hidden_), tokens_, hidden_);
    auto dH3 = d::mat(d::at_least(dh3_, tokens_ * hidden_), tokens_, hidden_);
    w2_->backward(dy, dH3.data(), false);  // dG for now
    dH1.array() = dH3.array() * H3.array() * S.array() *
                  (1.0f + H1.array() * (1.0f - S.array()));
    dH3.array() *= H1.array() * S.array();
    w1_->backward(dH1.data(), dx, false);
    w3_->backward(dH3.data(), dx, true);
  }

  std::vector<block_weight> weights() override {
    std::vector<block_weight> all;
    w1_->list_weights("w1", all);
    w2_->list_weights("w2", all);
    w3_->list_weights("w3", all);
    return all;
  }

 private:
  std::size_t dim_, hidden_;
  void check_shape() const {
    llama_blocks_detail::require_positive("swiglu_block", "dim", dim_);
    llama_blocks_detail::require_positive("swiglu_block", "hidden", hidden_);
  }

  std::unique_ptr<projection> w1_, w2_, w3_;
  llama_blocks_detail::floats n_, h1_, h3_, sig_, g_;  // kept by forward for backward
  llama_blocks_detail::floats dh1_, dh3_;
  std::size_t tokens_ = 0;
  bool forwarded_ = false;
};
}  // namespace llama_blocks_detail
using swiglu_block = llama_blocks_detail::swiglu_block<void>;

// y = x + f(x); f must keep the width. Lists f's weights under f's names.
class residual_block final : public block {
 public:
  explicit residual_block(std::unique_ptr<block> f) : f_(std::move(f)) {
    if (!f_) llama_blocks_detail::fail("residual_block", "f is null");
    if (f_->input_size() != f_->output_size())
      llama_blocks_detail::fail("residual_block",
                                "f maps " + std::to_string(f_->input_size()) + " to " +
                                    std::to_string(f_->output_size()) + " values per token");
  }

  std::size_t input_size() const noexcept override { return f_->input_size(); }
  std::size_t output_size() const noexcept override { return f_->output_size(); }

  void forward(const float* x, const token_layout& layout, float* y) override {
    tokens_ = layout.tokens();
    if (llama_blocks_detail::missing_buffers(x, y, tokens_))
      llama_blocks_detail::fail_buffers("residual_block", tokens_);
    f_->forward(x, layout, y);
    forwarded_ = true;
    const std::size_t n = tokens_ * input_size();
    for (std::size_t i = 0; i < n; ++i) y[i] += x[i];
  }

  void backward(const float* dy, float* dx) override {
    llama_blocks_detail::require_backward("residual_block", forwarded_, dy, tokens_);
    f_->backward(dy, dx);
    if (dx == nullptr) return;
    const std::size_t n = tokens_ * input_size();
    for (std::size_t i = 0; i < n; ++i) dx[i] += dy[i];
  }

  std::vector<block_weight> weights() override { return f_->weights(); }
  block& inner() noexcept { return *f_; }

 private:
  std::unique_ptr<block> f_;
  std::size_t tokens_ = 0;
  bool forwarded_ = false;
};

// f_k ∘ … ∘ f_1. weights() concatenates the steps' lists in order; with naming::keep (the
// default) the names stay as the steps give them, which must then be unique (the constructor
// checks), with naming::indexed each is prefixed by its step's index: "0.weight", "1.weight".
class sequential_block final : public block {
 public:
  enum class naming { keep, indexed };

  explicit sequential_block(std::vector<std::unique_ptr<block>> steps,
                            naming names = naming::keep)
      : steps_(std::move(steps)), naming_(names) {
    namespace d = llama_blocks_detail;
    if (steps_.empty()) d::fail("sequential_block", "no steps");
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      if (!steps_[i]) d::fail("sequential_block", "step " + std::to_string(i) + " is null");
      if (i > 0 && steps_[i]->input_size() != steps_[i - 1]->output_size())
        d::fail("sequential_block", "step " + std::to_string(i) + " takes " +
                                        std::to_string(steps_[i]->input_size()) +
                                        " values per token, step " + std::to_string(i - 1) +
                                        " gives " + std::to_string(steps_[i - 1]->output_size()));
    }
    const std::vector<block_weight> all = weights();
    for (std::size_t i = 0; i < all.size(); ++i)
      for (std::size_t j = 0; j < i; ++j)
        if (all[i].name == all[j].name)
          d::fail("sequential_block", "two weights are named \"" + all[i].name +
                                          "\" (name them apart, or use naming::indexed)");
    between_.resize(steps_.size() - 1);
  }

  std::size_t input_size() const noexcept override { return steps_.front()->input_size(); }
  std::size_t output_size() const noexcept override { return steps_.back()->output_size(); }

  void forward(const float* x, const token_layout& layout, float* y) override {
    namespace d = llama_blocks_detail;
    tokens_ = layout.tokens();
    if (d::missing_buffers(x, y, tokens_)) d::fail_buffers("sequential_block", tokens_);
    const float* in = x;
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      float* out = i + 1 == steps_.size()
                       ? y
                       : d::at_least(between_[i], tokens_ * steps_[i]->output_size());
      steps_[i]->forward(in, layout, out);
      in = out;
    }
    forwarded_ = true;
  }

  void backward(const float* dy, float* dx) override {
    namespace d = llama_blocks_detail;
    d::require_backward("sequential_block", forwarded_, dy, tokens_);
    const float* grad = dy;
    for (std::size_t i = steps_.size(); i-- > 0;) {
      // Two buffers taking turns: step i reads one and writes the other.
      float* out = i == 0 ? dx : d::at_least(grads_[i % 2], tokens_ * steps_[i]->input_size());
      steps_[i]->backward(grad, out);
      grad = out;
    }
  }

  std::vector<block_weight> weights() override {
    std::vector<block_weight> all;
    for (std::size_t i = 0; i < steps_.size(); ++i)
      for (block_weight& w : steps_[i]->weights()) {
        if (naming_ == naming::indexed) w.name = std::to_string(i) + "." + w.name;
        all.push_back(std::move(w));
      }
    return all;
  }

  std::size_t size() const noexcept { return steps_.size(); }
  block& step(std::size_t i) { return *steps_.at(i); }

 private:
  std::vector<std::unique_ptr<block>> steps_;
  naming naming_;
  std::vector<llama_blocks_detail::floats> between_;  // outputs of the steps but the last
  llama_blocks_detail::floats grads_[2];
  std::size_t tokens_ = 0;
  bool forwarded_ = false;
};

// One llama2.c transformer layer: x += attention(RMSNorm(x) ⊙ rms_att), then
// x += SwiGLU(RMSNorm(x) ⊙ rms_ffn). Weights "wq" "wk" "wv" "wo" "w1" "w2" "w3", as
// io::llama2c_layer (and models/llama.hpp's slots) name them.
template <class Lazy = void>
std::unique_ptr<sequential_block> llama_transformer_block(
    std::size_t dim, std::size_t n_heads, std::size_t n_kv_heads, std::size_t hidden,
    io::llama2c_layer layer, float rope_theta = 10000.0f, float eps = 1e-5f) {
  using attention_block = llama_blocks_detail::attention_block<Lazy>;
  using swiglu_block = llama_blocks_detail::swiglu_block<Lazy>;
  std::vector<std::unique_ptr<block>> attention, ffn, both;
  attention.push_back(std::make_unique<rmsnorm_block>(dim, std::move(layer.rms_att), eps));
  attention.push_back(std::make_unique<attention_block>(
      dim, n_heads, n_kv_heads, std::move(layer.wq), std::move(layer.wk), std::move(layer.wv),
      std::move(layer.wo), rope_theta));
  ffn.push_back(std::make_unique<rmsnorm_block>(dim, std::move(layer.rms_ffn), eps));
  ffn.push_back(std::make_unique<swiglu_block>(dim, hidden, std::move(layer.w1),
                                               std::move(layer.w2), std::move(layer.w3)));
  both.push_back(
      std::make_unique<residual_block>(std::make_unique<sequential_block>(std::move(attention))));
  both.push_back(
      std::make_unique<residual_block>(std::make_unique<sequential_block>(std::move(ffn))));
  return std::make_unique<sequential_block>(std::move(both));
}

// The same layer with projections of any kind (float, OneBit), in file order wq wk wv wo w1
// w2 w3, and the two RMSNorm scales.
template <class Lazy = void>
std::unique_ptr<sequential_block> llama_transformer_block(
    std::size_t dim, std::size_t n_heads, std::size_t n_kv_heads, std::size_t hidden,
    std::vector<float> rms_att, std::vector<float> rms_ffn,
    std::array<std::unique_ptr<projection>, 7> p, float rope_theta = 10000.0f,
    float eps = 1e-5f) {
  using attention_block = llama_blocks_detail::attention_block<Lazy>;
  using swiglu_block = llama_blocks_detail::swiglu_block<Lazy>;
  std::vector<std::unique_ptr<block>> attention, ffn, both;
  attention.push_back(std::make_unique<rmsnorm_block>(dim, std::move(rms_att), eps));
  attention.push_back(std::make_unique<attention_block>(dim, n_heads, n_kv_heads,
                                                        std::move(p[0]), std::move(p[1]),
                                                        std::move(p[2]), std::move(p[3]),
                                                        rope_theta));
  ffn.push_back(std::make_unique<rmsnorm_block>(dim, std::move(rms_ffn), eps));
  ffn.push_back(std::make_unique<swiglu_block>(dim, hidden, std::move(p[4]), std::move(p[5]),
                                               std::move(p[6])));
  both.push_back(
      std::make_unique<residual_block>(std::make_unique<sequential_block>(std::move(attention))));
  both.push_back(
      std::make_unique<residual_block>(std::make_unique<sequential_block>(std::move(ffn))));
  return std::make_unique<sequential_block>(std::move(both));
}

// Layer `l` of a checkpoint, with the checkpoint's shapes.
template <class Lazy = void>
std::unique_ptr<sequential_block> llama_transformer_block(
    const io::llama2c_checkpoint& checkpoint, std::size_t l) {
  const io::llama2c_config& c = checkpoint.config;
  if (l >= checkpoint.layers.size())
    llama_blocks_detail::fail("llama_transformer_block",
                              "layer " + std::to_string(l) + " of a checkpoint of " +
                                  std::to_string(checkpoint.layers.size()));
  if (c.dim <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.hidden_dim <= 0)
    llama_blocks_detail::fail("llama_transformer_block", "a checkpoint without positive shapes");
  return llama_transformer_block<Lazy>(
      static_cast<std::size_t>(c.dim), static_cast<std::size_t>(c.n_heads),
      static_cast<std::size_t>(c.n_kv_heads), static_cast<std::size_t>(c.hidden_dim),
      checkpoint.layers[l]);
}

}  // namespace onebit
