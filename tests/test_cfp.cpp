// CFP (docs/algorithms.md §5.2): quartiles against numpy.percentile numbers computed by hand (and
// checked with numpy 1.24 when this file was written); the scoring rule, the first-maximum
// rule and the all-outliers split on hand-worked examples; the edge cases; every result against
// an independent O(m²) evaluation of §5.2 written here on random data with ties; planted
// outliers in heavy-tailed data (precision and recall); truncation; the channel scaling's
// equivalence X·Wᵀ = (X / f)·(W ⊙ f)ᵀ within a stated float bound; bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <onebit/quant/cfp.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_cfp {

namespace {

using onebit::cfp_options;
using onebit::cfp_result;
using onebit::row_major_matrix;
using index_list = std::vector<std::size_t>;

cfp_result run(const std::vector<float>& v, cfp_options o = {}) {
  return onebit::cfp(v.data(), v.size(), o);
}

// §5.2 once more, as plainly as possible: numpy's percentile, candidates, every split's score
// with a two-pass variance. `ambiguous` when another split's score is within rounding of the
// best (Welford and two-pass variances may then order them differently).
struct oracle_result {
  float upper, lower;
  index_list outliers;
  bool ambiguous = false;
};

double percentile(std::vector<double> s, double p) {
  std::sort(s.begin(), s.end());
  const double h = p * static_cast<double>(s.size() - 1);
  const double lo = std::floor(h), hi = std::ceil(h);
  return s[static_cast<std::size_t>(lo)] +
         (h - lo) * (s[static_cast<std::size_t>(hi)] - s[static_cast<std::size_t>(lo)]);
}

// Outliers among candidates c (descending), rest the largest value that stays otherwise.
std::size_t oracle_split(const std::vector<double>& c, double rest, double lambda2,
                         bool& ambiguous) {
  std::vector<double> score;
  for (std::size_t k = 0; k < c.size(); ++k) {
    const std::vector<double> normal(c.begin() + static_cast<std::ptrdiff_t>(k) + 1, c.end());
    double var = 0.0;
    if (normal.size() > 1) {
      double mean = 0.0;
      for (double x : normal) mean += x;
      mean /= static_cast<double>(normal.size());
      for (double x : normal) var += (x - mean) * (x - mean);
      var /= static_cast<double>(normal.size() - 1);
    }
    const double r = normal.empty() ? rest : normal.front();
    score.push_back((c[k] - r) - lambda2 * var);
  }
  if (score.empty()) return 0;
  const std::size_t best =
      static_cast<std::size_t>(std::max_element(score.begin(), score.end()) - score.begin());
  for (std::size_t k = 0; k < score.size(); ++k)
    if (k != best && std::fabs(score[k] - score[best]) <= 1e-9 * (1.0 + std::fabs(score[best])))
      ambiguous = true;
  return best + 1;
}

oracle_result oracle(const std::vector<float>& v, cfp_options o) {
  const std::vector<double> d(v.begin(), v.end());
  const double q1 = percentile(d, 0.25), q3 = percentile(d, 0.75);
  const double hi = q3 + o.lambda1 * (q3 - q1), lo = q1 - o.lambda1 * (q3 - q1);
  std::vector<double> up, down, rest_up, rest_down;
  for (double x : d) {
    (x > hi ? up : rest_up).push_back(x);
    (x < lo ? down : rest_down).push_back(-x);
  }
  std::sort(up.rbegin(), up.rend());
  std::sort(down.rbegin(), down.rend());
  oracle_result r{};
  std::size_t n_up =
      oracle_split(up, *std::max_element(rest_up.begin(), rest_up.end()), o.lambda2, r.ambiguous);
  std::size_t n_down = oracle_split(down, *std::max_element(rest_down.begin(), rest_down.end()),
                                    o.lambda2, r.ambiguous);
  if (n_up + n_down == v.size()) n_up = n_down = 0;
  std::vector<float> s = v;
  std::sort(s.begin(), s.end());
  r.upper = s[s.size() - 1 - n_up];
  r.lower = s[n_down];
  for (std::size_t i = 0; i < v.size(); ++i)
    if (v[i] > r.upper || v[i] < r.lower) r.outliers.push_back(i);
  return r;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no exception";
}
bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// Laplace(0, b): an exponential magnitude with a random sign.
float laplace(std::mt19937_64& g, float b) {
  std::exponential_distribution<float> e(1.0f / b);
  return std::bernoulli_distribution(0.5)(g) ? e(g) : -e(g);
}

}  // namespace

