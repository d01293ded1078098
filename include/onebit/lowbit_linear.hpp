// A low-bit linear layer on the 1-bit kernels: y = x · Ŵᵀ for a lowbit_matrix Ŵ (rtn.hpp,
// lowbit_matrix.hpp), Ŵ(j, i) = s_jg·(q_ji − z_jg), run as sign-matrix products
// (docs/design.md, "Low-bit weights"; T-MAC's bit-serial idea).
//
// The math. With σ_b = 1 − 2·bit_b(q) (plane b of the matrix read as signs),
// q = (2^k − 1)/2 − Σ_b 2^(b−1)·σ_b, so for one group g of inputs and output j
//
//     Σ_{i∈g} x_i·(q_ji − z_jg) = c_jg·X_g − P_gj,   c_jg = (2^k − 1)/2 − z_jg,
//     X_g = Σ_{i∈g} x_i,   P_gj = Σ_b 2^(b−1) Σ_{i∈g} x_i·σ_b,ji,
//
// and y_j = Σ_g s_jg·(c_jg·X_g − P_gj). P_g is one OneBit product: its sign matrix holds the k
// planes side by side (out x k·n_g: columns b·n_g + i), its g vector is 2^(b−1) on plane b's
// columns (exact in FP16), its h is 1, and its activations are x's group repeated k times. So
// each group is one `linear` (or `packed_linear`) run by prepare/run_rows on any kernel and
// path, the planes' sums come out of the kernel already weighted, and the only other work is
// the activations' copies and sums and one combine per output and group
// (quant/detail/lowbit_combine.hpp).
//
// Exactness (float activations on an exact kernel: automatic, add_only, reference). With
// u = 2^-24, n_c = k·G the columns of one group product (G the group size; cols for per-row),
// groups the groups per row, and T_j = Σ_g |s_jg|·((2^k − 1)/2 + |c_jg|)·Σ_{i∈g} |x_i|:
//
//     |y_j − Σ_i x_i·Ŵ(j, i)| <= (3·n_c + groups + 9)·u·T_j
//
// against the exact product with the float dequantised weights (kernels/add_only.hpp gives
// (3n + 4)·u·S for the products, at worst; the rest is one rounding each for X_g, c·X − P, the
// scale and the sum over groups, and |q − z| <= (2^k − 1)/2 + |c|). Activations are assumed
// within float range after the ×2^(k−2) of the top plane. The int8 and binary kernels run too,
// as approximations (their activation quantisation sees the k scaled copies of x).
//
// Batches and strides as gemm (x: batch rows ldx apart, y: ldy apart, T float or half); the
// engine API as gemm's: a prepared_lowbit_gemm prepares once (copies, sums, each group's
// tables) and then runs row ranges on any threads, writing only those rows of y.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu.hpp"
#include "detail/aligned_buffer.hpp"
#include "gemm.hpp"
#include "half.hpp"
#include "kernel.hpp"
#include "linear.hpp"
#include "packed_linear.hpp"
#include "detail/lowbit_combine.hpp"
#include "detail/matrix_rows.hpp"
#include "lowbit_matrix.hpp"
#include "sign_matrix.hpp"

namespace onebit {

struct lowbit_linear_options {
  kernel k = kernel::automatic;            // the 1-bit kernel of the group products
  std::optional<isa> path = std::nullopt;  // forced instruction set (default: ONEBIT_ISA, best)
  bool packed = true;  // pack each group product for its kernel (pack(), the fastest layout)
};

namespace detail::quant {

// Bits [pos, pos + n) of a row of words, n <= 64, least significant first.
inline std::uint64_t read_bits(const std::uint64_t* w, std::size_t pos, unsigned n) noexcept {
  const std::size_t i = pos / 64;
  const unsigned o = static_cast<unsigned>(pos % 64);
  std::uint64_t v = w[i] >> o;
  if (o != 0 && o + n > 64) v |= w[i + 1] << (64 - o);
  return n == 64 ? v : v & ((std::uint64_t{1} << n) - 1u);
}
inline void or_bits(std::uint64_t* w, std::size_t pos, std::uint64_t v, unsigned n) noexcept {
  const std::size_t i = pos / 64;
  const unsigned o = static_cast<unsigned>(pos % 64);
  w[i] |= v << o;
  if (o != 0 && o + n > 64) w[i + 1] |= v >> (64 - o);
}

}  // namespace detail::quant

class prepared_lowbit_gemm;

class lowbit_linear {
 public:
  lowbit_linear() = default;

