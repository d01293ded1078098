// The real model end to end: models/llama.hpp reproduces run.c's text exactly, onebit and
// low-bit layers plug into it and compute what their dequantised weights do, and the
// whole-model quality numbers of examples/tinyllama_quality stay where they were measured.
#include <onebit/models/llama.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

namespace test_tinyllama {

namespace llama = onebit::llama;

namespace {

const std::string data_dir = std::string(ONEBIT_DATA_DIR) + "/tinyllamas";

struct fixture {
  onebit::io::llama2c_checkpoint ck = onebit::io::read_llama2c(data_dir + "/stories260K.bin");
  onebit::io::llama2c_tokenizer tok = onebit::io::read_llama2c_tokenizer(data_dir + "/tok512.bin", 512);
  llama::model fp32 = llama::model::from_checkpoint(ck);
};
const fixture& data() {
  static const fixture f;
  return f;
}

// llama2.c's doc/stories260K.md (MIT, Andrej Karpathy): what
// `./run stories260K.bin -z tok512.bin -t 1.0 -p 0.9 -s 133742` prints.
const char* const sampled_story =
    "Once upon a time, there was a little boy named Timmy. Timmy loved to play with his toys and "
    "eat sandwiches. One day, Timmy's mom told him it was time to rest for a while. Timmy's "
    "friend Billy came over and took him a down.\n"
    "Timmy's mom saw that Timmy was sad, but Timmy said, \"I didn't understand what is it! We "
    "need to find some leafs.\" Timmy thought about it and took a deep breath on a spoon. He "
    "hoped it was important to be kind and continued to find its image next time.\n"
    "After they finished getting, Timmy's dad came up to his house and promised to help Timmy.";

// Every layer of the model replaced by a float layer holding `dense(l, s)`.
template <class Dense>
llama::model with_float_layers(const llama::model& m, Dense&& dense) {
  llama::model f = m;
  for (std::size_t l = 0; l < m.blocks.size(); ++l)
    for (llama::slot s : llama::all_slots) {
      const auto w = m.original(l, s);
      f.blocks[l][s] = std::make_shared<llama::float_layer>(dense(l, s), w.rows, w.cols);
    }
  return f;
}

double max_logit_difference(const llama::model& a, const llama::model& b,
                            const std::vector<int>& tokens) {
  llama::state sa(a.cfg), sb(b.cfg);
  double worst = 0;
  for (std::size_t pos = 0; pos < tokens.size(); ++pos) {
    const float* la = llama::forward(a, sa, tokens[pos], static_cast<int>(pos));
    const float* lb = llama::forward(b, sb, tokens[pos], static_cast<int>(pos));
    for (std::size_t i = 0; i < sa.logits.size(); ++i)
      worst = std::max(worst, static_cast<double>(std::fabs(la[i] - lb[i])));
  }
  return worst;
}

}  // namespace

TEST_CASE("the greedy story is the data README's, token for token") {
  const auto& d = data();
  llama::sampler greedy;
  const std::vector<int> tokens = llama::generate(d.fp32, greedy, 256);
  const std::string text = d.tok.decode(tokens);
  const std::string reference = llama::reference_story(data_dir + "/README.md");
  REQUIRE(reference.size() > 400);
  CHECK(reference.rfind("Once upon a time, there was a little girl named Lily.", 0) == 0);
  CHECK(text == reference);
  CHECK(tokens.size() == 256);
}

TEST_CASE("sampling at temperature 1, top-p 0.9, seed 133742 prints llama2.c's documented story") {
  const auto& d = data();
  llama::sampler s(1.0f, 0.9f, 133742);
  const std::vector<int> tokens = llama::generate(d.fp32, s, 256);
  CHECK(d.tok.decode(tokens) == sampled_story);
}

TEST_CASE("a prompt is fed in, then continued") {
  const auto& d = data();
  const std::vector<int> prompt = d.tok.encode("Lily had a dog");
  llama::sampler greedy;
  const std::vector<int> tokens = llama::generate(d.fp32, greedy, 40, prompt);
  REQUIRE(tokens.size() == 40);
  const std::string text = d.tok.decode(tokens);
  CHECK(text.rfind("Lily had a dog", 0) == 0);
  CHECK(text.size() > std::string("Lily had a dog").size() + 20);
}

TEST_CASE("SVID and RTN layers compute what their dequantised weights do, on onebit's kernels") {
  const auto& d = data();
  const std::vector<int> tokens = d.tok.encode("Once upon a time, Tom saw a big cat.");
  const auto all = llama::parse_selection("all", d.fp32.blocks.size());

  llama::model svid = d.fp32;
  llama::replace_layers(svid, all, [](const float* w, std::size_t r, std::size_t c, std::size_t,
                                      llama::slot) { return llama::svid_layer(w, r, c); });
  const llama::model svid_dense = with_float_layers(svid, [&](std::size_t l, llama::slot s) {
    const auto& layer = static_cast<const llama::onebit_layer&>(*svid.blocks[l][s]).linear();
    std::vector<float> w(layer.out_features() * layer.in_features());
    for (std::size_t j = 0; j < layer.out_features(); ++j)
      for (std::size_t i = 0; i < layer.in_features(); ++i)
        w[j * layer.in_features() + i] = static_cast<float>(layer.W(j, i)) *
                                         onebit::to_float(layer.h[j]) * onebit::to_float(layer.g[i]);
    return w;
  });
  CHECK(svid.blocks[2][llama::slot::w2]->kind() == "svid-svd");
  CHECK(max_logit_difference(svid, svid_dense, tokens) < 1e-3);

  onebit::rtn_options ro;
  ro.bits = 3;
  ro.group = 32;
  llama::model rtn = d.fp32;
  llama::replace_layers(rtn, all, [&](const float* w, std::size_t r, std::size_t c, std::size_t,
                                      llama::slot) { return llama::rtn_layer(w, r, c, ro); });
  const llama::model rtn_dense = with_float_layers(rtn, [&](std::size_t l, llama::slot s) {
    const auto w = d.fp32.original(l, s);
    const onebit::lowbit_matrix q = onebit::rtn(w.w->data(), w.rows, w.cols, w.cols, ro);
    std::vector<float> out(w.rows * w.cols);
    q.dequantize(out.data(), w.cols);
    return out;
  });
  CHECK(rtn.blocks[0][llama::slot::wq]->kind() == "rtn w3 g32");
  CHECK(max_logit_difference(rtn, rtn_dense, tokens) < 1e-3);

  // Storage: 1 bit per weight plus 16 per value-vector entry; 3 bits plus scale and zero.
  const auto& wq = *svid.blocks[0][llama::slot::wq];
  CHECK(wq.storage_bits() == 64u * 64u + 16u * 128u);
  CHECK(rtn.blocks[0][llama::slot::w2]->storage_bits() == 3u * 64u * 172u + 64u * 6u * 64u);
}

TEST_CASE("layer selections") {
  using llama::slot;
  CHECK(llama::parse_selection("all", 5).size() == 35);
  CHECK(llama::parse_selection("wq,w2", 5).size() == 10);
  const auto one = llama::parse_selection("3.wk", 5);
  REQUIRE(one.size() == 1);
  CHECK(one[0].first == 3);
  CHECK(one[0].second == slot::wk);
  CHECK(llama::parse_selection("1,1.wq,wq", 5).size() == 11);  // no duplicates
  CHECK_THROWS_AS(llama::parse_selection("5", 5), std::invalid_argument);
  CHECK_THROWS_AS(llama::parse_selection("wz", 5), std::invalid_argument);
  CHECK_THROWS_AS(llama::parse_selection("2.wz", 5), std::invalid_argument);
}

TEST_CASE("whole-model cross-entropy stays where tinyllama_quality measured it") {
  // The evaluation text of examples/tinyllama_quality: 2,000 tokens the FP32 model samples at
  // temperature 1 with seed 20240607. Bounds: the measured value ± a margin for float
  // summation order on other instruction-set paths.
  const auto& d = data();
  const auto eval = llama::sample_sequences(d.fp32, 2000, 20240607, 1.0f);
  std::size_t count = 0;
  const double fp32 = llama::cross_entropy(d.fp32, eval, &count);
  CHECK(count == 2000);
  MESSAGE("FP32 cross-entropy " << fp32);
  CHECK(fp32 == doctest::Approx(1.2588).epsilon(0.002));

  const auto all = llama::parse_selection("all", d.fp32.blocks.size());
  llama::model svid = d.fp32;
  llama::replace_layers(svid, all, [](const float* w, std::size_t r, std::size_t c, std::size_t,
                                      llama::slot) { return llama::svid_layer(w, r, c); });
  const double svid_ce = llama::cross_entropy(svid, eval);
  MESSAGE("1-bit SVID cross-entropy " << svid_ce);
  CHECK(svid_ce == doctest::Approx(7.0984).epsilon(0.01));

  struct rtn_case { int bits; std::size_t group; double measured; };
  for (const rtn_case c : {rtn_case{4, 0, 1.3968}, rtn_case{3, 0, 2.2268}, rtn_case{2, 0, 6.1685},
                           rtn_case{4, 32, 1.3510}, rtn_case{3, 32, 1.8288}, rtn_case{2, 32, 5.7982}}) {
    onebit::rtn_options ro;
    ro.bits = c.bits;
    ro.group = c.group;
    llama::model m = d.fp32;
    llama::replace_layers(m, all, [&](const float* w, std::size_t r, std::size_t cols, std::size_t,
                                      llama::slot) { return llama::rtn_layer(w, r, cols, ro); });
    const double ce = llama::cross_entropy(m, eval);
    CAPTURE(c.bits);
    CAPTURE(c.group);
    CHECK(ce == doctest::Approx(c.measured).epsilon(0.01));
  }

  // Distillation on a small budget (1,024 calibration tokens, 100 steps a layer) already
  // beats plain SVID, in the §6 form and sequentially.
  const auto calib = llama::sample_sequences(d.fp32, 1024, 20240608, 1.0f);
  const llama::layer_activations acts = llama::collect_activations(d.fp32, calib);
  llama::distill_options o;
  o.steps = 100;
  for (auto v : {llama::distill_variant::fp32_inputs, llama::distill_variant::student_inputs}) {
    llama::distill_summary sum;
    const llama::model distilled = llama::distill_model(d.fp32, calib, acts, v, o, &sum);
    const double ce = llama::cross_entropy(distilled, eval);
    MESSAGE(std::string(llama::to_string(v)) << ": cross-entropy " << ce << ", layer output error "
                                << sum.start / 35 << " -> " << sum.best / 35);
    CHECK(sum.layers == 35);
    CHECK(sum.best < 0.9 * sum.start);
    CHECK(ce < svid_ce - 1.0);
  }
}

}  // namespace test_tinyllama
