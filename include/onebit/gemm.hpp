// The public products: checks every argument, then runs the chosen kernel.
//
//   Y[b*ldy + j] = h_j * sum_i X[b*ldx + i] * g_i * W(j, i),  b < batch, j < out
//
// T is float or half. Bad input throws std::invalid_argument naming the shapes; the kernels
// behind these entry points never throw and never allocate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "half.hpp"
#include "kernel.hpp"
#include "kernels/reference.hpp"
#include "linear.hpp"

namespace onebit {

namespace detail {

template <class T>
inline constexpr bool is_activation = std::is_same_v<T, float> || std::is_same_v<T, half>;

template <class Word>
void check_layer(const char* function, const linear_view<Word>& layer) {
  const std::string shape = shape_string(layer.out_features(), layer.in_features());
  if (layer.W.empty())
    throw std::invalid_argument(std::string("onebit::") + function + ": zero-size layer " +
                                shape + " (out x in)");
  if (layer.g == nullptr || layer.h == nullptr)
    throw std::invalid_argument(std::string("onebit::") + function + ": " + shape +
                                " layer has a null " + (layer.g == nullptr ? "g" : "h"));
}

// [begin, end) of the bytes a strided batch touches.
template <class T>
bool overlaps(const T* x, std::size_t x_count, const float* y, std::size_t y_count) noexcept {
  const auto xb = reinterpret_cast<std::uintptr_t>(x);
  const auto yb = reinterpret_cast<std::uintptr_t>(y);
  return xb < yb + y_count * sizeof(float) && yb < xb + x_count * sizeof(T);
}

template <class Word, class T>
void check_gemm(const char* function, const linear_view<Word>& layer, const T* x,
                std::size_t batch, std::size_t ldx, const float* y, std::size_t ldy) {
  check_layer(function, layer);
  const std::size_t in = layer.in_features(), out = layer.out_features();
  const std::string where = std::string("onebit::") + function + ": for a " +
                            shape_string(out, in) + " (out x in) layer and batch " +
                            std::to_string(batch) + ", ";
  if (x == nullptr) throw std::invalid_argument(where + "x is null");
  if (y == nullptr) throw std::invalid_argument(where + "y is null");
  if (ldx < in)
    throw std::invalid_argument(where + "ldx " + std::to_string(ldx) + " < in " +
                                std::to_string(in));
  if (ldy < out)
    throw std::invalid_argument(where + "ldy " + std::to_string(ldy) + " < out " +
                                std::to_string(out));
  if (batch != 0 && overlaps(x, (batch - 1) * ldx + in, y, (batch - 1) * ldy + out))
    throw std::invalid_argument(where + "y overlaps x");
}

}  // namespace detail

template <class Word, class T>
void gemm(const linear_view<Word>& layer, const T* x, std::size_t batch, std::size_t ldx,
          float* y, std::size_t ldy, kernel k = kernel::automatic) {
  static_assert(detail::is_activation<T>, "onebit::gemm: activations are float or half");
  detail::check_gemm("gemm", layer, x, batch, ldx, y, ldy);
  switch (k) {
    case kernel::automatic:
    case kernel::reference:
      kernels::reference::gemm_rows(layer.W, layer.g, layer.h, x, batch, ldx, y, ldy, 0,
                                    layer.out_features());
      return;
  }
  throw std::invalid_argument("onebit::gemm: unknown kernel value " +
                              std::to_string(static_cast<int>(k)));
}

template <class Word, class T>
void gemm(const linear<Word>& layer, const T* x, std::size_t batch, std::size_t ldx, float* y,
          std::size_t ldy, kernel k = kernel::automatic) {
  gemm(layer.view(), x, batch, ldx, y, ldy, k);
}

// One row: y = ((x ⊙ g) · Wᵀ) ⊙ h.
template <class Word, class T>
void gemv(const linear_view<Word>& layer, const T* x, float* y, kernel k = kernel::automatic) {
  gemm(layer, x, 1, layer.in_features(), y, layer.out_features(), k);
}
template <class Word, class T>
void gemv(const linear<Word>& layer, const T* x, float* y, kernel k = kernel::automatic) {
  gemv(layer.view(), x, y, k);
}

}  // namespace onebit
