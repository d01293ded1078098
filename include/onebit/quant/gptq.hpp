// GPTQ (Frantar, Ashkboos, Hoefler & Alistarh 2022, "GPTQ: Accurate Post-Training Quantization
// for Generative Pre-trained Transformers"): W (rows x cols, out x in) quantised column by column
// to RTN's grid (rtn.hpp, ALGORITHMS.md §3), each column's rounding error spread over the columns
// not yet quantised so as to minimise ‖X(Ŵ − W)ᵀ‖² on calibration rows X (samples x cols).
//
//   H  = 2·XᵀX + λ·mean(diag H)·I            (λ = damp; in double)
//   dead inputs (H_ii = 0 before dampening): H_ii = 1 and column i of W zeroed, as the
//        reference implementation does (no input ever reaches those weights, and a zero column
//        keeps H positive definite and the group ranges free of them)
//   U  = the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU)
//   for each column j (in order, or by decreasing H_jj with act_order):
//       q_j = quant(w_j);   e = (w_j − q_j) / U_jj;   w_k −= e·U_jk  for every later k
//
// Row j of U holds, scaled, the row of the inverse Hessian of the columns still free when j is
// quantised (Gaussian elimination of H⁻¹ in column order), which is why one factorisation serves
// every step. Columns go in blocks of `block`: within a block the updates are immediate; the
// columns after it receive the block's errors at once (E·U[block, after], one matrix product),
// which gives the same result as immediate updates up to floating-point order.
//
// Grids: per row, each row's (s, z) comes from the original row (before any update: the first
// column is the group's first); per group of G columns, from the group's columns as they stand
// when the first of them is reached (so with every earlier column's error already applied),
// by RTN's rules, with rtn_options::clip_search as an option. With act_order and groups the
// grids are static (GPTQ's `static_groups`): computed on the original column order and weights
// before the permutation, so that each group of the result still covers G consecutive inputs.
//
// The result is an ordinary RTN-format lowbit_matrix (codes, scales, zeros). Deterministic: a
// fixed order of operations, ties of act_order broken by column index.
//
// Bad input — the shapes, pointers, strides of W and X as rtn's; cols of X ≠ cols of W (the
// Eigen overload); NaN or infinity in W or X; damp < 0 or not finite; block 0; rtn_options out of
// range; an H that is not positive definite after dampening (damp = 0 with too few samples):
// std::invalid_argument.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include "../detail/matrix_rows.hpp"
#include "../lowbit_matrix.hpp"
#include "matrix.hpp"
#include "rtn.hpp"

namespace onebit {

struct gptq_options {
  rtn_options quant;        // bits, group, symmetric, clip_search: the grid, as rtn's
  float damp = 0.01f;       // λ: H += λ·mean(diag H)·I (the reference's percdamp)
  std::size_t block = 128;  // columns per lazy-update block
  bool act_order = false;   // columns by decreasing H_jj (static groups when grouping)
};

namespace detail::quant {

// One column's codes on a group's grid, by §3's formulas in double (those of rtn_codes_body),
// and the dequantised value as lowbit_matrix stores it (rounded to float).
struct gptq_code {
  std::uint8_t q;
  double value;
};
inline gptq_code gptq_quantize(double w, rtn_group p, int bits, bool symmetric) noexcept {
  const double s = p.s, z = p.z, m = static_cast<double>((1 << (bits - 1)) - 1);
  const double top = static_cast<double>((1 << bits) - 1);
  const double r = std::nearbyint(w / s);
  const double q = symmetric ? std::clamp(r, -m, m) + z : std::clamp(r + z, 0.0, top);
  return {static_cast<std::uint8_t>(q), static_cast<double>(static_cast<float>(s * (q - z)))};
}

}  // namespace detail::quant

// W (rows x cols, rows row_stride apart) quantised by GPTQ on calibration rows x (samples x cols,
// rows ldx apart). (This and the overload below are templates only to be compiled where they
// are called: their Cholesky factorisations in double are costly to compile; docs/design.md,
// "Compile cost".)
template <class Lazy = void>
lowbit_matrix gptq(const float* w, std::size_t rows, std::size_t cols, std::size_t row_stride,
                   const float* x, std::size_t samples, std::size_t ldx,
                   const gptq_options& options = {}) {
  using namespace detail::quant;
  using detail::shape_string;
  const char* f = "gptq";
  const std::string where = "onebit::gptq: ";
  const rtn_options& qo = options.quant;
  // Shape and option checks of the output format (bits, group, symmetric) and of both inputs.
  lowbit_matrix shape = lowbit_access::make(f, rows, cols, qo.bits, qo.group, qo.symmetric);
  check_matrix(f, w, rows, cols, row_stride);
  if (x == nullptr || samples == 0)
    throw std::invalid_argument(where + (x == nullptr ? "null calibration data" : "no calibration rows") +
                                " for a " + shape_string(rows, cols) + " W");
  check_matrix(f, x, samples, cols, ldx);
  if (!(options.damp >= 0.0f) || !std::isfinite(options.damp))
    throw std::invalid_argument(where + "damp " + std::to_string(options.damp) +
                                " must be finite and >= 0");
  if (options.block == 0) throw std::invalid_argument(where + "block 0");
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c)
      if (!std::isfinite(w[r * row_stride + c]))
        throw std::invalid_argument(nonfinite_message(f, w + r * row_stride, r, rows, cols));
  for (std::size_t t = 0; t < samples; ++t)
    for (std::size_t c = 0; c < cols; ++c)
      if (!std::isfinite(x[t * ldx + c]))
        throw std::invalid_argument(where + "calibration X (" + shape_string(samples, cols) +
                                    "): " + (x[t * ldx + c] != x[t * ldx + c] ? "NaN" : "infinity") +
                                    " at (" + std::to_string(t) + ", " + std::to_string(c) + ")");

