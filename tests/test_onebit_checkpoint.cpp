// OneBit's official inference checkpoints (io/onebit_checkpoint.hpp) against a checkpoint an
// independent numpy script wrote (tests/data/onebit_checkpoint/make_checkpoint.py, run here when
// /usr/bin/python3 with numpy is present, else its committed output), and round trips bit for
// bit.
#include <onebit/io/onebit_checkpoint.hpp>

#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_onebit_checkpoint {

namespace {

namespace fs = std::filesystem;
namespace io = onebit::io;

const std::string data_dir = std::string(ONEBIT_DATA_DIR) + "/onebit_checkpoint";

struct scratch_dir {
  fs::path path;
  scratch_dir() {
    path = fs::temp_directory_path() / ("onebit_checkpoint_test_" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~scratch_dir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

scratch_dir& scratch() {
  static scratch_dir dir;
  return dir;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The directory holding checkpoint.safetensors and expected.safetensors: freshly made by the
// script when Python and numpy are here (and then the same bytes as the committed files), else
// the committed ones.
std::string checkpoint_dir() {
  static const std::string dir = [] {
    if (::access("/usr/bin/python3", X_OK) != 0) {
      MESSAGE("no /usr/bin/python3: using the committed output of make_checkpoint.py");
      return data_dir;
    }
    const std::string out = scratch() / "generated";
    const std::string command =
        "/usr/bin/python3 '" + data_dir + "/make_checkpoint.py' '" + out + "'";
    const int status = std::system(command.c_str());
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
      MESSAGE("no numpy: using the committed output of make_checkpoint.py");
      return data_dir;
    }
    REQUIRE_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0), command, " failed");
    for (const char* file : {"/checkpoint.safetensors", "/expected.safetensors"})
      CHECK_MESSAGE(read_all(out + file) == read_all(data_dir + file),
                    "the committed ", file, " is not what make_checkpoint.py writes");
    return out;
  }();
  return dir;
}

bool same_layer(const onebit::linear<>& a, const onebit::linear<>& b) {
  return a.W == b.W && a.g == b.g && a.h == b.h && a.norm == b.norm;
}

const char* const modules[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                               "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                               "mlp.down_proj"};

}  // namespace

TEST_CASE("an independent numpy checkpoint loads with its signs, g, h and the norm, and runs") {
  const std::string dir = checkpoint_dir();
  const auto layers = io::load_onebit_checkpoint(dir + "/checkpoint.safetensors");
  const io::mapped_file raw(dir + "/checkpoint.safetensors");
  const io::mapped_file expected(dir + "/expected.safetensors");
  REQUIRE(layers.size() == 14);
  for (int l = 0; l < 2; ++l)
    for (const char* m : modules) {
      const std::string name = "model.layers." + std::to_string(l) + "." + m;
      INFO(name);
      REQUIRE(layers.count(name) == 1);
      const onebit::linear<>& layer = layers.at(name);
      CHECK(layer.norm == onebit::post_norm{true, 1e-5f});
      const std::size_t out = layer.out_features(), in = layer.in_features();
      // Signs: the script's own unpacking (−2·bit + 1).
      const io::tensor_view signs = expected.tensor(name + ".signs");
      REQUIRE(signs.shape() == std::vector<std::uint64_t>{out, in});
      const auto* s = reinterpret_cast<const std::int8_t*>(signs.data);
      std::size_t wrong = 0;
      for (std::size_t j = 0; j < out; ++j)
        for (std::size_t i = 0; i < in; ++i) wrong += layer.W(j, i) != s[j * in + i];
      CHECK(wrong == 0);
      // g and h: the F16 bits as stored.
      const std::vector<float> g = raw.floats(name + ".input_factor"),
                               h = raw.floats(name + ".weight_scale");
      for (std::size_t i = 0; i < in; ++i) CHECK(onebit::to_float(layer.g[i]) == g[i]);
      for (std::size_t j = 0; j < out; ++j) CHECK(onebit::to_float(layer.h[j]) == h[j]);
      // y = LN(((x ⊙ g) · Wᵀ) ⊙ h) as the script computed it in double: the exact kernels within
      // 1e-5·(1 + |y|) (pre-norm float error ~n·2^-24 relative, over s ~ its own size).
      const std::vector<float> x = expected.floats(name + ".x"), want = expected.floats(name + ".y");
      const std::size_t batch = x.size() / in;
      for (onebit::kernel k : {onebit::kernel::reference, onebit::kernel::add_only}) {
        std::vector<float> y(batch * out);
        onebit::gemm(layer, x.data(), batch, in, y.data(), out, k);
        for (std::size_t i = 0; i < y.size(); ++i)
          CHECK(std::fabs(y[i] - want[i]) <= 1e-5f * (1 + std::fabs(want[i])));
      }
    }
  // Tensors that are not 1-bit modules are not layers.
  CHECK(layers.count("model.embed_tokens") == 0);
  CHECK(layers.count("model.norm") == 0);
}

TEST_CASE("round trips are bit for bit: the numpy file's tensors, and a layer trained here") {
  const std::string dir = checkpoint_dir();
  const auto layers = io::load_onebit_checkpoint(dir + "/checkpoint.safetensors");
  const std::string once = scratch() / "once.safetensors", twice = scratch() / "twice.safetensors";
  io::save_onebit_checkpoint(once, layers);
  const io::mapped_file original(dir + "/checkpoint.safetensors"), written(once);
  std::size_t compared = 0;
  for (const auto& [name, layer] : layers)
    for (const char* suffix : {".weight", ".input_factor", ".weight_scale"}) {
      const io::tensor_view a = original.tensor(name + suffix), b = written.tensor(name + suffix);
      CHECK(a.type() == b.type());
      CHECK(a.shape() == b.shape());
      REQUIRE(a.bytes() == b.bytes());
      CHECK(std::memcmp(a.data, b.data, a.bytes()) == 0);
      ++compared;
    }
  CHECK(compared == 42);
  CHECK(written.metadata().at("format") == "pt");
  const auto again = io::load_onebit_checkpoint(once);
  REQUIRE(again.size() == layers.size());
  for (const auto& [name, layer] : layers) CHECK(same_layer(again.at(name), layer));
  io::save_onebit_checkpoint(twice, again);
  CHECK(read_all(once) == read_all(twice));

  // A layer made here, with garbage in its padding bits: the signs survive, the padding does not
  // leak.
  std::map<std::string, onebit::linear<>> mine;
  mine["model.layers.0.mlp.down_proj"] = onebit_test::random_layer(37, 136);
  onebit_test::fill_padding_with_garbage(mine["model.layers.0.mlp.down_proj"].W);
  mine["model.layers.0.mlp.down_proj"].norm = io::onebit_checkpoint_norm;
  const std::string path = scratch() / "mine.safetensors";
  io::save_onebit_checkpoint(path, mine);
  const auto back = io::load_onebit_checkpoint(path);
  CHECK(same_layer(back.at("model.layers.0.mlp.down_proj"), mine.at("model.layers.0.mlp.down_proj")));
  CHECK(io::mapped_file(path).tensor("model.layers.0.mlp.down_proj.weight").shape() ==
        std::vector<std::uint64_t>{37, 17});
}

TEST_CASE("in % 8 != 0, a layer without OneBit's norm, and bad tensors are refused by name") {
  std::map<std::string, onebit::linear<>> layers;
  layers["model.layers.3.self_attn.k_proj"] = onebit_test::random_layer(4, 12);
  layers["model.layers.3.self_attn.k_proj"].norm = io::onebit_checkpoint_norm;
  const std::string path = scratch() / "bad.safetensors";
  CHECK_THROWS_WITH_AS(io::save_onebit_checkpoint(path, layers),
                       doctest::Contains("\"model.layers.3.self_attn.k_proj\" has in = 12"),
                       std::invalid_argument);
  layers["model.layers.3.self_attn.k_proj"] = onebit_test::random_layer(4, 16);
  CHECK_THROWS_WITH_AS(io::save_onebit_checkpoint(path, layers),
                       doctest::Contains("has no post_norm"), std::invalid_argument);
  layers["model.layers.3.self_attn.k_proj"].norm = {true, 1e-6f};
  CHECK_THROWS_WITH_AS(io::save_onebit_checkpoint(path, layers),
                       doctest::Contains("eps"), std::invalid_argument);
  CHECK_FALSE(fs::exists(path));

  // Files: in = 12 (input_factor of 12 values), weight of the wrong width, h of the wrong length.
  const auto file_with = [&](std::size_t in, std::uint64_t weight_cols, std::size_t out_h,
                             io::dtype weight_type) {
    io::writer w;
    static std::vector<unsigned char> bytes;
    static std::vector<onebit::half> g, h;
    bytes.assign(4 * weight_cols * (weight_type == io::dtype::I16 ? 2 : 1), 0);
    g.assign(in, onebit::to_half(1.0f));
    h.assign(out_h, onebit::to_half(1.0f));
    w.add("m.weight", weight_type, {4, weight_cols}, bytes.data(), bytes.size());
    w.add("m.input_factor", g.data(), {in});
    w.add("m.weight_scale", h.data(), {out_h});
    w.write(path);
  };
  const auto refuses = [&](const std::string& tensor, const std::string& words) {
    try {
      (void)io::load_onebit_checkpoint(path);
      FAIL("no error; expected one about ", tensor);
    } catch (const io::error& e) {
      INFO(e.what());
      CHECK(e.tensor() == tensor);
      CHECK(std::string(e.what()).find(words) != std::string::npos);
    }
  };
  file_with(12, 1, 4, io::dtype::I8);
  refuses("m.input_factor", "\"m\" has in = 12, not a multiple of 8");
  file_with(16, 3, 4, io::dtype::I8);
  refuses("m.weight", "weight must be [out, 2]");
  file_with(16, 2, 5, io::dtype::I8);
  refuses("m.weight_scale", "has 5 values for 4 outputs");
  file_with(16, 2, 4, io::dtype::I16);
  refuses("m.weight", "dtype");
  file_with(16, 2, 4, io::dtype::I8);
  CHECK(io::load_onebit_checkpoint(path).size() == 1);
}

}  // namespace test_onebit_checkpoint
