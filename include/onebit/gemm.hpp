// The public products: check every argument, prepare the activations once, run rows.
//
//   Y[b*ldy + j] = h_j * sum_i X[b*ldx + i] * g_i * W(j, i),  b < batch, j < out
//
// and, for a layer whose post_norm is enabled (linear.hpp), then each batch row of Y replaced
// by its LayerNorm over the out features (kernels/layer_norm.hpp).
//
// T is float or half. Bad input throws std::invalid_argument naming the shapes; the kernels
// behind these entry points never throw and never allocate.
//
// The engine API: prepare() checks the arguments, picks the kernel body, and computes a = x ⊙ g
// (and the kernel's tables) into a prepared_gemm; then run_rows(begin, end) computes any row
// range, on any thread, writing only those rows of y: the product before the norm. The norm
// needs whole output rows, so it is a separate finishing step: finish_rows(b0, b1) normalises
// batch rows [b0, b1) of y in place, once every row range of them has run, exactly once each
// (a no-op for a layer without the norm). gemm() is prepare + run_rows(0, out) + finish();
// run() does both. The finish of a row reads only that row's pre-norm values, in a fixed order,
// so the bits do not depend on how the ranges and the finish were split over threads.
// A prepared_gemm may be prepared again for the next call, reusing its memory.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cpu.hpp"
#include "detail/aligned_buffer.hpp"
#include "detail/dispatch.hpp"
#include "half.hpp"
#include "kernel.hpp"
#include "kernels/add_only.hpp"
#include "kernels/layer_norm.hpp"
#include "kernels/lut.hpp"
#include "kernels/quantize.hpp"
#include "linear.hpp"
#include "packed_linear.hpp"

namespace onebit {

namespace detail {

template <class T>
inline constexpr bool is_activation = std::is_same_v<T, float> || std::is_same_v<T, half>;

// A layer as the kernels see it: bytes, sizes, value vectors, and what reads them.
struct layer_bits {
  const unsigned char* w = nullptr;
  std::size_t stride = 0, rows = 0, cols = 0;
  const half* g = nullptr;
  const half* h = nullptr;
  packed_format format = packed_format::standard;
  post_norm norm{};
};

template <class Word>
layer_bits bits_of(const linear_view<Word>& layer) noexcept {
  return {reinterpret_cast<const unsigned char*>(layer.W.data()), layer.W.stride_bytes(),
          layer.out_features(), layer.in_features(), layer.g, layer.h, packed_format::standard,
          layer.norm};
}

struct packed_access {
  static layer_bits bits(const packed_linear& p) noexcept {
    return {p.data(), p.stride_bytes(), p.rows_, p.cols_, p.g_.data(), p.h_.data(), p.format_,
            p.norm};
  }