  // Builds the group products of m for options.k on options.path (packed for them unless
  // options.packed is false). Throws std::invalid_argument on an empty matrix or a path this
  // CPU cannot run.
  explicit lowbit_linear(const lowbit_matrix& m, const lowbit_linear_options& options = {})
      : rows_(m.rows()), cols_(m.cols()), bits_(m.bits()), group_size_(m.group_size()),
        options_(options) {
    if (m.empty())
      throw std::invalid_argument("onebit::lowbit_linear: empty " +
                                  detail::shape_string(rows_, cols_) + " matrix");
    path_ = resolve_isa(options.path);
    const std::size_t groups = m.groups_per_row();
    const gemm_options go{options.k, path_};
    parts_.reserve(groups);
    scale_.resize(groups * rows_);
    offset_.resize(groups * rows_);
    const double middle = (static_cast<double>(1u << bits_) - 1.0) / 2.0;
    for (std::size_t g = 0; g < groups; ++g) {
      const std::size_t c0 = g * group_size_, n = std::min(group_size_, cols_ - c0);
      part p;
      p.c0 = c0;
      p.n = n;
      linear<> layer{sign_matrix<>(rows_, static_cast<std::size_t>(bits_) * n), {}, {}};
      for (std::size_t j = 0; j < rows_; ++j) {
        std::uint64_t* dst = layer.W.row(j);
        for (int b = 0; b < bits_; ++b) {
          const std::uint64_t* src = m.plane(b).row(j);
          for (std::size_t k = 0; k < n; k += 64) {
            const unsigned count = static_cast<unsigned>(std::min<std::size_t>(64, n - k));
            detail::quant::or_bits(dst, static_cast<std::size_t>(b) * n + k,
                                   detail::quant::read_bits(src, c0 + k, count), count);
          }
        }
        scale_[g * rows_ + j] = m.scale(j, g);
        offset_[g * rows_ + j] = static_cast<float>(middle - static_cast<double>(m.zero(j, g)));
      }
      layer.g.resize(static_cast<std::size_t>(bits_) * n);
      for (int b = 0; b < bits_; ++b)
        std::fill(layer.g.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(b) * n),
                  layer.g.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(b + 1) * n),
                  to_half(std::ldexp(1.0f, b - 1)));
      layer.h.assign(rows_, to_half(1.0f));
      if (options.packed)
        p.packed = pack(layer, go);
      else
        p.plain = std::move(layer);
      parts_.push_back(std::move(p));
    }
    combine_ = detail::quant::combine_for(path_);
  }

  std::size_t in_features() const noexcept { return cols_; }
  std::size_t out_features() const noexcept { return rows_; }
  int bits() const noexcept { return bits_; }
  std::size_t group_size() const noexcept { return group_size_; }
  std::size_t groups() const noexcept { return parts_.size(); }
  const lowbit_linear_options& options() const noexcept { return options_; }
  isa path() const noexcept { return path_; }
  bool empty() const noexcept { return parts_.empty(); }

 private:
  friend class prepared_lowbit_gemm;

  struct part {
    std::size_t c0 = 0, n = 0;  // the group's columns
    linear<> plain;             // out x bits·n signs, g = 2^(b−1) per plane, h = 1
    packed_linear packed;       // the same, packed (options.packed)
  };

  std::size_t rows_ = 0, cols_ = 0;
  int bits_ = 0;
  std::size_t group_size_ = 0;
  lowbit_linear_options options_;
  isa path_ = isa::portable;
  std::vector<part> parts_;
  std::vector<float> scale_, offset_;  // groups x rows: s_jg and c_jg, group-major
  detail::quant::combine_fn combine_ = nullptr;
};

// One low-bit product prepared: each group's activations copied k times and summed, each
// group product prepared (its a = x ⊙ g and tables). run_rows is const, noexcept and
// allocation-free; ranges may run on any threads at once. Keep the layer and y alive.
class prepared_lowbit_gemm {
 public:
  // Rows per step of run_rows: the group products of a tile stay in cache for the combine.
  static constexpr std::size_t tile_rows = 256;

  prepared_lowbit_gemm() = default;
  prepared_lowbit_gemm(const prepared_lowbit_gemm&) = delete;
  prepared_lowbit_gemm& operator=(const prepared_lowbit_gemm&) = delete;
  prepared_lowbit_gemm(prepared_lowbit_gemm&&) noexcept = default;
  prepared_lowbit_gemm& operator=(prepared_lowbit_gemm&&) noexcept = default;

