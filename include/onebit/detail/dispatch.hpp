// The dispatcher: the one place that knows which body runs a kernel on each instruction-set
// path and layout. Everything else asks it with a (kernel, path, layout) triple.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "../cpu.hpp"
#include "aligned_buffer.hpp"
#include "../kernel.hpp"
#include "../sign_matrix.hpp"
#include "../kernels/add_only.hpp"
#include "../kernels/detail/add_only_avx2.hpp"
#include "../kernels/detail/add_only_avx512.hpp"
#include "../kernels/detail/gemm_args.hpp"
#include "../kernels/detail/lut_avx512.hpp"
#include "../kernels/detail/lut_batched_avx512.hpp"
#include "../kernels/detail/popcount_neon.hpp"
#include "../kernels/detail/popcount_x86.hpp"
#include "../kernels/detail/quantize_avx2.hpp"
#include "../kernels/detail/quantize_avx512.hpp"
#include "../kernels/layout.hpp"
#include "../kernels/lut.hpp"
#include "../kernels/popcount.hpp"
#include "../kernels/reference.hpp"

namespace onebit::detail {

using kernels::packed_format;

// What the prepare step computes for a body.
enum class activation_form {
  floats,       // a = x ⊙ g (and float tables)
  int8_planes,  // int8 q, its 8 bit-planes
  int8_tables,  // int8 q, integer tables of partial sums
  int8_bytes,   // int8 q only
  signs,        // one plane of sign bits, β
};

using hadamard_fn = void (*)(const float* x, const float* g, std::size_t n, float* a) noexcept;
using int_tables_fn = void (*)(const std::int8_t* q, std::size_t groups, void* tables) noexcept;
using quantize_fn = kernels::quantize::int8_row (*)(const float* a, std::size_t n,
                                                    std::int8_t* q) noexcept;
using planes_fn = void (*)(const std::int8_t* q, std::size_t n, unsigned char* planes,
                           std::size_t plane_stride) noexcept;
using signs_fn = void (*)(const float* a, std::size_t n, unsigned char* plane,
                          std::size_t plane_bytes) noexcept;

// The activation preparation of a path, a = x ⊙ g and its quantisation (bit-identical on every
// path; kernels/quantize.hpp).
struct quantizers {
  hadamard_fn hadamard = &kernels::quantize::hadamard;
  quantize_fn int8 = &kernels::quantize::int8;
  planes_fn planes = &kernels::quantize::int8_planes;
  signs_fn signs = &kernels::quantize::sign_plane;
};

// One entry of a path's implementation table: everything prepare() and run_rows() need to
// know about the body a (kernel, path, layout) runs, so that neither ever switches on a path.
struct kernel_body {
  kernels::detail::rows_fn rows = nullptr;
  kernels::detail::tables_fn tables = nullptr;  // float tables; null: none
  packed_format format = packed_format::standard;  // the layout of W it reads
  // Bodies that compute Σa − 2·Σ_{−1} a need Σa per batch row, and run `signed_rows` (a sum of
  // ±a) instead when some Σ|a| is not below 2^125: there Σa − 2·Σ_{−1} a could overflow or
  // give inf − inf where the exact sum is finite or ±inf.
  kernels::detail::rows_fn signed_rows = nullptr;
  activation_form form = activation_form::floats;
  int_tables_fn int_tables = nullptr;  // integer tables; null: none
  unsigned table_bits = 0;             // signs per integer table lookup
  std::size_t row_block = 1;           // rows it computes together: split ranges on multiples
  quantizers quantize;                 // the activation quantisation of the path
  kernel ran = kernel::reference;      // whose body this is (vnni_int8 may run popcount_int8's)
  isa body_path = isa::portable;       // whose instructions it runs (sse41 add_only: portable's)
  const char* name = "";               // the body, as its namespace and function
  const char* signed_name = "";        // the same for signed_rows
  // A body that reuses each weight it loads across batch rows, run instead of `rows` for a
  // batch of at least `batched_from` rows (the crossover measured on the development machine;
  // below it the batch-1 body is faster). Null: none. It reads the same layout and prepared
  // activations as `rows` and gives the same bits (integer kernels) or keeps the same bound.
  kernels::detail::rows_fn batched_rows = nullptr;
  std::size_t batched_from = 0;
  const char* batched_name = "";
  // Where another kernel's body gives the same bits faster for batches of at least
  // `other_from` rows, that kernel (read from the standard layout); automatic: none.
  kernel other_for_batches = kernel::automatic;
  std::size_t other_from = 0;
};

// The sizes, in elements or bytes as named, of what prepare() computes for a body on n inputs.
struct prepare_sizes {
  std::size_t lda = 0;             // floats per batch row of a (and its zero padding)
  std::size_t groups = 0;          // float tables per batch row
  std::size_t ldt = 0;             // floats per batch row of float tables
  std::size_t plane_stride = 0;    // bytes per bit-plane (W's standard row stride)
  std::size_t planes_per_row = 0;  // bit-planes per batch row
  std::size_t int_groups = 0;      // integer tables per batch row
  std::size_t ldq = 0;             // bytes per batch row of int8 activations
  std::size_t ldit = 0;            // bytes per batch row of integer tables
};

constexpr bool is_int8(activation_form f) noexcept {
  return f == activation_form::int8_planes || f == activation_form::int8_tables ||
         f == activation_form::int8_bytes;
}

inline prepare_sizes sizes_for(const kernel_body& body, std::size_t n) noexcept {
  namespace add_only = kernels::add_only;
  prepare_sizes z;
  const bool floats = body.form == activation_form::floats;
  z.lda = floats ? add_only::padded_cols(body.format, n) : round_up(n, 16);
  z.groups = body.tables ? add_only::table_groups(body.format, n) : 0;
  z.ldt = round_up(z.groups << add_only::table_bits(body.format), 16);
  z.plane_stride = sign_row_stride_bytes(n);
  z.planes_per_row = body.form == activation_form::int8_planes ? 8
                     : body.form == activation_form::signs    ? 1
                                                              : 0;
  z.int_groups = body.form != activation_form::int8_tables ? 0
                 : body.table_bits == 8                    ? (n + 7) / 8
                                                           : kernels::lut::chunks(n) * 3;
  // q is padded with zeros to cover every table group, so the tables never read past it.
  z.ldq = is_int8(body.form) ? round_up(std::max(n, z.int_groups * body.table_bits), 64) : 0;
  z.ldit = round_up((z.int_groups << body.table_bits) * 2, 64);
  return z;
}

// `automatic` is the fastest exact kernel.
constexpr kernel concrete(kernel k) noexcept { return k == kernel::automatic ? kernel::add_only : k; }

constexpr bool is_avx512(isa path) noexcept {
  return path == isa::avx512 || path == isa::avx512_icl;
}

// The layout pack() writes for a kernel on a path.
inline packed_format packed_format_for(kernel k, isa path) noexcept {
  switch (concrete(k)) {
    case kernel::add_only:
      if (is_avx512(path)) return packed_format::index5_rows16;
      if (path == isa::avx2) return packed_format::index3_rows8;
      return packed_format::standard;
    case kernel::lut:
      return is_avx512(path) ? packed_format::lut5_rows32 : packed_format::standard;
    default:
      return packed_format::standard;  // popcount reads the standard layout best
  }
}

// The builders of the tables, one per kernel: each knows the paths it has bodies for and takes
// the nearest one on the fallback chain of cpu.hpp for the others. They run once per process
// (select_body caches what they give).

constexpr bool x86_path(isa path) noexcept {
  return ONEBIT_X86 != 0 && path != isa::neon && path != isa::portable;
}

inline quantizers quantizers_for(isa path) noexcept {
  const isa body = nearest_with(path, [](isa p) {
    return ONEBIT_X86 != 0 && (p == isa::avx512 || p == isa::avx2);
  });
#if ONEBIT_X86
  namespace q = kernels::quantize;
  if (body == isa::avx512)
    return {&q::avx512::hadamard, &q::avx512::int8, &q::avx512::int8_planes,
            &q::avx512::sign_plane};
  if (body == isa::avx2)
    return {&q::avx2::hadamard, &q::avx2::int8, &q::avx2::int8_planes, &q::avx2::sign_plane};
#endif
  (void)body;
  return {};
}

inline kernel_body add_only_body(isa path, packed_format format) noexcept {
  namespace add_only = kernels::add_only;
  // sse41 and neon run the portable 8-sign tables (add_only.hpp says why).
  const isa at = nearest_with(path, [](isa p) {
    return p == isa::portable || (ONEBIT_X86 != 0 && (p == isa::avx2 || p == isa::avx512));
  });
  kernel_body body;
  body.format = format;
  body.ran = kernel::add_only;
  body.body_path = at;
#if ONEBIT_X86
  if (at == isa::avx512) {
    if (format == packed_format::index5_rows16) {
      body.rows = &add_only::avx512::packed_rows;
      body.tables = &add_only::avx512::tables5;
      body.name = "add_only::avx512::packed_rows";
    } else {
      body.rows = &add_only::avx512::plain_rows;
      body.signed_rows = &add_only::avx512::plain_rows_signed;
      body.name = "add_only::avx512::plain_rows";
      body.signed_name = "add_only::avx512::plain_rows_signed";
    }
    return body;
  }
  if (at == isa::avx2) {
    if (format == packed_format::index3_rows8) {
      body.rows = &add_only::avx2::packed_rows;
      body.tables = &add_only::avx2::tables3;
      body.name = "add_only::avx2::packed_rows";
    } else {
      body.rows = &add_only::avx2::plain_rows;
      body.name = "add_only::avx2::plain_rows";
    }
    return body;
  }
#endif
  body.rows = &add_only::portable::byte_table_rows;
  body.tables = &add_only::portable::byte_tables;
  body.name = "add_only::portable::byte_table_rows";
  return body;
}

// Every path has popcount bodies of its own.
inline kernel_body popcount_body(bool binary, isa path, packed_format format) noexcept {
  namespace pc = kernels::popcount;
  kernel_body body;
  body.format = format;
  body.form = binary ? activation_form::signs : activation_form::int8_planes;
  body.ran = binary ? kernel::popcount_binary : kernel::popcount_int8;
  body.body_path = path;
#define ONEBIT_DETAIL_POPCOUNT(NS)                                                      \
  body.rows = binary ? &pc::NS::binary_rows : &pc::NS::int8_rows;                       \
  body.name = binary ? "popcount::" #NS "::binary_rows" : "popcount::" #NS "::int8_rows"; \
  return body;
  switch (path) {
#if ONEBIT_X86
    case isa::avx512_icl:
      // From batch 2 the VNNI tiles reuse each expanded row across batch rows, where the
      // bit-serial body runs each batch row alone (4096x4096, one thread: 223 against 184
      // Gweights/s at batch 2, 225 against 180 at 64): the same integer sums, so the same bits.
      if (!binary && format == packed_format::standard) {
        body.other_for_batches = kernel::vnni_int8;
        body.other_from = 2;
      }
      ONEBIT_DETAIL_POPCOUNT(avx512_icl)
    case isa::avx512: ONEBIT_DETAIL_POPCOUNT(avx512)
    case isa::avx2: ONEBIT_DETAIL_POPCOUNT(avx2)
    case isa::sse41: ONEBIT_DETAIL_POPCOUNT(sse41)
#endif
#if ONEBIT_ARM64
    case isa::neon: ONEBIT_DETAIL_POPCOUNT(neon)
#endif
    default: break;
  }
  body.body_path = isa::portable;
  ONEBIT_DETAIL_POPCOUNT(portable)
#undef ONEBIT_DETAIL_POPCOUNT
}

// lut reads its own layout (lut5_rows32) only on AVX-512. On the standard layout its one body
// is the portable byte tables, which every SIMD path's popcount_int8 body beats (4096x4096,
// batch 1, one thread: sse41 0.67 against 1.09 ms, avx2 0.47 against 0.95, avx512_icl about
// 0.1 against 0.8): there lut runs popcount_int8's body (the same integer sums, so the same
// bits) and reports it. On the portable path the tables win (1.0 against 4.4 ms) and stay.
inline kernel_body lut_body(isa path, packed_format format) noexcept {
  if (format != packed_format::lut5_rows32 && path != isa::portable)
    return popcount_body(false, path, format);
  kernel_body body;
  body.format = format;
  body.form = activation_form::int8_tables;
  body.ran = kernel::lut;
#if ONEBIT_X86
  if (is_avx512(path) && format == packed_format::lut5_rows32) {
    body.rows = &kernels::lut::avx512::packed_rows;
    body.int_tables = &kernels::lut::avx512::tables5;
    body.table_bits = 5;
    body.body_path = isa::avx512;
    body.name = "lut::avx512::packed_rows";
    body.batched_rows = &kernels::lut::avx512_batched::packed_rows;
    body.batched_from = kernels::lut::batched_from;
    body.batched_name = "lut::avx512_batched::packed_rows";
    return body;
  }
#endif
  (void)path;
  body.rows = &kernels::lut::portable::byte_table_rows;
  body.int_tables = &kernels::lut::portable::byte_tables;
  body.table_bits = 8;
  body.body_path = isa::portable;
  body.name = "lut::portable::byte_table_rows";
  return body;
}

// vnni_int8 multiplies bits expanded to bytes with vpdpbusd where the path has VNNI, and runs
// popcount_int8's body elsewhere: the same integer sums either way. The table then says
// popcount_int8 ran, which is what prepared_gemm::chosen_kernel() reports.
inline kernel_body vnni_body(isa path, packed_format format) noexcept {
#if ONEBIT_X86
  if (path == isa::avx512_icl) {
    kernel_body body;
    body.format = format;
    body.form = activation_form::int8_bytes;
    body.rows = &kernels::popcount::avx512_icl::vnni_rows;
    body.ran = kernel::vnni_int8;
    body.body_path = path;
    body.name = "popcount::avx512_icl::vnni_rows";
    return body;
  }
#endif
  return popcount_body(false, path, format);
}

// Rows a body computes together: a packed block, or a VNNI tile of 4 rows.
inline std::size_t row_block_of(const kernel_body& body) noexcept {
  switch (body.format) {
    case packed_format::index5_rows16: return 16;
    case packed_format::index3_rows8: return 8;
    case packed_format::lut5_rows32: return kernels::lut::block_rows;
    default: return body.form == activation_form::int8_bytes ? 4 : 1;
  }
}

inline kernel_body make_body(kernel k, isa path, packed_format format) noexcept {
  kernel_body body;
  switch (concrete(k)) {
    case kernel::reference:
      body.rows = &kernels::reference::rows;
      body.format = format;
      body.ran = kernel::reference;
      body.name = "reference::rows";
      break;
    case kernel::popcount_binary: body = popcount_body(true, path, format); break;
    case kernel::popcount_int8: body = popcount_body(false, path, format); break;
    case kernel::vnni_int8: body = vnni_body(path, format); break;
    case kernel::lut: body = lut_body(path, format); break;
    default: body = add_only_body(path, format); break;
  }
  body.row_block = row_block_of(body);
  body.quantize = quantizers_for(path);
  return body;
}

// The body of a kernel on a path that this build and CPU run, reading `format`: standard, or
// the one packed_format_for gave for that kernel and path (anything else reads as standard),
// for a batch of `batch` rows (a body may hand large batches to another kernel's, which gives
// the same bits). Every entry is built on first use, once per process; a call only indexes
// the table.
inline const kernel_body& select_body(kernel k, isa path, packed_format format,
                                      std::size_t batch = 1) noexcept {
  constexpr std::size_t kernel_count = sizeof all_kernels / sizeof all_kernels[0];
  struct all_tables {
    kernel_body at[kernel_count][isa_count][2];  // [kernel][path][packed?]
  };
  static const all_tables tables = [] {
    all_tables t{};
    for (kernel each : all_kernels)
      for (isa p : all_isas) {
        const auto i = static_cast<std::size_t>(each);
        t.at[i][index_of(p)][0] = make_body(each, p, packed_format::standard);
        t.at[i][index_of(p)][1] = make_body(each, p, packed_format_for(each, p));
      }
    return t;
  }();
  const bool packed = format != packed_format::standard && format == packed_format_for(k, path);
  const kernel_body& body = tables.at[static_cast<std::size_t>(k)][index_of(path)][packed ? 1 : 0];
  if (body.other_for_batches != kernel::automatic && batch >= body.other_from)
    return tables.at[static_cast<std::size_t>(body.other_for_batches)][index_of(path)][0];
  return body;
}

}  // namespace onebit::detail