  template <class Word>
  static packed_linear pack(const linear_view<Word>& layer, kernel k, isa path) {
    packed_linear p;
    p.rows_ = layer.out_features();
    p.cols_ = layer.in_features();
    p.g_.assign(layer.g, layer.g + p.cols_);
    p.h_.assign(layer.h, layer.h + p.rows_);
    p.norm = layer.norm;
    p.kernel_ = concrete(k);
    p.path_ = path;
    p.format_ = packed_format_for(p.kernel_, path);
    const layer_bits plain = bits_of(layer);
    if (p.format_ == packed_format::standard) {
      // The standard layout, copied with its padding bits cleared.
      const sign_matrix<std::uint8_t> copy(
          sign_matrix_view<const std::uint8_t>(plain.w, plain.rows * plain.stride, plain.rows,
                                               plain.cols, plain.stride));
      p.stride_ = copy.stride_bytes();
      p.signs_ = aligned_buffer(copy.bytes());
      std::memcpy(p.signs_.data(), copy.data(), copy.bytes());
    } else if (p.format_ == packed_format::lut5_rows32) {
      p.stride_ = kernels::lut::block_bytes(p.cols_);
      const std::size_t blocks = (p.rows_ + kernels::lut::block_rows - 1) / kernels::lut::block_rows;
      p.signs_ = aligned_buffer(blocks * p.stride_);
      kernels::lut::pack_blocks(plain.w, plain.stride, p.rows_, p.cols_,
                                reinterpret_cast<unsigned char*>(p.signs_.data()));
    } else {
      const auto g = kernels::add_only::geometry(p.format_);
      p.stride_ = kernels::add_only::block_bytes(p.format_, p.cols_);
      const std::size_t blocks = (p.rows_ + g.block_rows - 1) / g.block_rows;
      p.signs_ = aligned_buffer(blocks * p.stride_);
      kernels::add_only::pack_index_blocks(plain.w, plain.stride, p.rows_, p.cols_, p.format_,
                                           reinterpret_cast<unsigned char*>(p.signs_.data()));
    }
    return p;
  }
};

inline void check_layer(const char* function, const layer_bits& layer) {
  if (layer.rows == 0 || layer.cols == 0)
    throw std::invalid_argument(std::string("onebit::") + function + ": zero-size layer " +
                                shape_string(layer.rows, layer.cols) + " (out x in)");
  if (layer.g == nullptr || layer.h == nullptr)
    throw std::invalid_argument(std::string("onebit::") + function + ": " +
                                shape_string(layer.rows, layer.cols) + " layer has a null " +
                                (layer.g == nullptr ? "g" : "h"));
  if (layer.norm.enabled && !(layer.norm.eps >= 0 && layer.norm.eps <= 3.4e38f))  // NaN fails
    throw std::invalid_argument(std::string("onebit::") + function + ": " +
                                shape_string(layer.rows, layer.cols) +
                                " layer has post_norm eps " + std::to_string(layer.norm.eps) +
                                "; it must be finite and >= 0");
}

// Whether the bytes a strided batch of x touches meet those of y.
template <class T>
bool overlaps(const T* x, std::size_t x_count, const float* y, std::size_t y_count) noexcept {
  const auto xb = reinterpret_cast<std::uintptr_t>(x);
  const auto yb = reinterpret_cast<std::uintptr_t>(y);
  return xb < yb + y_count * sizeof(float) && yb < xb + x_count * sizeof(T);
}

template <class T>
void check_gemm(const char* function, const layer_bits& layer, const T* x, std::size_t batch,
                std::size_t ldx, const float* y, std::size_t ldy) {
  check_layer(function, layer);
  const std::size_t in = layer.cols, out = layer.rows;
  // The message is built only when there is something to say: gemm runs this on every call.
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(std::string("onebit::") + function + ": for a " +
                                shape_string(out, in) + " (out x in) layer and batch " +
                                std::to_string(batch) + ", " + what);
  };
  if (x == nullptr) fail("x is null");
  if (y == nullptr) fail("y is null");
  if (ldx < in) fail("ldx " + std::to_string(ldx) + " < in " + std::to_string(in));
  if (ldy < out) fail("ldy " + std::to_string(ldy) + " < out " + std::to_string(out));
  if (batch != 0 && overlaps(x, (batch - 1) * ldx + in, y, (batch - 1) * ldy + out))
    fail("y overlaps x");
}

}  // namespace detail

namespace detail {
struct prepare_split;  // parallel.hpp: prepare's batch rows split over threads
}  // namespace detail

// Activations prepared for one product: a = x ⊙ g and the chosen kernel's tables, and where y
// goes. run_rows is const, noexcept and allocation-free: ranges may run on any threads at once.
// It refers to the layer, x only while preparing, and y: keep the layer and y alive.
class prepared_gemm {
 public:
  prepared_gemm() = default;
  prepared_gemm(const prepared_gemm&) = delete;  // its arguments point into its own memory
  prepared_gemm& operator=(const prepared_gemm&) = delete;
  prepared_gemm(prepared_gemm&&) noexcept = default;
  prepared_gemm& operator=(prepared_gemm&&) noexcept = default;

