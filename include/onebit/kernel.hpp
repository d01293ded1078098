// The kernels a product can run on. Every value here runs; `automatic` picks the fastest exact
// one this CPU has.
#pragma once

#include <optional>
#include <string_view>

namespace onebit {

enum class kernel {
  automatic,  // the fastest exact path this CPU has (float activations)
  reference,  // scalar oracle: products in float, sums in double, exact to float rounding
};

inline constexpr kernel all_kernels[] = {kernel::automatic, kernel::reference};

inline const char* to_string(kernel k) noexcept {
  switch (k) {
    case kernel::automatic: return "automatic";
    case kernel::reference: return "reference";
  }
  return "unknown";
}

inline std::optional<kernel> parse_kernel(std::string_view name) noexcept {
  for (kernel k : all_kernels)
    if (name == to_string(k)) return k;
  return std::nullopt;
}

}  // namespace onebit
