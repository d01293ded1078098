// CBQ on a real model: stories260K's 35 linear layers quantised to 4, 3 and 2 bits (per row and
// per group of 32) by RTN (plain, with its clipping search, after CFP's outlier truncation),
// GPTQ, LoRA-Rounding layer by layer, and CBQ (CFP + LoRA-Rounding + cross-block windows), the
// last two also started from the clipped RTN grid and from GPTQ's, then run on onebit's low-bit
// kernels and measured against the float model: next-token cross-entropy and KL(FP32 ‖
// quantised) on 2,000 tokens the float model samples itself, how many tokens of its greedy story
// survive, and each layer's relative output error ‖X(Ŵ − W)ᵀ‖²/‖XWᵀ‖² on the inputs the float
// model gives it on those held-out tokens (the mean over the 35 layers).
// Then the sweeps that chose CBQ's defaults (rank r, window K, start of V), at W2 per row.
//
//   tinyllama_cbq [--data DIR] [--eval-tokens N] [--calib-tokens N] [--iterations N]
//                 [--threads N] [--no-sweeps] [--quiet] [--seed N] [--only TEXT]
//                 [--grid TEXT] [--trace] [--validation N] [--no-objective] [--gptq-cfp]
//                 [--lr X] [--step-lr X] [--batch N] [--rank N] [--lora-iterations N]
//
// --only TEXT runs only the methods whose name contains TEXT (the sweeps then too); --grid TEXT
// only the grids whose name ("W4 per row", "W3 g32", ...) contains TEXT.
// CBQ chooses among the roundings it evaluates (and its start matrices) by the model's KL to
// FP32 on the calibration tokens (cross_block_options::objective; --no-objective: by the window
// loss), on the last --validation N calibration sequences held out from learning (default 0:
// all). CBQ from GPTQ starts from GPTQ's matrices of the weights as they are, without CFP's
// truncation (--gptq-cfp: with it). --lr, --step-lr and --batch set CBQ's Adam rates (rounding
// variables, log step sizes) and sequences per iteration, --rank the rank of V (CBQ and
// LoRA-Rounding), --lora-iterations LoRA-Rounding's iterations per layer; --trace prints every
// candidate CBQ evaluated.
//
// Calibration: other sequences the float model samples (another seed), fed to every method:
// LoRA-Rounding per layer sees the inputs the float model gives each layer; CBQ the token
// embeddings, pushed through the five transformer blocks (onebit::llama_transformer_block).
// Independent runs go to --threads threads (2 by default); each run is deterministic.
#include <onebit/models/llama.hpp>

#include <onebit/quant/cfp.hpp>
#include <onebit/quant/cross_block.hpp>
#include <onebit/quant/gptq.hpp>
#include <onebit/models/llama_blocks.hpp>
#include <onebit/quant/lora_rounding.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace llama = onebit::llama;

#ifndef ONEBIT_DATA_DIR
#define ONEBIT_DATA_DIR "tests/data"
#endif

namespace {

struct options {
  std::string dir = std::string(ONEBIT_DATA_DIR) + "/tinyllamas";
  std::size_t eval_tokens = 2000, calib_tokens = 4096;
  int iterations = onebit::cross_block_options{}.iterations;
  unsigned threads = 2;
  bool sweeps = true, quiet = false;
  std::string only, grid;
  bool trace = false, objective = true, gptq_cfp = false;
  std::size_t validation = 0;
  double lr = -1, step_lr = -1;
  long batch = -1, rank = -1, lora_iterations = -1;
  std::uint64_t seed = 20240607;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "tinyllama_cbq: %s\n"
               "usage: tinyllama_cbq [--data DIR] [--eval-tokens N] [--calib-tokens N]\n"
               "                     [--iterations N] [--threads N] [--no-sweeps] [--quiet]\n"
               "                     [--seed N] [--only TEXT] [--grid TEXT] [--trace]\n"
               "                     [--validation N] [--no-objective] [--gptq-cfp] [--lr X]\n"
               "                     [--step-lr X] [--batch N] [--rank N] [--lora-iterations N]\n",
               why.c_str());
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value after " + a);
      return argv[++i];
    };
    try {
      if (a == "--data") o.dir = value();
      else if (a == "--eval-tokens") o.eval_tokens = std::stoul(value());
      else if (a == "--calib-tokens") o.calib_tokens = std::stoul(value());
      else if (a == "--iterations") o.iterations = std::stoi(value());
      else if (a == "--threads") o.threads = static_cast<unsigned>(std::stoul(value()));
      else if (a == "--seed") o.seed = std::stoull(value());
      else if (a == "--no-sweeps") o.sweeps = false;
      else if (a == "--only") o.only = value();
      else if (a == "--grid") o.grid = value();
      else if (a == "--trace") o.trace = true;
      else if (a == "--validation") o.validation = std::stoul(value());
      else if (a == "--no-objective") o.objective = false;
      else if (a == "--gptq-cfp") o.gptq_cfp = true;
      else if (a == "--lr") o.lr = std::stod(value());
      else if (a == "--step-lr") o.step_lr = std::stod(value());
      else if (a == "--batch") o.batch = std::stol(value());
      else if (a == "--rank") o.rank = std::stol(value());
      else if (a == "--lora-iterations") o.lora_iterations = std::stol(value());
      else if (a == "--quiet") o.quiet = true;
      else if (a == "--help" || a == "-h") usage("help");
      else usage("unknown option " + a);
    } catch (const std::logic_error&) {
      usage("bad value for " + a);
    }
  }
  if (o.threads == 0) usage("--threads 0");
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string grid_name(const onebit::rtn_options& q) {
  return "W" + std::to_string(q.bits) + (q.group == 0 ? " per row" : " g" + std::to_string(q.group));
}

