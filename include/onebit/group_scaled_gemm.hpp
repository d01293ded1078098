// Products with a group-scaled 1-bit layer (group_scaled_linear.hpp):
//
//   Y[b*ldy + j] = Σ_g d_jg · Σ_{i in g} X[b*ldx + i]·s_ji,   b < batch, j < out
//
// with the engine API of gemm.hpp: prepare() checks the arguments, picks the body and prepares
// the activations (float tables, or int8 q and its integer tables) once; run_rows(begin, end)
// computes any row range on any thread; gemm = prepare + run, gemv = one row; pack() re-lays
// the layer out once for a kernel and path; the parallel gemm of parallel.hpp runs it as any
// prepared product (rows(), row_block(), run_rows()).
//
// Kernels (kernels/group_scaled.hpp says how and how exact): automatic and add_only run the
// exact float body; lut runs the int8 body (popcount_int8 and vnni_int8 run the same body and
// report lut: the same integer sums, so the same bits); reference is the scalar oracle;
// popcount_binary is refused (it binarises a whole row's activations and has no group form).
// Bodies: avx512 and avx512_icl run AVX-512 float (plain layout, G a multiple of 16) and lut
// (packed layout) bodies; every path runs the 8-sign table bodies, compiled for its own
// instruction set (portable, sse41, avx2, neon; and avx512 where the fast body does not apply).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cpu.hpp"
#include "detail/aligned_buffer.hpp"
#include "detail/dispatch.hpp"
#include "gemm.hpp"
#include "group_scaled_linear.hpp"
#include "half.hpp"
#include "kernel.hpp"
#include "kernels/add_only.hpp"
#include "kernels/detail/group_scaled_avx512.hpp"
#include "kernels/detail/lut_avx512.hpp"
#include "kernels/group_scaled.hpp"
#include "kernels/lut.hpp"
#include "kernels/quantize.hpp"

namespace onebit {

class prepared_group_gemm;
namespace detail {
struct group_pack_access;  // pack() below: the one writer of a packed_group_scaled
}
namespace detail {
struct group_pack_access;  // pack() below: the one writer of a packed_group_scaled
}

// A group-scaled layer re-laid out once for one kernel on one path (pack() below): for lut on
// avx512 and avx512_icl the packed lut layout of kernels/group_scaled.hpp, elsewhere the plain
// signs and scales, copied. Immutable: any number of threads may run it at once.
class packed_group_scaled {
 public:
  packed_group_scaled() = default;

  std::size_t in_features() const noexcept { return cols_; }
  std::size_t out_features() const noexcept { return rows_; }
  std::size_t group_size() const noexcept { return group_; }
  kernel packed_kernel() const noexcept { return kernel_; }
  isa path() const noexcept { return path_; }
  // The block layout of kernels/group_scaled.hpp (lut: 32-row blocks; add_only: 16-row
  // blocks), else the plain one.
  bool packed() const noexcept { return packed_; }
  bool empty() const noexcept { return rows_ == 0; }

 private:
  friend class prepared_group_gemm;
  friend struct detail::group_pack_access;
  template <class>
  friend packed_group_scaled pack_group_scaled(const group_scaled_linear&, const gemm_options&);