  using dmatrix = Eigen::MatrixXd;  // column-major: a weight column is contiguous
  const Eigen::Index R = static_cast<Eigen::Index>(rows), C = static_cast<Eigen::Index>(cols);
  dmatrix W(R, C);
  for (Eigen::Index r = 0; r < R; ++r)
    for (Eigen::Index c = 0; c < C; ++c)
      W(r, c) = w[static_cast<std::size_t>(r) * row_stride + static_cast<std::size_t>(c)];
  dmatrix Xd(static_cast<Eigen::Index>(samples), C);
  for (std::size_t t = 0; t < samples; ++t)
    for (Eigen::Index c = 0; c < C; ++c) Xd(static_cast<Eigen::Index>(t), c) = x[t * ldx + static_cast<std::size_t>(c)];
  dmatrix H = dmatrix::Zero(C, C);
  H.selfadjointView<Eigen::Lower>().rankUpdate(Xd.transpose(), 2.0);
  H.triangularView<Eigen::StrictlyUpper>() = H.transpose();
  for (Eigen::Index i = 0; i < C; ++i)
    if (H(i, i) == 0.0) {
      H(i, i) = 1.0;
      W.col(i).setZero();
    }

  // Processing order: perm[k] is the k-th column quantised.
  std::vector<Eigen::Index> perm(cols);
  std::iota(perm.begin(), perm.end(), Eigen::Index{0});
  if (options.act_order)
    std::stable_sort(perm.begin(), perm.end(),
                     [&](Eigen::Index a, Eigen::Index b) { return H(a, a) > H(b, b); });

  const std::size_t G = shape.group_size(), groups = shape.groups_per_row();
  std::vector<float> scales(rows * groups), zeros(rows * groups);
  std::vector<float> values(G);
  // Row r's grid of group g from the columns cols[0..n) of M (as they stand), as RTN's.
  auto find_grid = [&](const dmatrix& M, Eigen::Index first, std::size_t n, std::size_t g) {
    for (std::size_t r = 0; r < rows; ++r) {
      for (std::size_t i = 0; i < n; ++i)
        values[i] = static_cast<float>(M(static_cast<Eigen::Index>(r), first + static_cast<Eigen::Index>(i)));
      for (std::size_t i = 0; i < n; ++i)
        if (!std::isfinite(values[i]))
          throw std::invalid_argument(where + "an updated weight of row " + std::to_string(r) +
                                      " overflows float (" + shape_string(rows, cols) + " W)");
      const rtn_group p = qo.clip_search ? rtn_clipped_parameters(values.data(), n, qo.bits, qo.symmetric)
                                         : rtn_parameters(values.data(), n, qo.bits, qo.symmetric);
      if (!std::isfinite(p.s))
        throw std::invalid_argument(where + "group " + std::to_string(g) + " of row " +
                                    std::to_string(r) + " of a " + shape_string(rows, cols) +
                                    " matrix: its range overflows float");
      scales[r * groups + g] = p.s;
      zeros[r * groups + g] = p.z;
    }
  };
  auto group_length = [&](std::size_t g) { return std::min(G, cols - g * G); };
  // Per row, and static groups: every grid from the original weights, in the original order.
  const bool dynamic_groups = qo.group != 0 && !options.act_order;
  if (!dynamic_groups)
    for (std::size_t g = 0; g < groups; ++g)
      find_grid(W, static_cast<Eigen::Index>(g * G), group_length(g), g);

  if (options.act_order) {
    dmatrix P(R, C), HP(C, C);
    for (Eigen::Index k = 0; k < C; ++k) P.col(k) = W.col(perm[static_cast<std::size_t>(k)]);
    for (Eigen::Index a = 0; a < C; ++a)
      for (Eigen::Index b = 0; b < C; ++b)
        HP(a, b) = H(perm[static_cast<std::size_t>(a)], perm[static_cast<std::size_t>(b)]);
    W.swap(P);
    H.swap(HP);
  }
  const double mean_diag = H.diagonal().mean();
  H.diagonal().array() += static_cast<double>(options.damp) * mean_diag;

