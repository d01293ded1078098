// OneBit's knowledge transfer on a real model (models/onebit_kd.hpp): all 35 linear layers of
// tinyllamas stories260K become 1-bit (SVID start, latent weights through the straight-through
// sign), embedding/classifier and RMSNorms stay float, and the student is distilled from the
// FP32 model on sequences the FP32 model samples itself (KL on logits + l2-normalised
// hidden-state MSE after every decoder layer; AdamW β (0.9, 0.98), weight decay 0.01, cosine
// schedule with warm-up). Then scored as the README's table is: next-token cross-entropy on the
// 2,000 held-out tokens the FP32 model samples with seed 20240607 (tinyllama_quality's text).
//
//   tinyllama_distill [--data DIR] [--steps N] [--minutes M] [--batch N] [--train-tokens N]
//                     [--norm | --no-norm] [--seed N] [--threads N] [--lr-w X] [--lr-values X]
//                     [--warmup N] [--hidden-weight X] [--eval-every N] [--csv FILE]
//                     [--out FILE] [--checkpoint FILE] [--resume FILE]
//
// stdout: exactly one line, "distilled 1-bit cross-entropy X.XXXX"; progress on stderr.
// --minutes caps the training time (wall seconds, held-out evaluations not counted); the run
// stops after the step that crosses it, before the schedule's end. --csv writes one row per
// step: step, seconds, train loss, and the held-out cross-entropy every --eval-every steps.
// --out writes the distilled model in onebit's safetensors format: the 35 OneBit layers
// ("layers.L.attention.wq", …) and the float tensors (tok_embeddings.weight, norm.weight, the
// layers' attention_norm / ffn_norm weights) under llama2.c's names, the config as metadata.
#include <onebit/models/onebit_kd.hpp>

#include <onebit/io/safetensors.hpp>

#include "llama2c_tensors.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
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
  std::uint64_t eval_seed = 20240607;  // tinyllama_quality's held-out text
  double minutes = 10;
  std::size_t eval_every = 50;
  std::string csv, out;
  llama::kd_options kd;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "tinyllama_distill: %s\n"
               "usage: tinyllama_distill [--data DIR] [--steps N] [--minutes M] [--batch N]\n"
               "                         [--train-tokens N] [--norm | --no-norm] [--seed N]\n"
               "                         [--threads N] [--lr-w X] [--lr-values X] [--warmup N]\n"
               "                         [--hidden-weight X] [--eval-every N] [--csv FILE]\n"
               "                         [--out FILE] [--checkpoint FILE] [--resume FILE]\n",
               why.c_str());
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  o.kd.steps = 1200;
  o.kd.batch = 8;
  o.kd.train_tokens = 65536;
  o.kd.warmup = 30;
  o.kd.seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value after " + a);
      return argv[++i];
    };
    try {
      if (a == "--data") o.dir = value();
      else if (a == "--steps") o.kd.steps = std::stoul(value());
      else if (a == "--minutes") o.minutes = std::stod(value());
      else if (a == "--batch") o.kd.batch = std::stoul(value());
      else if (a == "--train-tokens") o.kd.train_tokens = std::stoul(value());
      else if (a == "--norm") o.kd.norm.enabled = true;
      else if (a == "--no-norm") o.kd.norm.enabled = false;
      else if (a == "--seed") o.kd.seed = std::stoull(value());
      else if (a == "--threads") o.kd.threads = static_cast<unsigned>(std::stoul(value()));
      else if (a == "--lr-w") o.kd.adam_W.learning_rate = std::stod(value());
      else if (a == "--lr-values") o.kd.adam_values.learning_rate = std::stod(value());
      else if (a == "--warmup") o.kd.warmup = std::stoul(value());
      else if (a == "--hidden-weight") o.kd.hidden_weight = std::stod(value());
      else if (a == "--eval-every") o.eval_every = std::stoul(value());
      else if (a == "--csv") o.csv = value();
      else if (a == "--out") o.out = value();
      else if (a == "--checkpoint") o.kd.checkpoint = value();
      else if (a == "--resume") o.kd.resume = value();
      else if (a == "--help" || a == "-h") usage("help");
      else usage("unknown option " + a);
    } catch (const std::logic_error&) {
      usage("bad value for " + a);
    }
  }
  if (o.eval_every == 0) usage("--eval-every must be > 0");
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// llama2.c's names of the seven linear layers of a block, in llama::all_slots order.
const char* const layer_names[] = {"attention.wq",    "attention.wk",    "attention.wv",
                                   "attention.wo",    "feed_forward.w1", "feed_forward.w2",
                                   "feed_forward.w3"};

