// SVID (sign-value-independent decomposition): a OneBit layer from a trained out x in matrix W0
// (docs/algorithms.md §2). W = sign(W0), and |W0| ≈ a bᵀ, its best rank-1 approximation (rank1.hpp:
// power iteration, or rank-1 NMF as in the official code); then h = a, g = b, so that
//
//     W0 ≈ sign(W0) ⊙ (h gᵀ),   x · (sign(W0) ⊙ h gᵀ)ᵀ = ((x ⊙ g) · Wᵀ) ⊙ h.
//
// Since ‖W0 − sign(W0) ⊙ a bᵀ‖_F = ‖|W0| − a bᵀ‖_F, the error is sqrt(‖W0‖² − σ₁²(|W0|)), the
// least possible for this form (never worse than one scale per row, per column, or for all).
//
// FP16: a bᵀ does not change under a → c·a, b → b/c; a and b are balanced to equal norms
// (a = √σ·u, b = √σ·v) before rounding to FP16 (nearest, ties to even), far from FP16's
// overflow and subnormals. A W0 whose magnitudes are beyond what FP16 value vectors can carry
// (a rounded entry becomes infinite) throws.
//
// Inputs: float, half (IEEE binary16) or bfloat16 (bfloat16.hpp: the top half of
// a float, a struct of its 16 bits) row-major matrices with a row stride, or an Eigen row-major
// float matrix. sign(0) = sign(-0.0) = +1. Zero sizes, a null pointer, a short stride, NaN or
// infinity anywhere (named by position), an all-zero matrix: std::invalid_argument.
//
// Cost: one pass that checks W0 and writes the signs, then one pass per iteration (rank1.hpp);
// svid_with_error adds one pass to measure the stored layer's error.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "../cpu.hpp"
#include "../half.hpp"
#include "../linear.hpp"
#include "../sign_matrix.hpp"
#include "../bfloat16.hpp"
#include "../detail/matrix_rows.hpp"
#include "matrix.hpp"
#include "rank1.hpp"

namespace onebit {

struct svid_options {
  rank1_method method = rank1_method::svd;
  int max_iterations = 100;  // passes over W0 after the checking pass
  double tolerance = 1e-6;   // as rank1_options::tolerance
  std::uint64_t seed = 0;    // rank1's start vector
  std::optional<isa> path = std::nullopt;  // instruction set of the passes (default: best)

