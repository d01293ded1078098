// CFP: coarse-to-fine preprocessing of outliers (CBQ, docs/algorithms.md §5.2). Finds the values of
// a tensor, or the channels of an activation matrix, that lie far out; clips them in weights
// (cfp_truncate) and migrates them from activations into weights (channel_scaling).
//
// cfp on n finite values v, with λ1 = lambda1, λ2 = lambda2:
//  * coarse: Q1 and Q3 are the 0.25 and 0.75 quantiles by linear interpolation between order
//    statistics (numpy's default: s the sorted values, h = p·(n − 1), i = ⌊h⌋,
//    Q = s[i] + (h − i)·(s[i+1] − s[i])), IQR = Q3 − Q1. The upper candidates are the values
//    > Q3 + λ1·IQR, the lower candidates the values < Q1 − λ1·IQR (strictly beyond).
//  * fine, upper side (the lower side is the same rule on −v): c_0 ≥ c_1 ≥ … ≥ c_{m−1} the m
//    candidates (descending distance from the centre). For each split k = 0 … m−1 the outliers
//    are c_0 … c_k and the normal candidates c_{k+1} … c_{m−1}, and
//        score(k) = (c_k − r_k) − λ2·Var(c_{k+1}, …, c_{m−1})
//    where r_k is the largest value that stays: c_{k+1} for k < m−1 and, when every candidate
//    is an outlier (k = m−1, no normal candidate), the largest value that is not a candidate.
//    Var is the sample variance (divisor count − 1), 0 for one value or none. The first k with
//    the largest score wins. No candidate on a side: no outlier there; one candidate: it is an
//    outlier (its only split).
//  * score(m−1) > 0 (a candidate is beyond the threshold, r is not), so the winning split has a
//    gap > 0: every outlier is strictly beyond every value that stays, and equal values are
//    never split. "Everything beyond the largest normal value is an outlier" holds exactly.
//  * the score adds a length to a squared length, as in the paper, so it is not scale
//    invariant: for small values (weights ~0.02) the variance term hardly counts and the widest
//    gap wins; for large values it pushes the split outward (more outliers).
//  * the one case where every value is a candidate — n = 2 with λ1 < 1/2 and two different
//    values — would flag both values; there two values are no evidence, and nothing is flagged.
//
// Result: `outliers` the indices of the flagged values, ascending; `upper` the largest value
// that is not an outlier and `lower` the smallest (both values of the data, lower ≤ upper). The
// outliers are exactly the values > upper or < lower, so clipping every value into
// [lower, upper] changes the outliers and nothing else — without outliers [lower, upper] is
// [min, max] and clipping is a no-op.
//
// Cost: a sorted copy of the values, O(n log n) time and O(n) memory; arithmetic in double.
//
// Bad input — a null pointer, n = 0, a zero stride, NaN or infinity (named by position), λ1 or
// λ2 negative or not finite, shapes that disagree: std::invalid_argument.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../detail/matrix_rows.hpp"
#include "matrix.hpp"

