// onebit: 1-bit linear algebra. Include this header for the whole public API.
#pragma once

#include "cpu.hpp"            // what the CPU has; forcing an instruction-set path
#include "half.hpp"           // FP16 storage and conversions
#include "sign_matrix.hpp"    // bit-packed ±1 matrices and views over caller bytes
#include "kernel.hpp"         // the kernels a product can run on, gemm_options
#include "linear.hpp"         // the OneBit layer (W, g, h)
#include "packed_linear.hpp"  // a layer re-laid out once for one kernel
#include "gemm.hpp"           // y = ((x ⊙ g) · Wᵀ) ⊙ h: gemm, gemv, prepare, run_rows, pack
#include "parallel.hpp"       // thread_pool and the parallel gemm
#include "quant/rank1.hpp"          // best rank-1 a bᵀ of a non-negative matrix: power iteration, NMF
#include "quant/svid.hpp"           // SVID: a OneBit layer from a trained matrix; bfloat16 input
#include "quant/lowbit_matrix.hpp"  // k-bit codes as bit-planes, scale and zero per row or group
#include "quant/rtn.hpp"            // round-to-nearest quantisation to 1..8 bits
#include "lowbit_linear.hpp"        // a lowbit_matrix run on the 1-bit kernels: k planes + Σx
#include "quant/cfp.hpp"            // CBQ's coarse-to-fine outlier detection, truncation, scaling
#include "quant/lora_rounding.hpp"  // CBQ's learned low-rank rounding of one layer
#include "quant/block.hpp"          // the differentiable-step interface of cross-block reconstruction
#include "quant/llama_blocks.hpp"   // linear, RMSNorm, attention (RoPE, GQA), SwiGLU, residual blocks
#include "quant/cross_block.hpp"    // CBQ: sliding windows of blocks reconstructed together
#include "gradients.hpp"       // training: layer gradients, latent-weight layers (STE), Adam/AdamW
#include "io/llama2c.hpp"     // reading llama2.c checkpoints (version 0) and tokenizers
// io/safetensors.hpp (safetensors in and out, zero-copy mapped layers) is included on its own,
// #include <onebit/io/safetensors.hpp>: it compiles nlohmann-json and POSIX file mapping into
// every translation unit that includes it, which a program that only runs layers does not need.
