// How much a real model loses when its linear layers become 1-bit (SVID, then layer-wise
// distillation) or k-bit (RTN), measured as next-token cross-entropy on text the
// full-precision model generates itself.
//
//   tinyllama_quality [--data DIR] [--eval-tokens N] [--calib-tokens N] [--steps N]
//                     [--batch N] [--lr-w X] [--lr-values X] [--constant-lr] [--seed N]
//
// The model is tinyllamas stories260K (tests/data/tinyllamas). Every linear layer of every
// block (wq wk wv wo w1 w2 w3: 35 matrices, 227,328 weights) is replaced; the token embedding,
// which is also the classifier, and the RMSNorm weights stay float32 in every row.
//
// Evaluation text: sequences the FP32 model samples (temperature 1, no top-p) from BOS, seed
// --seed, until N predicted tokens; every model is scored on the same tokens (teacher forcing).
// Distillation data: other sequences sampled the same way with another seed. Each layer starts
// from SVID and is fitted by Adam through the STE (ALGORITHMS §6, llama::distill_to) to float
// targets on real inputs, three ways (llama::distill_variant): the inputs the FP32 model feeds
// it and the float layer's outputs (§6 as written); block by block on the inputs of the
// already-distilled 1-bit model, targets the float layer's outputs on them; or the same
// inputs with the FP32 model's own outputs of that layer as targets.
//
// About a minute on one core of the 2-core VM; runs are deterministic for a given seed and
// instruction-set path.
#include <onebit/models/llama.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace llama = onebit::llama;

#ifndef ONEBIT_DATA_DIR
#define ONEBIT_DATA_DIR "tests/data"
#endif

