// A small, exact Llama-2 forward pass (the one llama2.c's run.c computes), whose every linear
// layer can be swapped for a OneBit layer or a low-bit layer running on onebit's kernels.
//
//   x = embedding[token]
//   per block:  x += wo · attention(RoPE(wq·n), RoPE(wk·n), wv·n),  n = RMSNorm(x) ⊙ rms_att
//               x += w2 · (silu(w1·n) ⊙ (w3·n)),                     n = RMSNorm(x) ⊙ rms_ffn
//   logits = classifier · (RMSNorm(x) ⊙ rms_final)
//
// In float32 with the operations in run.c's order (row sums in index order, expf, sqrtf,
// powf, RoPE frequencies 1/10000^(i/head_size) for each pair i within a head), so greedy
// decoding reproduces run.c's text token for token. The classifier and the embedding always
// stay in float: the layers that can be replaced are the seven matrices of every block.
//
// The model code of the examples (tinyllama*, the converter's checks) and of the tests.
#pragma once

#include "../gemm.hpp"
#include "../lowbit_linear.hpp"
#include "../parallel.hpp"
#include "../quant/distill.hpp"
#include "../quant/rtn.hpp"
#include "../quant/svid.hpp"
#include "detail/attention.hpp"
#include "llama2c.hpp"
#include "llama_math.hpp"

#include <algorithm>
#include <chrono>
#include <iterator>
#include <random>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace onebit::llama {

// How a layer runs several rows: the pool its product is split over (null: this thread alone)
// and the prepared product whose memory every call reuses (null: each call makes its own), so
// that a forward pass allocates nothing per token.
struct run_context {
  onebit::thread_pool* pool = nullptr;
  onebit::prepared_gemm* product = nullptr;
  // One more product per further thread of the pool: a single token's product is prepared by
  // every thread into its own (see onebit_layer::run_product). None: the threads share one.
  onebit::prepared_gemm* more_products = nullptr;
  std::size_t more_count = 0;
};

// A linear map y = W·x with W out x in, whatever stores W.
class layer {
 public:
  virtual ~layer() = default;
  virtual std::size_t in_features() const = 0;
  virtual std::size_t out_features() const = 0;
  // One row: y (out values) from x (in values).
  virtual void forward(const float* x, float* y) const = 0;
  // `rows` rows, x rows in_features() apart, y rows out_features() apart: a prompt's tokens in
  // one product. Each row's result is forward()'s. This default runs forward() row by row.
  virtual void forward_rows(const float* x, std::size_t rows, float* y,
                            const run_context& ctx) const {
    (void)ctx;
    for (std::size_t r = 0; r < rows; ++r) forward(x + r * in_features(), y + r * out_features());
  }
  // What it is, e.g. "float", "onebit", "rtn w2 g32".
  virtual std::string kind() const = 0;
  // Bits its weights take (value vectors, scales and zeros included).
  virtual std::size_t storage_bits() const = 0;
};

// A float32 matrix run as run.c's matmul does: each output a float sum in index order.
class float_layer final : public layer {
 public:
  float_layer(std::vector<float> w, std::size_t out, std::size_t in)
      : w_(std::move(w)), out_(out), in_(in) {
    if (w_.size() != out * in)
      throw std::invalid_argument("llama::float_layer: " + std::to_string(w_.size()) +
                                  " weights for a " + std::to_string(out) + "x" +
                                  std::to_string(in) + " matrix");
  }
  std::size_t in_features() const override { return in_; }
  std::size_t out_features() const override { return out_; }
  void forward(const float* x, float* y) const override {
    for (std::size_t j = 0; j < out_; ++j) {
      const float* row = w_.data() + j * in_;
      float sum = 0.0f;
      for (std::size_t i = 0; i < in_; ++i) sum += row[i] * x[i];
      y[j] = sum;
    }
  }
  std::string kind() const override { return "float"; }
  std::size_t storage_bits() const override { return 32 * w_.size(); }
  const std::vector<float>& weights() const noexcept { return w_; }

 private:
  std::vector<float> w_;
  std::size_t out_, in_;
};

// A OneBit layer y = ((x ⊙ g) · Wᵀ) ⊙ h, run by onebit::gemv on the fastest exact kernel.
class onebit_layer final : public layer {
 public:
  explicit onebit_layer(onebit::linear<> l, std::string kind = "onebit",
                        onebit::kernel k = onebit::kernel::automatic)
      : layer_(std::move(l)), kind_(std::move(kind)), kernel_(k) {
    (void)layer_.view();  // checks g and h against W
  }
  std::size_t in_features() const override { return layer_.in_features(); }
  std::size_t out_features() const override { return layer_.out_features(); }
  void forward(const float* x, float* y) const override {
    onebit::gemv(layer_, x, y, kernel_);
  }
  void forward_rows(const float* x, std::size_t rows, float* y,
                    const run_context& ctx) const override {
    const std::size_t in = in_features(), out = out_features();
    run_product(ctx, rows, in, [&](onebit::prepared_gemm& p, std::size_t r0, std::size_t n) {
      p.prepare(layer_, x + r0 * in, n, in, y + r0 * out, out, onebit::gemm_options{kernel_});
    });
  }
  std::string kind() const override { return kind_; }
  std::size_t storage_bits() const override { return layer_.storage_bits(); }
  const onebit::linear<>& linear() const noexcept { return layer_; }