TEST_CASE("cfp quartiles are numpy's linear interpolation between order statistics") {
  using onebit::detail::quant::quantile_linear;
  // numpy.percentile(x, [25, 75]) of each (sorted) x.
  const std::vector<float> a = {1, 2, 3, 4, 7, 10};  // h = 1.25, 3.75
  CHECK(quantile_linear(a, 0.25) == 2.25);
  CHECK(quantile_linear(a, 0.75) == 6.25);
  const std::vector<float> b = {-2, 0.5f, 3, 5, 9};  // h = 1, 3: order statistics themselves
  CHECK(quantile_linear(b, 0.25) == 0.5);
  CHECK(quantile_linear(b, 0.75) == 5.0);
  const std::vector<float> one = {3};
  CHECK(quantile_linear(one, 0.25) == 3.0);
  CHECK(quantile_linear(one, 0.75) == 3.0);
  const std::vector<float> two = {1, 2};
  CHECK(quantile_linear(two, 0.25) == 1.25);
  CHECK(quantile_linear(two, 0.75) == 1.75);

  // Through the public result: 0..8 and x. Q1 = 2.25, Q3 = 6.75 (h = 2.25, 6.75), IQR = 4.5,
  // threshold 13.5. (Nearest-rank quartiles 2 and 7 would put it at 14.5.)
  std::vector<float> v = {0, 1, 2, 3, 4, 5, 6, 7, 8, 13.6f};
  cfp_result r = run(v);
  CHECK(r.outliers == index_list{9});  // one candidate: an outlier
  CHECK(r.upper == 8.0f);
  CHECK(r.lower == 0.0f);
  v[9] = 13.5f;  // on the threshold: not beyond it
  r = run(v);
  CHECK(r.outliers.empty());
  CHECK(r.upper == 13.5f);  // no outlier: [lower, upper] = [min, max]
  CHECK(r.lower == 0.0f);
}

TEST_CASE("cfp scoring: the gap minus λ2 times the normal candidates' variance") {
  // 0, 0.5, …, 7.5, 14 and the candidates 40, 30, 29, 20 (n = 21: Q1 = 2.5, Q3 = 7.5, threshold
  // 15; 14 is the largest non-candidate). Scores, λ2 = 1:
  //   k = 0: (40 − 30) − Var(30, 29, 20) = 10 − 91/3 = −20.33
  //   k = 1: (30 − 29) − Var(29, 20)     =  1 − 40.5  = −39.5
  //   k = 2: (29 − 20) − Var(20)         =  9 − 0     =   9     ← best
  //   k = 3: (20 − 14) − 0               =  6                  (all candidates outliers)
  // With λ2 = 0 the widest gap, k = 0, wins.
  std::vector<float> v;
  for (int i = 0; i < 16; ++i) v.push_back(0.5f * static_cast<float>(i));
  v.push_back(14);
  for (float c : {20.0f, 29.0f, 30.0f, 40.0f}) v.push_back(c);
  cfp_result r = run(v);
  CHECK(r.outliers == index_list{18, 19, 20});
  CHECK(r.upper == 20.0f);
  CHECK(r.lower == 0.0f);
  r = run(v, {1.5f, 0.0f});
  CHECK(r.outliers == index_list{20});
  CHECK(r.upper == 30.0f);

  // The lower side is the mirror image; both sides at once. 0.375·(−15 … 15), ±14 and the
  // candidates ±{20, 29, 30, 40}: Q1 = −3.75, Q3 = 3.75, thresholds ±15, the same scores.
  std::vector<float> w;
  for (int i = -15; i <= 15; ++i) w.push_back(0.375f * static_cast<float>(i));
  for (float c : {14.0f, -14.0f, 20.0f, 29.0f, 30.0f, 40.0f, -20.0f, -29.0f, -30.0f, -40.0f})
    w.push_back(c);
  r = run(w);
  CHECK(r.outliers == index_list{34, 35, 36, 38, 39, 40});
  CHECK(r.upper == 20.0f);
  CHECK(r.lower == -20.0f);
  r = run(w, {1.5f, 0.0f});
  CHECK(r.outliers == index_list{36, 40});
  CHECK(r.upper == 30.0f);
  CHECK(r.lower == -30.0f);
  for (float& x : v) x = -x;  // the first example negated
  r = run(v);
  CHECK(r.outliers == index_list{18, 19, 20});
  CHECK(r.lower == -20.0f);
  CHECK(r.upper == 0.0f);
}