namespace onebit {

struct cfp_options {
  float lambda1 = 1.5f;  // coarse: candidates beyond Q3 + λ1·IQR (below Q1 − λ1·IQR); >= 0
  float lambda2 = 1.0f;  // fine: weight of the normal candidates' variance in the score; >= 0
};

struct cfp_result {
  float upper;                        // largest value that is not an outlier (clip target)
  float lower;                        // smallest value that is not an outlier
  std::vector<std::size_t> outliers;  // indices of the outliers, ascending
};

namespace detail::quant {

inline std::string cfp_number(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

inline void check_cfp_options(const char* function, const cfp_options& o) {
  auto check = [function](const char* name, float value) {
    if (!(std::isfinite(value) && value >= 0.0f))
      throw std::invalid_argument(std::string("onebit::") + function + ": " + name + " = " +
                                  cfp_number(value) + " must be finite and >= 0");
  };
  check("lambda1", o.lambda1);
  check("lambda2", o.lambda2);
}

// The p-quantile of sorted values by numpy's default (linear interpolation).
inline double quantile_linear(const std::vector<float>& s, double p) noexcept {
  const double h = p * static_cast<double>(s.size() - 1);
  const std::size_t i = static_cast<std::size_t>(h);  // ⌊h⌋, h >= 0
  if (i + 1 >= s.size()) return s[i];
  const double a = s[i], b = s[i + 1];
  return a + (h - static_cast<double>(i)) * (b - a);
}

// How many of the m >= 0 candidates c (descending) are outliers, by the fine rule above; rest
// is the largest value that is not a candidate (rest < c[m−1]).
inline std::size_t cfp_split(const std::vector<double>& c, double rest, double lambda2) {
  const std::size_t m = c.size();
  if (m == 0) return 0;
  // var[k] = sample variance of c[k+1 .. m−1], by Welford's update from the end.
  std::vector<double> var(m, 0.0);
  double mean = 0.0, m2 = 0.0;
  for (std::size_t j = m - 1; j >= 1; --j) {
    const double count = static_cast<double>(m - j), d = c[j] - mean;
    mean += d / count;
    m2 += d * (c[j] - mean);
    var[j - 1] = count > 1.0 ? m2 / (count - 1.0) : 0.0;
  }
  std::size_t best = 0;
  double best_score = -std::numeric_limits<double>::infinity();
  for (std::size_t k = 0; k < m; ++k) {
    const double score = (c[k] - (k + 1 < m ? c[k + 1] : rest)) - lambda2 * var[k];
    if (score > best_score) {  // strict: the first maximum wins
      best_score = score;
      best = k;
    }
  }
  return best + 1;
}

struct cfp_bounds {
  float upper, lower;
};

// [lower, upper] of n >= 1 finite values (taken by value: sorted in place). With both_sides
// false only the upper side is searched (lower is then the minimum).
inline cfp_bounds cfp_bounds_of(std::vector<float> s, const cfp_options& o, bool both_sides) {
  std::sort(s.begin(), s.end());
  const std::size_t n = s.size();
  const double q1 = quantile_linear(s, 0.25), q3 = quantile_linear(s, 0.75);
  const double hi = q3 + static_cast<double>(o.lambda1) * (q3 - q1);
  const double lo = q1 - static_cast<double>(o.lambda1) * (q3 - q1);
  // s[0] <= Q3 <= hi is never an upper candidate, s[n−1] >= Q1 >= lo never a lower one, so
  // m_hi, m_lo <= n − 1 and each side has a largest non-candidate.
  const std::size_t m_hi = static_cast<std::size_t>(
      s.end() - std::upper_bound(s.begin(), s.end(), hi, [](double t, float v) { return t < v; }));
  const std::size_t m_lo = static_cast<std::size_t>(
      std::lower_bound(s.begin(), s.end(), lo, [](float v, double t) { return v < t; }) -
      s.begin());
  std::vector<double> c(m_hi);
  for (std::size_t k = 0; k < m_hi; ++k) c[k] = s[n - 1 - k];
  std::size_t out_hi = cfp_split(c, s[n - 1 - m_hi], o.lambda2), out_lo = 0;
  if (both_sides) {
    c.resize(m_lo);
    for (std::size_t k = 0; k < m_lo; ++k) c[k] = -static_cast<double>(s[k]);
    out_lo = cfp_split(c, -static_cast<double>(s[m_lo]), o.lambda2);
  }
  if (out_hi + out_lo >= n) out_hi = out_lo = 0;  // only n = 2 with λ1 < 1/2: see above
  return {s[n - 1 - out_hi], s[out_lo]};
}

// max_t |x(t, c)| per channel c of a checked tokens x channels matrix, rejecting NaN/infinity.
inline std::vector<float> channel_maxima(const char* function, const float* x, std::size_t tokens,
                                         std::size_t channels, std::size_t ldx) {
  check_matrix(function, x, tokens, channels, ldx);
  std::vector<float> m(channels, 0.0f);
  for (std::size_t t = 0; t < tokens; ++t) {
    const float* row = x + t * ldx;
    for (std::size_t c = 0; c < channels; ++c) {
      if (!std::isfinite(row[c]))
        throw std::invalid_argument(nonfinite_message(function, row, t, tokens, channels));
      m[c] = std::max(m[c], std::fabs(row[c]));
    }
  }
  return m;
}

// Column c of a checked rows x cols matrix multiplied (or divided) by f[c], in place. Checks
// every factor (finite, > 0) and every input and product (finite) before writing anything.
inline void scale_columns(const char* function, float* a, std::size_t rows, std::size_t cols,
                          std::size_t stride, const std::vector<float>& f, bool divide) {
  const std::string where = std::string("onebit::") + function + ": ";
  check_matrix(function, a, rows, cols, stride);
  if (f.size() != cols)
    throw std::invalid_argument(where + std::to_string(f.size()) + " factors for a " +
                                shape_string(rows, cols) + " matrix (need " + std::to_string(cols) +
                                ")");
  for (std::size_t c = 0; c < cols; ++c)
    if (!(std::isfinite(f[c]) && f[c] > 0.0f))
      throw std::invalid_argument(where + "factor " + std::to_string(c) + " = " + cfp_number(f[c]) +
                                  " must be finite and > 0");
  for (int write = 0; write < 2; ++write)
    for (std::size_t r = 0; r < rows; ++r) {
      float* row = a + r * stride;
      for (std::size_t c = 0; c < cols; ++c) {
        if (!std::isfinite(row[c]))
          throw std::invalid_argument(nonfinite_message(function, row, r, rows, cols));
        const float v = divide ? row[c] / f[c] : row[c] * f[c];
        if (!std::isfinite(v))
          throw std::invalid_argument(where + "the value at (" + std::to_string(r) + ", " +
                                      std::to_string(c) + ") of a " + shape_string(rows, cols) +
                                      " matrix overflows float when scaled");
        if (write) row[c] = v;
      }
    }
}

}  // namespace detail::quant

// CFP over n values `stride` elements apart (values[i·stride], i < n); outliers are the i.
// options has no default here, so that cfp(values, n, {…}) always means the options.
inline cfp_result cfp(const float* values, std::size_t n, std::size_t stride,
                      const cfp_options& options) {
  if (n == 0) throw std::invalid_argument("onebit::cfp: no values (n = 0)");
  if (values == nullptr)
    throw std::invalid_argument("onebit::cfp: null values for n = " + std::to_string(n));
  if (n > 1 && stride == 0)
    throw std::invalid_argument("onebit::cfp: stride 0 for n = " + std::to_string(n));
  detail::quant::check_cfp_options("cfp", options);
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    v[i] = values[i * stride];
    if (!std::isfinite(v[i]))
      throw std::invalid_argument(std::string("onebit::cfp: ") +
                                  (v[i] != v[i] ? "NaN" : "infinity") + " at index " +
                                  std::to_string(i) + " of " + std::to_string(n) + " values");
  }
  const detail::quant::cfp_bounds b = detail::quant::cfp_bounds_of(v, options, true);
  cfp_result r{b.upper, b.lower, {}};
  for (std::size_t i = 0; i < n; ++i)
    if (v[i] > b.upper || v[i] < b.lower) r.outliers.push_back(i);
  return r;
}
inline cfp_result cfp(const float* values, std::size_t n, const cfp_options& options = {}) {
  return cfp(values, n, 1, options);
}
// Any float vector expression: contiguous, or strided (a column of a row-major matrix).
inline cfp_result cfp(const Eigen::Ref<const Eigen::VectorXf, 0, Eigen::InnerStride<>>& values,
                      const cfp_options& options = {}) {
  return cfp(values.data(), static_cast<std::size_t>(values.size()),
             static_cast<std::size_t>(values.innerStride()), options);
}

// Outlier channels of activations x (tokens x channels, row-major, rows ldx apart): CFP, upper
// side only, over the statistic m_c = max_t |x(t, c)|. A channel of small magnitude is no
// trouble for a quantiser, so the lower side is not searched: `outliers` are the channels of
// large m_c, `upper` the largest m_c of a normal channel, `lower` the smallest m_c.
inline cfp_result cfp_channels(const float* x, std::size_t tokens, std::size_t channels,
                               std::size_t ldx, const cfp_options& options = {}) {
  detail::quant::check_cfp_options("cfp_channels", options);
  const std::vector<float> m =
      detail::quant::channel_maxima("cfp_channels", x, tokens, channels, ldx);
  const detail::quant::cfp_bounds b = detail::quant::cfp_bounds_of(m, options, false);
  cfp_result r{b.upper, b.lower, {}};
  for (std::size_t c = 0; c < channels; ++c)
    if (m[c] > b.upper) r.outliers.push_back(c);
  return r;
}
inline cfp_result cfp_channels(const Eigen::Ref<const row_major_matrix>& x,
                               const cfp_options& options = {}) {
  return cfp_channels(x.data(), static_cast<std::size_t>(x.rows()),
                      static_cast<std::size_t>(x.cols()), static_cast<std::size_t>(x.outerStride()),
                      options);
}

// Weights W (rows x cols, row-major, rows row_stride apart): CFP over the whole tensor, and
// every outlier clipped in place to [lower, upper] (§5.2: truncated before quantisation). The
// result's outliers are the clipped elements as r·cols + c (dense row-major order, whatever the
// stride), so outliers.size() is how many were clipped.
inline cfp_result cfp_truncate(float* w, std::size_t rows, std::size_t cols, std::size_t row_stride,
                               const cfp_options& options = {}) {
  detail::quant::check_matrix("cfp_truncate", w, rows, cols, row_stride);
  detail::quant::check_cfp_options("cfp_truncate", options);
  std::vector<float> v(rows * cols);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* row = w + r * row_stride;
    for (std::size_t c = 0; c < cols; ++c) {
      if (!std::isfinite(row[c]))
        throw std::invalid_argument(
            detail::quant::nonfinite_message("cfp_truncate", row, r, rows, cols));
      v[r * cols + c] = row[c];
    }
  }
  const detail::quant::cfp_bounds b = detail::quant::cfp_bounds_of(std::move(v), options, true);
  cfp_result result{b.upper, b.lower, {}};
  for (std::size_t r = 0; r < rows; ++r) {
    float* row = w + r * row_stride;
    for (std::size_t c = 0; c < cols; ++c)
      if (row[c] > b.upper || row[c] < b.lower) {
        row[c] = row[c] > b.upper ? b.upper : b.lower;
        result.outliers.push_back(r * cols + c);
      }
  }
  return result;
}
inline cfp_result cfp_truncate(Eigen::Ref<row_major_matrix> w, const cfp_options& options = {}) {
  return cfp_truncate(w.data(), static_cast<std::size_t>(w.rows()),
                      static_cast<std::size_t>(w.cols()), static_cast<std::size_t>(w.outerStride()),
                      options);
}