  // Prepares (again, reusing this object's memory) a product with a plain layer; throws
  // std::invalid_argument on bad input or a path this CPU cannot run.
  template <class Word, class T>
  void prepare(const linear_view<Word>& layer, const T* x, std::size_t batch, std::size_t ldx,
               float* y, std::size_t ldy, const gemm_options& options = {}) {
    start(layer, x, batch, ldx, y, ldy, options);
    commit_rows(prepare_rows(0, batch));
  }
  template <class Word, class T>
  void prepare(const linear<Word>& layer, const T* x, std::size_t batch, std::size_t ldx,
               float* y, std::size_t ldy, const gemm_options& options = {}) {
    prepare(layer.view(), x, batch, ldx, y, ldy, options);
  }
  // A packed layer runs its own kernel on the path it was packed for.
  template <class T>
  void prepare(const packed_linear& layer, const T* x, std::size_t batch, std::size_t ldx,
               float* y, std::size_t ldy) {
    start(layer, x, batch, ldx, y, ldy);
    commit_rows(prepare_rows(0, batch));
  }

  std::size_t rows() const noexcept { return args_.rows; }
  std::size_t batch() const noexcept { return args_.batch; }
  // The kernel whose body runs: the one asked for, except that vnni_int8 runs popcount_int8's
  // body (the same integer sums) on paths without VNNI, and lut on the standard layout on
  // SIMD paths (where its portable tables are slower), and report popcount_int8 there; and
  // that on avx512_icl popcount_int8 (and lut on the standard layout) run vnni_int8's body
  // from batch 2, where it is faster, and report vnni_int8.
  kernel chosen_kernel() const noexcept { return kernel_; }
  // The body that runs, as its namespace and function ("popcount::avx2::int8_rows"): a path
  // without a body of its own for a kernel runs that of a lesser path (sse41 add_only runs
  // add_only::portable::byte_table_rows). Empty before the first prepare.
  const char* body_name() const noexcept { return body_name_; }
  // Rows the chosen body computes together: ranges that start on multiples of it never
  // compute a block twice (any range gives the same bits; this is about speed).
  std::size_t row_block() const noexcept { return row_block_; }
  isa path() const noexcept { return path_; }

  // Rows [row_begin, row_end) of y (clamped to the layer's rows) for every batch row, before
  // the layer's norm.
  void run_rows(std::size_t row_begin, std::size_t row_end) const noexcept {
    if (row_end > args_.rows) row_end = args_.rows;
    if (row_begin >= row_end || rows_fn_ == nullptr) return;
    rows_fn_(args_, row_begin, row_end);
  }
  // The layer's post-norm, and whether finish_rows has anything to do.
  const post_norm& norm() const noexcept { return norm_; }
  bool needs_finish() const noexcept { return norm_.enabled && rows_fn_ != nullptr; }
  // Batch rows [batch_begin, batch_end) of y (clamped to the batch) normalised in place: call
  // once per batch row, after run_rows has covered all of that row's outputs. Const, noexcept,
  // allocation-free; disjoint batch ranges may run on any threads at once.
  void finish_rows(std::size_t batch_begin, std::size_t batch_end) const noexcept {
    if (!needs_finish()) return;
    if (batch_end > args_.batch) batch_end = args_.batch;
    for (std::size_t b = batch_begin; b < batch_end; ++b)
      kernels::layer_norm::row(args_.y + b * args_.ldy, args_.rows, norm_.eps);
  }
  void finish() const noexcept { finish_rows(0, batch()); }
  // The whole product: every row, then the finish.
  void run() const noexcept {
    run_rows(0, rows());
    finish();
  }

 private:
  friend struct detail::prepare_split;