// One line on stderr with the state of every running job, redrawn at most 5 times a second.
class progress_line {
 public:
  progress_line(std::size_t jobs, unsigned threads, bool quiet)
      : status_(threads), jobs_(jobs), quiet_(quiet) {}
  void set(unsigned slot, std::string text) {
    std::lock_guard<std::mutex> lock(mutex_);
    status_[slot] = std::move(text);
    draw(false);
  }
  void finished() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++done_;
    draw(true);
  }

 private:
  void draw(bool force) {
    if (quiet_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    std::string line = "[" + std::to_string(done_) + "/" + std::to_string(jobs_) + " done]";
    for (const std::string& s : status_)
      if (!s.empty()) line += "  " + s;
    if (line.size() > 150) line.resize(150);
    std::fprintf(stderr, "\r%-150s", line.c_str());
    if (done_ == jobs_) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }
  std::mutex mutex_;
  std::vector<std::string> status_;
  std::size_t jobs_, done_ = 0;
  bool quiet_;
  std::chrono::steady_clock::time_point last_{};
};

using report = std::function<void(std::string)>;

// Layer (l, s)'s relative output error on the held-out inputs xe the float model gives it.
double layer_error(const llama::model& fp32, const llama::layer_activations& xe, std::size_t l,
                   llama::slot s, const onebit::lowbit_matrix& q) {
  const auto w = fp32.original(l, s);
  const std::vector<float>& x = xe.input(l, s);
  using map = Eigen::Map<const onebit::row_major_matrix>;
  const Eigen::Index rows = static_cast<Eigen::Index>(w.rows), cols = static_cast<Eigen::Index>(w.cols);
  const map W(w.w->data(), rows, cols), X(x.data(), static_cast<Eigen::Index>(x.size() / w.cols), cols);
  const Eigen::MatrixXd Xd = X.cast<double>(), Wd = W.cast<double>();
  const Eigen::MatrixXd D = onebit::dequantized(q).cast<double>() - Wd;
  return (Xd * D.transpose()).squaredNorm() / (Xd * Wd.transpose()).squaredNorm();
}

// The mean of a model's layer errors.
struct error_sum {
  double sum = 0;
  std::size_t n = 0;
  void add(double e) {
    sum += e;
    ++n;
  }
  double mean() const { return n == 0 ? -1.0 : sum / static_cast<double>(n); }
};

// CBQ's choice, from its result: the chain's criterion with every weight at its start matrix,
// with the windows' result, and for what it returned; the candidates it evaluated.
struct cbq_record {
  bool set = false;
  double start_objective = 0, learned_objective = 0, end_objective = 0;
  bool kept_start = false;
  std::size_t blocks_from_start = 0;
  std::vector<onebit::cross_block_evaluation> evaluations;
};

struct cbq_run {
  llama::model m;
  std::vector<double> start, end;  // per window
  std::size_t truncated = 0;
  double layer_error = -1;  // mean relative held-out output error of the layers
  cbq_record cbq;
};

