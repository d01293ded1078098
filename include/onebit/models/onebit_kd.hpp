// OneBit's knowledge transfer for a whole Llama (the authors' llama_factory kd.py;
// docs/algorithms.md §6): every linear layer of every decoder layer becomes a OneBit layer with
// latent weights, started from SVID, and is trained against the float teacher.
//
//   student layer   y = LN?(((x ⊙ g)·sign(W)ᵀ) ⊙ h), W latent (SVID's signs × latent_scale),
//                   sign through the straight-through gradient 1.001 − tanh(W)²; W, g, h
//                   trained; the post-LayerNorm per layer when options.norm.enabled
//   frozen          token embedding, RMSNorm scales, classifier
//   loss            logit_weight · KL(softmax(teacher) ‖ softmax(student)) on every position's
//                   logits + hidden_weight · Σ_l mean_t ‖a_t/‖a_t‖ − b_t/‖b_t‖‖² over the output
//                   of every decoder layer l (quant/kd_loss.hpp), averaged over a step's tokens
//   optimiser       AdamW, β (0.9, 0.98), weight decay 0.01, one learning rate for W and one
//                   for g and h, cosine schedule with linear warm-up (quant/optim.hpp)
//   data            a pool of sequences the teacher samples itself (LLM-QAT's data-free
//                   recipe; llama::sample_sequences), `batch` of them drawn per step
//
// Reproducible: step t draws its sequences with a generator seeded by (seed, t) alone, and a
// step's gradient is the sum of per-sequence gradients taken in the batch's order, each
// computed by one thread on its own replica of the network. So the result is the same bits
// for any number of threads, and a run resumed from a checkpoint (the latent weights, g, h,
// Adam's moments and the step count, in safetensors) continues exactly as the uninterrupted
// run would (for the same options; the checkpoint records the ones that matter and resume
// refuses others).
//
// Bad options throw std::invalid_argument("onebit::llama::distill_onebit: <field> …").
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../io/safetensors.hpp"
#include "../quant/kd_loss.hpp"
#include "../quant/optim.hpp"
#include "../quant/svid.hpp"
#include "llama.hpp"
#include "llama_blocks.hpp"
#include "projection.hpp"

namespace onebit::llama {

struct kd_options {
  std::size_t steps = 1000;          // optimiser steps (the schedule's length)
  std::size_t batch = 8;             // sequences per step
  std::size_t train_tokens = 32768;  // predicted tokens in the teacher-sampled pool
  float temperature = 1.0f;          // the teacher's sampling temperature for the pool
  double logit_weight = 1.0;         // of the KL on logits
  double hidden_weight = 1.0;        // of the hidden-state loss (each decoder layer)
  // AdamW of the latent weights and of g, h: OneBit's β and weight decay.
  adam_options adam_W{2e-3, 0.9, 0.98, 1e-8, 0.01};
  adam_options adam_values{1e-3, 0.9, 0.98, 1e-8, 0.01};
  std::size_t warmup = 20;           // steps of linear warm-up before the cosine decay
  post_norm norm{};                  // OneBit's post-LayerNorm in every student layer, or not
  float latent_scale = 0.01f;        // |W| at the start (SVID's signs times this)
  unsigned threads = 2;              // workers a step's sequences are split over
  std::uint64_t seed = 1;            // the pool's sampling and every step's draw
  std::string checkpoint;            // written every checkpoint_every steps and at the end
  std::size_t checkpoint_every = 0;  // 0: only at the end (when checkpoint is set)
  std::string resume;                // a checkpoint to continue from
};

// After every step: the step just done (1-based), the mean loss over that step's tokens.
struct kd_progress {
  std::size_t step = 0, steps = 0, tokens = 0;
  double loss = 0, logit_loss = 0, hidden_loss = 0;
  double learning_rate_factor = 0;  // the schedule's value at this step
  double seconds = 0;               // since distill_onebit began (after sampling the pool)
};

// The student's parameters: layer l's slot s at l·7 + s (all_slots order).
struct kd_student {
  std::vector<onebit_parameters> layers;
  std::vector<onebit::linear<>> to_linear() const {
    std::vector<onebit::linear<>> out;
    out.reserve(layers.size());
    for (const onebit_parameters& p : layers) out.push_back(p.to_linear());
    return out;
  }
};

// Return false to stop after this step (a time budget, say); the checkpoint is still written.
using kd_callback = std::function<bool(const kd_progress&, const kd_student&)>;

struct kd_result {
  std::vector<onebit::linear<>> layers;  // l·7 + s, deployable (FP16 g and h)
  std::size_t steps_done = 0;            // the step count reached (resumed steps included)
  double last_loss = 0;
  bool stopped = false;  // by the callback before options.steps
};

// The teacher with its seven linear layers of every block replaced by `layers` (l·7 + s), run
// by onebit's kernels (llama::onebit_layer).
inline model with_onebit_layers(const model& teacher, const std::vector<onebit::linear<>>& layers,
                                const std::string& kind = "onebit-kd") {
  if (layers.size() != teacher.blocks.size() * std::size(all_slots))
    throw std::invalid_argument("onebit::llama::with_onebit_layers: " +
                                std::to_string(layers.size()) + " layers for " +
                                std::to_string(teacher.blocks.size()) + " blocks of 7");
  model m = teacher;
  for (std::size_t l = 0; l < m.blocks.size(); ++l)
    for (slot s : all_slots)
      m.blocks[l][s] = std::make_shared<onebit_layer>(
          layers[l * std::size(all_slots) + static_cast<std::size_t>(s)], kind);
  return m;
}

namespace kd_detail {

[[noreturn]] inline void fail(const std::string& what) {
  throw std::invalid_argument("onebit::llama::distill_onebit: " + what);
}

inline void check_adam(const char* field, const adam_options& o) {
  if (!(o.learning_rate >= 0) || !std::isfinite(o.learning_rate))
    fail(std::string(field) + ".learning_rate must be finite and >= 0");
  if (!(o.beta1 >= 0 && o.beta1 < 1)) fail(std::string(field) + ".beta1 must be in [0, 1)");
  if (!(o.beta2 >= 0 && o.beta2 < 1)) fail(std::string(field) + ".beta2 must be in [0, 1)");
  if (!(o.epsilon > 0)) fail(std::string(field) + ".epsilon must be > 0");
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay))
    fail(std::string(field) + ".weight_decay must be finite and >= 0");
}