  // Runs the product of `rows` rows through prepare(p, r0, n) (p prepared for rows [r0, r0 + n))
  // on the context's pool, in slices of at most onebit::detail::batch_slice rows, as
  // onebit::gemm does (gemm.hpp says why: a prompt's tables at once would not stay in cache).
  // How the threads share the work depends on the rows, never the bits (every row's result is
  // the same in any batch and any split):
  //  - a prompt (at least prompt_rows_per_thread rows a thread): each thread takes its own
  //    tokens and runs every output row for them from its own product. The tables of a slice
  //    then stay in one core's cache; splitting output rows instead made both cores read
  //    tables the other had written (1.1B prefill of 512 tokens: 1.59 s of products on one
  //    thread, 1.43 s on two).
  //  - one row (a token being decoded), or fewer than split_prepare_from activations: every
  //    thread prepares its own copy and runs its range of output rows
  //    (onebit::detail::run_private_copies says why).
  //  - in between: one prepare, output rows split over the pool.
  static constexpr std::size_t prompt_rows_per_thread = 16;
  template <class Prepare>
  static void run_product(const run_context& ctx, std::size_t rows, std::size_t in,
                          Prepare&& prepare) {
    onebit::prepared_gemm local;
    onebit::prepared_gemm& p = ctx.product != nullptr ? *ctx.product : local;
    // Rows [r0, r1) through q, slice by slice, each slice prepared and then run by run(q).
    const auto in_slices = [&](onebit::prepared_gemm& q, std::size_t r0, std::size_t r1,
                               const auto& run) {
      onebit::detail::for_batch_slices(r1 - r0, [&](std::size_t b0, std::size_t n) {
        prepare(q, r0 + b0, n);
        run(q);
      });
    };
    if (ctx.pool == nullptr) {
      in_slices(p, 0, rows, [](const onebit::prepared_gemm& q) { q.run(); });
      return;
    }
    const std::size_t threads =
        ctx.product != nullptr ? std::min(ctx.pool->size(), ctx.more_count + 1) : 1;
    if (threads >= 2 && rows >= threads * prompt_rows_per_thread) {
      ctx.pool->parallel_for(threads, [&](std::size_t i) {
        in_slices(i == 0 ? p : ctx.more_products[i - 1], rows * i / threads,
                  rows * (i + 1) / threads, [](const onebit::prepared_gemm& q) { q.run(); });
      });
      return;
    }
    if (threads >= 2 && (rows <= 1 || rows * in < onebit::detail::split_prepare_from)) {
      onebit::detail::run_private_copies(*ctx.pool, threads, p, ctx.more_products,
                                         [&](onebit::prepared_gemm& q) { prepare(q, 0, rows); });
      return;
    }
    in_slices(p, 0, rows,
              [&](const onebit::prepared_gemm& q) { onebit::detail::run_parallel(*ctx.pool, q); });
  }

 private:
  onebit::linear<> layer_;
  std::string kind_;
  onebit::kernel kernel_;
};

// A OneBit layer packed once for its kernel (onebit::pack): what an engine runs.
class packed_onebit_layer final : public layer {
 public:
  explicit packed_onebit_layer(onebit::packed_linear l) : layer_(std::move(l)) {
    if (layer_.empty()) throw std::invalid_argument("llama::packed_onebit_layer: an empty layer");
  }
  std::size_t in_features() const override { return layer_.in_features(); }
  std::size_t out_features() const override { return layer_.out_features(); }
  void forward(const float* x, float* y) const override { onebit::gemv(layer_, x, y); }
  void forward_rows(const float* x, std::size_t rows, float* y,
                    const run_context& ctx) const override {
    const std::size_t in = in_features(), out = out_features();
    onebit_layer::run_product(ctx, rows, in, [&](onebit::prepared_gemm& p, std::size_t r0, std::size_t n) {
      p.prepare(layer_, x + r0 * in, n, in, y + r0 * out, out);
    });
  }
  std::string kind() const override {
    return std::string("onebit ") + onebit::to_string(layer_.packed_kernel()) + " packed";
  }
  std::size_t storage_bits() const override {
    return 8 * layer_.bytes() + 16 * (layer_.in_features() + layer_.out_features());
  }
  const onebit::packed_linear& packed() const noexcept { return layer_; }

 private:
  onebit::packed_linear layer_;
};

// A k-bit RTN (or any lowbit_matrix) layer run on the 1-bit kernels as k sign planes plus the
// Σx correction (onebit::lowbit_linear).
class lowbit_layer final : public layer {
 public:
  lowbit_layer(const onebit::lowbit_matrix& m, std::string kind)
      : layer_(m), kind_(std::move(kind)), bits_(m.storage_bits()) {}
  std::size_t in_features() const override { return layer_.in_features(); }
  std::size_t out_features() const override { return layer_.out_features(); }
  void forward(const float* x, float* y) const override { onebit::gemv(layer_, x, y); }
  std::string kind() const override { return kind_; }
  std::size_t storage_bits() const override { return bits_; }

 private:
  onebit::lowbit_linear layer_;
  std::string kind_;
  std::size_t bits_;
};

// A layer run by any callable forward(x, y): how other layer types plug in.
class function_layer final : public layer {
 public:
  function_layer(std::size_t out, std::size_t in, std::function<void(const float*, float*)> f,
                 std::string kind, std::size_t storage_bits)
      : out_(out), in_(in), f_(std::move(f)), kind_(std::move(kind)), bits_(storage_bits) {}
  std::size_t in_features() const override { return in_; }
  std::size_t out_features() const override { return out_; }
  void forward(const float* x, float* y) const override { f_(x, y); }
  std::string kind() const override { return kind_; }
  std::size_t storage_bits() const override { return bits_; }

 private:
  std::size_t out_, in_;
  std::function<void(const float*, float*)> f_;
  std::string kind_;
  std::size_t bits_;
};

// The seven replaceable matrices of a block, in file order.
enum class slot { wq, wk, wv, wo, w1, w2, w3 };
inline constexpr slot all_slots[] = {slot::wq, slot::wk, slot::wv, slot::wo,
                                     slot::w1, slot::w2, slot::w3};
inline const char* to_string(slot s) noexcept {
  switch (s) {
    case slot::wq: return "wq";
    case slot::wk: return "wk";
    case slot::wv: return "wv";
    case slot::wo: return "wo";
    case slot::w1: return "w1";
    case slot::w2: return "w2";
    case slot::w3: return "w3";
  }
  return "?";
}
inline bool parse_slot(const std::string& name, slot& s) noexcept {
  for (slot t : all_slots)
    if (name == to_string(t)) {
      s = t;
      return true;
    }
  return false;
}

using layer_ptr = std::shared_ptr<const layer>;

struct block {
  std::vector<float> rms_att, rms_ffn;  // dim each
  layer_ptr wq, wk, wv, wo, w1, w2, w3;

  layer_ptr& operator[](slot s) {
    switch (s) {
      case slot::wq: return wq;
      case slot::wk: return wk;
      case slot::wv: return wv;
      case slot::wo: return wo;
      case slot::w1: return w1;
      case slot::w2: return w2;
      case slot::w3: break;
    }
    return w3;
  }
  const layer_ptr& operator[](slot s) const {
    switch (s) {
      case slot::wq: return wq;
      case slot::wk: return wk;
      case slot::wv: return wv;
      case slot::wo: return wo;
      case slot::w1: return w1;
      case slot::w2: return w2;
      case slot::w3: break;
    }
    return w3;
  }
};