TEST_CASE(
    "cfp: the first maximum wins, and the all-outliers split measures to the largest kept value") {
  // 0 … 7.5, 14, then 17, 20, 23, 26 (Q1 = 2.5, Q3 = 7.5, threshold 15). λ2 = 0: every split
  // scores 3 (26−23, 23−20, 20−17, 17−14): the first wins, one outlier.
  // λ2 = 1: −6 (3 − Var(23, 20, 17) = 3 − 9), −1.5 (3 − 4.5), 3, 3: the first 3, k = 2.
  std::vector<float> v;
  for (int i = 0; i < 16; ++i) v.push_back(0.5f * static_cast<float>(i));
  for (float c : {14.0f, 17.0f, 20.0f, 23.0f, 26.0f}) v.push_back(c);
  cfp_result r = run(v, {1.5f, 0.0f});
  CHECK(r.outliers == index_list{20});
  CHECK(r.upper == 23.0f);
  r = run(v);
  CHECK(r.outliers == index_list{18, 19, 20});
  CHECK(r.upper == 17.0f);
  // The all-outliers split is measured to the largest value kept, not to the threshold:
  // 0 … 7.5, 13, 16.75, 20 (Q1 = 2.25, Q3 = 6.75, threshold 13.5), λ2 = 0: 20 − 16.75 = 3.25
  // against 16.75 − 13 = 3.75, both outliers. (To the threshold: 3.25 against 3.25, only 20.)
  v.resize(16);
  for (float c : {13.0f, 16.75f, 20.0f}) v.push_back(c);
  r = run(v, {1.5f, 0.0f});
  CHECK(r.outliers == index_list{17, 18});
  CHECK(r.upper == 13.0f);
  // All candidates outliers: 0 … 7.5 and 40, 41 (Q1 = 2.125, Q3 = 6.375, threshold 12.75):
  // (41 − 40) − 0 = 1 against (40 − 7.5) − 0 = 32.5.
  v.resize(16);
  v.push_back(40);
  v.push_back(41);
  r = run(v);
  CHECK(r.outliers == index_list{16, 17});
  CHECK(r.upper == 7.5f);
}

TEST_CASE("cfp edge cases: no candidate, one value, constant data, ties, n = 2") {
  // No candidate: nothing flagged, [lower, upper] = [min, max].
  cfp_result r = run({3, -1, 4, 1, -5, 9, 2, 6});
  CHECK(r.outliers.empty());
  CHECK(r.upper == 9.0f);
  CHECK(r.lower == -5.0f);
  r = run({2.5f});
  CHECK(r.outliers.empty());
  CHECK(r.upper == 2.5f);
  CHECK(r.lower == 2.5f);
  // Constant: IQR = 0 and nothing is beyond Q3 = the value.
  r = run(std::vector<float>(50, -0.25f));
  CHECK(r.outliers.empty());
  // IQR = 0 with two equal far values: both flagged, never one of them alone.
  r = run({3, 3, 3, 3, 3, 3, 3, 3, 50, 50, 3});
  CHECK(r.outliers == index_list{8, 9});
  CHECK(r.upper == 3.0f);
  // n = 2, λ1 = 0: Q1 = 0.25, Q3 = 0.75 make both values candidates, one per side; two values
  // are no evidence, so nothing is flagged (the documented exception).
  r = run({0, 1}, {0.0f, 1.0f});
  CHECK(r.outliers.empty());
  CHECK(r.upper == 1.0f);
  CHECK(r.lower == 0.0f);
  // λ1 = 0 on more values: 0..9 and 50 (Q1 = 2.5, Q3 = 7.5 are the thresholds). Upper
  // candidates 50, 9, 8: (50 − 9) − Var(9, 8) = 40.5 wins. Lower, on −v: 0, −1, −2 with −3 the
  // largest kept: (0 + 1) − Var(−1, −2) = 0.5, (−1 + 2) − 0 = 1, (−2 + 3) − 0 = 1: the first 1,
  // so 0 and 1 are outliers and lower = 2.
  r = run({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 50}, {0.0f, 1.0f});
  CHECK(r.outliers == index_list{0, 1, 10});
  CHECK(r.upper == 9.0f);
  CHECK(r.lower == 2.0f);
}