  std::size_t rows_ = 0, cols_ = 0, group_ = 0, groups_ = 0, stride_ = 0;
  kernel kernel_ = kernel::add_only;
  isa path_ = isa::portable;
  bool packed_ = false;
  detail::aligned_buffer signs_, scales_;
};

namespace detail {

enum class group_form { reference, floats, float_tables, float_packed, int8_tables, int8_packed };

struct group_body {
  kernels::group_scaled::rows_fn rows = nullptr;
  group_form form = group_form::reference;
  kernel ran = kernel::reference;
  const char* name = "";
  std::size_t row_block = 1;
};

constexpr bool is_int8_kernel(kernel k) noexcept {
  return k == kernel::lut || k == kernel::popcount_int8 || k == kernel::vnni_int8;
}

// Whether pack() lays a layer out in blocks for this kernel and path (the lut blocks for the
// int8 kernels, the float ones for add_only).
constexpr bool group_packs(kernel k, isa path) noexcept {
  return ONEBIT_X86 != 0 && is_avx512(path) &&
         (is_int8_kernel(concrete(k)) || concrete(k) == kernel::add_only);
}

inline group_body group_body_for(kernel k, isa path, bool packed, std::size_t group) noexcept {
  namespace gs = kernels::group_scaled;
  group_body body;
  k = concrete(k);
  if (k == kernel::reference) {
    body.rows = &gs::reference_rows;
    body.name = "group_scaled::reference_rows";
    return body;
  }
  const bool int8 = is_int8_kernel(k);
  body.ran = int8 ? kernel::lut : kernel::add_only;
  body.form = int8 ? group_form::int8_tables : group_form::float_tables;
#define ONEBIT_DETAIL_GROUP_TABLES(NS)                                                  \
  body.rows = int8 ? &gs::NS::int8_rows : &gs::NS::float_rows;                          \
  body.name = int8 ? "group_scaled::" #NS "::int8_rows" : "group_scaled::" #NS "::float_rows"; \
  return body;
#if ONEBIT_X86
  if (is_avx512(path)) {
    if (int8 && packed) {
      body.rows = &gs::avx512::lut_rows;
      body.form = group_form::int8_packed;
      body.name = "group_scaled::avx512::lut_rows";
      body.row_block = gs::block_rows;
      return body;
    }
    if (!int8 && packed) {
      body.rows = &gs::avx512::float_packed_rows;
      body.form = group_form::float_packed;
      body.name = "group_scaled::avx512::float_packed_rows";
      body.row_block = gs::float_geometry.rows;
      return body;
    }
    if (!int8 && group % 16 == 0) {
      body.rows = &gs::avx512::float_rows;
      body.form = group_form::floats;
      body.name = "group_scaled::avx512::float_rows";
      body.row_block = 4;
      return body;
    }
  }
  if (path == isa::avx2 || is_avx512(path)) { ONEBIT_DETAIL_GROUP_TABLES(avx2) }
  if (path == isa::sse41) { ONEBIT_DETAIL_GROUP_TABLES(sse41) }
#endif
#if ONEBIT_ARM64
  if (path == isa::neon) { ONEBIT_DETAIL_GROUP_TABLES(neon) }
#endif
  (void)path;
  (void)packed;
  (void)group;
  ONEBIT_DETAIL_GROUP_TABLES(portable)
#undef ONEBIT_DETAIL_GROUP_TABLES
}

inline void check_group_kernel(const char* function, kernel k) {
  if (k == kernel::popcount_binary)
    throw std::invalid_argument(std::string("onebit::") + function +
                                ": a group-scaled layer does not run popcount_binary (it "
                                "binarises a whole row; use lut, add_only or reference)");
}

struct group_pack_access {
static packed_group_scaled pack(const group_scaled_linear& layer, const gemm_options& options) {
  if (layer.empty())
    throw std::invalid_argument("onebit::pack: empty group-scaled layer");
  detail::check_group_kernel("pack", options.k);
  packed_group_scaled p;
  p.rows_ = layer.out_features();
  p.cols_ = layer.in_features();
  p.group_ = layer.group_size();
  p.groups_ = layer.groups_per_row();
  p.kernel_ = detail::concrete(options.k);
  p.path_ = resolve_isa(options.path);
  p.packed_ = detail::group_packs(p.kernel_, p.path_);
  const auto* w = reinterpret_cast<const unsigned char*>(layer.signs().data());
  const std::size_t stride = layer.signs().stride_bytes();
  if (p.packed_) {
    namespace gs = kernels::group_scaled;
    const gs::block_geometry geo =
        detail::is_int8_kernel(p.kernel_) ? gs::lut_geometry : gs::float_geometry;
    const std::size_t blocks = (p.rows_ + geo.rows - 1) / geo.rows;
    p.stride_ = gs::block_bytes(p.group_, p.groups_, geo.per_word);
    p.signs_ = detail::aligned_buffer(blocks * p.stride_);
    gs::pack_blocks(w, stride, p.rows_, p.cols_, p.group_,
                    reinterpret_cast<unsigned char*>(p.signs_.data()), geo);
    p.scales_ = detail::aligned_buffer(blocks * p.groups_ * geo.rows * sizeof(half));
    gs::pack_scales(layer.scales().data(), p.rows_, p.groups_,
                    reinterpret_cast<half*>(p.scales_.data()), geo.rows);
  } else {
    p.stride_ = stride;
    p.signs_ = detail::aligned_buffer(p.rows_ * stride);
    std::memcpy(p.signs_.data(), w, p.rows_ * stride);
    p.scales_ = detail::aligned_buffer(layer.scales().size() * sizeof(half));
    std::memcpy(p.scales_.data(), layer.scales().data(), layer.scales().size() * sizeof(half));
  }
  return p;
}
};

}  // namespace detail

// One product with a group-scaled layer, prepared. run_rows is const, noexcept and
// allocation-free: ranges may run on any threads at once. Keep the layer and y alive.
class prepared_group_gemm {
 public:
  prepared_group_gemm() = default;
  prepared_group_gemm(const prepared_group_gemm&) = delete;
  prepared_group_gemm& operator=(const prepared_group_gemm&) = delete;
  prepared_group_gemm(prepared_group_gemm&&) noexcept = default;
  prepared_group_gemm& operator=(prepared_group_gemm&&) noexcept = default;