// KL(FP32 ‖ model) of the next-token distributions at the predicting positions of the
// calibration sequences, from the last transformer block's output: the model's own objective,
// by which CBQ chooses among its roundings (cross_block_options::objective).
class calibration_kl {
 public:
  calibration_kl(const llama::model& fp32, const std::vector<std::vector<int>>& calib)
      : m_(&fp32), dim_(static_cast<std::size_t>(fp32.cfg.dim)),
        vocab_(static_cast<std::size_t>(fp32.cfg.vocab_size)) {
    const std::vector<float> logits = llama::all_logits(fp32, calib);
    std::size_t pos = 0;
    for (const auto& seq : calib) {
      first_.push_back(pos);
      pos += seq.size() - 1;
    }
    // Per position: p = softmax(z) and Σ p·log p, so that KL(p ‖ q) = Σ p log p − Σ p·z' +
    // logsumexp(z') for the quantised model's logits z'.
    p_.resize(logits.size());
    negentropy_.resize(pos);
    for (std::size_t t = 0; t < pos; ++t) {
      const float* z = logits.data() + t * vocab_;
      const double lse = log_sum_exp(z);
      double h = 0;
      for (std::size_t i = 0; i < vocab_; ++i) {
        const double lp = z[i] - lse;
        p_[t * vocab_ + i] = static_cast<float>(std::exp(lp));
        h += std::exp(lp) * lp;
      }
      negentropy_[t] = h;
    }
  }
  double operator()(const float* y, const onebit::token_layout& layout,
                    const std::vector<std::size_t>& sequences) const {
    using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Eigen::Map<const matrix> C(m_->classifier.data(), static_cast<Eigen::Index>(vocab_),
                                     static_cast<Eigen::Index>(dim_));
    double kl = 0;
    std::size_t row = 0, n = 0;
    for (std::size_t k = 0; k < sequences.size(); ++k) {
      const std::size_t len = layout.lengths[k], predicting = len - 1;
      matrix h(static_cast<Eigen::Index>(predicting), static_cast<Eigen::Index>(dim_));
      for (std::size_t t = 0; t < predicting; ++t) {
        const float* x = y + (row + t) * dim_;
        const float inv = llama::inverse_rms(x, dim_);
        for (std::size_t j = 0; j < dim_; ++j)
          h(static_cast<Eigen::Index>(t), static_cast<Eigen::Index>(j)) = m_->rms_final[j] * (inv * x[j]);
      }
      const matrix z = h * C.transpose();
      for (std::size_t t = 0; t < predicting; ++t, ++n) {
        const std::size_t ref = first_.at(sequences[k]) + t;
        const float* zt = z.data() + t * vocab_;
        const float* p = p_.data() + ref * vocab_;
        double pz = 0;
        for (std::size_t i = 0; i < vocab_; ++i) pz += static_cast<double>(p[i]) * zt[i];
        kl += negentropy_[ref] - pz + log_sum_exp(zt);
      }
      row += len;
    }
    return n == 0 ? 0.0 : kl / static_cast<double>(n);
  }

 private:
  double log_sum_exp(const float* z) const {
    double mx = z[0];
    for (std::size_t i = 1; i < vocab_; ++i) mx = std::max(mx, static_cast<double>(z[i]));
    double sum = 0;
    for (std::size_t i = 0; i < vocab_; ++i) sum += std::exp(z[i] - mx);
    return mx + std::log(sum);
  }
  const llama::model* m_;
  std::size_t dim_, vocab_;
  std::vector<std::size_t> first_;  // each sequence's first predicting position
  std::vector<float> p_;
  std::vector<double> negentropy_;
};

// Every layer replaced by quantise(w, rows, cols, l, s), with its held-out error.
cbq_run per_layer_model(const llama::model& fp32, const llama::layer_activations& xe,
                        const std::function<onebit::lowbit_matrix(const float*, std::size_t,
                                                                  std::size_t, std::size_t,
                                                                  llama::slot)>& quantise,
                        const char* kind) {
  llama::model m = fp32;
  const auto all = llama::parse_selection("all", fp32.blocks.size());
  error_sum e;
  llama::replace_layers(m, all, [&](const float* w, std::size_t r, std::size_t c, std::size_t l,
                                    llama::slot s) -> llama::layer_ptr {
    const onebit::lowbit_matrix q = quantise(w, r, c, l, s);
    e.add(layer_error(fp32, xe, l, s, q));
    return std::make_shared<llama::lowbit_layer>(q, kind);
  });
  return cbq_run{std::move(m), {}, {}, 0, e.mean(), {}};
}

