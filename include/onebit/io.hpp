// onebit's files (needs nlohmann-json and POSIX file mapping): safetensors in and out, OneBit
// layers and low-bit matrices zero-copy from a mapping. Includes the core.
#pragma once

#include "onebit.hpp"

#include "io/safetensors.hpp"  // read any safetensors file; write layers, matrices, tensors
#include "io/onebit_checkpoint.hpp"  // OneBit's own inference checkpoints, in and out
#include "io/gguf.hpp"  // read GGUF v2/v3: typed metadata, dequantised tensors, Q1_0 layers