  // prepare without the batch rows' part: the checks, then prepare_shared.
  template <class Word, class T>
  void start(const linear_view<Word>& layer, const T* x, std::size_t batch, std::size_t ldx,
             float* y, std::size_t ldy, const gemm_options& options = {}) {
    const detail::layer_bits bits = detail::bits_of(layer);
    detail::check_gemm("prepare", bits, x, batch, ldx, y, ldy);
    prepare_shared(bits, detail::concrete(options.k), resolve_isa(options.path), x, batch, ldx,
                   y, ldy);
  }
  template <class T>
  void start(const packed_linear& layer, const T* x, std::size_t batch, std::size_t ldx,
             float* y, std::size_t ldy) {
    const detail::layer_bits bits = detail::packed_access::bits(layer);
    detail::check_gemm("prepare", bits, x, batch, ldx, y, ldy);
    detail::require_supported(layer.path(), "a packed layer");
    prepare_shared(bits, layer.packed_kernel(), layer.path(), x, batch, ldx, y, ldy);
  }

  // The first part of prepare: the layout of the prepared buffers, g as floats, and what no
  // batch row owns; the batch rows' own part is left to prepare_rows, then commit_rows.
  template <class T>
  void prepare_shared(const detail::layer_bits& layer, kernel k, isa path, const T* x,
                      std::size_t batch, std::size_t ldx, float* y, std::size_t ldy) {
    namespace quantize = kernels::quantize;
    using detail::activation_form;
    const detail::kernel_body& body = detail::select_body(k, path, layer.format, batch);
    const std::size_t n = layer.cols;
    const bool floats = body.form == activation_form::floats;
    const bool int8 = detail::is_int8(body.form);
    const detail::prepare_sizes z = detail::sizes_for(body, n);

    // Each piece starts on a cache line.
    std::size_t offset = 0;
    auto claim = [&offset](std::size_t bytes) {
      const std::size_t at = offset;
      offset += detail::round_up(bytes, detail::cache_line);
      return at;
    };
    const std::size_t at_g = claim(n * 4), at_a = claim(batch * z.lda * 4),
                      at_sums = claim(body.signed_rows ? batch * 4 : 0),
                      at_tables = claim(batch * z.ldt * 4),
                      at_scale = claim(floats ? 0 : batch * 4),
                      at_qsum = claim(int8 ? batch * 4 : 0), at_q = claim(batch * z.ldq),
                      at_planes = claim(batch * z.planes_per_row * z.plane_stride),
                      at_valid = claim(body.form == activation_form::signs ? z.plane_stride : 0),
                      at_itables = claim(batch * z.ldit);
    scratch_.reserve(offset);
    std::byte* base = scratch_.data();
    auto* g = reinterpret_cast<float*>(base + at_g);
    auto* valid = reinterpret_cast<unsigned char*>(base + at_valid);
    detail::table_for<detail::half_family>(path).to_floats(
        reinterpret_cast<const std::uint16_t*>(layer.g), g, n);
    if (body.form == activation_form::signs) quantize::valid_plane(n, valid, z.plane_stride);

    args_ = kernels::detail::gemm_args{layer.w,
                                       layer.stride,
                                       layer.rows,
                                       layer.cols,
                                       layer.h,
                                       batch,
                                       reinterpret_cast<float*>(base + at_a),
                                       z.lda,
                                       reinterpret_cast<float*>(base + at_sums),
                                       reinterpret_cast<float*>(base + at_tables),
                                       z.ldt,
                                       y,
                                       ldy};
    args_.planes = reinterpret_cast<unsigned char*>(base + at_planes);
    args_.plane_stride = z.plane_stride;
    args_.ldp = z.planes_per_row * z.plane_stride;
    args_.valid = valid;
    args_.q = reinterpret_cast<std::int8_t*>(base + at_q);
    args_.ldq = z.ldq;
    args_.q_sum = reinterpret_cast<std::int32_t*>(base + at_qsum);
    args_.row_scale = reinterpret_cast<float*>(base + at_scale);
    args_.itables = reinterpret_cast<void*>(base + at_itables);
    args_.ldit = z.ldit;
    pending_ = {&body,
                g,
                z,
                path,
                x,
                ldx,
                reinterpret_cast<float*>(base + at_a),
                reinterpret_cast<float*>(base + at_sums),
                reinterpret_cast<float*>(base + at_tables),
                reinterpret_cast<float*>(base + at_scale),
                reinterpret_cast<std::int32_t*>(base + at_qsum),
                reinterpret_cast<std::int8_t*>(base + at_q),
                reinterpret_cast<unsigned char*>(base + at_planes),
                reinterpret_cast<std::byte*>(base + at_itables),
                &prepare_rows_of<T>};
    rows_fn_ = nullptr;  // until commit_rows: a half-prepared product runs nothing
    norm_ = layer.norm;
    row_block_ = body.row_block;
    kernel_ = body.ran;
    path_ = path;
  }