// Activation-channel scaling (§5.2, the SmoothQuant equivalence). For the outlier channels of
// cfp_channels, f_c = (m_c / m_normal)^migration with m_normal = the largest m_c of a normal
// channel (result.channels.upper); f_c = 1 for a normal channel. Dividing column c of the
// activations by f_c and multiplying input column c of the weights (W is out x in) by f_c leaves
// X·Wᵀ unchanged in exact arithmetic; an outlier channel's largest magnitude becomes
// m_c^(1−migration)·m_normal^migration, in [m_normal, m_c]. Every factor is >= 1 (m_c > m_normal),
// and exactly 1 for migration = 0. When m_normal = 0 (every normal channel is zero) there is no
// scale to migrate toward and every factor is 1. With x/f and w·f each rounded once, every
// product x'·w' is x·w·(1 + δ), |δ| <= 2u + u² (u = 2^-24), barring underflow.
struct channel_scaling_options {
  cfp_options cfp;
  float migration = 0.7f;  // in [0, 1]; msModelSlim's rate
};
struct channel_scaling_result {
  std::vector<float> factors;  // f_c, one per channel
  cfp_result channels;         // cfp_channels of the activations
};

inline channel_scaling_result channel_scaling(const float* x, std::size_t tokens,
                                              std::size_t channels, std::size_t ldx,
                                              const channel_scaling_options& options = {}) {
  detail::quant::check_cfp_options("channel_scaling", options.cfp);
  if (!(options.migration >= 0.0f && options.migration <= 1.0f))
    throw std::invalid_argument(
        "onebit::channel_scaling: migration = " + detail::quant::cfp_number(options.migration) +
        " is outside [0, 1]");
  const std::vector<float> m =
      detail::quant::channel_maxima("channel_scaling", x, tokens, channels, ldx);
  const detail::quant::cfp_bounds b = detail::quant::cfp_bounds_of(m, options.cfp, false);
  channel_scaling_result r{std::vector<float>(channels, 1.0f), {b.upper, b.lower, {}}};
  for (std::size_t c = 0; c < channels; ++c) {
    if (!(m[c] > b.upper)) continue;
    r.channels.outliers.push_back(c);
    if (b.upper == 0.0f) continue;
    const double f =
        std::pow(static_cast<double>(m[c]) / b.upper, static_cast<double>(options.migration));
    r.factors[c] = static_cast<float>(f);
    if (!std::isfinite(r.factors[c]))  // only a denormal m_normal against a huge m_c
      throw std::invalid_argument("onebit::channel_scaling: the factor of channel " +
                                  std::to_string(c) + " overflows float (max " +
                                  detail::quant::cfp_number(m[c]) + " against a normal max of " +
                                  detail::quant::cfp_number(b.upper) + ")");
  }
  return r;
}
inline channel_scaling_result channel_scaling(const Eigen::Ref<const row_major_matrix>& x,
                                              const channel_scaling_options& options = {}) {
  return channel_scaling(x.data(), static_cast<std::size_t>(x.rows()),
                         static_cast<std::size_t>(x.cols()),
                         static_cast<std::size_t>(x.outerStride()), options);
}