TEST_CASE("cfp equals an independent evaluation of §5.2 on random data with ties") {
  std::mt19937_64 g(0xCF9);
  std::size_t compared = 0, ambiguous = 0, flagged = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const std::size_t n = 1 + static_cast<std::size_t>(g() % (trial % 3 == 0 ? 12 : 300));
    std::vector<float> v(n);
    const int kind = trial % 4;
    std::student_t_distribution<float> t(2.5f);
    for (float& x : v) {
      if (kind == 0) x = std::round(laplace(g, 30.0f));  // integers: ties
      if (kind == 1) x = laplace(g, 0.02f);              // weight-sized
      if (kind == 2) x = 5.0f * t(g);                    // heavy tails
      if (kind == 3) x = std::round(64.0f * t(g)) / 16.0f;
    }
    const cfp_options o{std::vector<float>{0.0f, 0.5f, 1.5f, 3.0f}[g() % 4],
                        std::vector<float>{0.0f, 1.0f, 10.0f}[g() % 3]};
    const oracle_result want = oracle(v, o);
    if (want.ambiguous) {
      ++ambiguous;
      continue;
    }
    const cfp_result got = run(v, o);
    INFO("trial ", trial, " n ", n, " lambda1 ", o.lambda1, " lambda2 ", o.lambda2);
    CHECK(got.outliers == want.outliers);
    CHECK(got.upper == want.upper);
    CHECK(got.lower == want.lower);
    CHECK(got.lower <= got.upper);
    ++compared;
    flagged += got.outliers.size();
  }
  MESSAGE("compared ", compared, " random cases (", flagged, " outliers in all), skipped ",
          ambiguous, " with a near-tie of scores");
  CHECK(ambiguous * 20 < compared);
}

TEST_CASE("cfp finds planted outliers in heavy-tailed data: precision and recall >= 95%") {
  struct setting {
    const char* name;
    float scale;  // of the bulk; the planted values are 25..50 of it, either sign
  };
  for (const setting s : {setting{"Laplace, scale 1", 1.0f}, setting{"Laplace, scale 0.02", 0.02f},
                          setting{"Student-t(4), scale 1", -1.0f}}) {
    std::size_t planted_total = 0, flagged_total = 0, hits = 0;
    for (std::uint64_t seed = 1; seed <= 10; ++seed) {
      std::mt19937_64 g(seed);
      std::student_t_distribution<float> t(4.0f);
      const std::size_t n = 4096;
      std::vector<float> v(n);
      for (float& x : v) x = s.scale > 0 ? laplace(g, s.scale) : t(g);
      const float unit = std::fabs(s.scale);
      std::vector<bool> planted(n, false);
      std::uniform_real_distribution<float> far(25.0f, 50.0f);
      for (int k = 0; k < 12; ++k) {
        const std::size_t i = g() % n;
        if (planted[i]) continue;
        planted[i] = true;
        v[i] = (k % 2 ? -1.0f : 1.0f) * far(g) * unit;
        ++planted_total;
      }
      const cfp_result r = run(v);
      flagged_total += r.outliers.size();
      for (std::size_t i : r.outliers) hits += planted[i];
    }
    const double precision = static_cast<double>(hits) / static_cast<double>(flagged_total);
    const double recall = static_cast<double>(hits) / static_cast<double>(planted_total);
    MESSAGE(std::string(s.name), ": ", planted_total, " planted, ", flagged_total, " flagged, ",
            hits, " right: precision ", precision, ", recall ", recall);
    CHECK(precision >= 0.95);
    CHECK(recall >= 0.95);
  }
}

