// The dispatcher: the one place that knows which body runs a kernel on each instruction-set
// path and layout. Everything else asks it with a (kernel, path, layout) triple.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../cpu.hpp"
#include "../kernel.hpp"
#include "../kernels/add_only.hpp"
#include "../kernels/detail/add_only_avx2.hpp"
#include "../kernels/detail/add_only_avx512.hpp"
#include "../kernels/detail/gemm_args.hpp"
#include "../kernels/detail/lut_avx512.hpp"
#include "../kernels/detail/popcount_neon.hpp"
#include "../kernels/detail/popcount_x86.hpp"
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

using int_tables_fn = void (*)(const std::int8_t* q, std::size_t groups, void* tables) noexcept;
using quantize_fn = kernels::quantize::int8_row (*)(const float* a, std::size_t n,
                                                    std::int8_t* q) noexcept;
using planes_fn = void (*)(const std::int8_t* q, std::size_t n, unsigned char* planes,
                           std::size_t plane_stride) noexcept;
using signs_fn = void (*)(const float* a, std::size_t n, unsigned char* plane,
                          std::size_t plane_bytes) noexcept;

// The activation quantisation of a path (bit-identical on every path; kernels/quantize.hpp).
struct quantizers {
  quantize_fn int8 = &kernels::quantize::int8;
  planes_fn planes = &kernels::quantize::int8_planes;
  signs_fn signs = &kernels::quantize::sign_plane;
};

inline quantizers quantizers_for(isa path) noexcept {
#if ONEBIT_X86
  if (path == isa::avx512 || path == isa::avx512_icl)
    return {&kernels::quantize::avx512::int8, &kernels::quantize::avx512::int8_planes,
            &kernels::quantize::avx512::sign_plane};
#endif
  (void)path;
  return {};
}

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
};

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

inline kernel_body add_only_body(isa path, packed_format format) noexcept {
  namespace add_only = kernels::add_only;
#if ONEBIT_X86
  if (is_avx512(path)) {
    if (format == packed_format::index5_rows16)
      return {&add_only::avx512::packed_rows, &add_only::avx512::tables5, format};
    return {&add_only::avx512::plain_rows, nullptr, format, &add_only::avx512::plain_rows_signed};
  }
  if (path == isa::avx2) {
    if (format == packed_format::index3_rows8)
      return {&add_only::avx2::packed_rows, &add_only::avx2::tables3, format};
    return {&add_only::avx2::plain_rows, nullptr, format};
  }
#endif
  // sse41, neon and portable run the 8-sign tables (add_only.hpp says why).
  (void)path;
  return {&add_only::portable::byte_table_rows, &add_only::portable::byte_tables, format};
}

inline kernel_body popcount_body(bool binary, isa path, packed_format format) noexcept {
  namespace pc = kernels::popcount;
  kernel_body body;
  body.format = format;
  body.form = binary ? activation_form::signs : activation_form::int8_planes;
  switch (path) {
#if ONEBIT_X86
    case isa::avx512_icl:
      body.rows = binary ? &pc::avx512_icl::binary_rows : &pc::avx512_icl::int8_rows;
      return body;
    case isa::avx512:
      body.rows = binary ? &pc::avx512::binary_rows : &pc::avx512::int8_rows;
      return body;
    case isa::avx2:
      body.rows = binary ? &pc::avx2::binary_rows : &pc::avx2::int8_rows;
      return body;
    case isa::sse41:
      body.rows = binary ? &pc::sse41::binary_rows : &pc::sse41::int8_rows;
      return body;
#endif
#if ONEBIT_ARM64
    case isa::neon:
      body.rows = binary ? &pc::neon::binary_rows : &pc::neon::int8_rows;
      return body;
#endif
    default:
      body.rows = binary ? &pc::portable::binary_rows : &pc::portable::int8_rows;
      return body;
  }
}

inline kernel_body lut_body(isa path, packed_format format) noexcept {
  kernel_body body;
  body.format = format;
  body.form = activation_form::int8_tables;
#if ONEBIT_X86
  if (is_avx512(path) && format == packed_format::lut5_rows32) {
    body.rows = &kernels::lut::avx512::packed_rows;
    body.int_tables = &kernels::lut::avx512::tables5;
    body.table_bits = 5;
    return body;
  }
#endif
  (void)path;
  body.rows = &kernels::lut::portable::byte_table_rows;
  body.int_tables = &kernels::lut::portable::byte_tables;
  body.table_bits = 8;
  return body;
}

// The body of a kernel on a path that this build and CPU run, reading `format` (standard, or
// the one packed_format_for gave for that kernel and path).
// vnni_int8 multiplies bits expanded to bytes with vpdpbusd where the path has VNNI, and runs
// popcount_int8's body elsewhere: the same integer sums either way.
inline kernel_body vnni_body(isa path, packed_format format) noexcept {
#if ONEBIT_X86
  if (path == isa::avx512_icl) {
    kernel_body body;
    body.format = format;
    body.form = activation_form::int8_bytes;
    body.rows = &kernels::popcount::avx512_icl::vnni_rows;
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

inline kernel_body select_body(kernel k, isa path, packed_format format) noexcept {
  kernel_body body;
  switch (concrete(k)) {
    case kernel::reference: body = {&kernels::reference::rows, nullptr, format}; break;
    case kernel::popcount_binary: body = popcount_body(true, path, format); break;
    case kernel::popcount_int8: body = popcount_body(false, path, format); break;
    case kernel::vnni_int8: body = vnni_body(path, format); break;
    case kernel::lut: body = lut_body(path, format); break;
    default: body = add_only_body(path, format); break;
  }
  body.row_block = row_block_of(body);
  return body;
}

}  // namespace onebit::detail