// RTN (q.clip_search: with its clipping search), optionally after CFP's truncation of each
// matrix's outliers.
cbq_run rtn_model(const llama::model& fp32, const llama::layer_activations& xe,
                  const onebit::rtn_options& q, bool cfp) {
  return per_layer_model(fp32, xe, [&](const float* w, std::size_t r, std::size_t c, std::size_t,
                                       llama::slot) {
    if (!cfp) return onebit::rtn(w, r, c, c, q);
    std::vector<float> t(w, w + r * c);
    onebit::cfp_truncate(t.data(), r, c, c);
    return onebit::rtn(t.data(), r, c, c, q);
  }, cfp ? "rtn+cfp" : "rtn");
}

// GPTQ of every layer on the inputs the float model feeds it.
cbq_run gptq_model(const llama::model& fp32, const llama::layer_activations& act,
                   const llama::layer_activations& xe, const onebit::gptq_options& go) {
  return per_layer_model(fp32, xe, [&](const float* w, std::size_t r, std::size_t c, std::size_t l,
                                       llama::slot s) {
    const std::vector<float>& x = act.input(l, s);
    return onebit::gptq(w, r, c, c, x.data(), x.size() / c, c, go);
  }, "gptq");
}

// LoRA-Rounding of every layer on the inputs the float model feeds it.
cbq_run lora_model(const llama::model& fp32, const llama::layer_activations& act,
                   const llama::layer_activations& xe, onebit::lora_rounding_options lo,
                   const report& say) {
  const std::size_t layers = llama::parse_selection("all", fp32.blocks.size()).size();
  std::size_t done = 0;
  return per_layer_model(fp32, xe, [&](const float* w, std::size_t r, std::size_t c, std::size_t l,
                                       llama::slot s) {
    say("layer " + std::to_string(++done) + "/" + std::to_string(layers));
    const std::vector<float>& x = act.input(l, s);
    lo.seed = 1000 * l + static_cast<std::size_t>(s);
    return onebit::lora_rounding(w, r, c, c, x.data(), x.size() / c, c, lo);
  }, "lora-rounding");
}

// CBQ over the five transformer blocks, from the token embeddings of the calibration sequences.
cbq_run cbq_model(const llama::model& fp32, const onebit::io::llama2c_checkpoint& ck,
                  const std::vector<std::vector<int>>& calib, const llama::layer_activations& xe,
                  onebit::cross_block_options co, const report& say) {
  std::vector<std::unique_ptr<onebit::sequential_block>> blocks;
  std::vector<onebit::block*> chain;
  for (std::size_t l = 0; l < ck.layers.size(); ++l) {
    blocks.push_back(onebit::llama_transformer_block(ck, l));
    chain.push_back(blocks.back().get());
  }
  const std::size_t dim = static_cast<std::size_t>(fp32.cfg.dim);
  onebit::token_layout layout;
  std::vector<float> x;
  for (const auto& seq : calib) {
    layout.lengths.push_back(seq.size());
    for (int t : seq) {
      const float* e = fp32.token_embedding.data() + static_cast<std::size_t>(t) * dim;
      x.insert(x.end(), e, e + dim);
    }
  }
  co.progress = [&](const onebit::cross_block_progress& p) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "window %zu/%zu it %d/%d L2 %.3f KL %.3f", p.window + 1,
                  p.windows, p.iteration, p.iterations, p.l2, p.kl);
    say(buf);
    return true;
  };
  const onebit::cross_block_result r = onebit::cross_block_reconstruction(chain, x.data(), dim, layout, co);
  cbq_run run{fp32, r.window_start_loss, r.window_end_loss, 0, -1, {}};
  run.cbq.set = true;
  run.cbq.start_objective = r.start_objective;
  run.cbq.learned_objective = r.learned_objective;
  run.cbq.end_objective = r.end_objective;
  run.cbq.kept_start = r.kept_start;
  for (bool b : r.from_start) run.cbq.blocks_from_start += b;
  run.cbq.evaluations = r.evaluations;
  error_sum e;
  for (std::size_t l = 0; l < chain.size(); ++l) {
    run.truncated += r.outliers_truncated[l];
    const std::vector<onebit::block_weight> ws = chain[l]->weights();
    for (std::size_t i = 0; i < ws.size(); ++i) {
      llama::slot s;
      if (!llama::parse_slot(ws[i].name, s)) throw std::logic_error("unknown weight " + ws[i].name);
      run.m.blocks[l][s] = std::make_shared<llama::lowbit_layer>(r.weights[l][i], "cbq");
      e.add(layer_error(fp32, xe, l, s, r.weights[l][i]));
    }
  }
  run.layer_error = e.mean();
  return run;
}