inline void check(const model& teacher, const kd_options& o) {
  if (o.steps == 0) fail("steps is 0");
  if (o.batch == 0) fail("batch is 0");
  if (o.train_tokens == 0) fail("train_tokens is 0");
  if (o.threads == 0) fail("threads is 0");
  if (!(o.temperature >= 0) || !std::isfinite(o.temperature))
    fail("temperature must be finite and >= 0");
  if (!(o.logit_weight >= 0) || !std::isfinite(o.logit_weight))
    fail("logit_weight must be finite and >= 0");
  if (!(o.hidden_weight >= 0) || !std::isfinite(o.hidden_weight))
    fail("hidden_weight must be finite and >= 0");
  if (o.logit_weight == 0 && o.hidden_weight == 0)
    fail("logit_weight and hidden_weight are both 0: nothing to train for");
  check_adam("adam_W", o.adam_W);
  check_adam("adam_values", o.adam_values);
  if (o.warmup > o.steps)
    fail("warmup (" + std::to_string(o.warmup) + ") is more than steps (" +
         std::to_string(o.steps) + ")");
  if (o.norm.enabled && (!(o.norm.eps >= 0) || !std::isfinite(o.norm.eps)))
    fail("norm.eps must be finite and >= 0");
  if (!(o.latent_scale > 0) || !std::isfinite(o.latent_scale))
    fail("latent_scale must be finite and > 0");
  if (o.checkpoint_every != 0 && o.checkpoint.empty())
    fail("checkpoint_every is " + std::to_string(o.checkpoint_every) + " but checkpoint is empty");
  const config& c = teacher.cfg;
  if (teacher.blocks.empty() || c.dim <= 0 || c.hidden_dim <= 0 || c.n_heads <= 0 ||
      c.n_kv_heads <= 0 || c.vocab_size <= 0 || c.seq_len <= 1)
    fail("teacher has no blocks or non-positive shapes");
  const std::size_t dim = static_cast<std::size_t>(c.dim),
                    vocab = static_cast<std::size_t>(c.vocab_size);
  if (teacher.token_embedding.size() != vocab * dim || teacher.classifier.size() != vocab * dim ||
      teacher.rms_final.size() != dim)
    fail("teacher's embedding, classifier or final norm has the wrong size (vocab " +
         std::to_string(vocab) + " x dim " + std::to_string(dim) + ")");
  for (std::size_t l = 0; l < teacher.blocks.size(); ++l)
    for (slot s : all_slots)
      if (dynamic_cast<const float_layer*>(teacher.blocks[l][s].get()) == nullptr)
        fail("teacher layer " + std::to_string(l) + "." + to_string(s) +
             " is not float (the teacher is the float model)");
}