  // What prepare_shared leaves for the batch rows: x (of the type prepare was called with)
  // and the body's sizes.
  struct pending_rows {
    const detail::kernel_body* body = nullptr;
    const float* g = nullptr;
    detail::prepare_sizes z{};
    isa path = isa::portable;
    const void* x = nullptr;
    std::size_t ldx = 0;
    // The pieces the rows write (gemm_args holds them as const).
    float* a = nullptr;
    float* sums = nullptr;
    float* tables = nullptr;
    float* row_scale = nullptr;
    std::int32_t* q_sum = nullptr;
    std::int8_t* q = nullptr;
    unsigned char* planes = nullptr;
    std::byte* itables = nullptr;
    bool (*rows)(const pending_rows&, std::size_t, std::size_t, std::size_t) noexcept = nullptr;
  };

  // Batch rows [b0, b1) of the prepared activations: each row's part reads only x's row and g
  // and writes only that row's pieces, so disjoint ranges may run on any threads at once and
  // give the same bytes. Returns whether some row's Σ|a| is not below 2^125 (the signed body
  // must run: kernel_body says why).
  bool prepare_rows(std::size_t b0, std::size_t b1) const noexcept {
    return pending_.rows(pending_, args_.cols, b0, b1);
  }

  template <class T>
  static bool prepare_rows_of(const pending_rows& w, std::size_t n, std::size_t b0,
                              std::size_t b1) noexcept {
    namespace quantize = kernels::quantize;
    using detail::activation_form;
    const detail::kernel_body& body = *w.body;
    const detail::prepare_sizes& z = w.z;
    const std::size_t lda = z.lda;
    const bool int8 = detail::is_int8(body.form);
    const float* g = w.g;
    const T* x = static_cast<const T*>(w.x);
    const detail::quantizers& quantizer = body.quantize;
    bool overflow = false;
    for (std::size_t b = b0; b < b1; ++b) {
      float* ab = w.a + b * lda;
      const T* xb = x + b * w.ldx;
      if constexpr (std::is_same_v<T, half>) {
        detail::table_for<detail::half_family>(w.path).to_floats(
            reinterpret_cast<const std::uint16_t*>(xb), ab, n);
        quantizer.hadamard(ab, g, n, ab);
      } else {
        quantizer.hadamard(xb, g, n, ab);
      }
      std::memset(ab + n, 0, (lda - n) * sizeof(float));  // padding bits meet a = 0
      if (body.tables) body.tables(ab, z.groups, w.tables + b * z.ldt);
      if (body.signed_rows) {
        float total = 0, magnitude = 0;
        for (std::size_t i = 0; i < n; ++i) {
          total += ab[i];
          magnitude += ab[i] < 0 ? -ab[i] : ab[i];
        }
        w.sums[b] = total;
        if (!(magnitude < 0x1p125f)) overflow = true;  // NaN fails the test too
      }
      if (int8) {
        std::int8_t* qb = w.q + b * z.ldq;
        const quantize::int8_row r = quantizer.int8(ab, n, qb);
        std::memset(qb + n, 0, z.ldq - n);  // padding bits and table groups meet q = 0
        w.row_scale[b] = r.scale;
        w.q_sum[b] = r.sum;
        if (body.form == activation_form::int8_planes)
          quantizer.planes(qb, n, w.planes + b * 8 * z.plane_stride, z.plane_stride);
        else if (body.form == activation_form::int8_tables)
          body.int_tables(qb, z.int_groups, w.itables + b * z.ldit);
      }
      if (body.form == activation_form::signs) {
        w.row_scale[b] = quantize::binary_scale(ab, n);
        quantizer.signs(ab, n, w.planes + b * z.plane_stride, z.plane_stride);
      }
    }
    return overflow;
  }

