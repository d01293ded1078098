// OneBit's knowledge-transfer losses (quant/kd_loss.hpp): values against a direct double
// evaluation, gradients against central finite differences, and the properties that pin them
// down (zero at the teacher, invariance to a logit shift and to a hidden state's scale).
#include <onebit/quant/kd_loss.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

namespace test_kd_loss {

namespace {

std::vector<float> normal(std::size_t n, std::uint64_t seed, float sigma = 1.0f) {
  std::mt19937_64 engine(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = d(engine);
  return v;
}

template <class Loss>
void check_gradient(Loss&& loss, std::vector<float> student, const std::vector<float>& grad,
                    std::size_t tokens, std::size_t width, std::size_t ld) {
  double worst = 0, scale = 0;
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t i = 0; i < width; ++i) {
      const std::size_t k = t * ld + i;
      const float x = student[k];
      const float step = 1e-2f * std::max(1.0f, std::fabs(x));
      student[k] = x + step;
      const float up = student[k];
      const double lu = loss(student.data());
      student[k] = x - step;
      const float down = student[k];
      const double ld_ = loss(student.data());
      student[k] = x;
      const double fd = (lu - ld_) / (static_cast<double>(up) - down);
      worst = std::max(worst, std::fabs(fd - grad[k]));
      scale = std::max(scale, std::fabs(fd));
    }
  CHECK(worst <= 2e-4 * std::max(scale, 1e-3));
}

}  // namespace

TEST_CASE("the logit loss is KL(softmax(teacher) || softmax(student)), averaged over tokens") {
  const std::size_t tokens = 5, vocab = 13, ld = 16;
  const std::vector<float> teacher = normal(tokens * ld, 1, 2.0f), student = normal(tokens * ld, 2, 2.0f);
  std::vector<float> grad(tokens * ld, 123.0f);
  const double loss = onebit::kd_logit_loss(teacher.data(), student.data(), tokens, vocab, ld, grad.data());
  double want = 0;
  for (std::size_t t = 0; t < tokens; ++t) {
    double zp = 0, zq = 0;
    for (std::size_t v = 0; v < vocab; ++v) {
      zp += std::exp(static_cast<double>(teacher[t * ld + v]));
      zq += std::exp(static_cast<double>(student[t * ld + v]));
    }
    for (std::size_t v = 0; v < vocab; ++v) {
      const double p = std::exp(static_cast<double>(teacher[t * ld + v])) / zp;
      const double q = std::exp(static_cast<double>(student[t * ld + v])) / zq;
      want += p * std::log(p / q);
    }
  }
  want /= tokens;
  CHECK(loss == doctest::Approx(want).epsilon(1e-12));
  CHECK(loss > 0);
  check_gradient([&](const float* s) {
    return onebit::kd_logit_loss(teacher.data(), s, tokens, vocab, ld);
  }, student, grad, tokens, vocab, ld);
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t v = vocab; v < ld; ++v) CHECK(grad[t * ld + v] == 123.0f);  // gaps untouched

  // Zero at the teacher; a constant added to a row of logits changes nothing; large logits do
  // not overflow.
  CHECK(onebit::kd_logit_loss(teacher.data(), teacher.data(), tokens, vocab, ld, grad.data()) ==
        doctest::Approx(0.0).scale(1e-12));
  for (std::size_t v = 0; v < vocab; ++v) CHECK(std::fabs(grad[v]) < 1e-7f);
  std::vector<float> shifted = student;
  for (std::size_t v = 0; v < vocab; ++v) shifted[2 * ld + v] += 1000.0f;
  CHECK(onebit::kd_logit_loss(teacher.data(), shifted.data(), tokens, vocab, ld) ==
        doctest::Approx(loss).epsilon(1e-5));
}

TEST_CASE("the hidden-state loss compares l2-normalised rows; its gradient is the projected one") {
  const std::size_t tokens = 4, dim = 9, ld = 11;
  const std::vector<float> teacher = normal(tokens * ld, 3), student = normal(tokens * ld, 4, 3.0f);
  std::vector<float> grad(tokens * ld, 7.0f);
  const double loss = onebit::kd_hidden_loss(teacher.data(), student.data(), tokens, dim, ld, grad.data());
  double want = 0;
  for (std::size_t t = 0; t < tokens; ++t) {
    double na = 0, nb = 0;
    for (std::size_t i = 0; i < dim; ++i) {
      na += double(teacher[t * ld + i]) * teacher[t * ld + i];
      nb += double(student[t * ld + i]) * student[t * ld + i];
    }
    for (std::size_t i = 0; i < dim; ++i) {
      const double d = student[t * ld + i] / std::sqrt(nb) - teacher[t * ld + i] / std::sqrt(na);
      want += d * d;
    }
  }
  CHECK(loss == doctest::Approx(want / tokens).epsilon(1e-12));
  check_gradient([&](const float* s) {
    return onebit::kd_hidden_loss(teacher.data(), s, tokens, dim, ld);
  }, student, grad, tokens, dim, ld);
  CHECK(grad[dim] == 7.0f);  // the gap after the first row

  // Scaling a student row changes neither the loss nor (but for the 1/‖s‖) the direction.
  std::vector<float> scaled = student;
  for (std::size_t i = 0; i < dim; ++i) scaled[i] *= 8.0f;
  CHECK(onebit::kd_hidden_loss(teacher.data(), scaled.data(), tokens, dim, ld) ==
        doctest::Approx(loss).epsilon(1e-6));
  // A zero student row: its term is 1, its gradient 0.
  std::vector<float> zero = teacher;
  for (std::size_t i = 0; i < dim; ++i) zero[i] = 0.0f;
  std::vector<float> g0(tokens * ld);
  CHECK(onebit::kd_hidden_loss(teacher.data(), zero.data(), 1, dim, ld, g0.data()) ==
        doctest::Approx(1.0));
  for (std::size_t i = 0; i < dim; ++i) CHECK(g0[i] == 0.0f);
}

TEST_CASE("bad sizes and buffers are refused") {
  const std::vector<float> a(8), b(8);
  CHECK_THROWS_AS(onebit::kd_logit_loss(a.data(), b.data(), 2, 4, 3), std::invalid_argument);
  CHECK_THROWS_AS(onebit::kd_logit_loss(nullptr, b.data(), 2, 4, 4), std::invalid_argument);
  CHECK_THROWS_AS(onebit::kd_hidden_loss(a.data(), b.data(), 1, 0, 4), std::invalid_argument);
  CHECK(onebit::kd_hidden_loss(nullptr, nullptr, 0, 4, 4) == 0.0);
}

}  // namespace test_kd_loss
