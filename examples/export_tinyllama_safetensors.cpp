// Exports the tinyllamas stories260K checkpoint (llama2.c's legacy format, read with
// onebit::io::read_llama2c) to a float32 safetensors file, so that onebit-convert can be tried
// on a real trained model:
//
//   export_tinyllama_safetensors [CHECKPOINT.bin [OUTPUT.safetensors]]
//   onebit-convert stories260K.safetensors stories260K.onebit.safetensors
//
// Tensor names are those of llama2.c's PyTorch model (model.py), every matrix row-major out x in:
//   tok_embeddings.weight, norm.weight, output.weight (only when the classifier is not shared),
//   layers.L.attention_norm.weight, layers.L.attention.w{q,k,v,o}.weight,
//   layers.L.ffn_norm.weight, layers.L.feed_forward.w{1,2,3}.weight.
// The configuration goes into __metadata__ ("dim", "hidden_dim", ..., "shared_classifier").
#include <onebit/models/llama2c.hpp>
#include <onebit/io/safetensors.hpp>

#include "llama2c_tensors.hpp"

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#ifndef ONEBIT_DATA_DIR
#define ONEBIT_DATA_DIR "tests/data"
#endif

int main(int argc, char** argv) {
  if (argc > 3 || (argc > 1 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help"))) {
    std::fprintf(argc > 3 ? stderr : stdout,
                 "usage: export_tinyllama_safetensors [CHECKPOINT.bin [OUTPUT.safetensors]]\n"
                 "  defaults: %s/tinyllamas/stories260K.bin and stories260K.safetensors\n",
                 ONEBIT_DATA_DIR);
    return argc > 3 ? 2 : 0;
  }
  const std::string input =
      argc > 1 ? argv[1] : std::string(ONEBIT_DATA_DIR) + "/tinyllamas/stories260K.bin";
  const std::string output = argc > 2 ? argv[2] : "stories260K.safetensors";
  try {
    const onebit::io::llama2c_checkpoint ck = onebit::io::read_llama2c(input);
    const onebit::io::llama2c_config& c = ck.config;
    const auto dim = static_cast<std::uint64_t>(c.dim);
    const auto hidden = static_cast<std::uint64_t>(c.hidden_dim);
    const auto kv = static_cast<std::uint64_t>(c.kv_dim());

    onebit::io::writer w;  // borrows from ck, which outlives w.write()
    w.set_metadata("format", "pt");
    w.set_metadata("source", "llama2.c legacy checkpoint " + input);
    examples::add_llama2c_model_tensors(w, ck);
    for (std::size_t l = 0; l < ck.layers.size(); ++l) {
      const onebit::io::llama2c_layer& L = ck.layers[l];
      const std::string p = "layers." + std::to_string(l) + ".";
      w.add(p + "attention_norm.weight", L.rms_att.data(), {dim});
      w.add(p + "attention.wq.weight", L.wq.data(), {dim, dim});
      w.add(p + "attention.wk.weight", L.wk.data(), {kv, dim});
      w.add(p + "attention.wv.weight", L.wv.data(), {kv, dim});
      w.add(p + "attention.wo.weight", L.wo.data(), {dim, dim});
      w.add(p + "ffn_norm.weight", L.rms_ffn.data(), {dim});
      w.add(p + "feed_forward.w1.weight", L.w1.data(), {hidden, dim});
      w.add(p + "feed_forward.w2.weight", L.w2.data(), {dim, hidden});
      w.add(p + "feed_forward.w3.weight", L.w3.data(), {hidden, dim});
    }
    w.write(output);
    std::printf("%s: %zu tensors of %s written to %s\n", input.c_str(), w.size(),
                "float32", output.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "export_tinyllama_safetensors: %s\n", e.what());
    return 1;
  }
}
