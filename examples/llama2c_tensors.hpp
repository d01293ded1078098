// What every safetensors file the examples write from a llama2.c model starts with: the
// model's shape as metadata and its float tensors outside the blocks (token embedding, final
// RMSNorm scale, classifier when it is not the embedding), under llama2.c's names. The
// caller adds the blocks' tensors. The writer borrows from `ck`, which must outlive its write().
#pragma once

#include <onebit/io/safetensors.hpp>
#include <onebit/models/llama2c.hpp>

#include <cstdint>
#include <string>
#include <utility>

namespace examples {

inline void add_llama2c_model_tensors(onebit::io::writer& w,
                                      const onebit::io::llama2c_checkpoint& ck) {
  const onebit::io::llama2c_config& c = ck.config;
  const auto dim = static_cast<std::uint64_t>(c.dim);
  const auto vocab = static_cast<std::uint64_t>(c.vocab_size);
  for (const auto& [key, value] :
       {std::pair<const char*, int>{"dim", c.dim}, {"hidden_dim", c.hidden_dim},
        {"n_layers", c.n_layers}, {"n_heads", c.n_heads}, {"n_kv_heads", c.n_kv_heads},
        {"vocab_size", c.vocab_size}, {"seq_len", c.seq_len}})
    w.set_metadata(key, std::to_string(value));
  w.set_metadata("shared_classifier", c.shared_classifier ? "true" : "false");
  w.add("tok_embeddings.weight", ck.token_embedding.data(), {vocab, dim});
  w.add("norm.weight", ck.rms_final.data(), {dim});
  if (!c.shared_classifier) w.add("output.weight", ck.wcls.data(), {vocab, dim});
}

}  // namespace examples