struct config {
  int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0,
      seq_len = 0;
  int head_size() const noexcept { return dim / n_heads; }
  int kv_dim() const noexcept { return head_size() * n_kv_heads; }
};

// The model. Copying it shares the layers (they are immutable); replace a layer by assigning
// blocks[l][slot]. original[l][slot] keeps the float matrices of the checkpoint.
struct model {
  config cfg;
  std::vector<float> token_embedding;  // vocab x dim
  std::vector<block> blocks;
  std::vector<float> rms_final;   // dim
  std::vector<float> classifier;  // vocab x dim, float always
  // An engine's alternatives: the embedding in half (used when token_embedding is empty) and
  // the classifier as a layer (used, on the pool, when set; e.g. FP16 weights).
  std::vector<half> token_embedding_half;
  layer_ptr classifier_layer;

  // The float weights a layer started from (out x in, row-major) and its shape.
  struct matrix {
    const std::vector<float>* w;
    std::size_t rows, cols;
  };
  matrix original(std::size_t l, slot s) const {
    const auto& layer = originals_->at(l);
    const std::size_t dim = static_cast<std::size_t>(cfg.dim),
                      kv = static_cast<std::size_t>(cfg.kv_dim()),
                      hidden = static_cast<std::size_t>(cfg.hidden_dim);
    switch (s) {
      case slot::wq: return {&layer.wq, dim, dim};
      case slot::wk: return {&layer.wk, kv, dim};
      case slot::wv: return {&layer.wv, kv, dim};
      case slot::wo: return {&layer.wo, dim, dim};
      case slot::w1: return {&layer.w1, hidden, dim};
      case slot::w2: return {&layer.w2, dim, hidden};
      case slot::w3: break;
    }
    return {&layer.w3, hidden, dim};
  }

  static model from_checkpoint(const onebit::io::llama2c_checkpoint& ck) {
    model m;
    const auto& c = ck.config;
    m.cfg = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len};
    m.token_embedding = ck.token_embedding;
    m.rms_final = ck.rms_final;
    m.classifier = ck.classifier();
    m.originals_ = std::make_shared<const std::vector<onebit::io::llama2c_layer>>(ck.layers);
    for (const auto& L : ck.layers) {
      block b;
      b.rms_att = L.rms_att;
      b.rms_ffn = L.rms_ffn;
      m.blocks.push_back(std::move(b));
    }
    for (std::size_t l = 0; l < m.blocks.size(); ++l)
      for (slot s : all_slots) {
        const matrix w = m.original(l, s);
        m.blocks[l][s] = std::make_shared<float_layer>(*w.w, w.rows, w.cols);
      }
    return m;
  }

 private:
  std::shared_ptr<const std::vector<onebit::io::llama2c_layer>> originals_;
};

// Which layers to replace: "all", or a comma-separated list of items, each a slot name
// ("wq", all blocks), a block index ("3", all slots), or both ("3.wq"). Throws
// std::invalid_argument on an unknown item.
inline std::vector<std::pair<std::size_t, slot>> parse_selection(const std::string& spec,
                                                                 std::size_t n_layers) {
  std::vector<std::pair<std::size_t, slot>> chosen;
  auto add = [&](std::size_t l, slot s) {
    for (const auto& c : chosen)
      if (c.first == l && c.second == s) return;
    chosen.emplace_back(l, s);
  };
  std::size_t start = 0;
  while (start <= spec.size()) {
    const std::size_t comma = std::min(spec.find(',', start), spec.size());
    const std::string item = spec.substr(start, comma - start);
    start = comma + 1;
    if (item.empty()) continue;
    slot s;
    if (item == "all") {
      for (std::size_t l = 0; l < n_layers; ++l)
        for (slot t : all_slots) add(l, t);
    } else if (parse_slot(item, s)) {
      for (std::size_t l = 0; l < n_layers; ++l) add(l, s);
    } else {
      const std::size_t dot = item.find('.');
      const std::string block = item.substr(0, dot);
      const bool digits = !block.empty() && block.size() < 6 &&
                          block.find_first_not_of("0123456789") == std::string::npos;
      const std::size_t l = digits ? std::stoul(block) : n_layers;
      if (l >= n_layers)
        throw std::invalid_argument("llama::parse_selection: '" + item +
                                    "' is not a slot (wq wk wv wo w1 w2 w3), 'all', or a block "
                                    "index below " + std::to_string(n_layers) + " [.slot]");
      if (dot == std::string::npos) {
        for (slot t : all_slots) add(l, t);
      } else if (parse_slot(item.substr(dot + 1), s)) {
        add(l, s);
      } else {
        throw std::invalid_argument("llama::parse_selection: unknown slot in '" + item + "'");
      }
    }
  }
  return chosen;
}

// Replaces the chosen layers by make(original float weights, rows, cols, block, slot).
template <class Make>
void replace_layers(model& m, const std::vector<std::pair<std::size_t, slot>>& chosen, Make&& make) {
  for (const auto& [l, s] : chosen) {
    const model::matrix w = m.original(l, s);
    m.blocks[l][s] = make(w.w->data(), w.rows, w.cols, l, s);
  }
}

// The OneBit layer SVID makes of a float matrix.
inline layer_ptr svid_layer(const float* w, std::size_t rows, std::size_t cols,
                            const onebit::svid_options& options = {}) {
  return std::make_shared<onebit_layer>(onebit::svid(w, rows, cols, cols, options),
                                        std::string("svid-") + onebit::to_string(options.method));
}

// The k-bit RTN layer of a float matrix, on the 1-bit kernels.
inline layer_ptr rtn_layer(const float* w, std::size_t rows, std::size_t cols,
                           const onebit::rtn_options& options) {
  return std::make_shared<lowbit_layer>(
      onebit::rtn(w, rows, cols, cols, options),
      "rtn w" + std::to_string(options.bits) +
          (options.group == 0 ? std::string(" row") : " g" + std::to_string(options.group)) +
          (options.symmetric ? " sym" : ""));
}

// Called after every linear layer with its input and output: how activations are collected.
using tap = std::function<void(std::size_t layer, slot s, const float* x, std::size_t in,
                               const float* y, std::size_t out)>;

