// Eigen overloads of the core's products, for research code: Y = X·Ŵᵀ with X and Y as
// row_major_matrix. Separate from matrix.hpp so that the quantisers do not compile the kernels.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

#include <Eigen/Core>

#include "../lowbit_linear.hpp"
#include "matrix.hpp"

namespace onebit {

// Y = X·Ŵᵀ for X batch x in (any outer stride); the result is batch x out.
inline row_major_matrix gemm(const lowbit_linear& layer,
                             const Eigen::Ref<const row_major_matrix>& x) {
  if (static_cast<std::size_t>(x.cols()) != layer.in_features())
    throw std::invalid_argument("onebit::gemm: x has " + std::to_string(x.cols()) +
                                " columns for a " +
                                detail::shape_string(layer.out_features(), layer.in_features()) +
                                " (out x in) low-bit layer");
  row_major_matrix y(x.rows(), static_cast<Eigen::Index>(layer.out_features()));
  if (x.rows() == 0) return y;
  gemm(layer, x.data(), static_cast<std::size_t>(x.rows()),
       static_cast<std::size_t>(x.outerStride()), y.data(), layer.out_features());
  return y;
}

}  // namespace onebit
