// block: a differentiable step of a model, as cross-block reconstruction (cross_block.hpp,
// docs/algorithms.md §5.3) sees it. Implement it for your own model's pieces; llama_blocks.hpp ships
// the ones a Llama needs (linear, RMSNorm, attention with RoPE and grouped-query heads, SwiGLU
// MLP, residual, sequential).
//
// Data: a batch of `tokens` rows, row-major and contiguous, made of sequences laid end to end
// (token_layout::lengths, summing to tokens); a sequence's first row is its position 0. Only
// blocks that mix tokens (attention) look at the layout.
//
// Contract, which the reconstruction relies on:
//  * forward(x, layout, y) computes y (tokens x output_size()) from x (tokens x input_size())
//    with the current values of the block's weights, and keeps whatever backward needs;
//  * backward(dy, dx) takes ∂E/∂y for the last forward and writes ∂E/∂x into dx (tokens x
//    input_size(); dx may be null when the caller does not need it) and ∂E/∂W into the
//    gradient buffer of every weight (overwritten, not accumulated);
//  * weights() lists the matrices quantisation may replace, each pointing into the block's own
//    storage; the reconstruction writes quantised values into `value` between forwards. Other
//    parameters (a norm's scale) stay float and are not listed.
// A block is not thread-safe (forward keeps state for backward); one optimisation uses it at
// a time.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace onebit {

struct token_layout {
  std::vector<std::size_t> lengths;  // tokens of each sequence, in row order
  std::size_t tokens() const noexcept {
    std::size_t n = 0;
    for (std::size_t l : lengths) n += l;
    return n;
  }
};

// A weight matrix inside a block (rows = out x cols = in, row-major, contiguous), and the
// buffer its gradient goes to.
struct block_weight {
  std::string name;  // unique within the block, e.g. "attention.wq"
  std::size_t rows = 0, cols = 0;
  float* value = nullptr;
  float* gradient = nullptr;
};

class block {
 public:
  virtual ~block() = default;
  virtual std::size_t input_size() const noexcept = 0;
  virtual std::size_t output_size() const noexcept = 0;
  virtual void forward(const float* x, const token_layout& layout, float* y) = 0;
  virtual void backward(const float* dy, float* dx) = 0;
  virtual std::vector<block_weight> weights() = 0;
};

}  // namespace onebit
