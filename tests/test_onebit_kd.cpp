// models/onebit_kd.hpp on a tiny random Llama (2 blocks, dim 16, vocab 32): the loss falls
// with and without the post-norm, seeded runs repeat bit for bit, 1 and 3 threads give the same
// bits, a run stopped and resumed from its checkpoint ends where the uninterrupted one does,
// the student starts as SVID's layers, and bad options throw std::invalid_argument naming the
// field.
#include <onebit/models/onebit_kd.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

namespace test_onebit_kd {

namespace {

namespace llama = onebit::llama;

std::vector<float> gaussian(std::mt19937_64& rng, std::size_t n, double sigma, double mean = 0) {
  std::normal_distribution<double> d(mean, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(d(rng));
  return v;
}

// A random llama2.c model whose sampled text is not uniform: embeddings of scale 1, so the
// shared classifier gives peaked logits.
llama::model tiny_model() {
  std::mt19937_64 rng(2026);
  onebit::io::llama2c_checkpoint ck;
  auto& c = ck.config;
  c.dim = 16;
  c.hidden_dim = 24;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 32;
  c.seq_len = 24;
  c.shared_classifier = true;
  const std::size_t dim = 16, kv = 8, hidden = 24;
  const double s = 1.0 / std::sqrt(16.0);
  ck.token_embedding = gaussian(rng, 32 * dim, 1.0);
  ck.rms_final = gaussian(rng, dim, 0.1, 1.0);
  for (int l = 0; l < c.n_layers; ++l) {
    onebit::io::llama2c_layer L;
    L.rms_att = gaussian(rng, dim, 0.1, 1.0);
    L.rms_ffn = gaussian(rng, dim, 0.1, 1.0);
    L.wq = gaussian(rng, dim * dim, s);
    L.wk = gaussian(rng, kv * dim, s);
    L.wv = gaussian(rng, kv * dim, s);
    L.wo = gaussian(rng, dim * dim, s);
    L.w1 = gaussian(rng, hidden * dim, s);
    L.w2 = gaussian(rng, dim * hidden, 1.0 / std::sqrt(24.0));
    L.w3 = gaussian(rng, hidden * dim, s);
    ck.layers.push_back(std::move(L));
  }
  return llama::model::from_checkpoint(ck);
}

llama::kd_options small_options() {
  llama::kd_options o;
  o.steps = 8;
  o.batch = 3;
  o.train_tokens = 120;
  o.warmup = 2;
  o.threads = 1;
  o.seed = 7;
  o.adam_W.learning_rate = 5e-3;
  o.adam_values.learning_rate = 5e-3;
  return o;
}

// Everything the student holds at the end, as bits.
struct run {
  std::vector<double> losses;
  std::vector<float> parameters;
};

run train(const llama::model& m, const llama::kd_options& o, std::size_t stop_after = 0) {
  run r;
  llama::distill_onebit(m, o, [&](const llama::kd_progress& p, const llama::kd_student& st) {
    r.losses.push_back(p.loss);
    r.parameters.clear();
    for (const auto& q : st.layers) {
      r.parameters.insert(r.parameters.end(), q.W.begin(), q.W.end());
      r.parameters.insert(r.parameters.end(), q.g.begin(), q.g.end());
      r.parameters.insert(r.parameters.end(), q.h.begin(), q.h.end());
    }
    return stop_after == 0 || p.step < stop_after;
  });
  return r;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::string temp_path(const char* name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/onebit_kd_" +
         std::to_string(static_cast<long>(::getpid())) + "_" + name;
}

}  // namespace

TEST_CASE("the KD loss falls, with the post-norm and without it") {
  const llama::model m = tiny_model();
  for (bool norm : {false, true}) {
    CAPTURE(norm);
    llama::kd_options o = small_options();
    o.norm.enabled = norm;
    o.steps = 30;
    o.batch = 4;
    const run r = train(m, o);
    REQUIRE(r.losses.size() == 30);
    double first = 0, last = 0;
    for (std::size_t i = 0; i < 5; ++i) first += r.losses[i], last += r.losses[25 + i];
    CHECK(last < 0.8 * first);
    for (double l : r.losses) CHECK(std::isfinite(l));
  }
}

TEST_CASE("seeded runs repeat bit for bit; 1 and 3 threads agree bit for bit") {
  const llama::model m = tiny_model();
  llama::kd_options o = small_options();
  const run a = train(m, o), b = train(m, o);
  CHECK(same_bits(a.parameters, b.parameters));
  CHECK(a.losses == b.losses);
  o.threads = 3;
  const run c = train(m, o);
  CHECK(same_bits(a.parameters, c.parameters));
  CHECK(a.losses == c.losses);
  o.seed = 8;
  const run d = train(m, o);
  CHECK(!same_bits(a.parameters, d.parameters));
}

TEST_CASE("checkpoint and resume give the uninterrupted run's result") {
  const llama::model m = tiny_model();
  for (bool norm : {false, true}) {
    CAPTURE(norm);
    llama::kd_options o = small_options();
    o.norm.enabled = norm;
    const run whole = train(m, o);
    const std::string path = temp_path(norm ? "norm.safetensors" : "plain.safetensors");
    o.checkpoint = path;
    const run first = train(m, o, 3);  // stops after step 3, writing the checkpoint
    REQUIRE(first.losses.size() == 3);
    o.checkpoint.clear();
    o.resume = path;
    const run rest = train(m, o);
    REQUIRE(rest.losses.size() == 5);
    CHECK(same_bits(whole.parameters, rest.parameters));
    for (std::size_t i = 0; i < 5; ++i) CHECK(rest.losses[i] == whole.losses[3 + i]);
    // Other options than the checkpoint's are refused, naming the entry.
    o.batch = 4;
    try {
      llama::distill_onebit(m, o);
      FAIL("no exception");
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("kd.batch") != std::string::npos);
    }
    std::remove(path.c_str());
  }
}

TEST_CASE("the student starts as SVID's layers; the result deploys on onebit's kernels") {
  const llama::model m = tiny_model();
  const llama::kd_student st = llama::kd_start(m, onebit::post_norm{});
  REQUIRE(st.layers.size() == 14);
  const auto w = m.original(1, llama::slot::w2);
  const onebit::linear<> svid = onebit::svid(w.w->data(), w.rows, w.cols, w.cols);
  const onebit::linear<> start = st.layers[7 + 5].to_linear();
  CHECK(start.W == svid.W);
  CHECK(start.g == svid.g);
  CHECK(start.h == svid.h);
  llama::kd_options o = small_options();
  const llama::kd_result r = llama::distill_onebit(m, o);
  CHECK(r.steps_done == 8);
  CHECK(!r.stopped);
  const llama::model student = llama::with_onebit_layers(m, r.layers);
  const auto eval = llama::sample_sequences(m, 40, 99);
  CHECK(std::isfinite(llama::cross_entropy(student, eval)));
}

TEST_CASE("bad options throw std::invalid_argument naming the field") {
  const llama::model m = tiny_model();
  auto expect = [&](llama::kd_options o, const char* field) {
    CAPTURE(field);
    try {
      llama::distill_onebit(m, o);
      FAIL("no exception");
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find(field) != std::string::npos);
    }
  };
  llama::kd_options o = small_options();
  o.steps = 0;
  expect(o, "steps");
  o = small_options();
  o.batch = 0;
  expect(o, "batch");
  o = small_options();
  o.train_tokens = 0;
  expect(o, "train_tokens");
  o = small_options();
  o.threads = 0;
  expect(o, "threads");
  o = small_options();
  o.logit_weight = -1;
  expect(o, "logit_weight");
  o = small_options();
  o.hidden_weight = std::nan("");
  expect(o, "hidden_weight");
  o = small_options();
  o.adam_W.learning_rate = -1;
  expect(o, "adam_W.learning_rate");
  o = small_options();
  o.adam_values.beta2 = 1;
  expect(o, "adam_values.beta2");
  o = small_options();
  o.warmup = 9;
  expect(o, "warmup");
  o = small_options();
  o.latent_scale = 0;
  expect(o, "latent_scale");
  o = small_options();
  o.norm.enabled = true;
  o.norm.eps = -1;
  expect(o, "norm.eps");
  o = small_options();
  o.checkpoint_every = 2;
  expect(o, "checkpoint_every");
  o = small_options();
  o.resume = "/nonexistent/onebit_kd.safetensors";
  CHECK_THROWS_AS(llama::distill_onebit(m, o), std::invalid_argument);
  llama::model one_bit = m;
  one_bit.blocks[1].w3 = llama::svid_layer(m.original(1, llama::slot::w3).w->data(), 24, 16);
  try {
    llama::distill_onebit(one_bit, small_options());
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("1.w3") != std::string::npos);
  }
}

}  // namespace test_onebit_kd