TEST_CASE("cfp overloads: stride and Eigen vectors give the same result") {
  std::mt19937_64 g(7);
  row_major_matrix m(300, 3);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = laplace(g, 1.0f);
  m(17, 1) = 40.0f;
  m(200, 1) = -35.0f;
  std::vector<float> column(300);
  for (Eigen::Index i = 0; i < 300; ++i) column[static_cast<std::size_t>(i)] = m(i, 1);
  const cfp_result want = run(column);
  CHECK(want.outliers.size() >= 2);
  for (const cfp_result& got : {onebit::cfp(m.data() + 1, 300, 3, {}), onebit::cfp(m.col(1)),
                                onebit::cfp(Eigen::VectorXf(m.col(1)))}) {
    CHECK(got.outliers == want.outliers);
    CHECK(got.upper == want.upper);
    CHECK(got.lower == want.lower);
  }
  CHECK(onebit::cfp(m.data() + 1, 1, 0, {}).outliers.empty());  // one value: any stride
}

TEST_CASE("cfp_truncate clips exactly the outliers to [lower, upper], in place") {
  std::mt19937_64 g(11);
  const std::size_t rows = 48, cols = 70, stride = 75;
  std::vector<float> w(rows * stride, -777.0f);  // the padding must survive
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) w[r * stride + c] = laplace(g, 0.02f);
  for (std::size_t k = 0; k < 9; ++k)
    w[(g() % rows) * stride + g() % cols] = (k % 2 ? -1 : 1) * 0.9f;
  const std::vector<float> before = w;
  std::vector<float> dense;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) dense.push_back(w[r * stride + c]);
  const cfp_result want = run(dense);
  const cfp_result got = onebit::cfp_truncate(w.data(), rows, cols, stride);
  CHECK(got.outliers == want.outliers);
  CHECK(got.upper == want.upper);
  CHECK(got.lower == want.lower);
  CHECK(got.outliers.size() >= 9);
  std::size_t changed = 0, wrong = 0;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < stride; ++c) {
      const std::size_t i = r * stride + c;
      const bool outlier =
          c < cols && std::binary_search(got.outliers.begin(), got.outliers.end(), r * cols + c);
      changed += w[i] != before[i];
      if (outlier)
        wrong += w[i] != (before[i] > got.upper ? got.upper : got.lower);
      else
        wrong += w[i] != before[i];
    }
  CHECK(wrong == 0);
  CHECK(changed == got.outliers.size());

  // The Eigen overload, on a whole matrix and on a block (outer stride) of one.
  row_major_matrix m(rows, cols);
  for (std::size_t i = 0; i < rows * cols; ++i) m.data()[i] = dense[i];
  const cfp_result eigen = onebit::cfp_truncate(m);
  CHECK(eigen.outliers == want.outliers);
  for (std::size_t i = 0; i < rows * cols; ++i)
    CHECK(m.data()[i] == w[i / cols * stride + i % cols]);
  row_major_matrix big = row_major_matrix::Constant(rows + 2, cols + 5, -777.0f);
  for (std::size_t i = 0; i < rows * cols; ++i)
    big(static_cast<Eigen::Index>(i / cols) + 1, static_cast<Eigen::Index>(i % cols) + 2) =
        dense[i];
  CHECK(onebit::cfp_truncate(big.block(1, 2, rows, cols)).outliers == want.outliers);
  CHECK(big.block(1, 2, rows, cols) == m);
  CHECK((big.row(0).array() == -777.0f).all());
  CHECK((big.col(0).array() == -777.0f).all());
  // Without outliers truncation is a no-op.
  row_major_matrix plain(2, 4);
  plain << 1, 2, 3, 4, 5, 6, 7, 8;
  const row_major_matrix copy = plain;
  CHECK(onebit::cfp_truncate(plain).outliers.empty());
  CHECK(plain == copy);
}

