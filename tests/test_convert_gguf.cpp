// onebit-convert's GGUF conversion (models/convert_gguf.hpp): the tiny Llama exported to a GGUF
// F32 file, converted and served from the written file, generates the in-memory SVID
// conversion's tokens; a Q1_0 tensor becomes a group-scaled layer kept exactly; other tensors
// are passed through.
#include <onebit/group_scaled_gemm.hpp>
#include <onebit/io/gguf.hpp>
#include <onebit/io/safetensors.hpp>
#include <onebit/models/convert_gguf.hpp>
#include <onebit/models/llama.hpp>
#include <onebit/quant/svid.hpp>

#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace test_convert_gguf {

namespace llama = onebit::llama;
namespace io = onebit::io;

namespace {

std::string scratch_file(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("onebit-test-convert-gguf-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

// A GGUF v3 writer of F32 tensors (row-major, shape outermost first as safetensors gives it).
struct gguf_out {
  struct entry {
    std::string name;
    std::vector<std::uint64_t> shape;
    const float* data;
  };
  std::vector<entry> tensors;
  void add(const std::string& name, const float* data, std::vector<std::uint64_t> shape) {
    tensors.push_back({name, std::move(shape), data});
  }
  void write(const std::string& path) const {
    std::vector<unsigned char> b;
    auto raw = [&b](const void* p, std::size_t n) {  // resize + memcpy: see test_gguf.cpp
      const std::size_t at = b.size();
      b.resize(at + n);
      if (n != 0) std::memcpy(b.data() + at, p, n);
    };
    auto u32 = [&](std::uint32_t v) { raw(&v, 4); };
    auto u64 = [&](std::uint64_t v) { raw(&v, 8); };
    auto str = [&](const std::string& s) { u64(s.size()); raw(s.data(), s.size()); };
    raw("GGUF", 4);
    u32(3);
    u64(tensors.size());
    u64(1);
    str("general.architecture");
    u32(8);
    str("llama");
    std::uint64_t offset = 0;
    std::vector<std::uint64_t> offsets;
    for (const entry& e : tensors) {
      std::uint64_t n = 1;
      for (std::uint64_t d : e.shape) n *= d;
      str(e.name);
      u32(static_cast<std::uint32_t>(e.shape.size()));
      for (auto it = e.shape.rbegin(); it != e.shape.rend(); ++it) u64(*it);  // ne: innermost first
      u32(0);  // F32
      u64(offset);
      offsets.push_back(offset);
      offset += (4 * n + 31) / 32 * 32;
    }
    while (b.size() % 32 != 0) b.push_back(0);
    const std::size_t start = b.size();
    for (std::size_t k = 0; k < tensors.size(); ++k) {
      b.resize(start + offsets[k], 0);
      std::uint64_t n = 1;
      for (std::uint64_t d : tensors[k].shape) n *= d;
      raw(tensors[k].data, 4 * n);
    }
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()),
                                                static_cast<std::streamsize>(b.size()));
  }
};

bool same_layer(const onebit::linear<>& a, const onebit::linear<>& b) {
  return a.W == b.W && a.g == b.g && a.h == b.h;
}

}  // namespace