  template <class T>
  void prepare(const group_scaled_linear& layer, const T* x, std::size_t batch, std::size_t ldx,
               float* y, std::size_t ldy, const gemm_options& options = {}) {
    check(layer.empty(), layer.out_features(), layer.in_features(), x, batch, ldx, y, ldy);
    detail::check_group_kernel("prepare", options.k);
    const isa path = resolve_isa(options.path);
    kernels::group_scaled::args g;
    g.w = reinterpret_cast<const unsigned char*>(layer.signs().data());
    g.w_stride = layer.signs().stride_bytes();
    g.d = layer.scales().data();
    prepare_checked(g, layer.out_features(), layer.in_features(), layer.group_size(),
                    layer.groups_per_row(), options.k, path, false, x, batch, ldx, y, ldy);
  }
  template <class T>
  void prepare(const packed_group_scaled& layer, const T* x, std::size_t batch, std::size_t ldx,
               float* y, std::size_t ldy) {
    check(layer.empty(), layer.rows_, layer.cols_, x, batch, ldx, y, ldy);
    detail::require_supported(layer.path_, "a packed layer");
    kernels::group_scaled::args g;
    g.w = reinterpret_cast<const unsigned char*>(layer.signs_.data());
    g.w_stride = layer.stride_;
    g.d = reinterpret_cast<const half*>(layer.scales_.data());
    prepare_checked(g, layer.rows_, layer.cols_, layer.group_, layer.groups_, layer.kernel_,
                    layer.path_, layer.packed_, x, batch, ldx, y, ldy);
  }

  std::size_t rows() const noexcept { return args_.rows; }
  std::size_t batch() const noexcept { return args_.batch; }
  kernel chosen_kernel() const noexcept { return kernel_; }
  const char* body_name() const noexcept { return body_name_; }
  std::size_t row_block() const noexcept { return row_block_; }
  isa path() const noexcept { return path_; }

  void run_rows(std::size_t row_begin, std::size_t row_end) const noexcept {
    if (row_end > args_.rows) row_end = args_.rows;
    if (row_begin >= row_end || rows_fn_ == nullptr || args_.batch == 0) return;
    rows_fn_(args_, row_begin, row_end);
  }
  void run() const noexcept { run_rows(0, rows()); }