TEST_CASE("channel scaling: outlier channels found, X·Wᵀ unchanged, their maxima shrink") {
  std::mt19937_64 g(23);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const std::size_t tokens = 128, channels = 48, out = 32;
  row_major_matrix x(tokens, channels), w(out, channels);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = normal(g);
  for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = 0.05f * normal(g);
  const index_list planted = {5, 17, 40};
  x.col(5) *= 20.0f;
  x.col(17) *= 40.0f;
  x.col(40) *= 60.0f;

  const onebit::cfp_result found = onebit::cfp_channels(x);
  CHECK(found.outliers == planted);
  const onebit::channel_scaling_result s = onebit::channel_scaling(x);
  CHECK(s.channels.outliers == planted);
  CHECK(s.channels.upper == found.upper);
  const Eigen::VectorXf m = x.cwiseAbs().colwise().maxCoeff().transpose();
  float normal_max = 0.0f;  // the largest maximum of a normal channel
  for (Eigen::Index c = 0; c < m.size(); ++c)
    if (!std::binary_search(planted.begin(), planted.end(), static_cast<std::size_t>(c)))
      normal_max = std::max(normal_max, m(c));
  CHECK(found.upper == normal_max);
  REQUIRE(s.factors.size() == channels);
  for (std::size_t c = 0; c < channels; ++c) {
    const bool outlier = std::binary_search(planted.begin(), planted.end(), c);
    const double want =
        outlier ? std::pow(static_cast<double>(m(static_cast<Eigen::Index>(c))) / found.upper, 0.7)
                : 1.0;
    INFO("channel ", c);
    CHECK(s.factors[c] == doctest::Approx(want).epsilon(1e-6));
    if (outlier) CHECK(s.factors[c] > 2.0f);
    if (!outlier) CHECK(s.factors[c] == 1.0f);
  }

  row_major_matrix xs = x, ws = w;
  onebit::divide_activation_channels(xs, s.factors);
  onebit::multiply_weight_columns(ws, s.factors);
  // y = X·Wᵀ and y' = (X / f)·(W ⊙ f)ᵀ, both summed in double. Each product x'·w' is
  // x·w·(1 + δ1)(1 + δ2) with |δ| <= u = 2^-24 (one float rounding each side), so
  // |y' − y| <= (2u + u²)·Σ|x·w|, plus the double sums' rounding (< 1e-13 relative here).
  const double u = std::ldexp(1.0, -24);
  double worst = 0.0;
  for (Eigen::Index t = 0; t < x.rows(); ++t)
    for (Eigen::Index o = 0; o < w.rows(); ++o) {
      double y = 0.0, ys = 0.0, magnitude = 0.0;
      for (Eigen::Index c = 0; c < x.cols(); ++c) {
        y += static_cast<double>(x(t, c)) * w(o, c);
        ys += static_cast<double>(xs(t, c)) * ws(o, c);
        magnitude += std::fabs(static_cast<double>(x(t, c)) * w(o, c));
      }
      const double bound = (2 * u + u * u + 1e-13) * magnitude;
      CHECK(std::fabs(ys - y) <= bound);
      worst = std::max(worst, std::fabs(ys - y) / magnitude);
    }
  MESSAGE("largest |y' - y| / sum|x w| = ", worst, " (bound 2^-23 = ", 2 * u, ")");
  // An outlier channel's maximum becomes m_c / f_c = m_c^0.3 · m_normal^0.7, in (m_normal, m_c).
  for (std::size_t c : planted) {
    const Eigen::Index k = static_cast<Eigen::Index>(c);
    const float after = xs.col(k).cwiseAbs().maxCoeff();
    INFO("channel ", c, ": max ", m(k), " -> ", after);
    CHECK(after < 0.5f * m(k));
    CHECK(after > found.upper);
    CHECK(after == doctest::Approx(std::pow(m(k), 0.3) * std::pow(found.upper, 0.7)).epsilon(1e-5));
  }
  // Normal channels untouched, in both matrices.
  for (Eigen::Index c = 0; c < x.cols(); ++c)
    if (!std::binary_search(planted.begin(), planted.end(), static_cast<std::size_t>(c))) {
      CHECK(xs.col(c) == x.col(c));
      CHECK(ws.col(c) == w.col(c));
    }

  // migration 0: every factor 1. Every normal channel zero: nothing to migrate toward, 1.
  onebit::channel_scaling_options none;
  none.migration = 0.0f;
  for (float f : onebit::channel_scaling(x, none).factors) CHECK(f == 1.0f);
  row_major_matrix zeros = row_major_matrix::Zero(16, 12);
  zeros(3, 4) = 9.0f;
  const onebit::channel_scaling_result z = onebit::channel_scaling(zeros);
  CHECK(z.channels.outliers == index_list{4});
  CHECK(z.channels.upper == 0.0f);
  for (float f : z.factors) CHECK(f == 1.0f);
  // Raw pointers with a row stride: the same as Eigen.
  std::vector<float> padded(tokens * 50, 123.0f);
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t c = 0; c < channels; ++c)
      padded[t * 50 + c] = x(static_cast<Eigen::Index>(t), static_cast<Eigen::Index>(c));
  CHECK(onebit::cfp_channels(padded.data(), tokens, channels, 50).outliers == planted);
  CHECK(onebit::channel_scaling(padded.data(), tokens, channels, 50).factors == s.factors);
  onebit::divide_activation_channels(padded.data(), tokens, channels, 50, s.factors);
  for (std::size_t t = 0; t < tokens; ++t) {
    for (std::size_t c = 0; c < channels; ++c)
      CHECK(padded[t * 50 + c] == xs(static_cast<Eigen::Index>(t), static_cast<Eigen::Index>(c)));
    CHECK(padded[t * 50 + 49] == 123.0f);
  }
}

