// llama::forward_tokens, the engine's forward pass: a prompt at once, split over a thread pool,
// half embeddings and a classifier layer, gives each token the values the one-token forward
// (run.c's arithmetic) gives it, bit for bit; bad calls are refused with the sizes named.
#include <onebit/models/llama.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <random>
#include <vector>

#include "support.hpp"

namespace test_llama_engine {

namespace llama = onebit::llama;

namespace {

// A small Llama with grouped-query attention (4 heads, 2 key/value heads) and odd sizes.
llama::config small_config() {
  llama::config c;
  c.dim = 48;
  c.hidden_dim = 100;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 37;
  c.seq_len = 40;
  return c;
}

enum class weights { float32, onebit_plain, onebit_packed };

llama::model random_model(const llama::config& c, weights w, onebit::kernel k) {
  llama::model m;
  m.cfg = c;
  const std::size_t dim = static_cast<std::size_t>(c.dim), vocab = static_cast<std::size_t>(c.vocab_size);
  m.token_embedding = onebit_test::gaussian(vocab * dim);
  m.classifier = onebit_test::gaussian(vocab * dim, 0.2f);
  m.rms_final = std::vector<float>(dim, 1.0f);
  auto make = [&](std::size_t out, std::size_t in) -> llama::layer_ptr {
    if (w == weights::float32)
      return std::make_shared<llama::float_layer>(
          onebit_test::gaussian(out * in, 1.0f / std::sqrt(static_cast<float>(in))), out, in);
    auto layer = onebit_test::random_layer(out, in);
    for (auto& v : layer.h) v = onebit::to_half(onebit::to_float(v) * 0.2f);
    if (w == weights::onebit_plain)
      return std::make_shared<llama::onebit_layer>(std::move(layer), "onebit", k);
    return std::make_shared<llama::packed_onebit_layer>(onebit::pack(layer, k));
  };
  const std::size_t kv = static_cast<std::size_t>(c.kv_dim()), hidden = static_cast<std::size_t>(c.hidden_dim);
  for (int l = 0; l < c.n_layers; ++l) {
    llama::block b;
    b.rms_att = onebit_test::gaussian(dim, 0.1f);
    for (float& v : b.rms_att) v += 1.0f;
    b.rms_ffn = b.rms_att;
    b.wq = make(dim, dim);
    b.wk = make(kv, dim);
    b.wv = make(kv, dim);
    b.wo = make(dim, dim);
    b.w1 = make(hidden, dim);
    b.w2 = make(dim, hidden);
    b.w3 = make(hidden, dim);
    m.blocks.push_back(std::move(b));
  }
  return m;
}

// The logits of every position, one token at a time through llama::forward.
std::vector<std::vector<float>> one_by_one(const llama::model& m, const std::vector<int>& tokens) {
  llama::state st(m.cfg);
  std::vector<std::vector<float>> out;
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    const float* logits = llama::forward(m, st, tokens[t], static_cast<int>(t));
    out.emplace_back(logits, logits + m.cfg.vocab_size);
  }
  return out;
}

std::vector<int> some_tokens(std::size_t n, int vocab) {
  std::vector<int> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<int>((i * 7 + 3) % static_cast<std::size_t>(vocab));
  return t;
}

}  // namespace

TEST_CASE("forward_tokens: a prompt at once, then decoding, equals forward token by token") {
  const llama::config c = small_config();
  const std::vector<int> tokens = some_tokens(23, c.vocab_size);
  struct variant {
    weights w;
    onebit::kernel k;
  };
  for (const variant v : {variant{weights::float32, onebit::kernel::automatic},
                          variant{weights::onebit_plain, onebit::kernel::automatic},
                          variant{weights::onebit_plain, onebit::kernel::popcount_int8},
                          variant{weights::onebit_packed, onebit::kernel::lut},
                          variant{weights::onebit_packed, onebit::kernel::add_only},
                          variant{weights::onebit_packed, onebit::kernel::popcount_binary}}) {
    const llama::model m = random_model(c, v.w, v.k);
    const auto reference = one_by_one(m, tokens);
    for (std::size_t threads : {1u, 2u, 3u}) {
      onebit::thread_pool pool(threads);
      llama::forward_profile profile;
      const llama::forward_options o{threads == 1 ? nullptr : &pool, &profile};
      // Prompts of 1, 5 and 17 tokens, then the rest one by one.
      for (std::size_t prompt : {1u, 5u, 17u}) {
        llama::state st(c, prompt);
        const float* logits = llama::forward_tokens(m, st, tokens.data(), prompt, 0, o);
        const std::string where = std::to_string(static_cast<int>(v.w)) + " " +
                                  onebit::to_string(v.k) + " threads " + std::to_string(threads) +
                                  " prompt " + std::to_string(prompt);
        CHECK_MESSAGE(std::vector<float>(logits, logits + c.vocab_size) == reference[prompt - 1], where);
        for (std::size_t t = prompt; t < tokens.size(); ++t) {
          logits = llama::forward_tokens(m, st, &tokens[t], 1, static_cast<int>(t), o);
          const std::string at = where + " position " + std::to_string(t);
          CHECK_MESSAGE(std::vector<float>(logits, logits + c.vocab_size) == reference[t], at);
        }
      }
      CHECK(profile.linear > 0);
      CHECK(profile.attention > 0);
      CHECK(profile.classifier > 0);
      CHECK(profile.total() >= profile.linear + profile.attention);
    }
  }
}

TEST_CASE("forward_tokens: half embedding and a classifier layer") {
  const llama::config c = small_config();
  const std::vector<int> tokens = some_tokens(9, c.vocab_size);
  llama::model m = random_model(c, weights::onebit_packed, onebit::kernel::lut);
  // Float values that are halves already, so that both forms hold the same numbers.
  for (float& v : m.token_embedding) v = onebit::to_float(onebit::to_half(v));
  const auto reference = one_by_one(m, tokens);

  llama::model e = m;
  e.token_embedding_half.resize(m.token_embedding.size());
  onebit::to_half(m.token_embedding.data(), e.token_embedding_half.data(), m.token_embedding.size());
  e.token_embedding.clear();
  const std::vector<float> classifier = m.classifier;
  const std::size_t dim = static_cast<std::size_t>(c.dim);
  e.classifier_layer = std::make_shared<llama::float_layer>(classifier, c.vocab_size, dim);
  e.classifier.clear();
  llama::state st(c, 9);
  const float* logits = llama::forward_tokens(e, st, tokens.data(), tokens.size(), 0);
  CHECK(std::vector<float>(logits, logits + c.vocab_size) == reference.back());
}

TEST_CASE("forward_tokens refuses tokens past the state or the sequence, and bad tokens") {
  const llama::config c = small_config();
  const llama::model m = random_model(c, weights::float32, onebit::kernel::automatic);
  llama::state st(c, 4);
  const std::vector<int> tokens = some_tokens(5, c.vocab_size);
  CHECK_THROWS_WITH_AS(llama::forward_tokens(m, st, tokens.data(), 5, 0),
                       doctest::Contains("5 tokens at position 0 (state for 4 tokens"),
                       std::invalid_argument);
  CHECK_THROWS_AS(llama::forward_tokens(m, st, tokens.data(), 2, c.seq_len - 1), std::invalid_argument);
  CHECK_THROWS_AS(llama::forward_tokens(m, st, tokens.data(), 0, 0), std::invalid_argument);
  const int bad = c.vocab_size;
  CHECK_THROWS_WITH_AS(llama::forward_tokens(m, st, &bad, 1, 0), doctest::Contains("token 37"),
                       std::invalid_argument);
}

}  // namespace test_llama_engine