// The KV cache and scratch of one sequence, for up to `max_tokens` tokens per forward call
// (1 for decoding; a prompt's length for prefill). The cache is laid out for attention's reads,
// one key/value head at a time in contiguous memory (a row per position kv_dim floats apart
// put every position of a 7B model's head on its own page). Keys are transposed in tiles of
// key_tile positions: component i of head h's key at position t is
//   key_cache[(((l·kv_heads + h)·tiles + t / key_tile)·head_size + i)·key_tile + t % key_tile]
// (tiles = seq_len rounded up to key_tile, / key_tile), so a query's scores against a tile are
// sums over i of contiguous runs, vectorised across positions, each score summed in run.c's
// order. Values: value_cache[((l·kv_heads + h)·seq_len + t)·head_size + i].
struct state {
  static constexpr std::size_t key_tile = 16;
  static std::size_t padded_seq_len(const config& c) noexcept {
    return (static_cast<std::size_t>(c.seq_len) + key_tile - 1) / key_tile * key_tile;
  }
  explicit state(const config& c, std::size_t max_tokens = 1)
      : max_tokens(std::max<std::size_t>(1, max_tokens)),
        x(this->max_tokens * static_cast<std::size_t>(c.dim)), xb(x.size()), xb2(x.size()),
        q(x.size()), k(this->max_tokens * static_cast<std::size_t>(c.kv_dim())), v(k.size()),
        hb(this->max_tokens * static_cast<std::size_t>(c.hidden_dim)), hb2(hb.size()),
        att(detail::attention_block::capacity * padded_seq_len(c)),
        logits(static_cast<std::size_t>(c.vocab_size)),
        key_cache(static_cast<std::size_t>(c.n_layers) *
                  padded_seq_len(c) * static_cast<std::size_t>(c.kv_dim())),
        value_cache(static_cast<std::size_t>(c.n_layers) * static_cast<std::size_t>(c.seq_len) *
                    static_cast<std::size_t>(c.kv_dim())),
        rope_freq(static_cast<std::size_t>(c.head_size() / 2)),
        rope(this->max_tokens * static_cast<std::size_t>(c.head_size())) {
    for (std::size_t j = 0; j < rope_freq.size(); ++j)
      rope_freq[j] = rope_frequency(2 * j, static_cast<std::size_t>(c.head_size()));
  }
  std::size_t max_tokens;
  // att: the softmax weights of one attention block per thread (attention_block::capacity rows
  // of padded_seq_len), grown at the first call on a pool.
  std::vector<float> x, xb, xb2, q, k, v, hb, hb2, att, logits, key_cache, value_cache;
  std::vector<float> rope_freq;  // per pair of a head
  std::vector<float> rope;       // per token: cos, sin of each pair's angle
  onebit::prepared_gemm product;  // reused by every 1-bit product
  // The further threads' own products for a token's products (run_context::more_products),
  // sized at the first call on a pool and reused after.
  std::vector<onebit::prepared_gemm> more_products;
};

// Where a forward call's time went (wall seconds, added up over calls): the seven products of
// every block, attention (RoPE, scores, softmax, weighted values), the classifier, the rest
// (embedding, RMSNorm, SwiGLU, residuals).
struct forward_profile {
  double linear = 0, attention = 0, classifier = 0, rest = 0;
  double total() const noexcept { return linear + attention + classifier + rest; }
};

// How forward_tokens runs: the pool that splits the products, the attention heads and SwiGLU
// (null: this thread), and where to add up the time (null: not measured).
struct forward_options {
  onebit::thread_pool* pool = nullptr;
  forward_profile* profile = nullptr;
};

namespace detail {

inline void rmsnorm(float* o, const float* x, const float* weight, std::size_t size) {
  const float ss = inverse_rms(x, size);
  for (std::size_t j = 0; j < size; ++j) o[j] = weight[j] * (ss * x[j]);
}

inline void softmax(float* x, std::size_t size) {
  float max_val = x[0];
  for (std::size_t i = 1; i < size; ++i)
    if (x[i] > max_val) max_val = x[i];
  float sum = 0.0f;
  for (std::size_t i = 0; i < size; ++i) {
    x[i] = std::exp(x[i] - max_val);
    sum += x[i];
  }
  for (std::size_t i = 0; i < size; ++i) x[i] /= sum;
}

// One token goes through forward_rows too: its product then runs on the pool like a prompt's
// (forward() has no pool: decoding on two threads ran every product on one) and reuses the
// state's prepared product instead of allocating one per call. The bits are forward()'s.
inline void run(const layer& f, std::size_t l, slot s, const float* x, float* y,
                std::size_t rows, const run_context& ctx, const tap* t) {
  f.forward_rows(x, rows, y, ctx);
  if (t != nullptr && *t)
    for (std::size_t r = 0; r < rows; ++r)
      (*t)(l, s, x + r * f.in_features(), f.in_features(), y + r * f.out_features(),
           f.out_features());
}

// f(begin, end) over [0, n) split in one range per thread of the pool (or all on this one).
template <class F>
void split(onebit::thread_pool* pool, std::size_t n, F&& f) {
  if (pool == nullptr || pool->size() == 1 || n < 2) {
    f(std::size_t{0}, n);
    return;
  }
  const std::size_t parts = std::min(n, pool->size());
  pool->parallel_for(parts, [&](std::size_t i) { f(n * i / parts, n * (i + 1) / parts); });
}

// f(part, first, step) once per thread of the pool (or once on this one): part p takes items
// first = p, p + step, ... of [0, n), so neighbouring items, alike in cost, go to different
// threads.
template <class F>
void deal(onebit::thread_pool* pool, std::size_t n, F&& f) {
  if (pool == nullptr || pool->size() == 1 || n < 2) {
    f(std::size_t{0}, std::size_t{0}, std::size_t{1});
    return;
  }
  const std::size_t parts = std::min(n, pool->size());
  pool->parallel_for(parts, [&](std::size_t i) { f(i, i, parts); });
}

class stopwatch {
 public:
  explicit stopwatch(forward_profile* p) : p_(p) {
    if (p_) last_ = std::chrono::steady_clock::now();
  }
  void charge(double forward_profile::*bucket) {
    if (!p_) return;
    const auto now = std::chrono::steady_clock::now();
    p_->*bucket += std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }

