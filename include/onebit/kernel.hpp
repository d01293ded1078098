// The kernels a product can run on. Every value here runs on every CPU; `automatic` picks the
// fastest exact one. kernels/*.hpp say how each works and how exact it is.
#pragma once

#include <optional>
#include <string_view>

#include "cpu.hpp"

namespace onebit {

enum class kernel {
  automatic,  // the fastest exact path this CPU has (float activations)
  reference,  // scalar oracle: products in float, sums in double, exact to float rounding
  add_only,   // exact: signs choose add or subtract, no multiply in the inner loop
  popcount_binary,  // activations binarised per row (sign, mean |x ⊙ g|): XOR + popcount
  popcount_int8,    // activations quantised to int8 per row: bit-serial AND + popcount
  lut,              // the same int8 activations: table lookup of integer partial sums
  vnni_int8,        // the same int8 activations: bits expanded to bytes, VNNI vpdpbusd
};                  // popcount_int8, lut and vnni_int8 give bit-identical results

inline constexpr kernel all_kernels[] = {kernel::automatic,     kernel::reference,
                                         kernel::add_only,      kernel::popcount_binary,
                                         kernel::popcount_int8, kernel::lut,
                                         kernel::vnni_int8};

// How a product runs: the kernel and, optionally, the instruction-set path forced for this
// call (otherwise ONEBIT_ISA, otherwise the best this CPU has; see cpu.hpp).
struct gemm_options {
  kernel k = kernel::automatic;
  std::optional<isa> path = std::nullopt;
};

inline const char* to_string(kernel k) noexcept {
  switch (k) {
    case kernel::automatic: return "automatic";
    case kernel::reference: return "reference";
    case kernel::add_only: return "add_only";
    case kernel::popcount_binary: return "popcount_binary";
    case kernel::popcount_int8: return "popcount_int8";
    case kernel::lut: return "lut";
    case kernel::vnni_int8: return "vnni_int8";
  }
  return "unknown";
}

inline std::optional<kernel> parse_kernel(std::string_view name) noexcept {
  for (kernel k : all_kernels)
    if (name == to_string(k)) return k;
  return std::nullopt;
}

}  // namespace onebit
