// onebit's quantisation and training side (research code; needs Eigen): SVID, RTN, GPTQ, CBQ
// (CFP, LoRA-Rounding, cross-block reconstruction), the layer's gradients, optimisers and
// OneBit's knowledge transfer. Includes the core.
#pragma once

#include "onebit.hpp"

#include "quant/matrix.hpp"         // row_major_matrix, a low-bit matrix dequantised into one
#include "quant/products.hpp"       // Y = X·Ŵᵀ of a low-bit layer on Eigen matrices
#include "quant/rank1.hpp"          // best rank-1 a bᵀ of a non-negative matrix: power iteration, NMF
#include "quant/svid.hpp"           // SVID: a OneBit layer from a trained matrix; bfloat16 input
#include "quant/rtn.hpp"            // round-to-nearest quantisation to 1..8 bits
#include "quant/gptq.hpp"           // GPTQ: RTN's grid, errors spread by the inverse Hessian
#include "quant/cfp.hpp"            // CBQ's coarse-to-fine outlier detection, truncation, scaling
#include "quant/optim.hpp"          // Adam / AdamW and the cosine schedule
#include "quant/lora_rounding.hpp"  // CBQ's learned low-rank rounding of one layer
#include "quant/block.hpp"          // the differentiable-step interface of cross-block reconstruction
#include "quant/cross_block.hpp"    // CBQ: sliding windows of blocks reconstructed together
#include "quant/gradients.hpp"      // the layer's backward pass, latent-weight layers (STE)
#include "quant/distill.hpp"        // OneBit's knowledge transfer, layer by layer
#include "quant/kd_loss.hpp"        // OneBit's knowledge-transfer losses: KL on logits, normalised hidden MSE
