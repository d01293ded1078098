// The tiny Llama (models/llama.hpp) converted by onebit-convert's function to a onebit file,
// its layers served zero-copy from the mapped file, generates the same text as the same
// conversion done in memory.
#include <onebit/models/convert.hpp>
#include <onebit/models/llama.hpp>

#include <onebit/io/safetensors.hpp>
#include <onebit/quant/svid.hpp>

#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace test_convert_llama {

namespace llama = onebit::llama;

namespace io = onebit::io;

namespace {

std::string scratch_file(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("onebit-test-convert-llama-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

bool same_layer(const onebit::linear<>& a, const onebit::linear<>& b) {
  return a.W == b.W && a.g == b.g && a.h == b.h;
}

}  // namespace

TEST_CASE("the tiny Llama converted to a file and served zero-copy writes the in-memory conversion's story") {
  const std::string dir = std::string(ONEBIT_DATA_DIR) + "/tinyllamas";
  if (!std::ifstream(dir + "/stories260K.bin")) {
    MESSAGE("SKIPPED: no " << dir << "/stories260K.bin");
    return;
  }
  const auto ck = io::read_llama2c(dir + "/stories260K.bin");
  const auto tok = io::read_llama2c_tokenizer(dir + "/tok512.bin", static_cast<std::size_t>(ck.config.vocab_size));
  const llama::model base = llama::model::from_checkpoint(ck);

  // In memory: SVID of every matrix of every block.
  llama::model in_memory = base;
  std::map<std::string, onebit::linear<>> expected;
  for (std::size_t l = 0; l < base.blocks.size(); ++l)
    for (llama::slot s : llama::all_slots) {
      const llama::model::matrix m = base.original(l, s);
      onebit::linear<> layer = onebit::svid(m.w->data(), m.rows, m.cols, m.cols);
      in_memory.blocks[l][s] = std::make_shared<llama::onebit_layer>(layer);
      const bool attention = s == llama::slot::wq || s == llama::slot::wk || s == llama::slot::wv ||
                             s == llama::slot::wo;
      expected.emplace("layers." + std::to_string(l) + (attention ? ".attention." : ".feed_forward.") +
                           llama::to_string(s),
                       std::move(layer));
    }

  // Through files: the float checkpoint as safetensors (as examples/export_tinyllama_safetensors
  // writes it), converted by onebit-convert's function, written, mapped.
  const auto dim = static_cast<std::uint64_t>(ck.config.dim), hidden = static_cast<std::uint64_t>(ck.config.hidden_dim),
             kv = static_cast<std::uint64_t>(ck.config.kv_dim());
  io::writer w;
  w.add("tok_embeddings.weight", ck.token_embedding.data(), {static_cast<std::uint64_t>(ck.config.vocab_size), dim});
  for (std::size_t l = 0; l < ck.layers.size(); ++l) {
    const auto& L = ck.layers[l];
    const std::string p = "layers." + std::to_string(l) + ".";
    w.add(p + "attention.wq.weight", L.wq.data(), {dim, dim});
    w.add(p + "attention.wk.weight", L.wk.data(), {kv, dim});
    w.add(p + "attention.wv.weight", L.wv.data(), {kv, dim});
    w.add(p + "attention.wo.weight", L.wo.data(), {dim, dim});
    w.add(p + "feed_forward.w1.weight", L.w1.data(), {hidden, dim});
    w.add(p + "feed_forward.w2.weight", L.w2.data(), {dim, hidden});
    w.add(p + "feed_forward.w3.weight", L.w3.data(), {hidden, dim});
  }
  const std::string float_path = scratch_file("stories260K.safetensors");
  const std::string onebit_path = scratch_file("stories260K.onebit.safetensors");
  w.write(float_path);
  {
    const io::mapped_file float_file(float_path);
    onebit::models::conversion c = onebit::models::convert(float_file.file(), {});
    CHECK(c.layers.size() == 35);
    c.writer.write(onebit_path);
  }
  const io::mapped_file file(onebit_path);
  REQUIRE(file.names().size() == expected.size());
  llama::model from_file = base;
  for (std::size_t l = 0; l < base.blocks.size(); ++l)
    for (llama::slot s : llama::all_slots) {
      const bool attention = s == llama::slot::wq || s == llama::slot::wk || s == llama::slot::wv ||
                             s == llama::slot::wo;
      const std::string name =
          "layers." + std::to_string(l) + (attention ? ".attention." : ".feed_forward.") + llama::to_string(s);
      CAPTURE(name);
      CHECK(same_layer(file.load_layer(name), expected.at(name)));
      const onebit::linear_view<> view = file.layer(name);  // over the mapped bytes
      from_file.blocks[l][s] = std::make_shared<llama::function_layer>(
          view.out_features(), view.in_features(),
          [view](const float* x, float* y) { onebit::gemv(view, x, y); }, "onebit (mapped)",
          view.storage_bits());
    }

  llama::sampler greedy_a, greedy_b;
  const std::vector<int> a = llama::generate(in_memory, greedy_a, 256);
  const std::vector<int> b = llama::generate(from_file, greedy_b, 256);
  CHECK(a.size() > 20);
  CHECK(a == b);
  const std::string text = tok.decode(b);
  MESSAGE("the 1-bit tiny Llama from the converted file, greedy: " << text.substr(0, 160));
}

}  // namespace test_convert_llama
