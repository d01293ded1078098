// What a kernel body receives: the layer's bits, the prepared activations (a = x ⊙ g, padded
// with zeros, per-row sums, tables of partial sums) and where y goes. Plain data, so one
// function-pointer type serves every kernel and instruction set.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../half.hpp"

namespace onebit::kernels::detail {

struct gemm_args {
  const unsigned char* w = nullptr;  // plain: row-major bits; packed: blocks of rows
  std::size_t w_stride = 0;          // plain: bytes per row; packed: bytes per block
  std::size_t rows = 0, cols = 0;    // out, in
  const half* h = nullptr;           // out values
  std::size_t batch = 0;
  const float* a = nullptr;          // batch x lda: x ⊙ g, zero past cols
  std::size_t lda = 0;
  const float* sums = nullptr;       // batch: Σ_i a_i, for bodies that compute Σa − 2·Σ_{−1} a
  const float* tables = nullptr;     // batch x ldt: tables of partial sums of a
  std::size_t ldt = 0;
  float* y = nullptr;                // batch x ldy
  std::size_t ldy = 0;

  // Quantised activations (kernels/quantize.hpp), for the integer kernels.
  const unsigned char* planes = nullptr;  // per batch row: bit-planes in the row layout of W
  std::size_t plane_stride = 0;           // bytes per plane (= W's row stride)
  std::size_t ldp = 0;                    // bytes per batch row of planes
  const unsigned char* valid = nullptr;   // one plane: bit i set for i < cols
  const std::int8_t* q = nullptr;         // batch x ldq: int8 activations, 0 past cols
  std::size_t ldq = 0;
  const std::int32_t* q_sum = nullptr;    // batch: Σ_i q_i
  const float* row_scale = nullptr;       // batch: m / 127 (int8) or β (binary)
  const void* itables = nullptr;          // batch x ldit bytes: integer tables of partial sums
  std::size_t ldit = 0;
};

// Rows [row_begin, row_end) of y for every batch row. Never throws, never allocates.
using rows_fn = void (*)(const gemm_args&, std::size_t row_begin, std::size_t row_end) noexcept;

// Builds the tables of one batch row: `groups` consecutive tables from a (zero past cols).
using tables_fn = void (*)(const float* a, std::size_t groups, float* tables) noexcept;

}  // namespace onebit::kernels::detail