  Eigen::LLT<dmatrix> llt(H);
  bool ok = llt.info() == Eigen::Success;
  dmatrix U;
  if (ok) {
    const dmatrix Hinv = llt.solve(dmatrix::Identity(C, C));
    Eigen::LLT<dmatrix> llt_inv(Hinv);
    ok = llt_inv.info() == Eigen::Success;
    if (ok) U = llt_inv.matrixU();
  }
  if (!ok || !U.diagonal().allFinite() || (U.diagonal().array() <= 0.0).any())
    throw std::invalid_argument(where + "H = 2·XᵀX of the " + shape_string(samples, cols) +
                                " calibration X is not positive definite after dampening " +
                                std::to_string(options.damp) + " (raise damp)");

  std::vector<std::uint8_t> q(rows * cols);
  const std::size_t B = options.block;
  dmatrix E;  // the block's scaled errors, rows x block
  for (std::size_t i1 = 0; i1 < cols; i1 += B) {
    const std::size_t n = std::min(B, cols - i1), i2 = i1 + n;
    E.setZero(R, static_cast<Eigen::Index>(n));
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t k = i1 + i;  // position in processing order
      const Eigen::Index K = static_cast<Eigen::Index>(k);
      if (dynamic_groups && k % G == 0) {
        const std::size_t g = k / G, len = group_length(g);
        if (k + len <= i2) {
          find_grid(W, K, len, g);
        } else {
          // The group runs past the block: its columns there still lack this block's errors
          // so far (applied lazily at the block's end), which the grid must see.
          dmatrix cur = W.middleCols(K, static_cast<Eigen::Index>(len));
          const Eigen::Index done = static_cast<Eigen::Index>(i), in_block = static_cast<Eigen::Index>(i2 - k);
          const Eigen::Index beyond = static_cast<Eigen::Index>(len) - in_block;
          if (done > 0)
            cur.rightCols(beyond).noalias() -=
                E.leftCols(done) * U.block(static_cast<Eigen::Index>(i1), static_cast<Eigen::Index>(i2), done, beyond);
          find_grid(cur, 0, len, g);
        }
      }
      const std::size_t c = static_cast<std::size_t>(perm[k]);  // the original column
      const std::size_t g = c / G;
      const double d = U(K, K);
      for (std::size_t r = 0; r < rows; ++r) {
        const Eigen::Index Rr = static_cast<Eigen::Index>(r);
        const rtn_group p{scales[r * groups + g], zeros[r * groups + g]};
        const gptq_code code = gptq_quantize(W(Rr, K), p, qo.bits, qo.symmetric);
        q[r * cols + c] = code.q;
        E(Rr, static_cast<Eigen::Index>(i)) = (W(Rr, K) - code.value) / d;
      }
      const Eigen::Index rest = static_cast<Eigen::Index>(i2 - k - 1);
      if (rest > 0)
        W.middleCols(K + 1, rest).noalias() -=
            E.col(static_cast<Eigen::Index>(i)) * U.row(K).segment(K + 1, rest);
    }
    const Eigen::Index after = C - static_cast<Eigen::Index>(i2);
    if (after > 0)
      W.rightCols(after).noalias() -=
          E * U.block(static_cast<Eigen::Index>(i1), static_cast<Eigen::Index>(i2),
                      static_cast<Eigen::Index>(n), after);
  }

  return lowbit_matrix::from_codes(q.data(), rows, cols, cols, qo.bits, qo.group, scales.data(),
                                   qo.symmetric ? nullptr : zeros.data());
}

template <class Lazy = void>
lowbit_matrix gptq(const Eigen::Ref<const row_major_matrix>& w,
                   const Eigen::Ref<const row_major_matrix>& x, const gptq_options& options = {}) {
  if (w.cols() != x.cols())
    throw std::invalid_argument("onebit::gptq: W is " +
                                detail::shape_string(static_cast<std::size_t>(w.rows()),
                                                     static_cast<std::size_t>(w.cols())) +
                                " but X is " +
                                detail::shape_string(static_cast<std::size_t>(x.rows()),
                                                     static_cast<std::size_t>(x.cols())) +
                                ": X needs " + std::to_string(w.cols()) + " columns");
  return gptq<Lazy>(w.data(), static_cast<std::size_t>(w.rows()),
                    static_cast<std::size_t>(w.cols()), static_cast<std::size_t>(w.outerStride()),
                    x.data(), static_cast<std::size_t>(x.rows()),
                    static_cast<std::size_t>(x.outerStride()), options);
}

}  // namespace onebit