TEST_CASE("the tiny Llama exported to GGUF F32, converted, writes the in-memory conversion's story") {
  const std::string dir = std::string(ONEBIT_DATA_DIR) + "/tinyllamas";
  if (!std::ifstream(dir + "/stories260K.bin")) {
    MESSAGE("SKIPPED: no " << dir << "/stories260K.bin");
    return;
  }
  const auto ck = io::read_llama2c(dir + "/stories260K.bin");
  const llama::model base = llama::model::from_checkpoint(ck);

  llama::model in_memory = base;
  std::map<std::string, onebit::linear<>> expected;
  auto name_of = [](std::size_t l, llama::slot s) {
    const bool attention = s == llama::slot::wq || s == llama::slot::wk || s == llama::slot::wv ||
                           s == llama::slot::wo;
    return "layers." + std::to_string(l) + (attention ? ".attention." : ".feed_forward.") +
           llama::to_string(s);
  };
  for (std::size_t l = 0; l < base.blocks.size(); ++l)
    for (llama::slot s : llama::all_slots) {
      const llama::model::matrix m = base.original(l, s);
      onebit::linear<> layer = onebit::svid(m.w->data(), m.rows, m.cols, m.cols);
      in_memory.blocks[l][s] = std::make_shared<llama::onebit_layer>(layer);
      expected.emplace(name_of(l, s), std::move(layer));
    }

  // The float checkpoint as GGUF F32, with the names of llama2.c's model.py.
  const auto dim = static_cast<std::uint64_t>(ck.config.dim),
             hidden = static_cast<std::uint64_t>(ck.config.hidden_dim),
             kv = static_cast<std::uint64_t>(ck.config.kv_dim());
  gguf_out w;
  w.add("tok_embeddings.weight", ck.token_embedding.data(), {static_cast<std::uint64_t>(ck.config.vocab_size), dim});
  w.add("norm.weight", ck.rms_final.data(), {dim});
  for (std::size_t l = 0; l < ck.layers.size(); ++l) {
    const auto& L = ck.layers[l];
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
  const std::string gguf_path = scratch_file("stories260K.gguf");
  const std::string onebit_path = scratch_file("stories260K.onebit.safetensors");
  w.write(gguf_path);
  {
    const io::gguf_file input(gguf_path);
    onebit::models::gguf_conversion c = onebit::models::convert(input, {});
    CHECK(c.layers.size() == 35);
    c.writer.write(onebit_path);
  }
  const io::mapped_file file(onebit_path);
  REQUIRE(file.names().size() == expected.size());
  CHECK(file.metadata().at("gguf.general.architecture") == "llama");
  const std::vector<float> norm = file.floats("norm.weight");
  CHECK(std::memcmp(norm.data(), ck.rms_final.data(), norm.size() * 4) == 0);
  llama::model from_file = base;
  for (std::size_t l = 0; l < base.blocks.size(); ++l)
    for (llama::slot s : llama::all_slots) {
      const std::string name = name_of(l, s);
      CAPTURE(name);
      CHECK(same_layer(file.load_layer(name), expected.at(name)));
      const onebit::linear_view<> view = file.layer(name);
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
}

TEST_CASE("a Q1_0 tensor converts to a group-scaled layer kept exactly; the others pass through") {
  const std::string data = std::string(ONEBIT_DATA_DIR) + "/gguf/";
  {
    const io::gguf_file input(data + "layer_v2.gguf");
    onebit::models::convert_options options;
    options.include = {"*.ffn_down.weight"};
    onebit::models::gguf_conversion c = onebit::models::convert(input, options);
    REQUIRE(c.layers.size() == 1);
    CHECK(c.layers[0].layer == "blk.0.ffn_down");
    CHECK(c.layers[0].relative_error == 0);
    const std::string path = scratch_file("layer_v2.safetensors");
    c.writer.write(path);
    const io::mapped_file file(path);
    const onebit::group_scaled_linear back = onebit::models::load_group_scaled(file.file(), "blk.0.ffn_down");
    const onebit::group_scaled_linear original = input.layer("blk.0.ffn_down.weight");
    REQUIRE(back.out_features() == 5);
    REQUIRE(back.in_features() == 384);
    CHECK(back.scales() == original.scales());
    CHECK(back.signs() == original.signs());
    const std::vector<float> extra = file.floats("extra");
    CHECK(extra == input.dequantize("extra"));
    CHECK_THROWS_AS(onebit::models::load_group_scaled(file.file(), "nope"), io::error);
  }
  {
    // Nothing chosen: F32, F16, BF16 byte for byte, Q8_0, Q4_0 and Q1_0 dequantised.
    const io::gguf_file input(data + "types.gguf");
    onebit::models::gguf_conversion c = onebit::models::convert(input, {});
    CHECK(c.layers.empty());
    const std::string path = scratch_file("types.safetensors");
    c.writer.write(path);
    const io::mapped_file file(path);
    for (const std::string& name : input.names()) {
      CAPTURE(name);
      const std::vector<float> want = input.dequantize(name);
      const std::vector<float> got = file.floats(name);
      REQUIRE(got.size() == want.size());
      CHECK(std::memcmp(got.data(), want.data(), got.size() * 4) == 0);
      const io::tensor_info* t = file.file().find(name);
      REQUIRE(t != nullptr);
      const auto& ne = input.tensor(name).ne;
      CHECK(t->shape == std::vector<std::uint64_t>(ne.rbegin(), ne.rend()));
    }
    CHECK(file.metadata().at("gguf.test.u64") == "9223372036854775813");
    CHECK(file.metadata().at("gguf.test.i8") == "-100");
    // A chosen tensor of a type that is not converted is refused, named.
    onebit::models::convert_options options;
    options.include = {"t.q8_0"};
    try {
      (void)onebit::models::convert(input, options);
      FAIL("no error");
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("t.q8_0") != std::string::npos);
    }
  }
}

}  // namespace test_convert_gguf