 private:
  forward_profile* p_;
  std::chrono::steady_clock::time_point last_{};
};

inline void check_tokens(const model& m, const state& st, const int* tokens, std::size_t n,
                         int pos) {
  const config& p = m.cfg;
  if (n == 0 || n > st.max_tokens || pos < 0 ||
      static_cast<std::size_t>(pos) + n > static_cast<std::size_t>(p.seq_len))
    throw std::invalid_argument("llama::forward: " + std::to_string(n) +
                                " tokens at position " + std::to_string(pos) + " (state for " +
                                std::to_string(st.max_tokens) + " tokens, seq_len " +
                                std::to_string(p.seq_len) + ")");
  for (std::size_t r = 0; r < n; ++r)
    if (tokens[r] < 0 || tokens[r] >= p.vocab_size)
      throw std::invalid_argument("llama::forward: token " + std::to_string(tokens[r]) +
                                  " out of range (vocab " + std::to_string(p.vocab_size) + ")");
}

// The forward pass of tokens[0..n) at positions pos .. pos+n-1; the logits of the last.
inline const float* forward_impl(const model& m, state& st, const int* tokens, std::size_t n,
                                 int pos, const forward_options& o, const tap* observe,
                                 std::size_t blocks) {
  check_tokens(m, st, tokens, n, pos);
  const config& p = m.cfg;
  const std::size_t dim = static_cast<std::size_t>(p.dim);
  const std::size_t kv_dim = static_cast<std::size_t>(p.kv_dim());
  const std::size_t kv_mul = static_cast<std::size_t>(p.n_heads / p.n_kv_heads);
  const std::size_t hidden = static_cast<std::size_t>(p.hidden_dim);
  const std::size_t head_size = static_cast<std::size_t>(p.head_size());
  const std::size_t seq_len = static_cast<std::size_t>(p.seq_len);
  const std::size_t pos0 = static_cast<std::size_t>(pos);
  if (o.pool != nullptr && st.more_products.size() + 1 < o.pool->size())
    st.more_products.resize(o.pool->size() - 1);
  const run_context ctx{o.pool, &st.product, st.more_products.data(), st.more_products.size()};
  const attention_kernels& kernels = attention_kernels_for(onebit::detail::default_isa());
  const std::size_t att_row = state::padded_seq_len(p);  // keys' positions, whole tiles
  const std::size_t threads = o.pool != nullptr ? std::max<std::size_t>(1, o.pool->size()) : 1;
  if (st.att.size() < threads * attention_block::capacity * att_row)
    st.att.resize(threads * attention_block::capacity * att_row);
  stopwatch clock(o.profile);

  float* x = st.x.data();
  for (std::size_t r = 0; r < n; ++r) {
    const std::size_t row = static_cast<std::size_t>(tokens[r]) * dim;
    if (!m.token_embedding.empty())
      std::memcpy(x + r * dim, m.token_embedding.data() + row, dim * sizeof(float));
    else
      onebit::to_float(m.token_embedding_half.data() + row, x + r * dim, dim);
  }
  // RoPE's cos and sin for each token's position: pos·freq as run.c computes it.
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t j = 0; j < head_size / 2; ++j) {
      const float val = static_cast<float>(pos0 + r) * st.rope_freq[j];
      st.rope[r * head_size + 2 * j] = std::cos(val);
      st.rope[r * head_size + 2 * j + 1] = std::sin(val);
    }
  clock.charge(&forward_profile::rest);

  for (std::size_t l = 0; l < m.blocks.size(); ++l) {
    if (l == blocks) return nullptr;
    const block& b = m.blocks[l];
    for (std::size_t r = 0; r < n; ++r)
      rmsnorm(st.xb.data() + r * dim, x + r * dim, b.rms_att.data(), dim);
    float* keys = st.key_cache.data() + l * att_row * kv_dim;
    float* values = st.value_cache.data() + l * seq_len * kv_dim;
    clock.charge(&forward_profile::rest);
    run(*b.wq, l, slot::wq, st.xb.data(), st.q.data(), n, ctx, observe);
    run(*b.wk, l, slot::wk, st.xb.data(), st.k.data(), n, ctx, observe);
    run(*b.wv, l, slot::wv, st.xb.data(), st.v.data(), n, ctx, observe);
    clock.charge(&forward_profile::linear);

    // RoPE, as run.c: each pair (i, i+1) of every head turns by pos / 10000^(i'/head_size),
    // i' = i mod head_size; queries over dim, keys over kv_dim. Keys and values then go to
    // the cache, head by head.
    for (std::size_t r = 0; r < n; ++r) {
      const float* cs = st.rope.data() + r * head_size;
      for (int which = 0; which < 2; ++which) {
        float* vec = which == 0 ? st.q.data() + r * dim : st.k.data() + r * kv_dim;
        const std::size_t size = which == 0 ? dim : kv_dim;
        for (std::size_t i = 0; i < size; i += 2) {
          const float fcr = cs[i % head_size], fci = cs[i % head_size + 1];
          const float v0 = vec[i], v1 = vec[i + 1];
          vec[i] = v0 * fcr - v1 * fci;
          vec[i + 1] = v0 * fci + v1 * fcr;
        }
      }
      const std::size_t t = pos0 + r, tile = t / state::key_tile, lane = t % state::key_tile;
      for (std::size_t h = 0; h < kv_dim / head_size; ++h) {
        float* key_tile = keys + (h * att_row + tile * state::key_tile) * head_size + lane;
        const float* kr = st.k.data() + r * kv_dim + h * head_size;
        for (std::size_t i = 0; i < head_size; ++i) key_tile[i * state::key_tile] = kr[i];
        std::memcpy(values + (h * seq_len + t) * head_size, st.v.data() + r * kv_dim + h * head_size,
                    head_size * sizeof(float));
      }
    }

    // Grouped-query attention: query head h reads key/value head h / kv_mul. A key/value
    // head's queries (its kv_mul heads for each token, token by token; token r sees positions
    // <= pos0 + r) go in blocks that load each key tile and value row once for all of them
    // (detail/attention.hpp). Blocks are dealt to the pool's threads in turn, which evens out
    // a prompt's short and long ones.
    const float scale = std::sqrt(static_cast<float>(head_size));
    const std::size_t per_kv = n * kv_mul;
    const std::size_t per_block = kernels.max_queries;
    const std::size_t blocks_per_kv = (per_kv + per_block - 1) / per_block;
    const std::size_t kv_heads = kv_dim / head_size;
    deal(o.pool, kv_heads * blocks_per_kv, [&](std::size_t part, std::size_t first_block, std::size_t step) {
      attention_block blk;
      blk.head_size = head_size;
      blk.scale = scale;
      float* scratch = st.att.data() + part * attention_block::capacity * att_row;
      for (std::size_t bi = first_block; bi < kv_heads * blocks_per_kv; bi += step) {
        const std::size_t kvh = bi / blocks_per_kv, first = bi % blocks_per_kv * per_block;
        blk.count = std::min(per_block, per_kv - first);
        blk.keys = keys + kvh * att_row * head_size;
        blk.values = values + kvh * seq_len * head_size;
        for (std::size_t j = 0; j < blk.count; ++j) {
          const std::size_t r = (first + j) / kv_mul, h = kvh * kv_mul + (first + j) % kv_mul;
          blk.q[j] = st.q.data() + r * dim + h * head_size;
          blk.out[j] = st.xb.data() + r * dim + h * head_size;
          blk.att[j] = scratch + j * att_row;
          blk.len[j] = pos0 + r + 1;
        }
        kernels.attend(blk);
      }
    });
    clock.charge(&forward_profile::attention);
    run(*b.wo, l, slot::wo, st.xb.data(), st.xb2.data(), n, ctx, observe);
    clock.charge(&forward_profile::linear);
    for (std::size_t i = 0; i < n * dim; ++i) x[i] += st.xb2[i];

    // SwiGLU FFN.
    for (std::size_t r = 0; r < n; ++r)
      rmsnorm(st.xb.data() + r * dim, x + r * dim, b.rms_ffn.data(), dim);
    clock.charge(&forward_profile::rest);
    run(*b.w1, l, slot::w1, st.xb.data(), st.hb.data(), n, ctx, observe);
    run(*b.w3, l, slot::w3, st.xb.data(), st.hb2.data(), n, ctx, observe);
    clock.charge(&forward_profile::linear);
    // Split only where the exps take tens of µs: below, the hand-off costs more than it saves.
    split(n * hidden >= 8192 ? o.pool : nullptr, n * hidden, [&](std::size_t begin, std::size_t end) {
      kernels.silu_mul(st.hb.data() + begin, st.hb2.data() + begin, end - begin);
    });
    clock.charge(&forward_profile::rest);
    run(*b.w2, l, slot::w2, st.hb.data(), st.xb.data(), n, ctx, observe);
    clock.charge(&forward_profile::linear);
    for (std::size_t i = 0; i < n * dim; ++i) x[i] += st.xb[i];
  }

