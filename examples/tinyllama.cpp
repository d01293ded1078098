// Generates text with the tinyllamas stories260K model (models/llama.hpp), in float32 or with
// chosen linear layers replaced by onebit layers.
//
//   tinyllama                         the greedy story; exit 1 unless it is the data README's
//   tinyllama --quant svid            every linear layer 1-bit (SVID), on onebit's kernels
//   tinyllama --quant rtn --bits 4 --group 32 --layers w1,w2,w3
//   tinyllama --temperature 1 --topp 0.9 --seed 133742 --prompt "Once upon a time"
//
// Data: tests/data/tinyllamas (or --data DIR): stories260K.bin, tok512.bin
// and README.md (its reference story). Nothing is downloaded.
#include <onebit/models/llama.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace llama = onebit::llama;

#ifndef ONEBIT_DATA_DIR
#define ONEBIT_DATA_DIR "tests/data"
#endif

namespace {

const char* const usage_text =
    "usage: tinyllama [--data DIR] [--quant none|svid|svid-nmf|rtn] [--bits K] [--group G]\n"
    "                 [--symmetric] [--layers SPEC] [--kernel NAME] [--steps N]\n"
    "                 [--temperature T] [--topp P] [--seed N] [--prompt TEXT]\n"
    "  --layers: 'all' (default) or a comma list of slots (wq wk wv wo w1 w2 w3), block indices\n"
    "            (0..4) or block.slot (3.wq)\n"
    "  --kernel: the 1-bit kernel of SVID layers (automatic, reference, add_only, ...)\n"
    "  Without --quant, --temperature, --prompt or --steps this is the README's greedy story,\n"
    "  and the exit status says whether the text is identical to it (0) or not (1).\n";

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "tinyllama: %s\n%s", why.c_str(), usage_text);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = std::string(ONEBIT_DATA_DIR) + "/tinyllamas";
  std::string quant = "none", layers = "all", prompt;
  onebit::rtn_options rtn;
  onebit::kernel k = onebit::kernel::automatic;
  int steps = 256;
  float temperature = 0.0f, topp = 0.9f;
  unsigned long long seed = 1;
  bool reference_run = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value after " + a);
      return argv[++i];
    };
    try {
      if (a == "--data") dir = value();
      else if (a == "--quant") quant = value();
      else if (a == "--bits") rtn.bits = std::stoi(value());
      else if (a == "--group") rtn.group = std::stoul(value());
      else if (a == "--symmetric") rtn.symmetric = true;
      else if (a == "--layers") layers = value();
      else if (a == "--kernel") {
        const auto parsed = onebit::parse_kernel(value());
        if (!parsed) usage("unknown kernel " + std::string(argv[i]));
        k = *parsed;
      } else if (a == "--steps") steps = std::stoi(value()), reference_run = false;
      else if (a == "--temperature") temperature = std::stof(value()), reference_run = false;
      else if (a == "--topp") topp = std::stof(value());
      else if (a == "--seed") seed = std::stoull(value());
      else if (a == "--prompt") prompt = value(), reference_run = false;
      else if (a == "--help" || a == "-h") {
        std::printf("%s", usage_text);
        return 0;
      } else usage("unknown option " + a);
    } catch (const std::logic_error&) {
      usage("bad value for " + a);
    }
  }
  if (quant != "none" && quant != "svid" && quant != "svid-nmf" && quant != "rtn")
    usage("unknown --quant " + quant);

  try {
    const auto ck = onebit::io::read_llama2c(dir + "/stories260K.bin");
    const auto tok = onebit::io::read_llama2c_tokenizer(
        dir + "/tok512.bin", static_cast<std::size_t>(ck.config.vocab_size));
    const llama::model fp32 = llama::model::from_checkpoint(ck);
    llama::model m = fp32;

    if (quant != "none") {
      const auto chosen = llama::parse_selection(layers, m.blocks.size());
      llama::replace_layers(m, chosen, [&](const float* w, std::size_t r, std::size_t c,
                                           std::size_t, llama::slot) -> llama::layer_ptr {
        if (quant == "rtn") return llama::rtn_layer(w, r, c, rtn);
        onebit::svid_options so;
        so.method = quant == "svid" ? onebit::rank1_method::svd : onebit::rank1_method::nmf;
        if (so.method == onebit::rank1_method::nmf) so.max_iterations = 500;
        return std::make_shared<llama::onebit_layer>(onebit::svid(w, r, c, c, so),
                                                     quant, k);
      });
      std::size_t bits = 0, weights = 0;
      for (const auto& [l, s] : chosen) {
        bits += m.blocks[l][s]->storage_bits();
        weights += m.blocks[l][s]->in_features() * m.blocks[l][s]->out_features();
      }
      std::fprintf(stderr, "%zu layers (%s) replaced by %s layers: %zu weights at %.3f bits each; "
                   "path %s\n",
                   chosen.size(), layers.c_str(), m.blocks[chosen[0].first][chosen[0].second]->kind().c_str(),
                   weights, static_cast<double>(bits) / static_cast<double>(weights),
                   onebit::to_string(onebit::best_isa()));
    }

    std::vector<int> prompt_tokens = tok.encode(prompt);  // BOS, then the prompt's tokens
    llama::sampler s(temperature, topp, seed);
    const std::vector<int> tokens = llama::generate(m, s, steps, prompt_tokens);
    const std::string text = tok.decode(tokens);
    std::printf("%s\n", text.c_str());

    if (quant != "none") {
      llama::sampler again(temperature, topp, seed);
      const std::vector<int> base = llama::generate(fp32, again, steps, prompt_tokens);
      std::size_t same = 0;
      while (same < base.size() && same < tokens.size() && base[same] == tokens[same]) ++same;
      std::fprintf(stderr, "the first %zu of %zu tokens are the float32 model's\n", same,
                   base.size());
      return 0;
    }
    if (!reference_run) return 0;
    const std::string reference = llama::reference_story(dir + "/README.md");
    if (reference.empty()) {
      std::fprintf(stderr, "no reference story found in %s/README.md\n", dir.c_str());
      return 1;
    }
    if (text != reference) {
      std::size_t at = 0;
      while (at < text.size() && at < reference.size() && text[at] == reference[at]) ++at;
      std::fprintf(stderr, "DIFFERENT from the README's reference story from byte %zu on\n", at);
      return 1;
    }
    std::fprintf(stderr, "identical to the README's reference story (%zu tokens, %zu bytes)\n",
                 tokens.size(), text.size());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tinyllama: %s\n", e.what());
    return 1;
  }
}