// The model in onebit's safetensors format: OneBit layers and float tensors, llama2.c's names.
void write_model(const std::string& path, const onebit::io::llama2c_checkpoint& ck,
                 const std::vector<onebit::linear<>>& layers) {
  const auto dim = static_cast<std::uint64_t>(ck.config.dim);
  onebit::io::writer w;
  examples::add_llama2c_model_tensors(w, ck);
  for (std::size_t l = 0; l < ck.layers.size(); ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    w.add(p + "attention_norm.weight", ck.layers[l].rms_att.data(), {dim});
    w.add(p + "ffn_norm.weight", ck.layers[l].rms_ffn.data(), {dim});
    for (std::size_t s = 0; s < 7; ++s) w.add(p + layer_names[s], layers[l * 7 + s]);
  }
  w.write(path);
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  try {
    const auto t0 = std::chrono::steady_clock::now();
    const auto ck = onebit::io::read_llama2c(o.dir + "/stories260K.bin");
    const llama::model fp32 = llama::model::from_checkpoint(ck);
    const auto eval = llama::sample_sequences(fp32, o.eval_tokens, o.eval_seed, 1.0f);
    std::fprintf(stderr, "FP32 cross-entropy %.4f on %zu held-out tokens\n",
                 llama::cross_entropy(fp32, eval), o.eval_tokens);
    std::fprintf(stderr,
                 "1-bit student: 35 layers, post-norm %s; %zu steps of %zu sequences from %zu "
                 "teacher-sampled tokens, %u threads, budget %.1f min\n",
                 o.kd.norm.enabled ? "on" : "off", o.kd.steps, o.kd.batch, o.kd.train_tokens,
                 o.kd.threads, o.minutes);

    std::FILE* csv = nullptr;
    if (!o.csv.empty()) {
      csv = std::fopen(o.csv.c_str(), "w");
      if (csv == nullptr) throw std::runtime_error("cannot write " + o.csv);
      std::fprintf(csv, "step,seconds,train_loss,heldout_ce\n");
    }
    double eval_seconds = 0;  // spent on held-out evaluations, not counted as training
    auto held_out = [&](const llama::kd_student& st) {
      const auto e0 = std::chrono::steady_clock::now();
      const double ce = llama::cross_entropy(llama::with_onebit_layers(fp32, st.to_linear()), eval);
      eval_seconds += seconds_since(e0);
      return ce;
    };
    const double budget = o.minutes * 60.0;
    const auto progress = [&](const llama::kd_progress& p, const llama::kd_student& st) {
      const double train_seconds = p.seconds - eval_seconds;
      const bool over = train_seconds >= budget;
      const bool evaluate = p.step % o.eval_every == 0 || p.step == p.steps || over;
      double ce = -1;
      if (evaluate) {
        ce = held_out(st);
        std::fprintf(stderr,
                     "step %zu/%zu  %.1f s  loss %.4f (logits %.4f, hidden %.4f)  lr x%.3f  "
                     "held-out CE %.4f\n",
                     p.step, p.steps, train_seconds, p.loss, p.logit_loss, p.hidden_loss,
                     p.learning_rate_factor, ce);
      }
      if (csv != nullptr) {
        std::fprintf(csv, "%zu,%.3f,%.6f,", p.step, train_seconds, p.loss);
        if (evaluate) std::fprintf(csv, "%.6f", ce);
        std::fprintf(csv, "\n");
        std::fflush(csv);
      }
      if (over) std::fprintf(stderr, "time budget reached after step %zu\n", p.step);
      return !over;
    };
    const llama::kd_result r = llama::distill_onebit(fp32, o.kd, progress);
    if (csv != nullptr) std::fclose(csv);
    const llama::model student = llama::with_onebit_layers(fp32, r.layers);
    const double ce = llama::cross_entropy(student, eval);
    std::fprintf(stderr, "%zu steps%s; %.1f s in all\n", r.steps_done,
                 r.stopped ? " (stopped by the time budget)" : "", seconds_since(t0));
    if (!o.out.empty()) {
      write_model(o.out, ck, r.layers);
      // Read back through io: the file's layers must give the same cross-entropy.
      const auto file = onebit::io::load(o.out);
      std::vector<onebit::linear<>> loaded;
      for (std::size_t l = 0; l < fp32.blocks.size(); ++l)
        for (const char* n : layer_names) loaded.push_back(file.at("layers." + std::to_string(l) + "." + n));
      const double again = llama::cross_entropy(llama::with_onebit_layers(fp32, loaded), eval);
      std::fprintf(stderr, "wrote %s; read back, its cross-entropy is %.4f (%s)\n", o.out.c_str(),
                   again, again == ce ? "the same" : "DIFFERENT");
      if (again != ce) return 1;
    }
    std::printf("distilled 1-bit cross-entropy %.4f\n", ce);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tinyllama_distill: %s\n", e.what());
    return 1;
  }
}