TEST_CASE("cfp bad input throws std::invalid_argument naming what is wrong") {
  const float inf = std::numeric_limits<float>::infinity(),
              nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> v = {1, 2, 3, 4};
  CHECK(contains(message_of([&] { onebit::cfp(nullptr, 4); }), "onebit::cfp: null values"));
  CHECK(contains(message_of([&] { onebit::cfp(v.data(), 0); }), "n = 0"));
  CHECK(contains(message_of([&] { onebit::cfp(v.data(), 2, 0, {}); }), "stride 0"));
  CHECK(contains(message_of([&] { onebit::cfp(Eigen::VectorXf()); }), "n = 0"));
  for (const cfp_options& o :
       {cfp_options{-1.0f, 1.0f}, cfp_options{inf, 1.0f}, cfp_options{nan, 1.0f}})
    CHECK(contains(message_of([&] { run(v, o); }), "lambda1"));
  for (const cfp_options& o :
       {cfp_options{1.5f, -0.5f}, cfp_options{1.5f, inf}, cfp_options{1.5f, nan}})
    CHECK(contains(message_of([&] { run(v, o); }), "lambda2"));
  CHECK(contains(message_of([&] {
                   run(v, {-1.0f, 1.0f});
                 }),
                 "lambda1 = -1 must be finite and >= 0"));
  v[2] = nan;
  CHECK(contains(message_of([&] { run(v); }), "onebit::cfp: NaN at index 2 of 4 values"));
  v[2] = -inf;
  CHECK(contains(message_of([&] { run(v); }), "infinity at index 2 of 4 values"));
  v = {1, 2, 3, inf, 5, 6};
  CHECK(contains(message_of([&] { onebit::cfp(v.data(), 2, 3, {}); }), "at index 1 of 2 values"));
  CHECK_NOTHROW(onebit::cfp(v.data(), 3, 2, {}));  // 1, 3, 5: the infinity is not one of them

  row_major_matrix x = row_major_matrix::Ones(3, 5);
  for (const char* name : {"cfp_channels", "channel_scaling", "cfp_truncate"}) {
    const std::string f = name;
    auto call = [&](float* p, std::size_t rows, std::size_t cols, std::size_t ld) {
      if (f == "cfp_channels") onebit::cfp_channels(p, rows, cols, ld);
      if (f == "channel_scaling") onebit::channel_scaling(p, rows, cols, ld);
      if (f == "cfp_truncate") onebit::cfp_truncate(p, rows, cols, ld);
    };
    INFO(name);
    CHECK(contains(message_of([&] { call(x.data(), 0, 5, 5); }), "zero-size matrix 0x5"));
    CHECK(contains(message_of([&] { call(nullptr, 3, 5, 5); }), "null data for a 3x5 matrix"));
    CHECK(contains(message_of([&] { call(x.data(), 3, 5, 4); }), "row_stride 4 < cols 5"));
    x(2, 3) = nan;
    CHECK(contains(message_of([&] { call(x.data(), 3, 5, 5); }),
                   ("onebit::" + f + ": NaN at (2, 3) of a 3x5 matrix").c_str()));
    x(2, 3) = 1.0f;
  }
  CHECK(contains(message_of([&] {
                   onebit::cfp_channels(x, {2.0f, -1.0f});
                 }),
                 "onebit::cfp_channels: lambda2 = -1"));
  CHECK(contains(message_of([&] {
                   onebit::cfp_truncate(x, {-2.0f, 1.0f});
                 }),
                 "onebit::cfp_truncate: lambda1 = -2"));
  for (float migration : {-0.1f, 1.5f, nan}) {
    onebit::channel_scaling_options o;
    o.migration = migration;
    CHECK(contains(message_of([&] { onebit::channel_scaling(x, o); }), "is outside [0, 1]"));
  }
  // Overflowing factor: a denormal normal maximum against a huge outlier channel.
  row_major_matrix tiny =
      row_major_matrix::Constant(4, 8, std::numeric_limits<float>::denorm_min());
  tiny(0, 7) = 3e38f;
  onebit::channel_scaling_options full;
  full.migration = 1.0f;
  CHECK(contains(message_of([&] { onebit::channel_scaling(tiny, full); }),
                 "the factor of channel 7 overflows float"));

  // Applying factors: their count, their values, the data, overflow — and nothing is written
  // when anything is wrong.
  const row_major_matrix copy = x;
  const std::vector<float> five(5, 2.0f);
  CHECK(contains(
      message_of([&] { onebit::divide_activation_channels(x, std::vector<float>(4, 1.0f)); }),
      "onebit::divide_activation_channels: 4 factors for a 3x5 matrix (need 5)"));
  for (float bad : {0.0f, -2.0f, nan, inf}) {
    std::vector<float> f = five;
    f[3] = bad;
    CHECK(contains(message_of([&] { onebit::multiply_weight_columns(x, f); }),
                   "onebit::multiply_weight_columns: factor 3 = "));
  }
  CHECK(contains(message_of([&] { onebit::multiply_weight_columns(nullptr, 3, 5, 5, five); }),
                 "null"));
  CHECK(contains(message_of([&] { onebit::divide_activation_channels(x.data(), 3, 5, 2, five); }),
                 "row_stride 2 < cols 5"));
  x(2, 4) = 3e38f;
  CHECK(contains(message_of([&] { onebit::multiply_weight_columns(x, five); }),
                 "the value at (2, 4) of a 3x5 matrix overflows float"));
  std::vector<float> small = five;
  small[4] = 1e-3f;
  CHECK(contains(message_of([&] { onebit::divide_activation_channels(x, small); }),
                 "overflows float"));
  x(2, 4) = 1.0f;
  CHECK(x == copy);
  x(1, 1) = inf;
  CHECK(contains(message_of([&] { onebit::divide_activation_channels(x, five); }),
                 "infinity at (1, 1)"));
  x(1, 1) = 1.0f;
  CHECK(x == copy);
}

}  // namespace test_cfp
