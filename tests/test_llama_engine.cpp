// llama::forward_tokens, the engine's forward pass: a prompt at once, split over a thread pool,
// half embeddings and a classifier layer, gives each token the values the one-token forward
// (run.c's arithmetic) gives it, bit for bit; bad calls are refused with the sizes named.
#include <onebit/models/llama.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
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
  c.seq_len = 120;
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
  const std::vector<int> tokens = some_tokens(112, c.vocab_size);
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
      // Prompts of 1, 5, 17 and 100 tokens (a prompt the threads split by tokens, in slices
      // of 64), then the rest one by one.
      for (std::size_t prompt : {1u, 5u, 17u, 100u}) {
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

namespace {

bool same_bits(const float* a, const float* b, std::size_t n) {
  return std::memcmp(a, b, n * sizeof(float)) == 0;
}

// Keys and values of one key/value head in the state's layout (tiles of 16 positions).
struct head_cache {
  std::size_t head_size, positions;
  std::vector<float> keys, values;
  head_cache(std::size_t hs, std::size_t n) : head_size(hs), positions(n) {
    const std::size_t tiles = (n + 15) / 16;
    keys = onebit_test::gaussian(tiles * 16 * hs);
    values = onebit_test::gaussian(n * hs);
  }
};

}  // namespace

TEST_CASE("attention kernels: every path gives each query run.c's values, bit for bit") {
  using llama::detail::attention_block;
  const auto& portable = llama::detail::attention_kernels_for(onebit::isa::portable);
  for (onebit::isa path : onebit_test::runnable_paths()) {
    const auto& k = llama::detail::attention_kernels_for(path);
    for (std::size_t hs : {1u, 8u, 12u, 20u, 64u, 128u}) {
      const head_cache cache(hs, 140);
      for (std::size_t count = 1; count <= k.max_queries; ++count) {
        for (std::size_t first_len : {1u, 7u, 16u, 17u, 63u, 100u}) {
          const std::string where = std::string(onebit::to_string(path)) + " head_size " +
                                    std::to_string(hs) + " queries " + std::to_string(count) +
                                    " first length " + std::to_string(first_len);
          // Queries of the block, lengths growing by 0-3 (heads of a group, then tokens).
          const std::vector<float> q = onebit_test::gaussian(count * hs, 2.0f);
          std::vector<float> out(count * hs, -1.0f), att(count * 160, 0.0f);
          attention_block b;
          b.count = count;
          b.keys = cache.keys.data();
          b.values = cache.values.data();
          b.head_size = hs;
          b.scale = std::sqrt(static_cast<float>(hs));
          for (std::size_t j = 0; j < count; ++j) {
            b.q[j] = q.data() + j * hs;
            b.out[j] = out.data() + j * hs;
            b.att[j] = att.data() + j * 160;
            b.len[j] = j == 0 ? first_len : std::min<std::size_t>(140, b.len[j - 1] + j % 4);
          }
          k.attend(b);
          for (std::size_t j = 0; j < count; ++j) {
            // The portable body, this query alone.
            std::vector<float> o1(hs, -2.0f), a1(160, 0.0f);
            attention_block one = b;
            one.count = 1;
            one.q[0] = b.q[j];
            one.out[0] = o1.data();
            one.att[0] = a1.data();
            one.len[0] = b.len[j];
            portable.attend(one);
            CHECK_MESSAGE(same_bits(o1.data(), b.out[j], hs), where, " query ", j);
            CHECK_MESSAGE(same_bits(a1.data(), b.att[j], b.len[j]), where, " query ", j);
            // And the exact math, in double: softmax(q·k / sqrt(hs)) · v.
            std::vector<double> s(b.len[j]);
            double top = -1e300, total = 0;
            for (std::size_t t = 0; t < b.len[j]; ++t) {
              double d = 0;
              for (std::size_t i = 0; i < hs; ++i)
                d += double(b.q[j][i]) * cache.keys[((t / 16) * hs + i) * 16 + t % 16];
              s[t] = d / std::sqrt(double(hs));
              top = std::max(top, s[t]);
            }
            for (double& v : s) total += (v = std::exp(v - top));
            for (std::size_t i = 0; i < hs; ++i) {
              double y = 0, mass = 0;
              for (std::size_t t = 0; t < b.len[j]; ++t) {
                y += s[t] / total * cache.values[t * hs + i];
                mass += std::abs(s[t] / total * cache.values[t * hs + i]);
              }
              // Float sums of at most 140 terms (plus the scores' error through the exps).
              CHECK_MESSAGE(std::abs(b.out[j][i] - y) <= 1e-4 * (mass + 1.0), where, " dim ", i);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("SwiGLU gate kernels: run.c's v / (1 + exp(-v)) * w on every path, bit for bit") {
  const auto& portable = llama::detail::attention_kernels_for(onebit::isa::portable);
  std::vector<float> v = onebit_test::gaussian(1000, 6.0f), w = onebit_test::gaussian(1000);
  // exp's edges: overflow, underflow to subnormal and to 0, infinities, NaN.
  const float specials[] = {-90.0f, -100.0f, -104.0f, -200.0f, 89.0f, 0.0f, -0.0f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), 1e-30f, -1e-30f};
  std::copy(std::begin(specials), std::end(specials), v.begin());
  for (onebit::isa path : onebit_test::runnable_paths()) {
    const auto& k = llama::detail::attention_kernels_for(path);
    for (std::size_t n : {1u, 7u, 15u, 16u, 17u, 1000u}) {
      std::vector<float> expected(v.begin(), v.begin() + n), got = expected;
      for (std::size_t i = 0; i < n; ++i) {
        float val = expected[i];
        val *= 1.0f / (1.0f + std::exp(-val));
        expected[i] = val * w[i];
      }
      std::vector<float> ported = got;
      portable.silu_mul(ported.data(), w.data(), n);
      k.silu_mul(got.data(), w.data(), n);
      CHECK_MESSAGE(same_bits(got.data(), ported.data(), n), onebit::to_string(path), " n ", n);
      CHECK_MESSAGE(same_bits(got.data(), expected.data(), n), onebit::to_string(path), " n ", n);
    }
  }
}

#if ONEBIT_X86 && defined(__GLIBC__)
ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)
void exp_avx512(const float* x, float* y, std::size_t n) {
  for (std::size_t i = 0; i < n; i += 16)
    _mm512_storeu_ps(y + i, llama::detail::expf_avx512(_mm512_loadu_ps(x + i)));
}
ONEBIT_TARGET_END
ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX2)
void exp_avx2(const float* x, float* y, std::size_t n) {
  for (std::size_t i = 0; i < n; i += 8)
    _mm256_storeu_ps(y + i, llama::detail::expf_avx2(_mm256_loadu_ps(x + i)));
}
ONEBIT_TARGET_END

// The vector exp is glibc's expf (its FMA build, which glibc runs wherever these paths run):
// every float was checked once; here a sample of a million, plus the edges.
TEST_CASE("vector exp equals glibc's expf") {
  std::mt19937 bits(7);
  std::vector<float> x(1u << 20);
  for (float& f : x) {
    const std::uint32_t u = bits();
    std::memcpy(&f, &u, sizeof f);
  }
  const float edges[] = {88.72283f, 88.72284f, -103.27893f, -103.97208f, -103.97209f,
                         -87.33655f, 0.0f, -0.0f};
  std::copy(std::begin(edges), std::end(edges), x.begin());
  std::vector<float> want(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) want[i] = std::exp(x[i]);
  auto same = [](float a, float b) {
    return std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(a) && std::isnan(b));
  };
  for (onebit::isa path : onebit_test::runnable_paths()) {
    if (path != onebit::isa::avx2 && path != onebit::isa::avx512) continue;
    std::vector<float> got(x.size());
    (path == onebit::isa::avx512 ? exp_avx512 : exp_avx2)(x.data(), got.data(), x.size());
    std::size_t differ = 0;
    for (std::size_t i = 0; i < x.size(); ++i) differ += same(got[i], want[i]) ? 0 : 1;
    CHECK_MESSAGE(differ == 0, onebit::to_string(path));
  }
}
#endif

}  // namespace test_llama_engine
