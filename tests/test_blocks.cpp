// The Llama blocks of cross-block reconstruction (quant/llama_blocks.hpp): every backward
// against central finite differences, the transformer block against models/llama.hpp on the
// real stories260K weights, causality within and independence across sequences, bad shapes.
#include <onebit/models/llama.hpp>

#include <onebit/models/llama_blocks.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_blocks {

namespace llama = onebit::llama;

namespace {

using onebit::block;
using onebit::token_layout;

std::mt19937_64& rng() {
  static std::mt19937_64 engine(20240917);
  return engine;
}

std::vector<float> random_vector(std::size_t n, double sigma = 1.0) {
  std::normal_distribution<double> d(0.0, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(d(rng()));
  return v;
}

// out x in, scaled so that a unit-variance input gives a unit-variance output.
std::vector<float> random_weights(std::size_t out, std::size_t in) {
  return random_vector(out * in, 1.0 / std::sqrt(static_cast<double>(in)));
}

// The small instance every gradient check uses.
constexpr std::size_t dim = 16, heads = 4, kv_heads = 2, hidden = 24;
const token_layout small_layout{{5, 3, 7}};

std::unique_ptr<onebit::attention_block> random_attention() {
  const std::size_t kv_dim = dim / heads * kv_heads;
  return std::make_unique<onebit::attention_block>(
      dim, heads, kv_heads, random_weights(dim, dim), random_weights(kv_dim, dim),
      random_weights(kv_dim, dim), random_weights(dim, dim));
}

std::unique_ptr<onebit::swiglu_block> random_swiglu() {
  return std::make_unique<onebit::swiglu_block>(dim, hidden, random_weights(hidden, dim),
                                                random_weights(dim, hidden),
                                                random_weights(hidden, dim));
}

std::vector<float> random_scale(std::size_t n) {
  std::vector<float> s = random_vector(n, 0.3);
  for (float& v : s) v += 1.0f;
  return s;
}

onebit::io::llama2c_layer random_layer() {
  const std::size_t kv_dim = dim / heads * kv_heads;
  onebit::io::llama2c_layer l;
  l.rms_att = random_scale(dim);
  l.wq = random_weights(dim, dim);
  l.wk = random_weights(kv_dim, dim);
  l.wv = random_weights(kv_dim, dim);
  l.wo = random_weights(dim, dim);
  l.rms_ffn = random_scale(dim);
  l.w1 = random_weights(hidden, dim);
  l.w2 = random_weights(dim, hidden);
  l.w3 = random_weights(hidden, dim);
  return l;
}

std::vector<float> run(block& b, const std::vector<float>& x, const token_layout& layout) {
  std::vector<float> y(layout.tokens() * b.output_size());
  b.forward(x.data(), layout, y.data());
  return y;
}

// E = Σ r ⊙ y, summed in double so that the finite differences see only y's float rounding.
double projection(block& b, const std::vector<float>& x, const token_layout& layout,
                  const std::vector<float>& r) {
  const std::vector<float> y = run(b, x, layout);
  double e = 0;
  for (std::size_t i = 0; i < y.size(); ++i) e += static_cast<double>(r[i]) * y[i];
  return e;
}

// Central differences (E(θ+ε) − E(θ−ε)) / 2ε against the analytic gradient, for every entry of
// x and of every listed weight. Float blocks: ε = 1e-2 keeps the rounding of E (|E| ~ 10,
// float y) near 1e-5 / 2ε and the truncation (ε²/6 · E''') near 1e-5, so the difference is
// held to 2e-3 of the tensor's largest gradient (measured worst 3e-4, on the transformer's wq;
// a wrong term is off by O(1)); the measured worst of each tensor is printed.
constexpr double fd_epsilon = 1e-2;
constexpr double fd_tolerance = 2e-3;

double worst_relative(const std::vector<float>& analytic, const std::vector<double>& numeric) {
  double scale = 0, worst = 0;
  for (double g : numeric) scale = std::max(scale, std::fabs(g));
  for (std::size_t i = 0; i < analytic.size(); ++i)
    worst = std::max(worst, std::fabs(analytic[i] - numeric[i]));
  return worst / std::max(scale, 1e-3);
}

std::vector<double> differences(const std::function<double()>& loss, float* values,
                                std::size_t n) {
  std::vector<double> g(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float keep = values[i];
    values[i] = static_cast<float>(keep + fd_epsilon);
    const double up = loss();
    values[i] = static_cast<float>(keep - fd_epsilon);
    const double down = loss();
    values[i] = keep;
    g[i] = (up - down) / (2 * fd_epsilon);
  }
  return g;
}

void check_gradients(block& b, const std::string& what,
                     const token_layout& layout = small_layout) {
  const std::size_t tokens = layout.tokens();
  std::vector<float> x = random_vector(tokens * b.input_size());
  const std::vector<float> r = random_vector(tokens * b.output_size());
  auto loss = [&] { return projection(b, x, layout, r); };

  (void)loss();
  std::vector<float> dx(x.size());
  b.backward(r.data(), dx.data());
  const std::vector<onebit::block_weight> ws = b.weights();
  std::vector<std::vector<float>> grads;
  for (const auto& w : ws) grads.emplace_back(w.gradient, w.gradient + w.rows * w.cols);

  const double ex = worst_relative(dx, differences(loss, x.data(), x.size()));
  MESSAGE(what, " dx: worst |analytic − FD| / max|FD| = ", ex);
  CHECK(ex < fd_tolerance);
  for (std::size_t k = 0; k < ws.size(); ++k) {
    const double e =
        worst_relative(grads[k], differences(loss, ws[k].value, ws[k].rows * ws[k].cols));
    MESSAGE(what, " ", ws[k].name, ": worst |analytic − FD| / max|FD| = ", e);
    CHECK(e < fd_tolerance);
  }

  // The gradients are overwritten, not accumulated: a second backward gives the same.
  (void)loss();
  b.backward(r.data(), nullptr);
  for (std::size_t k = 0; k < ws.size(); ++k)
    CHECK(std::equal(grads[k].begin(), grads[k].end(), ws[k].gradient));
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

double max_abs_difference(const float* a, const float* b, std::size_t n) {
  double m = 0;
  for (std::size_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

template <class F>
void check_throws_naming(F&& f, const std::string& field) {
  try {
    f();
    FAIL_CHECK("no exception; expected one naming ", field);
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.rfind("onebit::", 0) == 0);
    CHECK(what.find(field) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("linear_block: backward matches finite differences") {
  onebit::linear_block b(7, dim, random_weights(7, dim), "proj");
  CHECK(b.input_size() == dim);
  CHECK(b.output_size() == 7);
  REQUIRE(b.weights().size() == 1);
  CHECK(b.weights()[0].name == "proj");
  check_gradients(b, "linear");
}

TEST_CASE("rmsnorm_block: backward matches finite differences and no weight is listed") {
  onebit::rmsnorm_block b(dim, random_scale(dim));
  CHECK(b.weights().empty());
  check_gradients(b, "rmsnorm");
}

TEST_CASE("attention_block: backward matches finite differences (RoPE, GQA, causal mask)") {
  auto b = random_attention();
  const auto ws = b->weights();
  REQUIRE(ws.size() == 4);
  CHECK(ws[0].name == "wq");
  CHECK(ws[1].name == "wk");
  CHECK(ws[1].rows == dim / heads * kv_heads);
  CHECK(ws[2].name == "wv");
  CHECK(ws[3].name == "wo");
  SUBCASE("15 tokens in sequences of 5, 3, 7") { check_gradients(*b, "attention"); }
  SUBCASE("with an empty sequence in the layout") {
    check_gradients(*b, "attention (5, 0, 3, 7)", token_layout{{5, 0, 3, 7}});
  }
  SUBCASE("with one head per kv head and one kv head for all") {
    onebit::attention_block mha(8, 2, 2, random_weights(8, 8), random_weights(8, 8),
                                random_weights(8, 8), random_weights(8, 8));
    check_gradients(mha, "attention (multi-head)");
    onebit::attention_block mqa(8, 4, 1, random_weights(8, 8), random_weights(2, 8),
                                random_weights(2, 8), random_weights(8, 8), 500.0f);
    check_gradients(mqa, "attention (multi-query, theta 500)");
  }
}

TEST_CASE("swiglu_block: backward matches finite differences") {
  auto b = random_swiglu();
  check_gradients(*b, "swiglu");
}

TEST_CASE("residual_block and sequential_block: backward matches finite differences") {
  SUBCASE("residual") {
    onebit::residual_block b(random_swiglu());
    CHECK(b.weights().size() == 3);
    check_gradients(b, "residual(swiglu)");
  }
  SUBCASE("sequential, names kept") {
    std::vector<std::unique_ptr<block>> steps;
    steps.push_back(std::make_unique<onebit::linear_block>(10, dim, random_weights(10, dim), "a"));
    steps.push_back(std::make_unique<onebit::rmsnorm_block>(10, random_scale(10)));
    steps.push_back(std::make_unique<onebit::linear_block>(6, 10, random_weights(6, 10), "b"));
    onebit::sequential_block b(std::move(steps));
    CHECK(b.input_size() == dim);
    CHECK(b.output_size() == 6);
    const auto ws = b.weights();
    REQUIRE(ws.size() == 2);
    CHECK(ws[0].name == "a");
    CHECK(ws[1].name == "b");
    check_gradients(b, "sequential(linear, rmsnorm, linear)");
  }
  SUBCASE("sequential, names indexed") {
    std::vector<std::unique_ptr<block>> steps;
    steps.push_back(std::make_unique<onebit::linear_block>(dim, dim, random_weights(dim, dim)));
    steps.push_back(random_attention());
    steps.push_back(std::make_unique<onebit::linear_block>(dim, dim, random_weights(dim, dim)));
    onebit::sequential_block b(std::move(steps), onebit::sequential_block::naming::indexed);
    std::vector<std::string> names;
    for (const auto& w : b.weights()) names.push_back(w.name);
    CHECK(names == std::vector<std::string>{"0.weight", "1.wq", "1.wk", "1.wv", "1.wo",
                                            "2.weight"});
    check_gradients(b, "sequential(linear, attention, linear)");
  }
}

TEST_CASE("llama_transformer_block: backward matches finite differences") {
  auto b = onebit::llama_transformer_block(dim, heads, kv_heads, hidden, random_layer());
  std::vector<std::string> names;
  for (const auto& w : b->weights()) names.push_back(w.name);
  CHECK(names == std::vector<std::string>{"wq", "wk", "wv", "wo", "w1", "w2", "w3"});
  check_gradients(*b, "transformer");
}

TEST_CASE("sequences are independent and causal") {
  auto b = onebit::llama_transformer_block(dim, heads, kv_heads, hidden, random_layer());
  const std::size_t tokens = small_layout.tokens();  // sequences at rows 0-4, 5-7, 8-14
  const std::vector<float> x = random_vector(tokens * dim);
  const std::vector<float> y = run(*b, x, small_layout);

  SUBCASE("other sequences' values do not reach a sequence") {
    std::vector<float> x2 = x;
    for (std::size_t i = 0; i < 5 * dim; ++i) x2[i] += 1.0f;
    for (std::size_t i = 8 * dim; i < tokens * dim; ++i) x2[i] -= 0.5f;
    const std::vector<float> y2 = run(*b, x2, small_layout);
    CHECK(std::equal(y.begin() + 5 * dim, y.begin() + 8 * dim, y2.begin() + 5 * dim));
  }
  SUBCASE("later tokens do not reach earlier ones") {
    std::vector<float> x2 = x;
    for (std::size_t i = 12 * dim; i < 13 * dim; ++i) x2[i] *= -2.0f;
    const std::vector<float> y2 = run(*b, x2, small_layout);
    CHECK(std::equal(y.begin(), y.begin() + 12 * dim, y2.begin()));
    CHECK(max_abs_difference(y.data() + 12 * dim, y2.data() + 12 * dim, dim) > 1e-3);
  }
  SUBCASE("a sequence alone gives what it gives in the batch, positions from 0") {
    // Equal up to float rounding: the batch's GEMMs may block their sums differently.
    const std::vector<float> alone(x.begin() + 5 * dim, x.begin() + 8 * dim);
    const std::vector<float> ya = run(*b, alone, token_layout{{3}});
    const double d = max_abs_difference(ya.data(), y.data() + 5 * dim, 3 * dim);
    MESSAGE("sequence alone vs in the batch: max |difference| = ", d);
    CHECK(d <= 1e-5 * std::max(1.0, max_abs(ya)));
    // A zero-length sequence in the layout changes nothing.
    const std::vector<float> y0 = run(*b, x, token_layout{{5, 0, 3, 0, 7}});
    CHECK(max_abs_difference(y0.data(), y.data(), y.size()) <= 1e-5 * max_abs(y));
  }
  SUBCASE("a gradient on one sequence reaches only its own inputs") {
    (void)run(*b, x, small_layout);
    std::vector<float> dy(tokens * dim, 0.0f);
    const std::vector<float> r = random_vector(3 * dim);
    std::copy(r.begin(), r.end(), dy.begin() + 5 * dim);
    std::vector<float> dx(tokens * dim, 1.0f);
    b->backward(dy.data(), dx.data());
    CHECK(max_abs_difference(dx.data(), dy.data(), 5 * dim) == 0.0);
    CHECK(max_abs_difference(dx.data() + 8 * dim, dy.data() + 8 * dim, 7 * dim) == 0.0);
    CHECK(max_abs(std::vector<float>(dx.begin() + 5 * dim, dx.begin() + 8 * dim)) > 1e-3);
  }
}

TEST_CASE("five transformer blocks on stories260K reproduce models/llama.hpp") {
  const auto ck = onebit::io::read_llama2c(std::string(ONEBIT_DATA_DIR) +
                                           "/tinyllamas/stories260K.bin");
  const llama::model m = llama::model::from_checkpoint(ck);
  const auto& c = ck.config;
  REQUIRE(c.dim == 64);
  REQUIRE(c.hidden_dim == 172);
  REQUIRE(c.n_heads == 8);
  REQUIRE(c.n_kv_heads == 4);
  REQUIRE(c.n_layers == 5);
  const std::size_t d = 64, vocab = static_cast<std::size_t>(c.vocab_size);

  // Two sequences of arbitrary tokens, each opening with BOS (1).
  const token_layout layout{{37, 21}};
  std::vector<int> tokens;
  std::uniform_int_distribution<int> pick(3, c.vocab_size - 1);
  for (std::size_t len : layout.lengths) {
    tokens.push_back(1);
    for (std::size_t i = 1; i < len; ++i) tokens.push_back(pick(rng()));
  }
  std::vector<float> h(tokens.size() * d);
  for (std::size_t t = 0; t < tokens.size(); ++t)
    std::copy_n(ck.token_embedding.data() + static_cast<std::size_t>(tokens[t]) * d, d,
                h.data() + t * d);

  // Hidden states after 1..5 blocks, and the logits, as llama::forward computes them.
  std::vector<std::vector<float>> reference(6, std::vector<float>(tokens.size() * d));
  std::vector<float> reference_logits(tokens.size() * vocab);
  for (std::size_t blocks = 1; blocks <= 5; ++blocks) {
    std::size_t row = 0;
    for (std::size_t len : layout.lengths) {
      llama::state st(m.cfg);
      for (std::size_t pos = 0; pos < len; ++pos, ++row) {
        const float* logits =
            llama::forward(m, st, tokens[row], static_cast<int>(pos), nullptr,
                           blocks == 5 ? SIZE_MAX : blocks);
        if (blocks == 5)
          std::copy_n(logits, vocab, reference_logits.data() + row * vocab);
        else
          std::copy_n(st.x.data(), d, reference[blocks].data() + row * d);
      }
    }
  }

  // Within 1e-5 of the largest magnitude (measured: 9e-7): the two sum in different orders
  // (Eigen's GEMMs against run.c's index order), which moves float results by a few ulps.
  constexpr double tolerance = 1e-5;
  std::vector<float> next(h.size());
  for (std::size_t l = 0; l < 5; ++l) {
    auto b = onebit::llama_transformer_block(ck, l);
    b->forward(h.data(), layout, next.data());
    h.swap(next);
    if (l < 4) {
      const double diff = max_abs_difference(h.data(), reference[l + 1].data(), h.size());
      const double scale = max_abs(reference[l + 1]);
      MESSAGE("after block ", l, ": max |difference| = ", diff, " (max |x| ", scale, ")");
      CHECK(diff <= tolerance * scale);
    }
  }
  std::vector<float> logits(reference_logits.size());
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    std::vector<float> n(d);
    llama::detail::rmsnorm(n.data(), h.data() + t * d, ck.rms_final.data(), d);
    for (std::size_t j = 0; j < vocab; ++j) {
      float sum = 0.0f;
      for (std::size_t i = 0; i < d; ++i) sum += ck.classifier()[j * d + i] * n[i];
      logits[t * vocab + j] = sum;
    }
  }
  const double diff =
      max_abs_difference(logits.data(), reference_logits.data(), logits.size());
  const double scale = max_abs(reference_logits);
  MESSAGE("logits: max |difference| = ", diff, " (max |logit| ", scale, ")");
  CHECK(diff <= tolerance * scale);
}

TEST_CASE("bad shapes and misuse throw") {
  using onebit::attention_block;
  auto w = [](std::size_t n) { return std::vector<float>(n, 0.1f); };
  check_throws_naming([&] { attention_block(10, 4, 2, w(100), w(50), w(50), w(100)); }, "dim");
  check_throws_naming([&] { attention_block(12, 4, 3, w(144), w(108), w(108), w(144)); },
                      "n_kv_heads");
  check_throws_naming([&] { attention_block(12, 4, 0, w(144), w(0), w(0), w(144)); },
                      "n_kv_heads");
  check_throws_naming([&] { attention_block(12, 0, 1, w(144), w(0), w(0), w(144)); },
                      "n_heads");
  check_throws_naming([&] { attention_block(12, 4, 2, w(144), w(72), w(72), w(144)); },
                      "head_size");
  check_throws_naming([&] { attention_block(16, 4, 2, w(255), w(128), w(128), w(256)); },
                      "wq");
  check_throws_naming([&] { attention_block(16, 4, 2, w(256), w(256), w(128), w(256)); },
                      "wk");
  check_throws_naming([&] { attention_block(16, 4, 2, w(256), w(128), w(127), w(256)); },
                      "wv");
  check_throws_naming([&] { attention_block(16, 4, 2, w(256), w(128), w(128), w(16)); },
                      "wo");
  check_throws_naming(
      [&] { attention_block(16, 4, 2, w(256), w(128), w(128), w(256), -1.0f); }, "rope_theta");
  check_throws_naming([&] { onebit::swiglu_block(16, 24, w(384), w(384), w(383)); }, "w3");
  check_throws_naming([&] { onebit::swiglu_block(16, 24, w(384), w(24 * 15), w(384)); }, "w2");
  check_throws_naming([&] { onebit::swiglu_block(16, 0, w(0), w(0), w(0)); }, "hidden");
  check_throws_naming([&] { onebit::linear_block(3, 4, w(11)); }, "weights");
  check_throws_naming([&] { onebit::linear_block(0, 4, w(0)); }, "out");
  check_throws_naming([&] { onebit::rmsnorm_block(4, w(5)); }, "scale");
  check_throws_naming([&] { onebit::rmsnorm_block(4, w(4), -1.0f); }, "eps");
  check_throws_naming(
      [&] { onebit::residual_block(std::make_unique<onebit::linear_block>(3, 4, w(12))); },
      "f maps 4 to 3");
  check_throws_naming([&] { onebit::residual_block(nullptr); }, "f is null");
  check_throws_naming(
      [&] {
        std::vector<std::unique_ptr<block>> steps;
        steps.push_back(std::make_unique<onebit::linear_block>(3, 4, w(12)));
        steps.push_back(std::make_unique<onebit::linear_block>(3, 4, w(12)));
        onebit::sequential_block s(std::move(steps));
      },
      "step 1 takes 4");
  check_throws_naming(
      [&] {
        std::vector<std::unique_ptr<block>> steps;
        steps.push_back(std::make_unique<onebit::linear_block>(4, 4, w(16)));
        steps.push_back(std::make_unique<onebit::linear_block>(4, 4, w(16)));
        onebit::sequential_block s(std::move(steps));
      },
      "\"weight\"");
  check_throws_naming([&] { onebit::sequential_block({}); }, "no steps");
  check_throws_naming(
      [&] {
        onebit::io::llama2c_checkpoint ck;
        onebit::llama_transformer_block(ck, 0);
      },
      "layer 0");

  onebit::linear_block lin(4, 4, w(16));
  std::vector<float> in(8, 0.5f), out(8);
  CHECK_THROWS_AS(lin.backward(out.data(), in.data()), std::logic_error);
  CHECK_THROWS_AS(lin.forward(nullptr, token_layout{{2}}, out.data()), std::invalid_argument);
  lin.forward(in.data(), token_layout{{2}}, out.data());
  CHECK_THROWS_AS(lin.backward(nullptr, in.data()), std::invalid_argument);
  // An empty batch is a no-op that leaves zero gradients.
  lin.forward(nullptr, token_layout{{0, 0}}, nullptr);
  lin.backward(nullptr, nullptr);
  CHECK(std::all_of(lin.weights()[0].gradient, lin.weights()[0].gradient + 16,
                    [](float g) { return g == 0.0f; }));
}

}  // namespace test_blocks