  // Ends a prepare once every batch row is prepared: the body to run, chosen by the batch
  // and by whether any row overflowed (the or of prepare_rows' results).
  void commit_rows(bool overflow) noexcept {
    const detail::kernel_body& body = *pending_.body;
    const bool batched = body.batched_rows != nullptr && args_.batch >= body.batched_from;
    rows_fn_ = batched ? body.batched_rows : body.rows;
    body_name_ = batched ? body.batched_name : body.name;
    if (overflow && body.signed_rows) {
      rows_fn_ = body.signed_rows;
      body_name_ = body.signed_name;
    }
  }

  detail::aligned_buffer scratch_;  // g as float, then a, then tables
  kernels::detail::gemm_args args_;
  kernels::detail::rows_fn rows_fn_ = nullptr;
  post_norm norm_{};
  kernel kernel_ = kernel::reference;
  const char* body_name_ = "";
  isa path_ = isa::portable;
  std::size_t row_block_ = 1;
  pending_rows pending_{};
};

namespace detail {

// The 1-bit layers a prepared_gemm runs: linear, linear_view (of any Word) and packed_linear.
template <class Layer>
struct is_onebit_layer : std::false_type {};
template <class Word>
struct is_onebit_layer<linear<Word>> : std::true_type {};
template <class Word>
struct is_onebit_layer<linear_view<Word>> : std::true_type {};
template <>
struct is_onebit_layer<packed_linear> : std::true_type {};

template <class Word>
const linear_view<Word>& view_of(const linear_view<Word>& layer) noexcept { return layer; }
template <class Word>
linear_view<Word> view_of(const linear<Word>& layer) { return layer.view(); }

template <class Layer, class T>
using if_onebit_product =
    std::enable_if_t<is_onebit_layer<Layer>::value && is_activation<T>, int>;

}  // namespace detail

namespace detail {

// A packed layer runs the kernel and path it was packed for.
inline void check_packed_options(const packed_linear& layer, const gemm_options& options) {
  const bool other_kernel = options.k != kernel::automatic && options.k != layer.packed_kernel();
  if (other_kernel || (options.path && *options.path != layer.path()))
    throw std::invalid_argument(std::string("onebit::prepare: a layer packed for ") +
                                to_string(layer.packed_kernel()) + " on " +
                                to_string(layer.path()) + " cannot run " +
                                (other_kernel ? to_string(options.k) : to_string(*options.path)));
}

}  // namespace detail

// Prepare a product once; run its rows with run_rows / run. A packed layer runs the kernel and
// path it was packed for: options that ask for another throw std::invalid_argument.
template <class Layer, class T, detail::if_onebit_product<Layer, T> = 0>
prepared_gemm prepare(const Layer& layer, const T* x, std::size_t batch, std::size_t ldx,
                      float* y, std::size_t ldy, const gemm_options& options = {}) {
  prepared_gemm p;
  if constexpr (std::is_same_v<Layer, packed_linear>) {
    detail::check_packed_options(layer, options);
    p.prepare(layer, x, batch, ldx, y, ldy);
  } else {
    p.prepare(layer, x, batch, ldx, y, ldy, options);
  }
  return p;
}