  // The logits of the last token only (a prompt's other positions predict nothing we use).
  float* last = x + (n - 1) * dim;
  rmsnorm(last, last, m.rms_final.data(), dim);
  clock.charge(&forward_profile::rest);
  const std::size_t vocab = static_cast<std::size_t>(p.vocab_size);
  if (m.classifier_layer) {
    m.classifier_layer->forward_rows(last, 1, st.logits.data(), ctx);
  } else {
    // Eight rows at a time, each summed in index order (run.c's), for eight independent chains.
    std::size_t j = 0;
    for (; j + 8 <= vocab; j += 8) {
      float sum[8] = {};
      const float* row = m.classifier.data() + j * dim;
      for (std::size_t i = 0; i < dim; ++i)
        for (std::size_t u = 0; u < 8; ++u) sum[u] += row[u * dim + i] * last[i];
      for (std::size_t u = 0; u < 8; ++u) st.logits[j + u] = sum[u];
    }
    for (; j < vocab; ++j) {
      const float* row = m.classifier.data() + j * dim;
      float sum = 0.0f;
      for (std::size_t i = 0; i < dim; ++i) sum += row[i] * last[i];
      st.logits[j] = sum;
    }
  }
  clock.charge(&forward_profile::classifier);
  return st.logits.data();
}

}  // namespace detail

// Logits (vocab values, in st.logits) for `token` at position `pos`, given positions < pos
// already in st's KV cache. With `blocks` below the model's, only that many blocks run (for
// collecting activations) and the result is null. run.c's arithmetic, value for value.
inline const float* forward(const model& m, state& st, int token, int pos,
                            const tap* observe = nullptr, std::size_t blocks = SIZE_MAX) {
  return detail::forward_impl(m, st, &token, 1, pos, forward_options{}, observe, blocks);
}

// The engine's call: tokens[0..n) at positions pos .. pos+n-1 (a prompt at once, n up to the
// state's max_tokens; or one token while decoding), the products of every block over all n
// rows at once, split over o.pool. Returns the logits of the last token (in st.logits). Each
// token's values are those forward() computes, whatever n and the pool: bit for bit where the
// compiler does not contract a*b + c into fused multiply-adds (-ffp-contract=off; g++ contracts
// by default on aarch64 and with -mfma), else to float rounding.
inline const float* forward_tokens(const model& m, state& st, const int* tokens, std::size_t n,
                                   int pos, const forward_options& o = {}) {
  return detail::forward_impl(m, st, tokens, n, pos, o, nullptr, SIZE_MAX);
}

// run.c's sampler: argmax at temperature 0, otherwise softmax(logits / temperature) sampled
// with its xorshift generator, optionally restricted to the top-p nucleus.
class sampler {
 public:
  explicit sampler(float temperature = 0.0f, float topp = 1.0f, std::uint64_t seed = 1)
      : temperature_(temperature), topp_(topp), state_(seed) {}

