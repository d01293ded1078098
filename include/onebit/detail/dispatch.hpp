// The dispatcher: the one place that knows which body runs a kernel on each instruction-set
// path. Everything else asks it with a (kernel, path, layout) triple.
#pragma once

#include "../cpu.hpp"
#include "../kernel.hpp"
#include "../kernels/add_only.hpp"
#include "../kernels/detail/add_only_avx2.hpp"
#include "../kernels/detail/add_only_avx512.hpp"
#include "../kernels/detail/gemm_args.hpp"
#include "../kernels/reference.hpp"

namespace onebit::detail {

using kernels::add_only::packed_format;

struct kernel_body {
  kernels::detail::rows_fn rows = nullptr;
  kernels::detail::tables_fn tables = nullptr;  // null: the body reads a directly
  packed_format format = packed_format::standard;  // the layout of W it reads
  // Bodies that compute Σa − 2·Σ_{−1} a need Σa per batch row, and run `signed_rows` (a sum of
  // ±a) instead when some Σ|a| is not below 2^125: there Σa − 2·Σ_{−1} a could overflow or
  // give inf − inf where the exact sum is finite or ±inf.
  kernels::detail::rows_fn signed_rows = nullptr;
};

// `automatic` is the fastest exact kernel.
constexpr kernel concrete(kernel k) noexcept { return k == kernel::automatic ? kernel::add_only : k; }

// The layout pack() writes for a kernel on a path.
inline packed_format packed_format_for(kernel k, isa path) noexcept {
  if (concrete(k) != kernel::add_only) return packed_format::standard;
  switch (path) {
    case isa::avx512: return packed_format::index5_rows16;
    case isa::avx2: return packed_format::index3_rows8;
    default: return packed_format::standard;
  }
}

// The body of a concrete kernel on a path that this build and CPU run, reading `format`
// (standard, or the one packed_format_for gave for that kernel and path).
inline kernel_body select_body(kernel k, isa path, packed_format format) noexcept {
  namespace add_only = kernels::add_only;
  if (concrete(k) == kernel::reference) return {&kernels::reference::rows, nullptr, format};
  switch (path) {
#if ONEBIT_X86
    case isa::avx512:
      if (format == packed_format::index5_rows16)
        return {&add_only::avx512::packed_rows, &add_only::avx512::tables5, format};
      return {&add_only::avx512::plain_rows, nullptr, format,
              &add_only::avx512::plain_rows_signed};
    case isa::avx2:
      if (format == packed_format::index3_rows8)
        return {&add_only::avx2::packed_rows, &add_only::avx2::tables3, format};
      return {&add_only::avx2::plain_rows, nullptr, format};
#endif
    // sse41, neon and portable run the 8-sign tables (add_only.hpp says why).
    default:
      return {&add_only::portable::byte_table_rows, &add_only::portable::byte_tables, format};
  }
}

}  // namespace onebit::detail