struct result {
  std::string section, name;
  llama::comparison c;
  double bits_per_weight = 0, seconds = 0;
  std::size_t same = 0;
  double layer_error = -1;
  std::vector<int> story;
  std::string note;
  cbq_record cbq;
};

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    const auto ck = onebit::io::read_llama2c(o.dir + "/stories260K.bin");
    const auto tok = onebit::io::read_llama2c_tokenizer(
        o.dir + "/tok512.bin", static_cast<std::size_t>(ck.config.vocab_size));
    const llama::model fp32 = llama::model::from_checkpoint(ck);
    const auto all = llama::parse_selection("all", fp32.blocks.size());
    std::size_t weights = 0;
    for (const auto& [l, s] : all) weights += fp32.original(l, s).rows * fp32.original(l, s).cols;

    const auto eval = llama::sample_sequences(fp32, o.eval_tokens, o.seed, 1.0f);
    const auto calib = llama::sample_sequences(fp32, o.calib_tokens, o.seed + 1, 1.0f);
    const std::vector<float> reference = llama::all_logits(fp32, eval);
    const llama::layer_activations act = llama::collect_activations(fp32, calib, false);
    const llama::layer_activations held_out = llama::collect_activations(fp32, eval, false);
    llama::sampler greedy;
    const std::vector<int> story = llama::generate(fp32, greedy, 256);
    const llama::comparison fp = llama::compare(fp32, eval, reference);

    const calibration_kl model_kl(fp32, calib);
    onebit::cross_block_options base;
    base.iterations = o.iterations;
    if (o.objective)
      base.objective = [&model_kl](const float* y, const onebit::token_layout& layout,
                                   const std::vector<std::size_t>& sequences) {
        return model_kl(y, layout, sequences);
      };
    base.validation_sequences = o.validation;
    if (o.lr > 0) base.rounding_adam.learning_rate = o.lr;
    if (o.step_lr >= 0) base.step_adam.learning_rate = o.step_lr;
    if (o.batch >= 0) base.batch_sequences = static_cast<std::size_t>(o.batch);
    if (o.rank > 0) base.rank = static_cast<std::size_t>(o.rank);
    // LoRA-Rounding per layer: its defaults, but the rank and iterations asked for.
    onebit::lora_rounding_options lora_base;
    if (o.rank > 0) lora_base.rank = static_cast<std::size_t>(o.rank);
    if (o.lora_iterations >= 0) lora_base.iterations = static_cast<int>(o.lora_iterations);
    const std::string selection_set =
        o.validation == 0 ? std::string("all calibration sequences")
                          : "the last " + std::to_string(o.validation) +
                                " calibration sequences, held out from learning";
    std::printf("stories260K: %zu linear layers (%zu weights) quantised; embedding = classifier and "
                "RMSNorm weights stay float32.\n"
                "Evaluation: %zu tokens the FP32 model sampled (seed %llu); calibration: %zu other "
                "sampled tokens in %zu sequences (seed %llu).\n"
                "CBQ: K = %zu blocks per window, stride %zu, %d Adam iterations per window on %zu "
                "sequences each, rank %zu, init %s, lambda %g, beta %g -> %g after %g warm-up, "
                "lr %g (A1, A2) / %g (log s), KL weight %g, CFP truncation of weights (but from "
                "GPTQ: %s); candidates chosen by %s on %s.\n"
                "LoRA-Rounding per layer: %d iterations on all calibration inputs (closed form), "
                "the same rank, init and rates.\n"
                "FP32: cross-entropy %.4f nats/token.\n\n",
                all.size(), weights, o.eval_tokens, static_cast<unsigned long long>(o.seed),
                o.calib_tokens, calib.size(), static_cast<unsigned long long>(o.seed + 1),
                base.window, base.stride, base.iterations, base.batch_sequences, base.rank,
                onebit::to_string(base.init), static_cast<double>(base.regularizer.lambda),
                static_cast<double>(base.regularizer.beta_start),
                static_cast<double>(base.regularizer.beta_end),
                static_cast<double>(base.regularizer.warmup), base.rounding_adam.learning_rate,
                base.step_adam.learning_rate, static_cast<double>(base.kl_weight),
                o.gptq_cfp ? "on" : "off",
                o.objective ? "the model's KL to FP32" : "the window loss",
                selection_set.c_str(),
                lora_base.iterations, fp.cross_entropy);

    struct job {
      std::string section, name;
      std::function<cbq_run(const report&)> make;
    };
    std::vector<job> jobs;
    // GPTQ as commonly run: activation order (static groups), damp 0.01, blocks of 128, the
    // grids with RTN's clipping search.
    auto gptq_for = [](const onebit::rtn_options& q, bool strong) {
      onebit::gptq_options go;
      go.quant = q;
      go.quant.clip_search = strong;
      go.act_order = strong;
      return go;
    };
    // CBQ from GPTQ's grid: each weight's GPTQ on the inputs the float model gives it.
    auto gptq_start = [&](const onebit::rtn_options& q) {
      return [&, q](std::size_t b, const onebit::block_weight& w, const float* v) {
        llama::slot s;
        if (!llama::parse_slot(w.name, s)) throw std::logic_error("unknown weight " + w.name);
        const std::vector<float>& x = act.input(b, s);
        return onebit::gptq(v, w.rows, w.cols, w.cols, x.data(), x.size() / w.cols, w.cols, gptq_for(q, true));
      };
    };
    for (std::size_t group : {std::size_t{0}, std::size_t{32}})
      for (int bits : {4, 3, 2}) {
        onebit::rtn_options q;
        q.bits = bits;
        q.group = group;
        const std::string g = grid_name(q);
        onebit::rtn_options qc = q;
        qc.clip_search = true;
        jobs.push_back({g, "RTN", [&, q](const report&) { return rtn_model(fp32, held_out, q, false); }});
        jobs.push_back({g, "RTN + clip search", [&, qc](const report&) { return rtn_model(fp32, held_out, qc, false); }});
        jobs.push_back({g, "RTN + CFP", [&, q](const report&) { return rtn_model(fp32, held_out, q, true); }});
        jobs.push_back({g, "GPTQ", [&, q](const report&) { return gptq_model(fp32, act, held_out, gptq_for(q, false)); }});
        jobs.push_back({g, "GPTQ (act order, clip search)", [&, q](const report&) {
                          return gptq_model(fp32, act, held_out, gptq_for(q, true));
                        }});
        jobs.push_back({g, "LoRA-Rounding per layer", [&, q](const report& say) {
                          onebit::lora_rounding_options lo = lora_base;
                          lo.quant = q;
                          return lora_model(fp32, act, held_out, lo, say);
                        }});
        jobs.push_back({g, "LoRA-Rounding per layer, clipped grid", [&, qc](const report& say) {
                          onebit::lora_rounding_options lo = lora_base;
                          lo.quant = qc;
                          return lora_model(fp32, act, held_out, lo, say);
                        }});
        jobs.push_back({g, "LoRA-Rounding per layer, from GPTQ", [&, q](const report& say) {
                          onebit::lora_rounding_options lo = lora_base;
                          lo.quant = q;
                          lo.quant.clip_search = true;
                          lo.init_grid = onebit::init_grid::gptq;
                          lo.gptq = gptq_for(q, true);
                          return lora_model(fp32, act, held_out, lo, say);
                        }});
        jobs.push_back({g, "CBQ", [&, q](const report& say) {
                          onebit::cross_block_options co = base;
                          co.quant = q;
                          return cbq_model(fp32, ck, calib, held_out, co, say);
                        }});
        jobs.push_back({g, "CBQ, clipped grid", [&, qc](const report& say) {
                          onebit::cross_block_options co = base;
                          co.quant = qc;
                          return cbq_model(fp32, ck, calib, held_out, co, say);
                        }});
        jobs.push_back({g, "CBQ from GPTQ", [&, qc](const report& say) {
                          onebit::cross_block_options co = base;
                          co.quant = qc;
                          co.truncate_outliers = o.gptq_cfp;
                          co.start_grid = gptq_start(qc);
                          return cbq_model(fp32, ck, calib, held_out, co, say);
                        }});
        // V₀ frozen at GPTQ's codes: each window's first hard rounding is GPTQ's (within reach).
        jobs.push_back({g, "CBQ from GPTQ, init residual", [&, qc](const report& say) {
                          onebit::cross_block_options co = base;
                          co.quant = qc;
                          co.init = onebit::rounding_init::residual;
                          co.truncate_outliers = o.gptq_cfp;
                          co.start_grid = gptq_start(qc);
                          return cbq_model(fp32, ck, calib, held_out, co, say);
                        }});
      }
    if (o.sweeps) {
      onebit::rtn_options q;
      q.bits = 2;
      for (std::size_t rank : {std::size_t{4}, std::size_t{8}, std::size_t{32}})
        jobs.push_back({"rank", "CBQ r = " + std::to_string(rank), [&, q, rank](const report& say) {
                          onebit::cross_block_options co = base;
                          co.quant = q;
                          co.rank = rank;
                          return cbq_model(fp32, ck, calib, held_out, co, say);
                        }});
      for (std::size_t K : {std::size_t{1}, std::size_t{3}})
        jobs.push_back({"window", "CBQ K = " + std::to_string(K), [&, q, K](const report& say) {
                          onebit::cross_block_options co = base;
                          co.quant = q;
                          co.window = K;
                          return cbq_model(fp32, ck, calib, held_out, co, say);
                        }});
      for (auto init : {onebit::rounding_init::residual, onebit::rounding_init::random}) {
        jobs.push_back({"init", std::string("CBQ init ") + onebit::to_string(init),
                        [&, q, init](const report& say) {
                          onebit::cross_block_options co = base;
                          co.quant = q;
                          co.init = init;
                          return cbq_model(fp32, ck, calib, held_out, co, say);
                        }});
        jobs.push_back({"init", std::string("LoRA-Rounding per layer, init ") + onebit::to_string(init),
                        [&, q, init](const report& say) {
                          onebit::lora_rounding_options lo = lora_base;
                          lo.quant = q;
                          lo.init = init;
                          return lora_model(fp32, act, held_out, lo, say);
                        }});
      }
    }

    if (!o.only.empty())
      jobs.erase(std::remove_if(jobs.begin(), jobs.end(),
                                [&](const job& j) { return j.name.find(o.only) == std::string::npos; }),
                 jobs.end());
    if (!o.grid.empty())
      jobs.erase(std::remove_if(jobs.begin(), jobs.end(),
                                [&](const job& j) { return j.section.find(o.grid) == std::string::npos; }),
                 jobs.end());
    // The jobs, longest first, on o.threads threads; each is deterministic on its own.
    std::vector<result> results(jobs.size());
    progress_line line(jobs.size(), o.threads, o.quiet);
    std::atomic<std::size_t> next{0};
    std::vector<std::string> errors(o.threads);
    auto worker = [&](unsigned slot) {
      try {
        for (std::size_t i; (i = next++) < jobs.size();) {
          const job& j = jobs[i];
          const auto t1 = std::chrono::steady_clock::now();
          const std::string label = j.section + " " + j.name;
          cbq_run run = j.make([&](std::string s) { line.set(slot, label + ": " + s); });
          result& r = results[i];
          r.section = j.section;
          r.name = j.name;
          r.seconds = seconds_since(t1);
          r.layer_error = run.layer_error;
          r.cbq = std::move(run.cbq);
          line.set(slot, label + ": evaluating");
          r.c = llama::compare(run.m, eval, reference);
          std::size_t bits = 0;
          for (const auto& [l, s] : all) bits += run.m.blocks[l][s]->storage_bits();
          r.bits_per_weight = static_cast<double>(bits) / static_cast<double>(weights);
          llama::sampler g;
          r.story = llama::generate(run.m, g, 256);
          r.same = llama::common_prefix(r.story, story);
          if (!run.start.empty()) {
            char buf[64];
            for (std::size_t w = 0; w < run.start.size(); ++w) {
              std::snprintf(buf, sizeof buf, "%s%.3f→%.3f", w ? ", " : "", run.start[w], run.end[w]);
              r.note += buf;
            }
          }
          line.set(slot, "");
          line.finished();
        }
      } catch (const std::exception& e) {
        errors[slot] = e.what();
        next = jobs.size();
      }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < o.threads; ++t) pool.emplace_back(worker, t);
    for (std::thread& t : pool) t.join();
    for (const std::string& e : errors)
      if (!e.empty()) throw std::runtime_error(e);

    auto table = [&](const std::vector<std::string>& sections, const char* first_column) {
      std::printf("| %s | method | bits/weight | cross-entropy | KL to FP32 | KL vs RTN | KL vs GPTQ | layer output error (held-out) | greedy story: same tokens | seconds |\n",
                  first_column);
      std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
      for (const std::string& sec : sections) {
        double rtn_kl = 0, gptq_kl = 0;
        for (const result& r : results) {
          if (r.section == sec && r.name == "RTN") rtn_kl = r.c.kl;
          if (r.section == sec && r.name == "GPTQ (act order, clip search)") gptq_kl = r.c.kl;
        }
        for (const result& r : results) {
          if (r.section != sec) continue;
          char vs[32] = "";
          char vg[32] = "", le[32] = "";
          if (rtn_kl > 0) std::snprintf(vs, sizeof vs, "%+.0f%%", 100.0 * (r.c.kl / rtn_kl - 1.0));
          if (gptq_kl > 0) std::snprintf(vg, sizeof vg, "%+.0f%%", 100.0 * (r.c.kl / gptq_kl - 1.0));
          if (r.layer_error >= 0) std::snprintf(le, sizeof le, "%.5f", r.layer_error);
          std::printf("| %s | %s | %.3f | %.4f | %.4f | %s | %s | %s | %zu of %zu | %.1f |\n", sec.c_str(),
                      r.name.c_str(), r.bits_per_weight, r.c.cross_entropy, r.c.kl, vs, vg, le, r.same,
                      story.size(), r.seconds);
        }
      }
    };
    std::vector<std::string> grids;
    for (const result& r : results)
      if (r.section.rfind("W", 0) == 0 && (grids.empty() || grids.back() != r.section)) grids.push_back(r.section);
    table(grids, "grid");

    // How each CBQ run chose: its criterion on the calibration tokens for every weight at its
    // start matrix, for the windows' result, and for what it returned.
    std::printf("\nCBQ's choice (criterion: %s on %s; the window loss is L2 + KL of the "
                "window's output on the same tokens):\n\n",
                o.objective ? "KL to FP32" : "L2 + KL of the last block's output",
                o.validation == 0 ? "the calibration tokens" : "the held-out calibration sequences");
    std::printf("| grid | method | start matrices | windows' result | returned | blocks at their start | window loss of the hard rounding: start → kept |\n");
    std::printf("| --- | --- | --- | --- | --- | --- | --- |\n");
    for (const result& r : results)
      if (r.cbq.set)
        std::printf("| %s | %s | %.4f | %.4f | %.4f%s | %zu of %zu | %s |\n", r.section.c_str(),
                    r.name.c_str(), r.cbq.start_objective, r.cbq.learned_objective,
                    r.cbq.end_objective, r.cbq.kept_start ? " (start)" : "",
                    r.cbq.blocks_from_start, fp32.blocks.size(), r.note.c_str());
    if (o.trace)
      for (const result& r : results) {
        if (!r.cbq.set) continue;
        std::printf("\n%s %s, candidates (window, iterations (-1: start matrices), window loss, "
                    "criterion):\n", r.section.c_str(), r.name.c_str());
        for (const onebit::cross_block_evaluation& e : r.cbq.evaluations)
          std::printf("  %zu %4d %.5f %.5f\n", e.window, e.iteration, e.loss,
                      o.objective ? e.objective : e.loss);
      }

    const result* cbq_w2 = nullptr;
    for (const result& r : results)
      if (r.section == "W2 per row" && r.name == "CBQ") cbq_w2 = &r;
    if (o.sweeps && cbq_w2 != nullptr) {
      std::printf("\nSweeps at W2 per row (defaults: r = %zu, K = %zu, init %s):\n\n", base.rank,
                  base.window, onebit::to_string(base.init));
      std::printf("| sweep | run | cross-entropy | KL to FP32 | window loss (L2 + KL, all calibration tokens) of the hard rounding: start → best kept | seconds |\n");
      std::printf("| --- | --- | --- | --- | --- | --- |\n");
      auto row = [](const char* sweep, const result& r) {
        std::printf("| %s | %s | %.4f | %.4f | %s | %.1f |\n", sweep, r.name.c_str(),
                    r.c.cross_entropy, r.c.kl, r.note.c_str(), r.seconds);
      };
      row("default", *cbq_w2);
      for (const char* sweep : {"rank", "window", "init"})
        for (const result& r : results)
          if (r.section == sweep) row(sweep, r);
    }

    std::printf("\nGreedy stories of quantised models, run on onebit's low-bit kernels:\n");
    for (const result& r : results)
      if (r.name == "CBQ" && (r.section == "W3 per row" || r.section == "W2 g32")) {
        std::string text = tok.decode(r.story);
        std::printf("\n%s %s (%zu of %zu tokens as FP32's):\n%s\n", r.name.c_str(),
                    r.section.c_str(), r.same, story.size(), text.c_str());
      }
    std::printf("\n%.1f s in all on %u threads\n", seconds_since(t0), o.threads);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\ntinyllama_cbq: %s\n", e.what());
    return 1;
  }
}