 private:
  template <class T>
  static void check(bool empty, std::size_t out, std::size_t in, const T* x, std::size_t batch,
                    std::size_t ldx, const float* y, std::size_t ldy) {
    static_assert(detail::is_activation<T>, "onebit::prepare: activations are float or half");
    const std::string where = "onebit::group-scaled gemm: for a " +
                              detail::shape_string(out, in) + " (out x in) layer and batch " +
                              std::to_string(batch) + ", ";
    if (empty) throw std::invalid_argument("onebit::group-scaled gemm: empty layer");
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

  template <class T>
  void prepare_checked(kernels::group_scaled::args g, std::size_t out, std::size_t in,
                       std::size_t group, std::size_t groups, kernel k, isa path, bool packed,
                       const T* x, std::size_t batch, std::size_t ldx, float* y,
                       std::size_t ldy) {
    namespace gs = kernels::group_scaled;
    using detail::group_form;
    const detail::group_body body = detail::group_body_for(k, path, packed, group);
    const std::size_t bytes = (in + 7) / 8;
    const std::size_t lda = detail::round_up(in, 64);
    const bool float_tables = body.form == group_form::float_tables;
    const bool float_packed = body.form == group_form::float_packed;
    const bool int8 = body.form == group_form::int8_tables || body.form == group_form::int8_packed;
    const std::size_t subgroups = groups * gs::subgroups(group);
    const std::size_t ldt = float_tables ? bytes * 256 : float_packed ? subgroups * 32 : 0;
    const std::size_t ldit = body.form == group_form::int8_tables ? detail::round_up(bytes * 512, 64)
                             : body.form == group_form::int8_packed ? subgroups * 64
                                                                     : 0;
    const std::size_t span = body.form == group_form::int8_packed ? subgroups * 5
                             : float_packed                        ? subgroups * 5 * 4
                                                                   : 0;
    std::size_t offset = 0;
    auto claim = [&offset](std::size_t n) {
      const std::size_t at = offset;
      offset += detail::round_up(n, detail::cache_line);
      return at;
    };
    const std::size_t at_a = claim(batch * lda * 4), at_t = claim(batch * ldt * 4),
                      at_s = claim(batch * 4), at_q = claim(int8 ? lda : 0),
                      at_r = claim(span), at_it = claim(batch * ldit);
    scratch_.reserve(offset);
    std::byte* base = scratch_.data();
    auto* a = reinterpret_cast<float*>(base + at_a);
    auto* tables = reinterpret_cast<float*>(base + at_t);
    auto* row_scale = reinterpret_cast<float*>(base + at_s);
    auto* q = reinterpret_cast<std::int8_t*>(base + at_q);
    auto* regrouped = reinterpret_cast<std::int8_t*>(base + at_r);
    std::byte* itables = base + at_it;
    const detail::quantizers quantizer = detail::quantizers_for(path);
    for (std::size_t b = 0; b < batch; ++b) {
      float* ab = a + b * lda;
      if constexpr (std::is_same_v<T, half>)
        to_float(x + b * ldx, ab, in);
      else
        std::memcpy(ab, x + b * ldx, in * sizeof(float));
      std::memset(ab + in, 0, (lda - in) * sizeof(float));  // padding bits meet a = 0
      if (float_tables) kernels::add_only::portable::byte_tables(ab, bytes, tables + b * ldt);
#if ONEBIT_X86
      if (float_packed) {
        auto* staged = reinterpret_cast<float*>(regrouped);
        gs::regroup(ab, in, group, groups, staged);
        kernels::add_only::avx512::tables5(staged, subgroups, tables + b * ldt);
      }
#endif
      if (int8) {
        const kernels::quantize::int8_row r = quantizer.int8(ab, in, q);
        std::memset(q + in, 0, lda - in);
        row_scale[b] = r.scale;
        if (body.form == group_form::int8_tables) {
          kernels::lut::portable::byte_tables(q, bytes, itables + b * ldit);
        } else {
#if ONEBIT_X86
          gs::regroup(q, in, group, groups, regrouped);
          kernels::lut::avx512::tables5(regrouped, subgroups, itables + b * ldit);
#endif
        }
      }
    }
    (void)regrouped;
    g.rows = out;
    g.cols = in;
    g.group = group;
    g.groups = groups;
    g.batch = batch;
    g.a = a;
    g.lda = lda;
    g.tables = tables;
    g.ldt = ldt;
    g.row_scale = row_scale;
    g.itables = itables;
    g.ldit = ldit;
    g.y = y;
    g.ldy = ldy;
    args_ = g;
    rows_fn_ = body.rows;
    kernel_ = body.ran;
    body_name_ = body.name;
    row_block_ = body.row_block;
    path_ = path;
  }

  detail::aligned_buffer scratch_;
  kernels::group_scaled::args args_;
  kernels::group_scaled::rows_fn rows_fn_ = nullptr;
  kernel kernel_ = kernel::reference;
  const char* body_name_ = "";
  std::size_t row_block_ = 1;
  isa path_ = isa::portable;
};

// prepare / gemm / gemv / pack for group-scaled layers, as gemm.hpp's for 1-bit layers. A
// packed layer runs the kernel and path it was packed for.
template <class T>
prepared_group_gemm prepare(const group_scaled_linear& layer, const T* x, std::size_t batch,
                            std::size_t ldx, float* y, std::size_t ldy,
                            const gemm_options& options = {}) {
  prepared_group_gemm p;
  p.prepare(layer, x, batch, ldx, y, ldy, options);
  return p;
}
template <class T>
prepared_group_gemm prepare(const packed_group_scaled& layer, const T* x, std::size_t batch,
                            std::size_t ldx, float* y, std::size_t ldy,
                            const gemm_options& options = {}) {
  const bool other_kernel = options.k != kernel::automatic && options.k != layer.packed_kernel();
  if (other_kernel || (options.path && *options.path != layer.path()))
    throw std::invalid_argument(std::string("onebit::prepare: a group-scaled layer packed for ") +
                                to_string(layer.packed_kernel()) + " on " +
                                to_string(layer.path()) + " cannot run " +
                                (other_kernel ? to_string(options.k) : to_string(*options.path)));
  prepared_group_gemm p;
  p.prepare(layer, x, batch, ldx, y, ldy);
  return p;
}

template <class Layer, class T,
          std::enable_if_t<std::is_same_v<Layer, group_scaled_linear> ||
                               std::is_same_v<Layer, packed_group_scaled>,
                           int> = 0>
void gemm(const Layer& layer, const T* x, std::size_t batch, std::size_t ldx, float* y,
          std::size_t ldy, const gemm_options& options = {}) {
  prepare(layer, x, batch, ldx, y, ldy, options).run();
}
template <class Layer, class T,
          std::enable_if_t<std::is_same_v<Layer, group_scaled_linear> ||
                               std::is_same_v<Layer, packed_group_scaled>,
                           int> = 0>
void gemv(const Layer& layer, const T* x, float* y, const gemm_options& options = {}) {
  gemm(layer, x, 1, layer.in_features(), y, layer.out_features(), options);
}

template <class Layer, class T,
          std::enable_if_t<std::is_same_v<Layer, group_scaled_linear> ||
                               std::is_same_v<Layer, packed_group_scaled>,
                           int> = 0>
void gemm(const Layer& layer, const T* x, std::size_t batch, std::size_t ldx, float* y,
          std::size_t ldy, kernel k) {
  gemm(layer, x, batch, ldx, y, ldy, gemm_options{k, std::nullopt});
}
template <class Layer, class T,
          std::enable_if_t<std::is_same_v<Layer, group_scaled_linear> ||
                               std::is_same_v<Layer, packed_group_scaled>,
                           int> = 0>
void gemv(const Layer& layer, const T* x, float* y, kernel k) {
  gemv(layer, x, y, gemm_options{k, std::nullopt});
}

inline packed_group_scaled pack(const group_scaled_linear& layer,
                                const gemm_options& options = {}) {
  return detail::group_pack_access::pack(layer, options);
}
inline packed_group_scaled pack(const group_scaled_linear& layer, kernel k) {
  return detail::group_pack_access::pack(layer, gemm_options{k, std::nullopt});
}

}  // namespace onebit