  static int argmax(const float* v, std::size_t n) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < n; ++i)
      if (v[i] > v[best]) best = i;
    return static_cast<int>(best);
  }

  // May overwrite logits with probabilities.
  int sample(float* logits, std::size_t n) {
    if (temperature_ == 0.0f) return argmax(logits, n);
    for (std::size_t q = 0; q < n; ++q) logits[q] /= temperature_;
    detail::softmax(logits, n);
    const float coin = random_f32();
    if (topp_ <= 0.0f || topp_ >= 1.0f) {
      float cdf = 0.0f;
      for (std::size_t i = 0; i < n; ++i) {
        cdf += logits[i];
        if (coin < cdf) return static_cast<int>(i);
      }
      return static_cast<int>(n - 1);
    }
    const float cutoff = (1.0f - topp_) / static_cast<float>(n - 1);
    std::vector<std::pair<float, int>> kept;
    for (std::size_t i = 0; i < n; ++i)
      if (logits[i] >= cutoff) kept.emplace_back(logits[i], static_cast<int>(i));
    std::stable_sort(kept.begin(), kept.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    float cumulative = 0.0f;
    std::size_t last = kept.size() - 1;
    for (std::size_t i = 0; i < kept.size(); ++i) {
      cumulative += kept[i].first;
      if (cumulative > topp_) {
        last = i;
        break;
      }
    }
    const float r = coin * cumulative;
    float cdf = 0.0f;
    for (std::size_t i = 0; i <= last; ++i) {
      cdf += kept[i].first;
      if (r < cdf) return kept[i].second;
    }
    return kept[last].second;
  }

 private:
  float random_f32() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    const auto u = static_cast<std::uint32_t>((state_ * 0x2545F4914F6CDD1Dull) >> 32);
    return static_cast<float>(u >> 8) / 16777216.0f;
  }
  float temperature_, topp_;
  std::uint64_t state_;
};

// run.c's generation loop: the prompt (BOS alone by default) is fed in, then each next token
// is sampled from the logits of the position before it, up to `steps` positions in all or
// until the model produces BOS. Returns the tokens after the first prompt token.
inline std::vector<int> generate(const model& m, sampler& s, int steps,
                                 const std::vector<int>& prompt = {onebit::io::llama2c_tokenizer::bos}) {
  if (prompt.empty()) throw std::invalid_argument("llama::generate: empty prompt");
  steps = std::min(steps, m.cfg.seq_len);
  state st(m.cfg);
  std::vector<int> out;
  int token = prompt[0];
  for (int pos = 0; pos < steps; ++pos) {
    forward(m, st, token, pos);
    int next;
    if (static_cast<std::size_t>(pos) + 1 < prompt.size())
      next = prompt[static_cast<std::size_t>(pos) + 1];
    else
      next = s.sample(st.logits.data(), st.logits.size());
    if (next == onebit::io::llama2c_tokenizer::bos) break;
    out.push_back(next);
    token = next;
  }
  return out;
}

