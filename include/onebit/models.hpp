// Model code above the library's three parts: llama2.c checkpoints and tokenizers, a Llama-2
// forward pass whose linear layers run on onebit's kernels, the differentiable Llama blocks of
// cross-block reconstruction, and the model converter behind onebit-convert.
#pragma once

#include "io.hpp"
#include "quant.hpp"

#include "models/llama2c.hpp"       // llama2.c checkpoints (version 0) and tokenizers
#include "models/llama_math.hpp"    // RMSNorm and RoPE as run.c, shared by the two below
#include "models/llama.hpp"         // the Llama-2 forward pass, sampling, quality measures
#include "models/llama_blocks.hpp"  // linear, RMSNorm, attention (RoPE, GQA), SwiGLU blocks
#include "models/projection.hpp"    // float or OneBit (latent, STE) projections inside blocks
#include "models/onebit_kd.hpp"     // OneBit's whole-model knowledge transfer
#include "models/convert.hpp"       // a float model's linear layers to OneBit or low-bit layers