namespace {

struct options {
  std::string dir = std::string(ONEBIT_DATA_DIR) + "/tinyllamas";
  std::size_t eval_tokens = 2000;
  std::size_t calib_tokens = 4096;
  std::uint64_t seed = 20240607;
  llama::distill_options distill;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "tinyllama_quality: %s\n"
               "usage: tinyllama_quality [--data DIR] [--eval-tokens N] [--calib-tokens N]\n"
               "                         [--steps N] [--batch N] [--lr-w X] [--lr-values X]\n"
               "                         [--constant-lr] [--seed N]\n",
               why);
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + a).c_str());
      return argv[++i];
    };
    if (a == "--data") o.dir = value();
    else if (a == "--eval-tokens") o.eval_tokens = std::stoul(value());
    else if (a == "--calib-tokens") o.calib_tokens = std::stoul(value());
    else if (a == "--steps") o.distill.steps = std::stoi(value());
    else if (a == "--batch") o.distill.batch = std::stoul(value());
    else if (a == "--lr-w") o.distill.adam_W.learning_rate = std::stod(value());
    else if (a == "--lr-values") o.distill.adam_values.learning_rate = std::stod(value());
    else if (a == "--seed") o.seed = std::stoull(value());
    else if (a == "--constant-lr") o.distill.cosine = false;
    else if (a == "--help" || a == "-h") usage("help");
    else usage(("unknown option " + a).c_str());
  }
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const auto t0 = std::chrono::steady_clock::now();
  const auto ck = onebit::io::read_llama2c(o.dir + "/stories260K.bin");
  const llama::model fp32 = llama::model::from_checkpoint(ck);
  const auto all = llama::parse_selection("all", fp32.blocks.size());

  const auto eval = llama::sample_sequences(fp32, o.eval_tokens, o.seed, 1.0f);
  const auto calib = llama::sample_sequences(fp32, o.calib_tokens, o.seed + 1, 1.0f);
  llama::sampler greedy;
  const std::vector<int> story = llama::generate(fp32, greedy, 256);

  std::size_t weights = 0;
  for (const auto& [l, s] : all) {
    const auto w = fp32.original(l, s);
    weights += w.rows * w.cols;
  }
  std::printf("tinyllamas stories260K: %zu linear layers (%zu weights) replaced in each row below;\n"
              "token embedding = classifier (32,768 weights) and RMSNorm weights stay float32.\n"
              "Cross-entropy (nats/token) on %zu tokens the FP32 model sampled (T = 1, seed %llu);\n"
              "distillation on %zu other sampled tokens (seed %llu).\n\n",
              all.size(), weights, o.eval_tokens, static_cast<unsigned long long>(o.seed),
              o.calib_tokens, static_cast<unsigned long long>(o.seed + 1));

  struct row {
    std::string name;
    llama::model m;
  };
  std::vector<row> rows;
  rows.push_back({"FP32", fp32});

  for (auto method : {onebit::rank1_method::svd, onebit::rank1_method::nmf}) {
    llama::model m = fp32;
    onebit::svid_options so;
    so.method = method;
    if (method == onebit::rank1_method::nmf) so.max_iterations = 500;
    llama::replace_layers(m, all, [&](const float* w, std::size_t r, std::size_t c, std::size_t, llama::slot) {
      return llama::svid_layer(w, r, c, so);
    });
    rows.push_back({std::string("1-bit SVID (") + onebit::to_string(method) + ")", std::move(m)});
  }

  // Distillation from SVID (svd), three ways (llama::distill_variant).
  {
    const llama::layer_activations teacher = llama::collect_activations(fp32, calib);
    for (auto v : {llama::distill_variant::fp32_inputs, llama::distill_variant::student_inputs,
                   llama::distill_variant::student_inputs_teacher_targets}) {
      const auto t1 = std::chrono::steady_clock::now();
      llama::distill_options d = o.distill;
      d.seed = o.seed + 100;
      llama::distill_summary sum;
      llama::model m = llama::distill_model(fp32, calib, teacher, v, d, &sum);
      std::printf("distillation, %s: relative output error on the calibration tokens %.4f (SVID) "
                  "-> %.4f (mean of %zu layers); %zu of %zu signs flipped; %.1f s\n",
                  to_string(v), sum.start / static_cast<double>(sum.layers),
                  sum.best / static_cast<double>(sum.layers), sum.layers, sum.flipped, weights,
                  seconds_since(t1));
      rows.push_back({std::string("1-bit SVID + distillation, ") + to_string(v), std::move(m)});
    }
    std::printf("  (each layer: %d Adam steps of %zu rows, lr W %g, g/h %g%s, betas %g/%g; the best "
                "of every %d steps on all calibration rows is kept)\n\n",
                o.distill.steps, o.distill.batch, o.distill.adam_W.learning_rate,
                o.distill.adam_values.learning_rate, o.distill.cosine ? " with cosine decay" : "",
                o.distill.adam_W.beta1, o.distill.adam_W.beta2, o.distill.eval_every);
  }

  for (std::size_t group : {std::size_t{0}, std::size_t{32}})
    for (int bits : {4, 3, 2}) {
      llama::model m = fp32;
      onebit::rtn_options ro;
      ro.bits = bits;
      ro.group = group;
      llama::replace_layers(m, all, [&](const float* w, std::size_t r, std::size_t c, std::size_t, llama::slot) {
        return llama::rtn_layer(w, r, c, ro);
      });
      rows.push_back({"RTN W" + std::to_string(bits) + (group ? " group 32" : " per row"), std::move(m)});
    }

  std::printf("| model | bits/weight (linear layers) | cross-entropy | perplexity | vs FP32 | greedy story: same tokens |\n");
  std::printf("| --- | --- | --- | --- | --- | --- |\n");
  double reference = 0;
  for (const row& r : rows) {
    std::size_t bits = 0;
    for (const auto& [l, s] : all) bits += r.m.blocks[l][s]->storage_bits();
    const double ce = llama::cross_entropy(r.m, eval);
    if (&r == &rows.front()) reference = ce;
    const std::vector<int> tokens = llama::generate(r.m, greedy, 256);
    std::printf("| %s | %.3f | %.4f | %.3f | %+.4f | %zu of %zu |\n", r.name.c_str(),
                static_cast<double>(bits) / static_cast<double>(weights), ce, std::exp(ce),
                ce - reference, llama::common_prefix(tokens, story), story.size());
    std::fflush(stdout);
  }

  // Where 1 bit hurts: SVID on one kind of layer only, the rest float32.
  std::printf("\n| only these layers 1-bit (SVID), the rest FP32 | layers | cross-entropy | vs FP32 |\n");
  std::printf("| --- | --- | --- | --- |\n");
  for (const char* spec : {"wq", "wk", "wv", "wo", "w1", "w2", "w3", "wq,wk,wv,wo", "w1,w2,w3"}) {
    llama::model m = fp32;
    const auto chosen = llama::parse_selection(spec, fp32.blocks.size());
    llama::replace_layers(m, chosen, [](const float* w, std::size_t r, std::size_t c, std::size_t,
                                        llama::slot) { return llama::svid_layer(w, r, c); });
    const double ce = llama::cross_entropy(m, eval);
    std::printf("| %s | %zu | %.4f | %+.4f |\n", spec, chosen.size(), ce, ce - reference);
  }
  std::printf("\n%.1f s in all\n", seconds_since(t0));
  return 0;
}