inline std::uint64_t mix(std::uint64_t z) noexcept {  // splitmix64's finaliser
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The pool indices of step t's sequences: a function of (seed, t) alone, so that a resumed run
// draws what the uninterrupted one drew.
inline std::vector<std::size_t> draw(std::uint64_t seed, std::size_t step, std::size_t batch,
                                     std::size_t pool) {
  std::vector<std::size_t> picks(batch);
  std::uint64_t state = mix(seed ^ mix(0x6b64ull + step));
  for (std::size_t i = 0; i < batch; ++i) {
    state = mix(state);
    picks[i] = static_cast<std::size_t>(state % pool);
  }
  return picks;
}

// One replica of the network (teacher or student): the blocks keep forward state, so each
// thread has its own. The student's projections read the shared parameters.
struct network {
  std::vector<std::unique_ptr<sequential_block>> blocks;
  std::unique_ptr<rmsnorm_block> final_norm;
  // A linear_block, held as a block so that code calling it does not compile its products
  // (build, a template, does; see llama_blocks.hpp). Frozen: its weight gradient is not used.
  std::unique_ptr<onebit::block> classifier;
  std::vector<onebit_projection*> projections;  // l·7 + s; empty for the teacher
  // hidden[l] = input of block l (hidden[0] the embeddings), tokens x dim each.
  std::vector<projection_detail::floats> hidden;
  projection_detail::floats normed, logits;
};

template <class Lazy = void>
network build(const model& m, const std::vector<onebit_parameters>* student) {
  const config& c = m.cfg;
  const std::size_t dim = static_cast<std::size_t>(c.dim),
                    hidden = static_cast<std::size_t>(c.hidden_dim),
                    vocab = static_cast<std::size_t>(c.vocab_size);
  network n;
  for (std::size_t l = 0; l < m.blocks.size(); ++l) {
    std::array<std::unique_ptr<projection>, 7> p;
    for (slot s : all_slots) {
      const std::size_t k = static_cast<std::size_t>(s);
      if (student != nullptr) {
        auto q =
            std::make_unique<projection_detail::onebit_projection<Lazy>>((*student)[l * 7 + k]);
        n.projections.push_back(q.get());
        p[k] = std::move(q);
      } else {
        const model::matrix w = m.original(l, s);
        p[k] = std::make_unique<projection_detail::float_projection<Lazy>>(w.rows, w.cols, *w.w);
      }
    }
    n.blocks.push_back(llama_transformer_block<Lazy>(
        dim, static_cast<std::size_t>(c.n_heads), static_cast<std::size_t>(c.n_kv_heads),
        hidden, m.blocks[l].rms_att, m.blocks[l].rms_ffn, std::move(p)));
  }
  n.final_norm = std::make_unique<rmsnorm_block>(dim, m.rms_final);
  n.classifier =
      std::make_unique<llama_blocks_detail::linear_block<Lazy>>(vocab, dim, m.classifier, "classifier");
  n.hidden.resize(m.blocks.size() + 1);
  return n;
}

// Runs tokens[0..T) through the network: hidden states and logits in its buffers.
inline void forward(network& n, const model& m, const std::vector<int>& tokens) {
  const std::size_t T = tokens.size(), dim = static_cast<std::size_t>(m.cfg.dim),
                    vocab = static_cast<std::size_t>(m.cfg.vocab_size);
  const token_layout layout{{T}};
  float* x = projection_detail::at_least(n.hidden[0], T * dim);
  for (std::size_t t = 0; t < T; ++t) {
    const std::size_t id = static_cast<std::size_t>(tokens[t]);
    std::copy(m.token_embedding.begin() + static_cast<std::ptrdiff_t>(id * dim),
              m.token_embedding.begin() + static_cast<std::ptrdiff_t>((id + 1) * dim), x + t * dim);
  }
  for (std::size_t l = 0; l < n.blocks.size(); ++l)
    n.blocks[l]->forward(n.hidden[l].data(), layout,
                         projection_detail::at_least(n.hidden[l + 1], T * dim));
  n.final_norm->forward(n.hidden.back().data(), layout,
                        projection_detail::at_least(n.normed, T * dim));
  n.classifier->forward(n.normed.data(), layout, projection_detail::at_least(n.logits, T * vocab));
}

// One sequence: the teacher's and student's forward, the loss (weighted by this sequence's
// share `share` of the step's tokens) and the student's backward; its parameters' gradients
// copied into `slot` (the flat layout W, g, h of layer 0, then layer 1, ...).
struct sequence_loss {
  double logit = 0, hidden = 0;
};

struct scratch {
  projection_detail::floats dlogits, dnormed, dx, dprev, dhidden;
};

inline sequence_loss run_sequence(network& teacher, network& student, scratch& s, const model& m,
                                  const std::vector<int>& tokens, double share,
                                  const kd_options& o, float* slot) {
  namespace d = projection_detail;
  const std::size_t T = tokens.size(), dim = static_cast<std::size_t>(m.cfg.dim),
                    vocab = static_cast<std::size_t>(m.cfg.vocab_size),
                    L = student.blocks.size();
  forward(teacher, m, tokens);
  forward(student, m, tokens);
  sequence_loss loss;
  float* dlogits = d::at_least(s.dlogits, T * vocab);
  loss.logit = kd_logit_loss(teacher.logits.data(), student.logits.data(), T, vocab, vocab,
                             dlogits);
  const float logit_scale = static_cast<float>(share * o.logit_weight);
  for (std::size_t i = 0; i < T * vocab; ++i) dlogits[i] *= logit_scale;
  float* dnormed = d::at_least(s.dnormed, T * dim);
  float* dx = d::at_least(s.dx, T * dim);
  float* dprev = d::at_least(s.dprev, T * dim);
  float* dh = d::at_least(s.dhidden, T * dim);
  student.classifier->backward(dlogits, dnormed);
  student.final_norm->backward(dnormed, dx);
  const float hidden_scale = static_cast<float>(share * o.hidden_weight);
  for (std::size_t l = L; l-- > 0;) {
    // The loss on block l's output, then back through block l.
    loss.hidden += kd_hidden_loss(teacher.hidden[l + 1].data(), student.hidden[l + 1].data(), T,
                                  dim, dim, dh);
    for (std::size_t i = 0; i < T * dim; ++i) dx[i] += hidden_scale * dh[i];
    student.blocks[l]->backward(dx, l > 0 ? dprev : nullptr);
    std::swap(dx, dprev);
  }
  for (const onebit_projection* p : student.projections) {
    const onebit_parameters& q = p->parameters();
    slot = std::copy(p->gradient_W(), p->gradient_W() + q.out * q.in, slot);
    slot = std::copy(p->gradient_g(), p->gradient_g() + q.in, slot);
    slot = std::copy(p->gradient_h(), p->gradient_h() + q.out, slot);
  }
  return loss;
}

inline std::string layer_name(std::size_t l, slot s) {
  return "layers." + std::to_string(l) + "." + to_string(s);
}

// What a checkpoint records besides the tensors, and resume insists on.
inline std::map<std::string, std::string> recorded(const kd_options& o, std::size_t layers) {
  return {{"kd.layers", std::to_string(layers)},
          {"kd.steps", std::to_string(o.steps)},
          {"kd.batch", std::to_string(o.batch)},
          {"kd.train_tokens", std::to_string(o.train_tokens)},
          {"kd.seed", std::to_string(o.seed)},
          {"kd.norm", o.norm.enabled ? "layer_norm" : "none"}};
}

struct optimiser {
  std::vector<adam_state<float>> W, g, h;
};

inline void save_checkpoint(const std::string& path, const kd_options& o, const kd_student& st,
                            const optimiser& opt, std::size_t step) {
  io::writer w;
  for (const auto& [k, v] : recorded(o, st.layers.size())) w.set_metadata(k, v);
  w.set_metadata("kd.step", std::to_string(step));
  for (std::size_t i = 0; i < st.layers.size(); ++i) {
    const onebit_parameters& p = st.layers[i];
    const std::string name = layer_name(i / 7, all_slots[i % 7]);
    w.add(name + ".W", p.W.data(), {p.out, p.in});
    w.add(name + ".g", p.g.data(), {p.in});
    w.add(name + ".h", p.h.data(), {p.out});
    w.add("adam." + name + ".W.m", opt.W[i].first_moment().data(), {p.out, p.in});
    w.add("adam." + name + ".W.v", opt.W[i].second_moment().data(), {p.out, p.in});
    w.add("adam." + name + ".g.m", opt.g[i].first_moment().data(), {p.in});
    w.add("adam." + name + ".g.v", opt.g[i].second_moment().data(), {p.in});
    w.add("adam." + name + ".h.m", opt.h[i].first_moment().data(), {p.out});
    w.add("adam." + name + ".h.v", opt.h[i].second_moment().data(), {p.out});
  }
  w.write(path);
}

// Loads a checkpoint into st and opt (shapes from st); returns its step.
inline std::size_t load_checkpoint(const std::string& path, const kd_options& o, kd_student& st,
                                   optimiser& opt) {
  const io::mapped_file f(path);
  const auto& meta = f.metadata();
  for (const auto& [k, v] : recorded(o, st.layers.size())) {
    const auto it = meta.find(k);
    if (it == meta.end()) fail("resume: " + path + " has no " + k);
    if (it->second != v)
      fail("resume: " + path + " was written with " + k + " = " + it->second + ", not " + v);
  }
  const auto step_it = meta.find("kd.step");
  if (step_it == meta.end()) fail("resume: " + path + " has no kd.step");
  const std::size_t step = std::stoul(step_it->second);
  auto read = [&](const std::string& name, std::size_t n) {
    std::vector<float> v = f.floats(name);
    if (v.size() != n)
      fail("resume: " + path + " has " + std::to_string(v.size()) + " values in " + name +
           ", not " + std::to_string(n));
    return v;
  };
  for (std::size_t i = 0; i < st.layers.size(); ++i) {
    onebit_parameters& p = st.layers[i];
    const std::string name = layer_name(i / 7, all_slots[i % 7]);
    const std::vector<float> W = read(name + ".W", p.out * p.in), g = read(name + ".g", p.in),
                             h = read(name + ".h", p.out);
    p.W.assign(W.begin(), W.end());
    p.g.assign(g.begin(), g.end());
    p.h.assign(h.begin(), h.end());
    p.refresh();
    opt.W[i].restore(read("adam." + name + ".W.m", p.out * p.in),
                     read("adam." + name + ".W.v", p.out * p.in), step);
    opt.g[i].restore(read("adam." + name + ".g.m", p.in), read("adam." + name + ".g.v", p.in),
                     step);
    opt.h[i].restore(read("adam." + name + ".h.m", p.out), read("adam." + name + ".h.v", p.out),
                     step);
  }
  return step;
}

}  // namespace kd_detail

