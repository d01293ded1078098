// A OneBit layer re-laid out once for one kernel on one instruction-set path: W interleaved
// and grouped the way that kernel reads fastest (kernels/add_only.hpp documents each layout),
// g and h copied, the same math. Made by pack() (gemm.hpp) from a linear or linear_view;
// immutable afterwards (but for `norm`, which no kernel reads), so any number of threads may
// run it at once.
#pragma once

#include <cstddef>
#include <vector>

#include "cpu.hpp"
#include "detail/aligned_buffer.hpp"
#include "half.hpp"
#include "kernel.hpp"
#include "kernels/layout.hpp"
#include "linear.hpp"

namespace onebit {

namespace detail {
struct packed_access;  // pack() in gemm.hpp: the one writer of a packed_linear
}

class packed_linear {
 public:
  using format_type = kernels::packed_format;

  packed_linear() = default;

  std::size_t in_features() const noexcept { return cols_; }
  std::size_t out_features() const noexcept { return rows_; }
  kernel packed_kernel() const noexcept { return kernel_; }  // never automatic
  isa path() const noexcept { return path_; }
  format_type format() const noexcept { return format_; }
  bool empty() const noexcept { return rows_ == 0 || cols_ == 0; }

  // The packed signs: `bytes()` in all, blocks (or rows, for the standard layout)
  // `stride_bytes()` apart, each starting on a 64-byte boundary.
  const unsigned char* data() const noexcept {
    return reinterpret_cast<const unsigned char*>(signs_.data());
  }
  std::size_t bytes() const noexcept { return signs_.size(); }
  std::size_t stride_bytes() const noexcept { return stride_; }
  const std::vector<half>& g() const noexcept { return g_; }
  const std::vector<half>& h() const noexcept { return h_; }

  // The layer's post-LayerNorm, kept by pack(). A public member, as in linear and linear_view,
  // so generic code reads `layer.norm` from all three; the packed signs do not depend on it.
  post_norm norm{};

 private:
  friend struct detail::packed_access;

  detail::aligned_buffer signs_;
  std::size_t stride_ = 0, rows_ = 0, cols_ = 0;
  std::vector<half> g_, h_;
  kernel kernel_ = kernel::reference;
  isa path_ = isa::portable;
  format_type format_ = format_type::standard;
};

}  // namespace onebit