  rank1_options rank1() const { return {method, max_iterations, tolerance, seed, path}; }
};

template <class Word = std::uint64_t>
struct svid_result {
  linear<Word> layer;
  // ‖W0 − sign(W0) ⊙ h gᵀ‖_F / ‖W0‖_F with the stored FP16 g and h, measured by a pass over W0.
  double relative_error = 0;
  // The rank-1 factor of |W0| before FP16 rounding: sigma, iterations, converged, and its
  // relative_error (by the identity ‖|W0| − a bᵀ‖² = ‖W0‖² − σ², no extra pass).
  rank1_result rank1;
};

namespace detail::quant {

constexpr bool bytes_are_words_order() noexcept {
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
  return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
#else
  return false;
#endif
}

template <class Word, class T>
svid_result<Word> svid_run(const char* function, const T* w, std::size_t rows, std::size_t cols,
                           std::size_t row_stride, const svid_options& options, bool measure) {
  static_assert(is_weight_type<T>, "svid: W0 is float, half or bfloat16");
  check_matrix(function, w, rows, cols, row_stride);
  const rank1_options o = options.rank1();
  check_options(function, o);
  const rank1_kernels k = rank1_kernels_for(resolve_isa(o.path));

  // The scan writes each row's sign bits as bytes: straight into W where its rows' bytes are
  // those of a byte-word matrix (little-endian, or byte words), else into one and converted.
  constexpr bool direct = bytes_are_words_order() || sizeof(Word) == 1;
  svid_result<Word> out;
  sign_matrix<std::uint8_t> staging;
  unsigned char* signs = nullptr;
  std::size_t signs_stride = 0;
  if constexpr (direct) {
    out.layer.W = sign_matrix<Word>(rows, cols);
    signs = reinterpret_cast<unsigned char*>(out.layer.W.data());
    signs_stride = out.layer.W.stride_bytes();
  } else {
    staging = sign_matrix<std::uint8_t>(rows, cols);
    signs = staging.data();
    signs_stride = staging.stride_bytes();
  }
  const matrix_scan scan =
      scan_matrix(function, w, rows, cols, row_stride, k, false, signs, signs_stride);
  if constexpr (!direct) out.layer.W = sign_matrix<Word>(staging);

  out.rank1 = iterate(w, rows, cols, row_stride, o, k, scan);
  out.layer.h.resize(rows);
  out.layer.g.resize(cols);
  to_half(out.rank1.a.data(), out.layer.h.data(), rows);
  to_half(out.rank1.b.data(), out.layer.g.data(), cols);
  auto check_finite = [&](const std::vector<half>& v, const char* name) {
    for (std::size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(to_float(v[i])))
        throw std::invalid_argument(
            std::string("onebit::") + function + ": the " + shape_string(rows, cols) +
            " matrix's magnitudes (max |W| = " + std::to_string(scan.max_abs) +
            ") are too large for FP16 value vectors: " + name + "[" + std::to_string(i) +
            "] = " + std::to_string(name[0] == 'h' ? out.rank1.a[static_cast<Eigen::Index>(i)]
                                                   : out.rank1.b[static_cast<Eigen::Index>(i)]) +
            " rounds to infinity");
  };
  check_finite(out.layer.h, "h");
  check_finite(out.layer.g, "g");

  if (measure) {
    std::vector<float> g(cols), h(rows);
    to_float(out.layer.g.data(), g.data(), cols);
    to_float(out.layer.h.data(), h.data(), rows);
    row_reader<T> reader(w, cols, row_stride);
    double squares = 0;
    for (std::size_t r = 0; r < rows; ++r) squares += k.residual(reader.row(r), cols, g.data(), h[r]);
    out.relative_error = std::sqrt(squares) / scan.frobenius_norm;
  } else {
    out.relative_error = std::numeric_limits<double>::quiet_NaN();
  }
  return out;
}

}  // namespace detail::quant

// The OneBit layer of W0 (rows = out x cols = in, row-major, rows row_stride elements apart);
// T is float, half or bfloat16.
template <class Word = std::uint64_t, class T>
linear<Word> svid(const T* w, std::size_t rows, std::size_t cols, std::size_t row_stride,
                  const svid_options& options = {}) {
  return detail::quant::svid_run<Word>("svid", w, rows, cols, row_stride, options, false).layer;
}
template <class Word = std::uint64_t>
linear<Word> svid(const Eigen::Ref<const row_major_matrix>& w, const svid_options& options = {}) {
  return svid<Word>(w.data(), static_cast<std::size_t>(w.rows()),
                    static_cast<std::size_t>(w.cols()), static_cast<std::size_t>(w.outerStride()),
                    options);
}

// The layer, the error it reached with its FP16 g and h, and the rank-1 diagnostics.
template <class Word = std::uint64_t, class T>
svid_result<Word> svid_with_error(const T* w, std::size_t rows, std::size_t cols,
                                  std::size_t row_stride, const svid_options& options = {}) {
  return detail::quant::svid_run<Word>("svid_with_error", w, rows, cols, row_stride, options,
                                       true);
}
template <class Word = std::uint64_t>
svid_result<Word> svid_with_error(const Eigen::Ref<const row_major_matrix>& w,
                                  const svid_options& options = {}) {
  return svid_with_error<Word>(w.data(), static_cast<std::size_t>(w.rows()),
                               static_cast<std::size_t>(w.cols()),
                               static_cast<std::size_t>(w.outerStride()), options);
}

// The dense matrix a layer stands for, W(j, i)·h_j·g_i (out x in), in float: the Eigen view of
// what svid made, for research code and tests.
template <class Word>
row_major_matrix dense(const linear<Word>& layer) {
  const linear_view<Word> v = layer.view();  // checks the lengths of g and h
  const std::size_t out = v.out_features(), in = v.in_features();
  std::vector<float> g(in);
  to_float(v.g, g.data(), in);
  row_major_matrix m(static_cast<Eigen::Index>(out), static_cast<Eigen::Index>(in));
  for (std::size_t j = 0; j < out; ++j) {
    const float h = to_float(v.h[j]);
    for (std::size_t i = 0; i < in; ++i)
      m(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(i)) =
          static_cast<float>(v.W(j, i)) * (h * g[i]);
  }
  return m;
}

}  // namespace onebit