// How many tokens two generations share before their first difference.
inline std::size_t common_prefix(const std::vector<int>& a, const std::vector<int>& b) {
  std::size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

// Sequences (each BOS then the model's own tokens, sampled at `temperature`) until they hold
// at least `tokens` predicted tokens in all; each sequence runs up to seq_len positions or
// until the model produces BOS.
inline std::vector<std::vector<int>> sample_sequences(const model& m, std::size_t tokens,
                                                      std::uint64_t seed,
                                                      float temperature = 1.0f) {
  sampler s(temperature, 1.0f, seed);
  std::vector<std::vector<int>> seqs;
  std::size_t total = 0;
  while (total < tokens) {
    std::vector<int> seq{onebit::io::llama2c_tokenizer::bos};
    const std::vector<int> gen = generate(m, s, m.cfg.seq_len - 1);  // seq_len positions in all
    const std::size_t take = std::min(gen.size(), tokens - total);
    seq.insert(seq.end(), gen.begin(), gen.begin() + static_cast<std::ptrdiff_t>(take));
    total += take;
    if (take > 0) seqs.push_back(std::move(seq));
  }
  return seqs;
}

// Mean next-token cross-entropy (nats) of the model over every predicted token of the
// sequences (teacher forcing: position t predicts token t+1).
inline double cross_entropy(const model& m, const std::vector<std::vector<int>>& seqs,
                            std::size_t* count = nullptr) {
  double total = 0;
  std::size_t n = 0;
  state st(m.cfg);
  for (const auto& seq : seqs)
    for (std::size_t pos = 0; pos + 1 < seq.size(); ++pos) {
      const float* logits = forward(m, st, seq[pos], static_cast<int>(pos));
      const std::size_t vocab = st.logits.size();
      double max = logits[0];
      for (std::size_t i = 1; i < vocab; ++i) max = std::max(max, static_cast<double>(logits[i]));
      double sum = 0;
      for (std::size_t i = 0; i < vocab; ++i) sum += std::exp(logits[i] - max);
      total += (max + std::log(sum)) - logits[static_cast<std::size_t>(seq[pos + 1])];
      ++n;
    }
  if (count != nullptr) *count = n;
  return n == 0 ? 0.0 : total / static_cast<double>(n);
}

// The logits of every predicting position of the sequences (teacher forcing), one row of vocab
// values per position, in order: the reference compare() measures other models against.
inline std::vector<float> all_logits(const model& m, const std::vector<std::vector<int>>& seqs) {
  std::vector<float> out;
  state st(m.cfg);
  for (const auto& seq : seqs)
    for (std::size_t pos = 0; pos + 1 < seq.size(); ++pos) {
      const float* logits = forward(m, st, seq[pos], static_cast<int>(pos));
      out.insert(out.end(), logits, logits + st.logits.size());
    }
  return out;
}

// Mean next-token cross-entropy of m and mean KL(reference ‖ m) of the next-token
// distributions, over every predicting position (nats per token).
struct comparison {
  double cross_entropy = 0, kl = 0;
};
inline comparison compare(const model& m, const std::vector<std::vector<int>>& seqs,
                          const std::vector<float>& reference_logits) {
  const std::size_t vocab = static_cast<std::size_t>(m.cfg.vocab_size);
  auto log_softmax = [vocab](const float* z, std::vector<double>& out) {
    double max = z[0];
    for (std::size_t i = 1; i < vocab; ++i) max = std::max(max, static_cast<double>(z[i]));
    double sum = 0;
    for (std::size_t i = 0; i < vocab; ++i) sum += std::exp(z[i] - max);
    const double lse = max + std::log(sum);
    for (std::size_t i = 0; i < vocab; ++i) out[i] = z[i] - lse;
  };
  comparison c;
  std::size_t n = 0;
  std::vector<double> lp(vocab), lq(vocab);
  state st(m.cfg);
  for (const auto& seq : seqs)
    for (std::size_t pos = 0; pos + 1 < seq.size(); ++pos, ++n) {
      if ((n + 1) * vocab > reference_logits.size())
        throw std::invalid_argument("llama::compare: reference logits of fewer positions");
      log_softmax(forward(m, st, seq[pos], static_cast<int>(pos)), lq);
      log_softmax(reference_logits.data() + n * vocab, lp);
      c.cross_entropy -= lq[static_cast<std::size_t>(seq[pos + 1])];
      for (std::size_t i = 0; i < vocab; ++i) c.kl += std::exp(lp[i]) * (lp[i] - lq[i]);
    }
  if (n > 0) {
    c.cross_entropy /= static_cast<double>(n);
    c.kl /= static_cast<double>(n);
  }
  return c;
}

// Runs the sequences through the model (teacher forcing) and calls `observe` after every
// linear layer (of the first `blocks` blocks): how real activations are collected.
inline void observe(const model& m, const std::vector<std::vector<int>>& seqs, const tap& t,
                    std::size_t blocks = SIZE_MAX) {
  state st(m.cfg);
  for (const auto& seq : seqs)
    for (std::size_t pos = 0; pos < seq.size(); ++pos)
      forward(m, st, seq[pos], static_cast<int>(pos), &t, blocks);
}

// What every replaceable layer sees over a set of sequences (teacher forcing), one row per
// token: x[block][slot] its inputs (tokens x in), y[block][slot] its outputs (tokens x out),
// both row-major.
struct layer_activations {
  std::size_t tokens = 0;
  std::vector<std::vector<std::vector<float>>> x, y;  // [block][slot index]
  const std::vector<float>& input(std::size_t l, slot s) const {
    return x[l][static_cast<std::size_t>(s)];
  }
  const std::vector<float>& output(std::size_t l, slot s) const {
    return y[l][static_cast<std::size_t>(s)];
  }
};
// Only the first `blocks` blocks run and are recorded.
inline layer_activations collect_activations(const model& m,
                                             const std::vector<std::vector<int>>& seqs,
                                             bool outputs = true, std::size_t blocks = SIZE_MAX) {
  layer_activations a;
  a.x.assign(m.blocks.size(), std::vector<std::vector<float>>(std::size(all_slots)));
  a.y = a.x;
  for (const auto& seq : seqs) a.tokens += seq.size();
  const tap record = [&](std::size_t l, slot s, const float* x, std::size_t n, const float* y,
                         std::size_t out) {
    auto& vx = a.x[l][static_cast<std::size_t>(s)];
    vx.insert(vx.end(), x, x + n);
    if (outputs) {
      auto& vy = a.y[l][static_cast<std::size_t>(s)];
      vy.insert(vy.end(), y, y + out);
    }
  };
  observe(m, seqs, record, blocks);
  return a;
}

using onebit::distill;
using onebit::distill_options;
using onebit::distill_report;
using onebit::distill_to;

// Distilling a whole model from SVID, layer by layer. The variants differ in the data:
enum class distill_variant {
  fp32_inputs,     // ALGORITHMS §6 as written: inputs the FP32 model feeds each layer, targets
                   // the float layer's outputs on them; every layer independent
  student_inputs,  // block by block in model order: inputs from the model whose earlier layers
                   // are already distilled, targets the float layer's outputs on those inputs
  student_inputs_teacher_targets  // the same inputs, targets the FP32 model's own outputs of
                                  // the layer (so a layer also makes up for earlier errors)
};
inline const char* to_string(distill_variant v) noexcept {
  switch (v) {
    case distill_variant::fp32_inputs: return "layer-wise on FP32 activations";
    case distill_variant::student_inputs: return "sequential on the 1-bit model's activations";
    case distill_variant::student_inputs_teacher_targets: return "sequential, FP32-model targets";
  }
  return "?";
}

struct distill_summary {
  double start = 0, best = 0;  // sums over layers of sqrt(relative squared output error)
  std::size_t layers = 0, flipped = 0;
};

// Every replaceable layer of `fp32` as a OneBit layer: SVID, then distill_to on calibration
// sequences `calib`. `teacher` is collect_activations(fp32, calib) (with outputs for the
// teacher-targets variant). Layer (l, s) draws its minibatches with seed o.seed + 7l + s.
// (A template only so that an engine including this header does not compile distill_to's
// Eigen code; docs/design.md, "Compile cost".)
template <class Lazy = void>
model distill_model(const model& fp32, const std::vector<std::vector<int>>& calib,
                    const layer_activations& teacher, distill_variant v,
                    const distill_options& o, distill_summary* summary = nullptr) {
  model m = fp32;
  distill_summary sum;
  // Stages whose inputs do not depend on each other: q, k, v share theirs, w1 and w3 too.
  const std::vector<std::vector<slot>> stages{{slot::wq, slot::wk, slot::wv}, {slot::wo},
                                              {slot::w1, slot::w3}, {slot::w2}};
  for (std::size_t l = 0; l < m.blocks.size(); ++l)
    for (const auto& stage : stages) {
      layer_activations student;
      if (v != distill_variant::fp32_inputs)
        student = collect_activations(m, calib, false, l + 1);
      const layer_activations& inputs = v == distill_variant::fp32_inputs ? teacher : student;
      for (slot s : stage) {
        const auto w = fp32.original(l, s);
        const onebit::linear<> init = onebit::svid(w.w->data(), w.rows, w.cols, w.cols);
        distill_options d = o;
        d.seed = o.seed + 7 * l + static_cast<std::size_t>(s);
        distill_report r;
        const float* x = inputs.input(l, s).data();
        onebit::linear<> trained =
            v == distill_variant::student_inputs_teacher_targets
                ? distill_to(init, x, teacher.output(l, s).data(), inputs.tokens, d, &r)
                : distill(init, w.w->data(), x, inputs.tokens, d, &r);
        sum.start += std::sqrt(r.start);
        sum.best += std::sqrt(r.best);
        sum.flipped += r.flipped;
        ++sum.layers;
        m.blocks[l][s] = std::make_shared<onebit_layer>(std::move(trained), "svid+distill");
      }
    }
  if (summary != nullptr) *summary = sum;
  return m;
}

// The text of the greedy story in the data README (the block after "## Reference output"),
// or "" when the README has none.
inline std::string reference_story(const std::string& readme_path) {
  std::ifstream in(readme_path);
  std::string line, text;
  bool section = false, inside = false, first = true;
  while (std::getline(in, line)) {
    if (!section) {
      section = line.rfind("## Reference output", 0) == 0;
    } else if (line.rfind("```", 0) == 0) {
      if (inside) return text;
      inside = true;
    } else if (inside) {
      if (!first) text += '\n';
      text += line;
      first = false;
    }
  }
  return "";
}

}  // namespace onebit::llama
