// Optimisers and learning-rate schedules of onebit's training code (LoRA-Rounding, cross-block
// reconstruction, distillation): Adam / AdamW over flat parameter arrays, and the cosine
// schedule with linear warm-up of OneBit's scripts. No Eigen, no layer types: anything that
// can hand over a pointer to its parameters and one to their gradients trains with these.
#pragma once

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace onebit {

// Adam (Kingma & Ba) with decoupled weight decay (AdamW, Loshchilov & Hutter) when
// weight_decay > 0, as PyTorch's AdamW: p ← p − lr·wd·p, then the Adam step with bias
// correction. OneBit's scripts use β = (0.9, 0.98) and weight decay 0.01.
struct adam_options {
  double learning_rate = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;  // 0.98 in OneBit's distillation scripts
  double epsilon = 1e-8;
  double weight_decay = 0.0;  // decoupled (AdamW); 0 is plain Adam
};

// The moments of one parameter tensor of n values.
template <class T = float>
class adam_state {
 public:
  adam_state() = default;
  explicit adam_state(std::size_t n) : m_(n, T(0)), v_(n, T(0)) {}

  std::size_t size() const noexcept { return m_.size(); }
  std::size_t steps() const noexcept { return t_; }

  // The moments and the step count, for a checkpoint; restore() puts saved ones back (the
  // same size), so that a resumed run continues bit for bit.
  const std::vector<T>& first_moment() const noexcept { return m_; }
  const std::vector<T>& second_moment() const noexcept { return v_; }
  void restore(std::vector<T> m, std::vector<T> v, std::size_t steps) {
    if (m.size() != m_.size() || v.size() != v_.size())
      throw std::invalid_argument("onebit::adam_state::restore: moments of " +
                                  std::to_string(m.size()) + " and " + std::to_string(v.size()) +
                                  " values for a state of " + std::to_string(m_.size()));
    m_ = std::move(m);
    v_ = std::move(v);
    t_ = steps;
  }

  // One step: params[i] updated from grads[i], i < size().
  void step(T* params, const T* grads, const adam_options& o) {
    if (m_.empty()) return;
    if (params == nullptr || grads == nullptr)
      throw std::invalid_argument("onebit::adam_state::step: null params or grads");
    if (!(o.learning_rate >= 0) || !(o.beta1 >= 0 && o.beta1 < 1) ||
        !(o.beta2 >= 0 && o.beta2 < 1) || !(o.epsilon > 0) || !(o.weight_decay >= 0))
      throw std::invalid_argument(
          "onebit::adam_state::step: need learning_rate >= 0, 0 <= beta1, beta2 < 1, "
          "epsilon > 0, weight_decay >= 0");
    ++t_;
    const double c1 = 1.0 - std::pow(o.beta1, static_cast<double>(t_));
    const double c2 = 1.0 - std::pow(o.beta2, static_cast<double>(t_));
    const T b1 = static_cast<T>(o.beta1), b2 = static_cast<T>(o.beta2);
    const T lr = static_cast<T>(o.learning_rate), eps = static_cast<T>(o.epsilon);
    const T decay = static_cast<T>(1.0 - o.learning_rate * o.weight_decay);
    const T inv_c1 = static_cast<T>(1.0 / c1), inv_sqrt_c2 = static_cast<T>(1.0 / std::sqrt(c2));
    for (std::size_t i = 0; i < m_.size(); ++i) {
      const T gr = grads[i];
      m_[i] = b1 * m_[i] + (T(1) - b1) * gr;
      v_[i] = b2 * v_[i] + (T(1) - b2) * gr * gr;
      params[i] = params[i] * decay -
                  lr * (m_[i] * inv_c1) / (std::sqrt(v_[i]) * inv_sqrt_c2 + eps);
    }
  }

 private:
  std::vector<T> m_, v_;
  std::size_t t_ = 0;
};

// The learning-rate factor at step t (0-based) of `steps`: a linear warm-up from 1/warmup to 1
// over the first `warmup` steps, then (1 + cos(π·(t − warmup)/(steps − warmup)))/2, which is
// 1 on the first step after the warm-up and reaches 0 only past the last step. Hugging Face's
// get_cosine_schedule_with_warmup, which OneBit's scripts use, computes the same.
inline double cosine_schedule(std::size_t t, std::size_t steps, std::size_t warmup = 0) noexcept {
  if (t < warmup) return static_cast<double>(t + 1) / static_cast<double>(warmup);
  if (steps <= warmup) return 1.0;
  const double progress =
      static_cast<double>(t - warmup) / static_cast<double>(steps - warmup);
  return 0.5 * (1.0 + std::cos(3.14159265358979323846 * progress));
}

// `o` with its learning rate scaled by `factor` (a schedule's value).
template <class Options>
Options scaled(Options o, double factor) noexcept {
  o.learning_rate *= factor;
  return o;
}

}  // namespace onebit