namespace detail {

// Prompt-sized batches run in slices of this many batch rows, each prepared into the same
// prepared_gemm and run before the next: the activations and tables of a slice (3.3 MB for lut
// at in = 4096) are used while they are still in cache, where a whole prompt's (27 MB at batch
// 512) would be read back from memory. Every batch row's result is the same in any batch, so
// the bits do not change (4096x4096, one thread, lut at batch 512: 365 -> 435 Gweights/s).
inline constexpr std::size_t batch_slice = 64;

// Runs f(b0, rows) over the slices of a batch (once, with rows = 0, for an empty batch, so that
// the call still checks its arguments).
template <class F>
void for_batch_slices(std::size_t batch, F&& f) {
  std::size_t b0 = 0;
  do {
    const std::size_t rows = batch - b0 < batch_slice ? batch - b0 : batch_slice;
    f(b0, rows);
    b0 += rows;
  } while (b0 < batch);
}

// p.prepare for any 1-bit layer (a packed one takes no options: prepare() checked them).
template <class Layer, class T>
void prepare_into(prepared_gemm& p, const Layer& layer, const T* x, std::size_t batch,
                  std::size_t ldx, float* y, std::size_t ldy, const gemm_options& options) {
  if constexpr (std::is_same_v<Layer, packed_linear>)
    p.prepare(layer, x, batch, ldx, y, ldy);
  else
    p.prepare(layer, x, batch, ldx, y, ldy, options);
}

}  // namespace detail

// Y[b*ldy + j] = h_j * sum_i X[b*ldx + i] * g_i * W(j, i), b < batch, j < out: prepare + every
// row, on this thread (parallel.hpp splits the rows over threads), in slices of batch rows.
template <class Layer, class T, detail::if_onebit_product<Layer, T> = 0>
void gemm(const Layer& layer, const T* x, std::size_t batch, std::size_t ldx, float* y,
          std::size_t ldy, const gemm_options& options = {}) {
  // Checked here too, so that a bad call names the function the caller called.
  if constexpr (std::is_same_v<Layer, packed_linear>)
    detail::check_gemm("gemm", detail::packed_access::bits(layer), x, batch, ldx, y, ldy);
  else
    detail::check_gemm("gemm", detail::bits_of(detail::view_of(layer)), x, batch, ldx, y, ldy);
  prepared_gemm p;
  detail::for_batch_slices(batch, [&](std::size_t b0, std::size_t rows) {
    if (b0 == 0)
      p = prepare(layer, x, rows, ldx, y, ldy, options);  // checks the options too
    else
      detail::prepare_into(p, layer, x + b0 * ldx, rows, ldx, y + b0 * ldy, ldy, options);
    p.run();
  });
}
template <class Layer, class T, detail::if_onebit_product<Layer, T> = 0>
void gemm(const Layer& layer, const T* x, std::size_t batch, std::size_t ldx, float* y,
          std::size_t ldy, kernel k) {
  gemm(layer, x, batch, ldx, y, ldy, gemm_options{k, std::nullopt});
}

// One row: y = ((x ⊙ g) · Wᵀ) ⊙ h.
template <class Layer, class T, detail::if_onebit_product<Layer, T> = 0>
void gemv(const Layer& layer, const T* x, float* y, const gemm_options& options = {}) {
  gemm(layer, x, 1, layer.in_features(), y, layer.out_features(), options);
}
template <class Layer, class T, detail::if_onebit_product<Layer, T> = 0>
void gemv(const Layer& layer, const T* x, float* y, kernel k) {
  gemv(layer, x, y, gemm_options{k, std::nullopt});
}

// W re-laid out once for kernel `k` on the path `options.path` (or ONEBIT_ISA, or the best this
// CPU has); see packed_linear.hpp. Throws std::invalid_argument on a bad layer or path.
template <class Word>
packed_linear pack(const linear_view<Word>& layer, const gemm_options& options) {
  const detail::layer_bits bits = detail::bits_of(layer);
  detail::check_layer("pack", bits);
  return detail::packed_access::pack(layer, options.k, resolve_isa(options.path));
}
template <class Word>
packed_linear pack(const linear_view<Word>& layer, kernel k = kernel::automatic) {
  return pack(layer, gemm_options{k, std::nullopt});
}
template <class Word, class Options = kernel>
packed_linear pack(const linear<Word>& layer, Options k_or_options = kernel::automatic) {
  return pack(layer.view(), k_or_options);
}

}  // namespace onebit
