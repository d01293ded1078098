// onebit's core: what an inference engine includes to run 1-bit layers. C++17 and the
// standard library only (no Eigen, no JSON), cheap to compile. The research side is
// onebit/quant.hpp, files are onebit/io.hpp, model code is onebit/models.hpp.
#pragma once

#include "cpu.hpp"            // what the CPU has; forcing an instruction-set path
#include "half.hpp"           // FP16 storage and conversions
#include "bfloat16.hpp"       // bfloat16 storage, the type trained checkpoints come in
#include "sign_matrix.hpp"    // bit-packed ±1 matrices and views over caller bytes
#include "kernel.hpp"         // the kernels a product can run on, gemm_options
#include "linear.hpp"         // the OneBit layer (W, g, h) and its view
#include "packed_linear.hpp"  // a layer re-laid out once for one kernel
#include "gemm.hpp"           // y = ((x ⊙ g) · Wᵀ) ⊙ h: gemm, gemv, prepare, run_rows, pack
#include "lowbit_matrix.hpp"  // k-bit codes as bit-planes, scale and zero per row or group
#include "lowbit_linear.hpp"  // a lowbit_matrix run on the 1-bit kernels: k planes + Σx
#include "group_scaled_gemm.hpp"  // W_ji = d_{j,group}·s_ji (GGUF Q1_0): gemm, pack, prepare
#include "parallel.hpp"       // thread_pool and the parallel gemm of any prepared product
