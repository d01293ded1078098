// rank1: the best rank-1 approximation a bᵀ of a non-negative matrix A (rows x cols), in the
// Frobenius norm — the heart of SVID, where A = |W| (docs/algorithms.md §2).
//
// Two methods, both iterative, seeded and reproducible:
//
//  * svd — power iteration on AᵀA without forming it: from a unit v, p = A v and
//    v' = Aᵀp / ‖Aᵀp‖. The estimate of σ₁ is ‖A v‖; the iteration stops when it changes by at
//    most `tolerance` relative to itself, or after `max_iterations` steps (then `converged` is
//    false). The result is a = A v, b = v for the last v — the best a for that b — so
//    ‖A − a bᵀ‖² = ‖A‖² − ‖A v‖², which is how `relative_error` is computed (to ~1e-7 of ‖A‖²).
//    A is non-negative, so (Perron–Frobenius) its top singular vectors are non-negative and a
//    positive start vector stays positive: no sign flip is ever needed.
//  * nmf — rank-1 non-negative matrix factorisation with the Frobenius loss (the official
//    OneBit code's sklearn NMF, n_components = 1), by alternating exact least squares:
//    a = max(0, A b / ‖b‖²), then b = max(0, Aᵀa / ‖a‖²); after each step the loss is
//    ‖A − a bᵀ‖² = ‖A‖² − ‖a‖²‖b‖². It stops when a step lowers the loss² by at most
//    `tolerance`·‖A‖². For a non-negative A and a positive start the projections are inactive
//    and every step is a power-iteration step up to scale, so both methods reach the same
//    optimum (the unconstrained rank-1 optimum is already non-negative); they differ in their
//    scaling and stopping rule.
//
// Both start from the same seeded positive vector (v_c in [1, 2) from std::mt19937_64(seed),
// a sequence fixed by the standard), so a seed gives the same result on every platform with
// the same instruction-set path (the float sums of the paths differ in order, i.e. in the last
// bits).
//
// Cost: one pass over A per step — each row is read from memory once and used for both halves
// (its dot product with v, then its share of Aᵀp) while it is in cache — plus one first pass
// that checks every value (NaN or infinity throws), sums ‖A‖² and, for svid, writes the signs.
// The row kernels are vectorised per instruction set (quant/detail/rank1_kernels.hpp) and
// chosen at run time like the products' kernels. Matrices whose largest magnitude is outside
// [2^-40, 2^40] are scaled by a power of two inside the passes, so nothing overflows.
//
// The result's a and b have equal norms, ‖a‖ = ‖b‖ = √σ (the balance svid stores in FP16).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "../cpu.hpp"
#include "../half.hpp"
#include "../bfloat16.hpp"
#include "../detail/matrix_rows.hpp"
#include "matrix.hpp"
#include "detail/rank1_kernels.hpp"

