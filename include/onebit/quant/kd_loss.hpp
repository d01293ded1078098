// The losses of OneBit's knowledge transfer (the authors' llama_factory/llamafactory/kd.py),
// with their gradients with respect to the student, for a whole-model trainer to drive:
//
//   logits:  L = (1/T) Σ_t Σ_v p_tv (log p_tv − log q_tv),  p = softmax(teacher_t), q =
//            softmax(student_t): KL(p ‖ q) summed over the vocabulary, averaged over the T tokens;
//            ∂L/∂student_tv = (q_tv − p_tv) / T.
//   hidden:  L = (1/T) Σ_t ‖a_t − b_t‖², a_t = teacher_t/‖teacher_t‖, b_t = student_t/‖student_t‖
//            (each token's hidden state l2-normalised); with d = b_t − a_t,
//            ∂L/∂student_t = 2 (d − b_t (b_tᵀ d)) / (T ‖student_t‖).
//
// Inputs are float, T rows `ld` apart; sums, softmaxes and norms in double (log-sum-exp with the
// row's maximum subtracted, so no exp overflows). The gradient is written to `grad` (same
// leading dimension) when it is not null. A zero hidden row has no direction: its term is taken
// as ‖a_t‖² = 1 with zero gradient where the student's row is 0, and as ‖b_t‖² = 1 where the
// teacher's is. Bad sizes and null buffers throw std::invalid_argument.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace onebit {

namespace kd_detail {

inline void check(const char* function, const float* teacher, const float* student,
                  std::size_t tokens, std::size_t width, std::size_t ld) {
  const std::string where = std::string("onebit::") + function + ": ";
  if (tokens == 0) return;
  if (width == 0) throw std::invalid_argument(where + "rows of width 0");
  if (teacher == nullptr || student == nullptr)
    throw std::invalid_argument(where + "null teacher or student");
  if (ld < width)
    throw std::invalid_argument(where + "ld " + std::to_string(ld) + " < width " +
                                std::to_string(width));
}

// softmax of one row into `out` (double), returning log Σ exp.
inline double log_softmax_row(const float* row, std::size_t n, std::vector<double>& out) {
  double top = row[0];
  for (std::size_t i = 1; i < n; ++i) top = std::max(top, static_cast<double>(row[i]));
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = std::exp(static_cast<double>(row[i]) - top);
    sum += out[i];
  }
  for (std::size_t i = 0; i < n; ++i) out[i] /= sum;
  return top + std::log(sum);
}

}  // namespace kd_detail

// KL(softmax(teacher) ‖ softmax(student)) summed over `vocab`, averaged over `tokens`.
inline double kd_logit_loss(const float* teacher, const float* student, std::size_t tokens,
                            std::size_t vocab, std::size_t ld, float* grad = nullptr) {
  kd_detail::check("kd_logit_loss", teacher, student, tokens, vocab, ld);
  if (tokens == 0) return 0.0;
  std::vector<double> p(vocab), q(vocab);
  const double inv_tokens = 1.0 / static_cast<double>(tokens);
  double total = 0;
  for (std::size_t t = 0; t < tokens; ++t) {
    const float* a = teacher + t * ld;
    const float* b = student + t * ld;
    const double lp = kd_detail::log_softmax_row(a, vocab, p);
    const double lq = kd_detail::log_softmax_row(b, vocab, q);
    double kl = 0;
    for (std::size_t v = 0; v < vocab; ++v)
      if (p[v] > 0)  // p log p → 0 as p → 0
        kl += p[v] * ((static_cast<double>(a[v]) - lp) - (static_cast<double>(b[v]) - lq));
    total += kl;
    if (grad != nullptr)
      for (std::size_t v = 0; v < vocab; ++v)
        grad[t * ld + v] = static_cast<float>((q[v] - p[v]) * inv_tokens);
  }
  return total * inv_tokens;
}

// Mean over `tokens` of ‖teacher_t/‖teacher_t‖ − student_t/‖student_t‖‖² over `dim` features.
inline double kd_hidden_loss(const float* teacher, const float* student, std::size_t tokens,
                             std::size_t dim, std::size_t ld, float* grad = nullptr) {
  kd_detail::check("kd_hidden_loss", teacher, student, tokens, dim, ld);
  if (tokens == 0) return 0.0;
  const double inv_tokens = 1.0 / static_cast<double>(tokens);
  double total = 0;
  for (std::size_t t = 0; t < tokens; ++t) {
    const float* a = teacher + t * ld;
    const float* b = student + t * ld;
    double na = 0, nb = 0;
    for (std::size_t i = 0; i < dim; ++i) {
      na += static_cast<double>(a[i]) * a[i];
      nb += static_cast<double>(b[i]) * b[i];
    }
    na = std::sqrt(na);
    nb = std::sqrt(nb);
    const double ia = na > 0 ? 1.0 / na : 0.0, ib = nb > 0 ? 1.0 / nb : 0.0;
    double term = 0, bd = 0;
    for (std::size_t i = 0; i < dim; ++i) {
      const double d = b[i] * ib - a[i] * ia;
      term += d * d;
      bd += b[i] * ib * d;
    }
    total += term;
    if (grad != nullptr)
      for (std::size_t i = 0; i < dim; ++i) {
        const double u = b[i] * ib, d = u - a[i] * ia;
        grad[t * ld + i] = static_cast<float>(2.0 * (d - u * bd) * ib * inv_tokens);
      }
  }
  return total * inv_tokens;
}

}  // namespace onebit