  // Prepares (again, reusing this object's memory) y = x · Ŵᵀ. Throws std::invalid_argument
  // on bad input, naming the shapes.
  template <class T>
  void prepare(const lowbit_linear& layer, const T* x, std::size_t batch, std::size_t ldx,
               float* y, std::size_t ldy) {
    static_assert(detail::is_activation<T>, "onebit::prepare: activations are float or half");
    check(layer, x, batch, ldx, y, ldy);
    layer_ = &layer;
    y_ = y;
    ldy_ = ldy;
    batch_ = batch;
    if (batch == 0) return;
    const std::size_t groups = layer.groups(), out = layer.rows_, k = static_cast<std::size_t>(layer.bits_);
    // Copies: group g's block holds batch rows of k·n_g floats, starting at batch·k·c0.
    copies_.reserve(batch * k * layer.cols_ * sizeof(float));
    products_.reserve(batch * groups * out * sizeof(float));
    sums_.reserve(batch * groups * sizeof(float));
    float* copies = reinterpret_cast<float*>(copies_.data());
    float* products = reinterpret_cast<float*>(products_.data());
    float* sums = reinterpret_cast<float*>(sums_.data());
    if (parts_.size() < groups) parts_.resize(groups);
    for (std::size_t g = 0; g < groups; ++g) {
      const lowbit_linear::part& p = layer.parts_[g];
      const std::size_t ld = k * p.n;
      float* block = copies + batch * k * p.c0;
      for (std::size_t b = 0; b < batch; ++b) {
        float* row = block + b * ld;
        const T* xb = x + b * ldx + p.c0;
        if constexpr (std::is_same_v<T, half>)
          to_float(xb, row, p.n);
        else
          std::memcpy(row, xb, p.n * sizeof(float));
        double total = 0;
        for (std::size_t i = 0; i < p.n; ++i) total += row[i];
        sums[b * groups + g] = static_cast<float>(total);
        for (std::size_t copy = 1; copy < k; ++copy)
          std::memcpy(row + copy * p.n, row, p.n * sizeof(float));
      }
      float* pg = products + g * out;
      if (layer.options_.packed)
        parts_[g].prepare(p.packed, block, batch, ld, pg, groups * out);
      else
        parts_[g].prepare(p.plain, block, batch, ld, pg, groups * out,
                          gemm_options{layer.options_.k, layer.path_});
    }
  }

  std::size_t rows() const noexcept { return layer_ == nullptr ? 0 : layer_->rows_; }
  std::size_t batch() const noexcept { return batch_; }
  // The largest row block of the group products (powers of two: a multiple of every one).
  std::size_t row_block() const noexcept {
    std::size_t block = 1;
    for (const prepared_gemm& p : parts_) block = std::max(block, p.row_block());
    return block;
  }

  // Rows [row_begin, row_end) of y (clamped to the layer's rows) for every batch row.
  void run_rows(std::size_t row_begin, std::size_t row_end) const noexcept {
    if (layer_ == nullptr || batch_ == 0) return;
    const lowbit_linear& layer = *layer_;
    row_end = std::min(row_end, layer.rows_);
    const std::size_t groups = layer.groups(), out = layer.rows_;
    const float* products = reinterpret_cast<const float*>(products_.data());
    const float* sums = reinterpret_cast<const float*>(sums_.data());
    for (std::size_t t0 = row_begin; t0 < row_end; t0 += tile_rows) {
      const std::size_t t1 = std::min(row_end, t0 + tile_rows);
      for (std::size_t g = 0; g < groups; ++g) parts_[g].run_rows(t0, t1);
      for (std::size_t b = 0; b < batch_; ++b)
        layer.combine_(y_ + b * ldy_ + t0, t1 - t0, groups, layer.scale_.data() + t0,
                       layer.offset_.data() + t0, products + b * groups * out + t0, out,
                       sums + b * groups);
    }
  }
  void run() const noexcept { run_rows(0, rows()); }

 private:
  template <class T>
  static void check(const lowbit_linear& layer, const T* x, std::size_t batch, std::size_t ldx,
                    const float* y, std::size_t ldy) {
    const std::size_t in = layer.cols_, out = layer.rows_;
    const std::string where = "onebit::lowbit gemm: for a " + detail::shape_string(out, in) +
                              " (out x in) layer and batch " + std::to_string(batch) + ", ";
    if (layer.empty()) throw std::invalid_argument("onebit::lowbit gemm: empty layer");
    if (x == nullptr) throw std::invalid_argument(where + "x is null");
    if (y == nullptr) throw std::invalid_argument(where + "y is null");
    if (ldx < in)
      throw std::invalid_argument(where + "ldx " + std::to_string(ldx) + " < in " +
                                  std::to_string(in));
    if (ldy < out)
      throw std::invalid_argument(where + "ldy " + std::to_string(ldy) + " < out " +
                                  std::to_string(out));
    if (batch != 0 && detail::overlaps(x, (batch - 1) * ldx + in, y, (batch - 1) * ldy + out))
      throw std::invalid_argument(where + "y overlaps x");
  }

  const lowbit_linear* layer_ = nullptr;
  float* y_ = nullptr;
  std::size_t ldy_ = 0, batch_ = 0;
  std::vector<prepared_gemm> parts_;
  detail::aligned_buffer copies_, products_, sums_;
};

template <class T>
prepared_lowbit_gemm prepare(const lowbit_linear& layer, const T* x, std::size_t batch,
                             std::size_t ldx, float* y, std::size_t ldy) {
  prepared_lowbit_gemm p;
  p.prepare(layer, x, batch, ldx, y, ldy);
  return p;
}

// Y[b*ldy + j] = Σ_i X[b*ldx + i]·Ŵ(j, i), b < batch, j < out.
template <class T>
void gemm(const lowbit_linear& layer, const T* x, std::size_t batch, std::size_t ldx, float* y,
          std::size_t ldy) {
  prepare(layer, x, batch, ldx, y, ldy).run();
}
template <class T>
void gemv(const lowbit_linear& layer, const T* x, float* y) {
  gemm(layer, x, 1, layer.in_features(), y, layer.out_features());
}

}  // namespace onebit