namespace onebit {

enum class rank1_method { svd, nmf };

inline const char* to_string(rank1_method m) noexcept {
  return m == rank1_method::svd ? "svd" : "nmf";
}

struct rank1_options {
  rank1_method method = rank1_method::svd;
  int max_iterations = 100;  // passes over the matrix, at least 1
  // svd: stop when |σ − σ_prev| <= tolerance·σ; nmf: when a step lowers the loss² by at most
  // tolerance·‖A‖². Float sums put a floor near 1e-8 under either.
  double tolerance = 1e-6;
  std::uint64_t seed = 0;            // the start vector
  std::optional<isa> path = std::nullopt;  // the row kernels' instruction set (default: best)
};

struct rank1_result {
  Eigen::VectorXf a;          // rows values, non-negative, ‖a‖ = √σ
  Eigen::VectorXf b;          // cols values, non-negative, ‖b‖ = √σ
  double sigma = 0;           // ‖a‖·‖b‖: σ₁ of A once converged
  int iterations = 0;         // passes over A after the checking pass
  bool converged = false;     // the tolerance was met before max_iterations
  double relative_error = 0;  // ‖A − a bᵀ‖_F / ‖A‖_F
  double frobenius_norm = 0;  // ‖A‖_F
};

namespace detail::quant {

// What the checking pass found.
struct matrix_scan {
  double frobenius_norm = 0;  // ‖A‖_F
  float max_abs = 0;
  float scale = 1;            // a power of two: the passes work on scale·A
};

// Checks every value (finite; non-negative when asked), sums ‖A‖², and writes sign bits when
// `signs` is given: row r's (cols + 7) / 8 bytes at signs + r * signs_stride.
template <class T>
matrix_scan scan_matrix(const char* function, const T* data, std::size_t rows, std::size_t cols,
                        std::size_t row_stride, const rank1_kernels& k, bool nonnegative,
                        unsigned char* signs, std::size_t signs_stride) {
  row_reader<T> reader(data, cols, row_stride);
  double squares = 0;
  std::uint32_t max_bits = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* x = reader.row(r);
    const row_scan s = k.scan(x, cols, 1.0f, signs == nullptr ? nullptr : signs + r * signs_stride);
    if (s.max_abs_bits >= 0x7f800000u)
      throw std::invalid_argument(nonfinite_message(function, x, r, rows, cols));
    if (nonnegative && s.min < 0.0f) {
      std::size_t c = 0;
      while (!(x[c] < 0.0f)) ++c;
      throw std::invalid_argument(std::string("onebit::") + function + ": negative value " +
                                  std::to_string(x[c]) + " at (" + std::to_string(r) + ", " +
                                  std::to_string(c) + ") of a " + shape_string(rows, cols) +
                                  " matrix; rank1 needs a non-negative matrix (rank1_abs takes "
                                  "|W| of any W)");
    }
    squares += s.sum_squares;
    max_bits = s.max_abs_bits > max_bits ? s.max_abs_bits : max_bits;
  }
  matrix_scan m;
  std::memcpy(&m.max_abs, &max_bits, sizeof m.max_abs);
  if (m.max_abs == 0.0f)
    throw std::invalid_argument(std::string("onebit::") + function + ": the " +
                                shape_string(rows, cols) +
                                " matrix is all zeros: it has no rank-1 direction");
  if (m.max_abs > 0x1p40f || m.max_abs < 0x1p-40f) {
    // Far from 1: the passes run on 2^-e·A, whose largest magnitude is in [1, 2).
    m.scale = std::ldexp(1.0f, -std::ilogb(m.max_abs));
    squares = 0;
    for (std::size_t r = 0; r < rows; ++r)
      squares += k.scan(reader.row(r), cols, m.scale, nullptr).sum_squares;
    m.frobenius_norm = std::sqrt(squares) / m.scale;
  } else {
    m.frobenius_norm = std::sqrt(squares);
  }
  return m;
}

inline void check_options(const char* function, const rank1_options& o) {
  if (o.max_iterations < 1)
    throw std::invalid_argument(std::string("onebit::") + function + ": max_iterations " +
                                std::to_string(o.max_iterations) + " < 1");
  if (!(o.tolerance >= 0.0))
    throw std::invalid_argument(std::string("onebit::") + function + ": tolerance " +
                                std::to_string(o.tolerance) + " is negative or NaN");
}

// The seeded positive start: v_c in [1, 2), unit norm.
inline std::vector<float> start_vector(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::vector<float> v(n);
  double norm2 = 0;
  for (float& x : v) {
    x = 1.0f + static_cast<float>(engine() >> 40) * 0x1p-24f;
    norm2 += static_cast<double>(x) * x;
  }
  const float inv = static_cast<float>(1.0 / std::sqrt(norm2));
  for (float& x : v) x *= inv;
  return v;
}

inline double norm2(const float* x, std::size_t n) noexcept {
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

// The iterations on a checked matrix (see the top of rank1.hpp). `scan` is its checking pass.
template <class T>
rank1_result iterate(const T* data, std::size_t rows, std::size_t cols, std::size_t row_stride,
                     const rank1_options& o, const rank1_kernels& k, const matrix_scan& scan) {
  row_reader<T> reader(data, cols, row_stride);
  const fused_fn fused = scan.scale == 1.0f ? k.fused : k.fused_scaled;
  const double norm_a = scan.frobenius_norm * scan.scale;  // ‖scale·A‖
  const double norm_a2 = norm_a * norm_a;

  std::vector<float> v = start_vector(cols, o.seed), t(rows);
  aligned_buffer acc_buffer(cols * sizeof(float));
  float* acc = reinterpret_cast<float*>(acc_buffer.data());

  rank1_result result;
  result.frobenius_norm = scan.frobenius_norm;
  double sigma = 0;  // of scale·A
  if (o.method == rank1_method::svd) {
    double s_prev = norm_a;  // ≥ σ₁: keeps t = A v / s_prev near or below 1
    double sigma_prev = 0;
    for (int it = 1;; ++it) {
      std::memset(acc, 0, cols * sizeof(float));
      double t2 = 0;
      const float coef = static_cast<float>(1.0 / s_prev);
      for (std::size_t r = 0; r < rows; ++r) {
        t[r] = fused(reader.row(r), cols, v.data(), acc, coef, scan.scale);
        t2 += static_cast<double>(t[r]) * t[r];
      }
      // ‖A v‖/‖v‖, with the coef actually applied and v's norm as rounded to float.
      sigma = std::sqrt(t2 / norm2(v.data(), cols)) / coef;
      result.iterations = it;
      result.converged = std::fabs(sigma - sigma_prev) <= o.tolerance * sigma;
      const double next = std::sqrt(norm2(acc, cols));
      if (result.converged || it >= o.max_iterations || next == 0.0 || sigma == 0.0) break;
      const float inv = static_cast<float>(1.0 / next);
      for (std::size_t c = 0; c < cols; ++c) v[c] = acc[c] * inv;
      s_prev = sigma_prev = sigma;
    }
    // a = A v = t / coef, b = v: a bᵀ is the best for this v; only their directions are kept.
    const double na = std::sqrt(norm2(t.data(), rows)), nb = std::sqrt(norm2(v.data(), cols));
    result.a.resize(static_cast<Eigen::Index>(rows));
    result.b.resize(static_cast<Eigen::Index>(cols));
    const double root = std::sqrt(sigma / scan.scale);
    for (std::size_t r = 0; r < rows; ++r)
      result.a[static_cast<Eigen::Index>(r)] = static_cast<float>(t[r] / na * root);
    for (std::size_t c = 0; c < cols; ++c)
      result.b[static_cast<Eigen::Index>(c)] = static_cast<float>(v[c] / nb * root);
  } else {
    // b starts at the same positive vector; a = A b / ‖b‖², then b = Aᵀa / ‖a‖².
    double loss2_prev = norm_a2;
    double na2 = 0, nb2 = 1;
    for (int it = 1;; ++it) {
      std::memset(acc, 0, cols * sizeof(float));
      const float coef = static_cast<float>(1.0 / nb2);
      na2 = 0;
      for (std::size_t r = 0; r < rows; ++r) {
        // A is non-negative and b >= 0, so A_r b >= 0: the projection max(0, ·) is inactive.
        t[r] = fused(reader.row(r), cols, v.data(), acc, coef, scan.scale);
        na2 += static_cast<double>(t[r]) * t[r];
      }
      result.iterations = it;
      if (na2 == 0.0) break;
      const float inv = static_cast<float>(1.0 / na2);
      for (std::size_t c = 0; c < cols; ++c) v[c] = acc[c] * inv;
      nb2 = norm2(v.data(), cols);
      const double loss2 = norm_a2 - na2 * nb2;
      result.converged = it > 1 && loss2_prev - loss2 <= o.tolerance * norm_a2;
      loss2_prev = loss2;
      if (result.converged || it >= o.max_iterations || nb2 == 0.0) break;
    }
    sigma = std::sqrt(na2 * nb2);
    const double na = std::sqrt(na2), nb = std::sqrt(nb2);
    result.a.resize(static_cast<Eigen::Index>(rows));
    result.b.resize(static_cast<Eigen::Index>(cols));
    const double root = std::sqrt(sigma / scan.scale);
    for (std::size_t r = 0; r < rows; ++r)
      result.a[static_cast<Eigen::Index>(r)] =
          na == 0.0 ? 0.0f : static_cast<float>(t[r] / na * root);
    for (std::size_t c = 0; c < cols; ++c)
      result.b[static_cast<Eigen::Index>(c)] =
          nb == 0.0 ? 0.0f : static_cast<float>(v[c] / nb * root);
  }
  result.sigma = sigma / scan.scale;
  const double fit = norm_a2 == 0.0 ? 1.0 : sigma * sigma / norm_a2;
  result.relative_error = std::sqrt(fit < 1.0 ? 1.0 - fit : 0.0);
  return result;
}

template <class T>
rank1_result rank1_of(const char* function, const T* data, std::size_t rows, std::size_t cols,
                      std::size_t row_stride, const rank1_options& o, bool nonnegative) {
  check_matrix(function, data, rows, cols, row_stride);
  check_options(function, o);
  const rank1_kernels k = rank1_kernels_for(resolve_isa(o.path));
  const matrix_scan scan =
      scan_matrix(function, data, rows, cols, row_stride, k, nonnegative, nullptr, 0);
  return iterate(data, rows, cols, row_stride, o, k, scan);
}

}  // namespace detail::quant

// The best rank-1 approximation of a non-negative rows x cols matrix A (row-major, rows
// row_stride floats apart). Throws std::invalid_argument on zero sizes, a null pointer, a short
// stride, a NaN, an infinity or a negative value (naming where), an all-zero matrix, or
// max_iterations < 1.
inline rank1_result rank1(const float* a, std::size_t rows, std::size_t cols,
                          std::size_t row_stride, const rank1_options& options = {}) {
  return detail::quant::rank1_of("rank1", a, rows, cols, row_stride, options, true);
}
inline rank1_result rank1(const Eigen::Ref<const row_major_matrix>& a,
                          const rank1_options& options = {}) {
  return rank1(a.data(), static_cast<std::size_t>(a.rows()), static_cast<std::size_t>(a.cols()),
               static_cast<std::size_t>(a.outerStride()), options);
}

// The same methods, by name (STYLE.md: the paper's words).
inline rank1_result rank1_svd(const Eigen::Ref<const row_major_matrix>& a,
                              rank1_options options = {}) {
  options.method = rank1_method::svd;
  return rank1(a, options);
}
inline rank1_result rank1_nmf(const Eigen::Ref<const row_major_matrix>& a,
                              rank1_options options = {}) {
  options.method = rank1_method::nmf;
  return rank1(a, options);
}

// The best rank-1 approximation of |W| for any finite W, without forming |W| (each pass takes
// the magnitudes as it reads). W may be float, half or bfloat16 (converted exactly, a row at a
// time). The same errors as rank1, except that negative values are of course allowed.
template <class T>
rank1_result rank1_abs(const T* w, std::size_t rows, std::size_t cols, std::size_t row_stride,
                       const rank1_options& options = {}) {
  static_assert(detail::quant::is_weight_type<T>, "rank1_abs: W is float, half or bfloat16");
  return detail::quant::rank1_of("rank1_abs", w, rows, cols, row_stride, options, false);
}
inline rank1_result rank1_abs(const Eigen::Ref<const row_major_matrix>& w,
                              const rank1_options& options = {}) {
  return rank1_abs(w.data(), static_cast<std::size_t>(w.rows()),
                   static_cast<std::size_t>(w.cols()), static_cast<std::size_t>(w.outerStride()),
                   options);
}

}  // namespace onebit