// The student's start: every linear layer of the teacher by SVID, as latent parameters
// (latent_scale · sign, g, h) with the post-norm `norm`.
template <class Real = float>
kd_student kd_start(const model& teacher, post_norm norm, float latent_scale = 0.01f) {
  static_assert(std::is_same_v<Real, float>, "the trainer runs in float");
  kd_student st;
  for (std::size_t l = 0; l < teacher.blocks.size(); ++l)
    for (slot s : all_slots) {
      const model::matrix w = teacher.original(l, s);
      onebit::linear<> init = onebit::svid(w.w->data(), w.rows, w.cols, w.cols);
      init.norm = norm;
      st.layers.push_back(onebit_parameters::from_linear(init, latent_scale));
    }
  return st;
}

// Trains the 1-bit student of `teacher` (the float model, as model::from_checkpoint gives it)
// by knowledge distillation; see the top of this file.
template <class Real = float>
kd_result distill_onebit(const model& teacher, const kd_options& o,
                         const kd_callback& progress = {}) {
  static_assert(std::is_same_v<Real, float>, "the trainer runs in float");
  kd_detail::check(teacher, o);
  const auto pool = sample_sequences(teacher, o.train_tokens, o.seed, o.temperature);
  if (pool.empty()) kd_detail::fail("the teacher sampled no sequence");
  const auto t0 = std::chrono::steady_clock::now();

  kd_student st = kd_start<Real>(teacher, o.norm, o.latent_scale);
  kd_detail::optimiser opt;
  std::size_t params = 0;
  for (const onebit_parameters& p : st.layers) {
    opt.W.emplace_back(p.out * p.in);
    opt.g.emplace_back(p.in);
    opt.h.emplace_back(p.out);
    params += p.out * p.in + p.in + p.out;
  }
  std::size_t step = 0;
  if (!o.resume.empty()) step = kd_detail::load_checkpoint(o.resume, o, st, opt);
  if (step > o.steps)
    kd_detail::fail("resume: the checkpoint is at step " + std::to_string(step) + " of " +
                    std::to_string(o.steps));

  const unsigned workers =
      static_cast<unsigned>(std::min<std::size_t>(o.threads, o.batch));
  std::vector<kd_detail::network> teachers, students;
  std::vector<kd_detail::scratch> scratches(workers);
  for (unsigned w = 0; w < workers; ++w) {
    teachers.push_back(kd_detail::build(teacher, nullptr));
    students.push_back(kd_detail::build(teacher, &st.layers));
  }
  std::vector<float> slots(o.batch * params), total(params);
  std::vector<kd_detail::sequence_loss> losses(o.batch);

  kd_result result;
  while (step < o.steps) {
    const std::vector<std::size_t> picks = kd_detail::draw(o.seed, step, o.batch, pool.size());
    std::size_t tokens = 0;
    for (std::size_t i : picks) tokens += pool[i].size();
    auto work = [&](unsigned w) {
      for (std::size_t b = w; b < o.batch; b += workers) {
        const auto& seq = pool[picks[b]];
        const double share = static_cast<double>(seq.size()) / static_cast<double>(tokens);
        losses[b] = kd_detail::run_sequence(teachers[w], students[w], scratches[w], teacher, seq,
                                            share, o, slots.data() + b * params);
      }
    };
    if (workers == 1) {
      work(0);
    } else {
      std::vector<std::exception_ptr> errors(workers);
      std::vector<std::thread> threads;
      for (unsigned w = 0; w < workers; ++w)
        threads.emplace_back([&, w] {
          try {
            work(w);
          } catch (...) {
            errors[w] = std::current_exception();
          }
        });
      for (auto& t : threads) t.join();
      for (auto& e : errors)
        if (e) std::rethrow_exception(e);
    }
    // The batch's gradient: per-sequence gradients added in batch order, whoever computed them.
    std::copy(slots.begin(), slots.begin() + static_cast<std::ptrdiff_t>(params), total.begin());
    for (std::size_t b = 1; b < o.batch; ++b) {
      const float* g = slots.data() + b * params;
      for (std::size_t k = 0; k < params; ++k) total[k] += g[k];
    }
    kd_progress pr;
    for (std::size_t b = 0; b < o.batch; ++b) {
      const double share =
          static_cast<double>(pool[picks[b]].size()) / static_cast<double>(tokens);
      pr.logit_loss += share * losses[b].logit;
      pr.hidden_loss += share * losses[b].hidden;
    }
    pr.loss = o.logit_weight * pr.logit_loss + o.hidden_weight * pr.hidden_loss;
    pr.learning_rate_factor = cosine_schedule(step, o.steps, o.warmup);
    const adam_options aW = scaled(o.adam_W, pr.learning_rate_factor);
    const adam_options av = scaled(o.adam_values, pr.learning_rate_factor);
    const float* g = total.data();
    for (std::size_t i = 0; i < st.layers.size(); ++i) {
      onebit_parameters& p = st.layers[i];
      opt.W[i].step(p.W.data(), g, aW);
      g += p.out * p.in;
      opt.g[i].step(p.g.data(), g, av);
      g += p.in;
      opt.h[i].step(p.h.data(), g, av);
      g += p.out;
      p.refresh();
    }
    ++step;
    pr.step = step;
    pr.steps = o.steps;
    pr.tokens = tokens;
    pr.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    result.last_loss = pr.loss;
    const bool go_on = !progress || progress(pr, st);
    const bool last = step == o.steps || !go_on;
    if (!o.checkpoint.empty() &&
        (last || (o.checkpoint_every != 0 && step % o.checkpoint_every == 0)))
      kd_detail::save_checkpoint(o.checkpoint, o, st, opt, step);
    if (!go_on) {
      result.stopped = step < o.steps;
      break;
    }
  }
  result.steps_done = step;
  result.layers = st.to_linear();
  return result;
}

}  // namespace onebit::llama