// x(t, c) /= f[c] in place: the activation side of channel_scaling (tokens x channels).
inline void divide_activation_channels(float* x, std::size_t tokens, std::size_t channels,
                                       std::size_t ldx, const std::vector<float>& factors) {
  detail::quant::scale_columns("divide_activation_channels", x, tokens, channels, ldx, factors,
                               true);
}
inline void divide_activation_channels(Eigen::Ref<row_major_matrix> x,
                                       const std::vector<float>& factors) {
  divide_activation_channels(x.data(), static_cast<std::size_t>(x.rows()),
                             static_cast<std::size_t>(x.cols()),
                             static_cast<std::size_t>(x.outerStride()), factors);
}

// w(o, c) *= f[c] in place: the weight side of channel_scaling (W is out x in, c an input).
inline void multiply_weight_columns(float* w, std::size_t rows, std::size_t cols,
                                    std::size_t row_stride, const std::vector<float>& factors) {
  detail::quant::scale_columns("multiply_weight_columns", w, rows, cols, row_stride, factors,
                               false);
}
inline void multiply_weight_columns(Eigen::Ref<row_major_matrix> w,
                                    const std::vector<float>& factors) {
  multiply_weight_columns(w.data(), static_cast<std::size_t>(w.rows()),
                          static_cast<std::size_t>(w.cols()),
                          static_cast<std::size_t>(w.outerStride()), factors);
}

}  // namespace onebit
