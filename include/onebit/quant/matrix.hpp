// The research API's Eigen side: the row-major float matrix its Eigen overloads take and
// return, and a low-bit matrix as one (the core's types know nothing of Eigen, so that an
// engine including the core never compiles it).
#pragma once

#include <Eigen/Core>

#include "../lowbit_matrix.hpp"
#include "../sign_matrix.hpp"

namespace onebit {

using row_major_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Ŵ(r, c) = s·(q − z) of every code, rows x cols.
inline row_major_matrix dequantized(const lowbit_matrix& m) {
  row_major_matrix d(static_cast<Eigen::Index>(m.rows()), static_cast<Eigen::Index>(m.cols()));
  m.dequantize(d.data(), m.cols());
  return d;
}

}  // namespace onebit
