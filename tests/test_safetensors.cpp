// onebit::io safetensors: round trips are bit-identical, mapped layers are zero-copy and run
// the kernels exactly like the in-memory layer, the files are what the reference
// implementation accepts, and every kind of hostile file is refused with the file, the tensor and
// the field named, never a crash or an out-of-bounds read (the ASan leg runs this file too).
#include <onebit/io/safetensors.hpp>
#include <onebit/quant/rtn.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_safetensors {

namespace fs = std::filesystem;
namespace io = onebit::io;

namespace {

// A fresh directory per test process, removed at exit.
struct scratch_dir {
  fs::path path;
  scratch_dir() {
    path = fs::temp_directory_path() / ("onebit-test-safetensors-" + std::to_string(::getpid()));
    fs::remove_all(path);
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

std::vector<std::byte> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(chars.size());
  if (!chars.empty()) std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

void write_all(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A file from a header text and data bytes, the length field saying `length` (default: the
// header's true length).
std::vector<std::byte> raw_file(const std::string& header, const std::vector<unsigned char>& data,
                                std::uint64_t length = ~std::uint64_t{0}) {
  if (length == ~std::uint64_t{0}) length = header.size();
  std::vector<std::byte> out(8 + header.size() + data.size());
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>(length >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
  return out;
}

// The bytes at a 64-byte-aligned address (a vector's are only 16-aligned).
struct aligned_copy {
  onebit::detail::aligned_buffer buffer;
  std::size_t size;
  explicit aligned_copy(const std::vector<std::byte>& bytes, std::size_t shift = 0)
      : buffer(bytes.size() + shift + 1), size(bytes.size()) {
    if (!bytes.empty()) std::memcpy(buffer.data() + shift, bytes.data(), bytes.size());
    offset = shift;
  }
  const std::byte* data() const { return buffer.data() + offset; }
  std::size_t offset = 0;
};

io::safetensors_view parse(const aligned_copy& bytes, const io::read_options& options = {}) {
  return io::safetensors_view(bytes.data(), bytes.size, "test.safetensors", options);
}

// Expects io::error with this tensor and field, and `words` in its message.
void expect_error(const std::function<void()>& f, const std::string& tensor,
                  const std::string& field, const std::string& words) {
  try {
    f();
    FAIL("no error; expected one about tensor '", tensor, "' field '", field, "': ", words);
  } catch (const io::error& e) {
    INFO("message: ", std::string(e.what()));
    CHECK(e.tensor() == tensor);
    CHECK(e.field() == field);
    CHECK(std::string(e.what()).find(words) != std::string::npos);
    CHECK(std::string(e.what()).find("test.safetensors") != std::string::npos);
  }
}

void expect_file_error(const std::vector<std::byte>& bytes, const std::string& tensor,
                       const std::string& field, const std::string& words,
                       const io::read_options& options = {}) {
  const aligned_copy copy(bytes);
  expect_error([&] { (void)parse(copy, options); }, tensor, field, words);
}

// A valid onebit header for one 2x70 layer "L": data is W (128 bytes), g (140), h (4). An
// empty argument keeps the valid entry.
std::string layer_header(std::string w = "", std::string g = "", std::string h = "",
                         const std::string& extra_metadata = "") {
  if (w.empty()) w = R"("dtype":"U8","shape":[2,64],"data_offsets":[0,128])";
  if (g.empty()) g = R"("dtype":"F16","shape":[70],"data_offsets":[128,268])";
  if (h.empty()) h = R"("dtype":"F16","shape":[2],"data_offsets":[268,272])";
  return R"({"__metadata__":{"format":"onebit","onebit.version":"1","onebit.layout":")" +
         std::string(io::layout_name) + R"(","onebit.layer.L":"linear")" + extra_metadata +
         R"(},"L.W":{)" + w + R"(},"L.g":{)" + g + R"(},"L.h":{)" + h + "}}";
}

template <class Word>
bool same_layer(const onebit::linear<Word>& a, const onebit::linear<Word>& b) {
  return a.W == b.W && a.g == b.g && a.h == b.h;
}

}  // namespace

TEST_CASE("every dtype has its file name and size") {
  for (io::dtype t : io::all_dtypes) {
    const auto parsed = io::parse_dtype(io::to_string(t));
    REQUIRE(parsed);
    CHECK(*parsed == t);
  }
  CHECK(io::dtype_bits(io::dtype::BF16) == 16);
  CHECK(io::dtype_bits(io::dtype::C64) == 64);
  CHECK(io::dtype_bits(io::dtype::F4) == 4);
  CHECK(!io::parse_dtype("float16"));
  CHECK(!io::parse_dtype("f16"));
}

TEST_CASE_TEMPLATE("save then load gives bit-identical layers, padding garbage cleared", Word,
                   std::uint8_t, std::uint16_t, std::uint32_t, std::uint64_t) {
  std::map<std::string, onebit::linear<Word>> layers;
  const std::size_t shapes[][2] = {{1, 1}, {5, 70}, {64, 64}, {172, 64}, {3, 513}, {2, 1024}};
  for (const auto& s : shapes) {
    auto layer = onebit_test::random_layer<Word>(s[0], s[1]);
    onebit_test::fill_padding_with_garbage(layer.W);
    layers.emplace("blk." + std::to_string(s[0]) + "x" + std::to_string(s[1]), std::move(layer));
  }
  const std::string path = scratch() / ("roundtrip" + std::to_string(sizeof(Word)) + ".safetensors");
  io::save(path, layers);

  const auto loaded = io::load(path);
  REQUIRE(loaded.size() == layers.size());
  const io::mapped_file file(path);
  for (const auto& [key, layer] : layers) {
    const std::string& name = key;  // CAPTURE's lambda cannot capture a structured binding
    CAPTURE(name);
    const onebit::linear<> copy = loaded.at(name);
    CHECK(copy.W.rows() == layer.W.rows());
    CHECK(copy.W.cols() == layer.W.cols());
    CHECK(copy.g == layer.g);
    CHECK(copy.h == layer.h);
    CHECK(same_layer(file.template load_layer<Word>(name), layer));
    CHECK(file.template layer<Word>(name).W == layer.W.view());
    // The file's padding bits and bytes are 0, whatever the layer held.
    const io::tensor_view w = file.tensor(name + ".W");
    const std::size_t row_bytes = onebit::sign_row_stride_bytes(layer.W.cols());
    CHECK(w.shape() == std::vector<std::uint64_t>{layer.W.rows(), row_bytes});
    const auto* bytes = reinterpret_cast<const unsigned char*>(w.data);
    bool padding_zero = true;
    for (std::size_t r = 0; r < layer.W.rows(); ++r)
      for (std::size_t c = layer.W.cols(); c < row_bytes * 8; ++c)
        if ((bytes[r * row_bytes + c / 8] >> (c % 8)) & 1u) padding_zero = false;
    CHECK(padding_zero);
    // The loaded copy's padding is 0 too (the writer cleared it; load would clear it anyway).
    CHECK(std::memcmp(copy.W.data(), file.layer(name).W.data(), copy.W.bytes()) == 0);
  }
}

TEST_CASE("the writer's file is aligned, contiguous, and what the reference implementation accepts") {
  io::writer w;
  const auto a = onebit_test::random_layer(7, 100);
  const auto b = onebit_test::random_layer(3, 64);
  const std::vector<float> f32 = onebit_test::gaussian(5);
  const std::vector<std::int8_t> i8 = {-128, -1, 0, 1, 127};
  const std::vector<double> f64 = {1.5, -2.25};
  const std::vector<onebit::half> f16 = {onebit::to_half(1.0f), onebit::to_half(-0.5f), onebit::to_half(3.0f)};
  w.add("emb", f32.data(), {5});
  w.add("a", a);
  w.add("i8", io::dtype::I8, {5}, i8.data(), i8.size());
  w.add("b", b);
  w.add("f64", io::dtype::F64, {2, 1}, f64.data(), 16);
  w.add("f16", f16.data(), {3});
  w.set_metadata("source", "test");
  const std::vector<std::byte> bytes = w.bytes();
  const aligned_copy copy(bytes);
  io::read_options strict;
  strict.strict = true;
  const io::safetensors_view view = parse(copy, strict);

  CHECK(view.data_offset() % 64 == 0);
  CHECK(view.is_onebit());
  CHECK(view.names() == std::vector<std::string>{"a", "b"});
  CHECK(view.metadata().at("source") == "test");
  CHECK(view.metadata().at("format") == "onebit");
  CHECK(view.metadata().at("onebit.version") == "1");
  CHECK(view.metadata().at("onebit.layout") == io::layout_name);
  CHECK(view.metadata().at("onebit.layer.a") == "linear");
  // Ws first, each 64-aligned, then by decreasing element size: F64, F32, F16 (g, h), I8.
  const std::vector<io::tensor_info>& t = view.tensors();
  REQUIRE(t.size() == 10);
  CHECK(t[0].name == "a.W");
  CHECK(t[1].name == "b.W");
  CHECK(t[2].name == "f64");
  CHECK(t[3].name == "emb");
  CHECK(t.back().name == "i8");
  for (const io::tensor_info& info : t) {
    CAPTURE(info.name);
    CHECK((view.data_offset() + info.begin) % (io::dtype_bits(info.type) / 8) == 0);
    if (info.name.size() > 2 && info.name.substr(info.name.size() - 2) == ".W")
      CHECK((view.data_offset() + info.begin) % 64 == 0);
  }
  CHECK(view.floats("emb") == f32);
  CHECK(view.floats("i8") == std::vector<float>{-128, -1, 0, 1, 127});
  CHECK(view.floats("f64") == std::vector<float>{1.5f, -2.25f});
  CHECK(view.floats("f16") == std::vector<float>{1.0f, -0.5f, 3.0f});
  CHECK(same_layer(view.load_layer("a"), a));

  // The same bytes go to disk, and the header is padded with spaces.
  const std::string path = scratch() / "mixed.safetensors";
  w.write(path);
  CHECK(read_all(path) == bytes);
  const std::size_t header = view.data_offset() - 8;
  CHECK(static_cast<char>(bytes[8 + header - 1]) == ' ');
}

TEST_CASE("the writer's header is the JSON nlohmann-json writes, byte for byte") {
  // Names and metadata with every kind of byte JSON escapes, and UTF-8 it does not.
  static constexpr char controls[] = "nul\0tab\tnl\ncr\rff\fbs\b";
  const std::vector<std::string> names = {
      "plain", "quote\"back\\slash", std::string(controls, sizeof controls - 1),
      "ctl\x01\x1f\x7f/", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", ""};
  io::writer w;
  const std::vector<float> f = {1, 2, 3, 4, 5, 6};
  const std::vector<onebit::half> h(3);
  nlohmann::ordered_json expected = nlohmann::ordered_json::object();
  std::map<std::string, std::string> metadata;
  for (std::size_t i = 0; i < names.size(); ++i) {
    metadata["k" + names[i]] = "v" + names[i];
    w.set_metadata("k" + names[i], "v" + names[i]);
  }
  expected["__metadata__"] = metadata;
  // The writer orders tensors by decreasing element size: F32 first, then F16.
  std::uint64_t offset = 0;
  for (const std::string& name : names) {
    w.add(name, f.data(), {2, 3});
    expected[name] = {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {offset, offset + 24}}};
    offset += 24;
  }
  w.add("half", h.data(), {3});
  expected["half"] = {{"dtype", "F16"}, {"shape", {3}}, {"data_offsets", {offset, offset + 6}}};
  w.add("scalar", f.data(), {});
  const std::vector<std::byte> bytes = w.bytes();
  std::uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = length << 8 | static_cast<std::uint8_t>(bytes[static_cast<std::size_t>(i)]);
  std::string header(reinterpret_cast<const char*>(bytes.data()) + 8, static_cast<std::size_t>(length));
  while (!header.empty() && header.back() == ' ') header.pop_back();
  // "scalar" (F32, shape []) sorts among the F32 tensors, before "half".
  nlohmann::ordered_json with_scalar = nlohmann::ordered_json::object();
  for (auto it = expected.begin(); it != expected.end(); ++it) {
    if (it.key() == "half")
      with_scalar["scalar"] = {{"dtype", "F32"}, {"shape", nlohmann::ordered_json::array()},
                               {"data_offsets", {offset, offset + 4}}};
    with_scalar[it.key()] = it.value();
  }
  with_scalar["half"]["data_offsets"] = {offset + 4, offset + 10};
  CHECK(header == with_scalar.dump());
  // An empty writer's header is {}.
  const std::vector<std::byte> empty = io::writer{}.bytes();
  CHECK(std::string(reinterpret_cast<const char*>(empty.data()) + 8, 2) == "{}");
}

TEST_CASE("the writer takes as UTF-8 exactly what nlohmann-json does") {
  std::mt19937 rng(7);
  // Short strings of bytes drawn mostly from the interesting ranges: ASCII, continuation bytes,
  // lead bytes (valid and not), so that every branch of a UTF-8 check is hit many times.
  const std::vector<unsigned char> pool = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0,
                                           0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
  int accepted = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::string text(rng() % 6, '\0');
    for (char& c : text) c = static_cast<char>(pool[rng() % pool.size()]);
    bool nlohmann_ok = true;
    try {
      (void)nlohmann::json(text).dump();
    } catch (const nlohmann::json::exception&) {
      nlohmann_ok = false;
    }
    CAPTURE(onebit::io::detail::printable(text));
    CHECK(io::detail::valid_utf8(text) == nlohmann_ok);
    if (nlohmann_ok) {
      ++accepted;
      std::string ours;
      io::detail::append_json_string(ours, text);
      CHECK(ours == nlohmann::json(text).dump());
    }
  }
  CHECK(accepted > 1000);
}

TEST_CASE("mapped layers are views into the file and run gemm bit for bit like the layer") {
  std::map<std::string, onebit::linear<>> layers;
  layers.emplace("q", onebit_test::random_layer(64, 64));
  layers.emplace("ffn", onebit_test::random_layer(172, 64));
  layers.emplace("down", onebit_test::random_layer(64, 172));
  layers.emplace("odd", onebit_test::random_layer(33, 1000));
  const std::string path = scratch() / "mapped.safetensors";
  io::save(path, layers);

  io::mapped_file file(path);
  CHECK(file.mapped());
  CHECK(file.names() == std::vector<std::string>{"down", "ffn", "odd", "q"});
  const io::tensor_view q = file.tensor("q.W");
  const std::byte* begin = q.data - file.file().data_offset() - q.info->begin;
  for (const auto& [key, layer] : layers) {
    const std::string& name = key;  // CAPTURE's lambda cannot capture a structured binding
    CAPTURE(name);
    const onebit::linear_view<> view = file.layer(name);
    // Zero-copy: W, g and h point into the mapping.
    const auto* w = reinterpret_cast<const std::byte*>(view.W.data());
    CHECK(w >= begin);
    CHECK(w < begin + file.file().size());
    CHECK(reinterpret_cast<const std::byte*>(view.g) == file.tensor(name + ".g").data);
    CHECK(reinterpret_cast<const std::byte*>(view.h) == file.tensor(name + ".h").data);
    CHECK(reinterpret_cast<std::uintptr_t>(w) % 64 == 0);

    const std::size_t batch = 5, in = layer.in_features(), out = layer.out_features();
    const std::vector<float> x = onebit_test::gaussian(batch * in);
    for (onebit::kernel k : onebit::all_kernels) {
      CAPTURE(onebit::to_string(k));
      std::vector<float> y_file(batch * out), y_memory(batch * out);
      onebit::gemm(view, x.data(), batch, in, y_file.data(), out, k);
      onebit::gemm(layer, x.data(), batch, in, y_memory.data(), out, k);
      CHECK(std::memcmp(y_file.data(), y_memory.data(), y_file.size() * sizeof(float)) == 0);
    }
    std::vector<float> y1(out), y2(out);
    onebit::gemv(view, x.data(), y1.data());
    onebit::gemv(layer, x.data(), y2.data());
    CHECK(y1 == y2);
  }
  // The file moves with its views intact.
  io::mapped_file moved = std::move(file);
  CHECK(moved.layer("q").W == layers.at("q").W.view());
}

TEST_CASE("plain tensors of every convertible dtype read back as floats") {
  const std::vector<std::uint16_t> bf16 = {0x3f80, 0xc000, 0x7f80};  // 1, -2, inf
  const std::vector<unsigned char> e4m3 = {0x38, 0xb8, 0x01, 0x7e, 0x7f};   // 1, -1, 2^-9, 448, NaN
  const std::vector<unsigned char> e5m2 = {0x3c, 0xc0, 0x7c};               // 1, -2, inf
  const std::vector<unsigned char> e8m0 = {127, 128, 0xff};                 // 1, 2, NaN
  const std::vector<std::int64_t> i64 = {-5, 1 << 20};
  const std::vector<std::uint16_t> u16 = {0, 65535};
  const std::vector<unsigned char> flags = {0, 1, 7};
  io::writer w;
  w.add("bf16", io::dtype::BF16, {3}, bf16.data(), 6);
  w.add("e4m3", io::dtype::F8_E4M3, {5}, e4m3.data(), 5);
  w.add("e5m2", io::dtype::F8_E5M2, {3}, e5m2.data(), 3);
  w.add("e8m0", io::dtype::F8_E8M0, {3}, e8m0.data(), 3);
  w.add("i64", io::dtype::I64, {2}, i64.data(), 16);
  w.add("u16", io::dtype::U16, {1, 2}, u16.data(), 4);
  w.add("bool", io::dtype::BOOL, {3}, flags.data(), 3);
  w.add("f4", io::dtype::F4, {2, 3}, flags.data(), 3);
  w.add("scalar", io::dtype::U8, {}, flags.data() + 1, 1);
  w.add("empty", io::dtype::F32, {0, 1000000}, nullptr, 0);
  const auto bytes = w.bytes();
  const aligned_copy copy(bytes);
  const io::safetensors_view v = parse(copy);
  CHECK_FALSE(v.is_onebit());
  CHECK(v.names().empty());
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(v.floats("bf16") == std::vector<float>{1, -2, inf});
  const auto f8 = v.floats("e4m3");
  CHECK(f8[0] == 1.0f);
  CHECK(f8[1] == -1.0f);
  CHECK(f8[2] == 0x1p-9f);
  CHECK(f8[3] == 448.0f);
  CHECK(std::isnan(f8[4]));
  CHECK(v.floats("e5m2") == std::vector<float>{1, -2, inf});
  const auto e8 = v.floats("e8m0");
  CHECK(e8[0] == 1.0f);
  CHECK(e8[1] == 2.0f);
  CHECK(std::isnan(e8[2]));
  CHECK(v.floats("i64") == std::vector<float>{-5, 1 << 20});
  CHECK(v.floats("u16") == std::vector<float>{0, 65535});
  CHECK(v.floats("bool") == std::vector<float>{0, 1, 1});
  CHECK(v.floats("scalar") == std::vector<float>{1});
  CHECK(v.info("scalar").shape.empty());
  CHECK(v.floats("empty").empty());
  CHECK(v.info("f4").bytes() == 3);
  expect_error([&] { (void)v.floats("f4"); }, "f4", "dtype", "does not convert to float");
  expect_error([&] { (void)v.tensor("nope"); }, "nope", "", "no such tensor");
  expect_error([&] { (void)v.layer("nope"); }, "nope", "", "no OneBit layer");
}

TEST_CASE("the writer refuses what would make a bad file") {
  io::writer w;
  const std::vector<float> f(4);
  w.add("x", f.data(), {4});
  CHECK_THROWS_WITH_AS(w.add("x", f.data(), {4}), doctest::Contains("added twice"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(w.add("__metadata__", f.data(), {4}), doctest::Contains("not a tensor name"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(w.add("bad\xff", f.data(), {4}), doctest::Contains("not valid UTF-8"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(w.add("y", io::dtype::F32, {5}, f.data(), 16), doctest::Contains("needs 160 bits"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(w.add("z", io::dtype::F4, {3}, f.data(), 1), doctest::Contains("needs 12 bits"),
                       std::invalid_argument);
  CHECK_THROWS_AS(w.set_metadata("onebit.version", "2"), std::invalid_argument);
  CHECK_THROWS_AS(w.set_metadata("k", "\xc0\x80"), std::invalid_argument);
  const auto layer = onebit_test::random_layer(2, 8);
  w.add("x2", layer);
  CHECK_THROWS_WITH_AS(w.add("x2", layer), doctest::Contains("added twice"), std::invalid_argument);
  w.set_metadata("format", "pt");
  CHECK_THROWS_WITH_AS((void)w.bytes(), doctest::Contains("format"), std::invalid_argument);
  auto short_g = layer;
  short_g.g.pop_back();
  CHECK_THROWS_AS(w.add("y2", short_g), std::invalid_argument);
}

TEST_CASE("a failed write leaves no file and no temporary behind, and keeps the old file") {
  const auto layer = onebit_test::random_layer(256, 4096);  // 128 KiB of W
  std::map<std::string, onebit::linear<>> layers{{"big", layer}};

  // A directory that does not exist: nothing is created.
  const std::string missing = scratch() / "no-such-dir/out.safetensors";
  CHECK_THROWS_WITH_AS(io::save(missing, layers), doctest::Contains("temporary file"), io::error);
  CHECK_FALSE(fs::exists(scratch() / "no-such-dir"));

  // A write that fails halfway (the file size limit): the old file survives untouched.
  const std::string path = scratch() / "atomic.safetensors";
  std::map<std::string, onebit::linear<>> small{{"small", onebit_test::random_layer(2, 3)}};
  io::save(path, small);
  const auto before = read_all(path);
  struct rlimit old_limit {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 64 * 1024;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
  bool threw = false;
  try {
    io::save(path, layers);
  } catch (const io::error& e) {
    threw = true;
    CHECK(std::string(e.what()).find("write") != std::string::npos);
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  CHECK(threw);
  CHECK(read_all(path) == before);
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(scratch().path))
    if (entry.path().string().find(".tmp-onebit-") != std::string::npos) ++files;
  CHECK(files == 0);
  CHECK(io::load(path).count("small") == 1);
}

TEST_CASE("files that cannot be opened say why") {
  expect_error([] { io::mapped_file f("test.safetensors.does-not-exist"); }, "", "",
               "No such file");
  CHECK_THROWS_WITH_AS(io::mapped_file(scratch().path.string()),
                       doctest::Contains("not a regular file"), io::error);
}

TEST_CASE("hostile: too short, lying or oversized header lengths") {
  expect_file_error({}, "", "header length", "shorter than the 8-byte header length");
  expect_file_error(std::vector<std::byte>(7), "", "header length", "7 bytes");
  expect_file_error(raw_file("{}", {}, ~std::uint64_t{0} - 1), "", "header length", "over the limit");
  expect_file_error(raw_file("{}", {}, 100'000'001), "", "header length", "over the limit");
  expect_file_error(raw_file("{}", {}, 3), "", "header length", "truncated");
  io::read_options small;
  small.max_header_bytes = 16;
  expect_file_error(raw_file(layer_header(), std::vector<unsigned char>(272)), "", "header length",
                    "over the limit of 16", small);
  // A length that stops the JSON short.
  expect_file_error(raw_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", {7}, 20), "",
                    "header", "not valid JSON");
}

TEST_CASE("hostile: every truncation of a valid file is refused") {
  std::map<std::string, onebit::linear<>> layers{{"L", onebit_test::random_layer(3, 100)}};
  const std::string path = scratch() / "whole.safetensors";
  io::save(path, layers);
  const auto bytes = read_all(path);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    CAPTURE(n);
    const aligned_copy cut(std::vector<std::byte>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n)));
    CHECK_THROWS_AS((void)parse(cut), io::error);
  }
  // And on disk, through the mapping.
  const std::string truncated = scratch() / "truncated.safetensors";
  write_all(truncated, std::vector<std::byte>(bytes.begin(), bytes.end() - 1));
  CHECK_THROWS_WITH_AS(io::mapped_file{truncated}, doctest::Contains("truncated?"), io::error);
}

TEST_CASE("hostile: offsets and sizes that lie") {
  const std::vector<unsigned char> data(272);
  expect_file_error(raw_file(layer_header(), std::vector<unsigned char>(271)), "L.h", "data_offsets",
                    "runs past the end of the data region");
  expect_file_error(
      raw_file(layer_header(R"("dtype":"U8","shape":[2,64],"data_offsets":[0,18446744073709551615])"), data),
      "L.W", "data_offsets", "runs past the end");
  expect_file_error(raw_file(layer_header(R"("dtype":"U8","shape":[2,64],"data_offsets":[128,0])"), data),
                    "L.W", "data_offsets", "begin 128 is after end 0");
  expect_file_error(raw_file(layer_header(R"("dtype":"U8","shape":[2,65],"data_offsets":[0,128])"), data),
                    "L.W", "data_offsets", "needs 130");
  expect_file_error(raw_file(layer_header("", R"("dtype":"F32","shape":[70],"data_offsets":[128,268])"), data),
                    "L.g", "data_offsets", "needs 280");
  expect_file_error(raw_file(R"({"x":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}})", {0}), "x", "shape",
                    "not a whole number of bytes");
}

TEST_CASE("hostile: overlapping tensors") {
  const std::vector<unsigned char> data(272);
  expect_file_error(raw_file(layer_header("", R"("dtype":"F16","shape":[70],"data_offsets":[126,266])"), data),
                    "L.g", "data_offsets", "overlaps tensor \"L.W\" at [0, 128)");
  // Overlap with a tensor that is not the one just before (a long one covering two).
  expect_file_error(raw_file(R"({"a":{"dtype":"U8","shape":[10],"data_offsets":[0,10]},)"
                             R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
                             R"("c":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}})",
                             std::vector<unsigned char>(10)),
                    "b", "data_offsets", "overlaps tensor \"a\"");
  expect_file_error(raw_file(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                             std::vector<unsigned char>(4)),
                    "b", "data_offsets", "overlaps");
  // Empty tensors overlap nothing.
  const aligned_copy ok(raw_file(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                 R"("e":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}})",
                                 std::vector<unsigned char>(4)));
  CHECK(parse(ok).tensors().size() == 2);
}

TEST_CASE("hostile: huge shapes overflow nothing") {
  const std::string big = "4294967296";  // 2^32
  expect_file_error(raw_file(R"({"x":{"dtype":"U8","shape":[)" + big + "," + big + R"(],"data_offsets":[0,0]}})", {}),
                    "x", "shape", "more than 2^64 elements");
  expect_file_error(raw_file(R"({"x":{"dtype":"F64","shape":[4294967296,536870912],"data_offsets":[0,0]}})", {}),
                    "x", "shape", "more than 2^64 bits");
  expect_file_error(raw_file(R"({"x":{"dtype":"U8","shape":[18446744073709551615,2,0],"data_offsets":[0,0]}})", {}),
                    "x", "shape", "more than 2^64 elements");
  expect_file_error(raw_file(R"({"x":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,0]}})", {}),
                    "x", "shape", "not an integer below 2^64");
  expect_file_error(raw_file(R"({"x":{"dtype":"U8","shape":[1152921504606846976],"data_offsets":[0,0]}})", {}),
                    "x", "data_offsets", "needs 1152921504606846976");
  // Zero elements with large dimensions is a valid empty tensor.
  const aligned_copy ok(raw_file(R"({"x":{"dtype":"U8","shape":[4294967296,0],"data_offsets":[0,0]}})", {}));
  CHECK(parse(ok).info("x").elements() == 0);
  // A layer whose g claims more inputs than the file holds.
  expect_file_error(raw_file(layer_header("", R"("dtype":"F16","shape":[9223372036854775807],"data_offsets":[128,268])"),
                             std::vector<unsigned char>(272)),
                    "L.g", "shape", "more than 2^64 bits");
}

TEST_CASE("hostile: names that are not UTF-8, and names given twice") {
  expect_file_error(raw_file("{\"bad\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", {1}), "",
                    "header", "ill-formed UTF-8");
  expect_file_error(raw_file("{\"\xc0\xaf\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", {1}), "",
                    "header", "not valid JSON");
  expect_file_error(raw_file(R"({"\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", {1}), "",
                    "header", "surrogate");
  // The error message stays printable whatever the bytes were.
  try {
    (void)parse(aligned_copy(raw_file("{\"\x01\xfe\":{}}", {})));
    FAIL("accepted");
  } catch (const io::error& e) {
    for (const char c : std::string(e.what())) CHECK(static_cast<unsigned char>(c) >= 0x20);
  }
  // Valid UTF-8 and escapes are fine, NUL included.
  const aligned_copy ok(raw_file(R"({"é\u0000\n":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", {1}));
  CHECK(parse(ok).tensors().at(0).name == std::string("\xc3\xa9\0\n", 4));

  expect_file_error(raw_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                             R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                             {1, 2}),
                    "a", "", "appears twice");
  expect_file_error(raw_file(R"({"__metadata__":{"k":"1","k":"2"}})", {}), "", "__metadata__[\"k\"]",
                    "appears twice");
  expect_file_error(raw_file(R"({"__metadata__":{},"__metadata__":{}})", {}), "__metadata__", "", "appears twice");
  expect_file_error(raw_file(R"({"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", {1}), "a",
                    "dtype", "appears twice");
}

TEST_CASE("hostile: headers of the wrong structure") {
  expect_file_error(raw_file("[]", {}), "", "header", "not a JSON object");
  expect_file_error(raw_file("", {}), "", "header", "not valid JSON");
  expect_file_error(raw_file("{} {}", {}), "", "header", "not valid JSON");
  expect_file_error(raw_file(std::string(100000, '[') , {}), "", "header", "not a JSON object");
  expect_file_error(raw_file(R"({"a":{"dtype":"U8","shape":[[[[[1]]]]],"data_offsets":[0,1]}})", {1}), "a", "shape",
                    "found an array");
  expect_file_error(raw_file(R"({"__metadata__":{"k":1}})", {}), "", "__metadata__[\"k\"]", "not a string");
  expect_file_error(raw_file(R"({"__metadata__":[]})", {}), "", "__metadata__", "not an object");
  expect_file_error(raw_file(R"({"a":1})", {}), "a", "", "not an object with dtype");
  expect_file_error(raw_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":0}})", {1}), "a", "x",
                    "not a field of a tensor");
  expect_file_error(raw_file(R"({"a":{"dtype":"U8","shape":[1]}})", {1}), "a", "data_offsets", "is missing");
  expect_file_error(raw_file(R"({"a":{"shape":[1],"data_offsets":[0,1]}})", {1}), "a", "dtype", "is missing");
  expect_file_error(raw_file(R"({"a":{"dtype":"U8","data_offsets":[0,1]}})", {1}), "a", "shape", "is missing");
  expect_file_error(raw_file(R"({"a":{"dtype":"U9","shape":[1],"data_offsets":[0,1]}})", {1}), "a", "dtype",
                    "\"U9\" is not a safetensors dtype");
  expect_file_error(raw_file(R"({"a":{"dtype":8,"shape":[1],"data_offsets":[0,1]}})", {1}), "a", "dtype",
                    "not a string");
  expect_file_error(raw_file(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", {1}), "a", "shape",
                    "negative");
  expect_file_error(raw_file(R"({"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", {1}), "a", "shape",
                    "not an integer");
  expect_file_error(raw_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}})", {1}), "a",
                    "data_offsets", "more than two");
  expect_file_error(raw_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1]}})", {1}), "a", "data_offsets",
                    "needs [begin, end]");
  expect_file_error(raw_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":null}})", {1}), "a", "data_offsets",
                    "found null");
  expect_file_error(raw_file(R"({/*c*/})", {}), "", "header", "not valid JSON");
}

TEST_CASE("hostile: strict mode refuses gaps and trailing bytes; lenient mode reads them") {
  io::read_options strict;
  strict.strict = true;
  const auto gap = raw_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", {0, 5});
  CHECK(parse(aligned_copy(gap)).floats("a") == std::vector<float>{5});
  expect_file_error(gap, "a", "data_offsets", "back to back", strict);
  const auto trailing = raw_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", {5, 0});
  CHECK(parse(aligned_copy(trailing)).floats("a") == std::vector<float>{5});
  expect_file_error(trailing, "", "data_offsets", "no bytes after the last tensor", strict);
  expect_file_error(raw_file(R"(  {})", {}), "", "header", "start with '{'", strict);
  CHECK(parse(aligned_copy(raw_file("  {}  ", {}))).tensors().empty());
}

TEST_CASE("hostile: onebit layers with the wrong dtypes, shapes or declarations") {
  const std::vector<unsigned char> data(272);
  const aligned_copy good(raw_file(layer_header(), data));
  CHECK(parse(good).names() == std::vector<std::string>{"L"});

  expect_file_error(raw_file(layer_header(R"("dtype":"I8","shape":[2,64],"data_offsets":[0,128])"), data), "L.W",
                    "dtype", "is I8; a OneBit layer's W is U8");
  expect_file_error(raw_file(layer_header("", R"("dtype":"BF16","shape":[70],"data_offsets":[128,268])"), data),
                    "L.g", "dtype", "is BF16; a OneBit layer's g is F16");
  expect_file_error(raw_file(layer_header(R"("dtype":"U8","shape":[128],"data_offsets":[0,128])"), data), "L.W",
                    "shape", "has 2 dimensions");
  expect_file_error(raw_file(layer_header("", "", R"("dtype":"F16","shape":[1,2],"data_offsets":[268,272])"), data),
                    "L.h", "shape", "has 1 dimension");
  expect_file_error(raw_file(layer_header(R"("dtype":"U8","shape":[1,128],"data_offsets":[0,128])"), data), "L.h",
                    "shape", "has 2 values but L.W has 1 rows");
  expect_file_error(raw_file(layer_header(R"("dtype":"U8","shape":[32,4],"data_offsets":[0,128])"), data), "L.h",
                    "shape", "has 2 values but L.W has 32 rows");
  // 70 inputs need 9 bytes a row.
  expect_file_error(raw_file(layer_header(R"("dtype":"U8","shape":[2,8],"data_offsets":[0,16])",
                                          R"("dtype":"F16","shape":[70],"data_offsets":[16,156])",
                                          R"("dtype":"F16","shape":[2],"data_offsets":[156,160])"),
                             std::vector<unsigned char>(160)),
                    "L.W", "shape", "cannot hold the 70 signs");
  expect_file_error(raw_file(layer_header("", "", "", R"(,"onebit.layer.M":"linear")"), data), "M.W", "",
                    "is missing: the OneBit layer \"M\" needs it");
  expect_file_error(raw_file(layer_header("", "", "", R"(,"onebit.layer.M":"conv")"), data), "M",
                    "__metadata__[\"onebit.layer.M\"]", "kind \"conv\"");

  std::string v2 = layer_header();
  v2.replace(v2.find("\"onebit.version\":\"1\""), 20, "\"onebit.version\":\"2\"");
  expect_file_error(raw_file(v2, data), "", "__metadata__[\"onebit.version\"]", "knows version 1");
  std::string other_layout = layer_header();
  other_layout.replace(other_layout.find(io::layout_name), std::strlen(io::layout_name), "msb-first");
  expect_file_error(raw_file(other_layout, data), "", "__metadata__[\"onebit.layout\"]", "\"msb-first\"");
  // Without "format": "onebit" the same tensors are plain tensors.
  std::string plain = layer_header();
  plain.replace(plain.find("\"format\":\"onebit\""), 17, "\"format\":\"pt\"    ");
  const aligned_copy plain_copy(raw_file(plain, data));
  CHECK(parse(plain_copy).names().empty());
  CHECK(parse(plain_copy).tensors().size() == 3);
}

TEST_CASE("misaligned W: layer() refuses zero-copy and says so; load_layer() copies") {
  // The writer's bytes placed at an address 8 past a 64-byte boundary: valid file, misaligned W.
  const auto layer = onebit_test::random_layer(4, 100);
  io::writer w;
  w.add("L", layer);
  const aligned_copy shifted(w.bytes(), 8);
  const io::safetensors_view v = parse(shifted);
  expect_error([&] { (void)v.layer("L"); }, "L.W", "data_offsets", "not on a 64-byte boundary in memory, so no zero-copy view");
  CHECK(same_layer(v.load_layer("L"), layer));

  // Rows of 13 bytes (another writer's packing, unaligned rows): copied, equal; no view.
  std::vector<unsigned char> data(4 * 13 + 200 + 8, 0);
  for (std::size_t r = 0; r < 4; ++r)
    std::memcpy(data.data() + r * 13, layer.W.row(r), 13);
  std::memcpy(data.data() + 52, layer.g.data(), 200);
  std::memcpy(data.data() + 252, layer.h.data(), 8);
  const std::string header = layer_header(R"("dtype":"U8","shape":[4,13],"data_offsets":[0,52])",
                                          R"("dtype":"F16","shape":[100],"data_offsets":[52,252])",
                                          R"("dtype":"F16","shape":[4],"data_offsets":[252,260])");
  const aligned_copy packed(raw_file(header, data));
  const io::safetensors_view p = parse(packed);
  expect_error([&] { (void)p.layer("L"); }, "L.W", "shape", "not a multiple of 64");
  CHECK(same_layer(p.load_layer("L"), layer));

  // An odd address for g (a file whose F16 data starts at an odd offset).
  std::string odd_header = layer_header(R"("dtype":"U8","shape":[2,64],"data_offsets":[0,128])",
                                        R"("dtype":"F16","shape":[70],"data_offsets":[129,269])",
                                        R"("dtype":"F16","shape":[2],"data_offsets":[269,273])");
  odd_header.append((64 - (8 + odd_header.size()) % 64) % 64, ' ');
  const aligned_copy odd(raw_file(odd_header, std::vector<unsigned char>(273)));
  expect_error([&] { (void)parse(odd).layer("L"); }, "L.g", "data_offsets", "odd address");
  CHECK(parse(odd).load_layer("L").in_features() == 70);
}

TEST_CASE("hostile: random corruption of a valid file never crashes or reads out of bounds") {
  std::map<std::string, onebit::linear<>> layers{{"a", onebit_test::random_layer(3, 70)},
                                                 {"b", onebit_test::random_layer(2, 9)}};
  const std::string path = scratch() / "corrupt.safetensors";
  io::save(path, layers);
  const auto original = read_all(path);
  std::mt19937_64 rng(7);
  std::size_t accepted = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    auto bytes = original;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      // Mostly the header, where the structure is.
      const std::size_t at = rng() % 3 == 0 ? rng() % bytes.size() : rng() % std::min<std::size_t>(bytes.size(), 400);
      bytes[at] = static_cast<std::byte>(rng() % 3 == 0 ? rng() : (static_cast<unsigned>(bytes[at]) ^ (1u << (rng() % 8))));
    }
    if (rng() % 8 == 0) bytes.resize(rng() % bytes.size());
    const aligned_copy copy(bytes);
    try {
      const io::safetensors_view v = parse(copy);
      for (const std::string& name : v.names()) {
        const auto owned = v.load_layer(name);
        try {
          const auto view = v.layer(name);
          CHECK(view.W == owned.W.view());
        } catch (const io::error&) {
        }
      }
      for (const io::tensor_info& t : v.tensors()) {
        try {
          (void)v.floats(t.name);
        } catch (const io::error&) {
        }
      }
      ++accepted;
    } catch (const io::error&) {
    }
  }
  MESSAGE(accepted << " of 3000 corrupted files were still valid");
}

namespace {

std::string hex_of(const std::string& s) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (const char c : s) {
    out += digits[static_cast<unsigned char>(c) >> 4];
    out += digits[static_cast<unsigned char>(c) & 15];
  }
  return out;
}

std::string float_list(const std::vector<float>& v) {
  std::string out;
  char buffer[64];
  for (const float f : v) {
    std::snprintf(buffer, sizeof buffer, " %a", static_cast<double>(f));
    out += buffer;
  }
  return out;
}

}  // namespace

bool same_lowbit(const onebit::lowbit_matrix& a, const onebit::lowbit_matrix& b);

// scripts/check_safetensors.py reads the file this writes with numpy alone and checks it holds
// what onebit says: the CTest test check_safetensors_python runs this case with
// ONEBIT_PYTHON_CHECK_DIR set, then the script. Without the variable it only writes to scratch.
TEST_CASE("files for the independent Python check") {
  const char* dir = std::getenv("ONEBIT_PYTHON_CHECK_DIR");
  const std::string base = dir != nullptr ? std::string(dir) + "/python_check" : scratch() / "python_check";
  std::map<std::string, onebit::linear<>> layers;
  layers.emplace("model.layers.0.attn.q", onebit_test::random_layer(5, 70));
  layers.emplace("model.layers.0.mlp.up", onebit_test::random_layer(9, 130));
  layers.emplace("naïve name", onebit_test::random_layer(2, 8));
  for (auto& [name, layer] : layers) onebit_test::fill_padding_with_garbage(layer.W);

  const std::vector<float> f32 = {1.5f, -0.0f, 3.25e-5f, -1e30f, 7.0f, 0.1f};
  const std::vector<onebit::half> f16 = {onebit::to_half(0.5f), onebit::to_half(-65504.0f),
                                         onebit::half::from_bits(1)};
  const std::vector<std::uint16_t> bf16 = {0x3f80, 0xbf00, 0x4049};
  const std::vector<std::int8_t> i8 = {-128, 5, 127};
  const std::vector<std::uint8_t> u8 = {0, 200, 255, 1};
  const std::vector<std::int64_t> i64 = {-(std::int64_t{1} << 40), 3};
  const std::vector<double> f64 = {0.1, -2.5};
  io::writer w;
  for (const auto& [name, layer] : layers) w.add(name, layer);
  w.add("norm.weight", f32.data(), {2, 3});
  w.add("scale.f16", f16.data(), {3});
  w.add("emb.bf16", io::dtype::BF16, {3}, bf16.data(), 6);
  w.add("ids.i8", io::dtype::I8, {3}, i8.data(), 3);
  w.add("bytes.u8", io::dtype::U8, {2, 2}, u8.data(), 4);
  w.add("count.i64", io::dtype::I64, {2}, i64.data(), 16);
  w.add("f64", io::dtype::F64, {2}, f64.data(), 16);
  const std::vector<float> dense = onebit_test::gaussian(3 * 40);
  onebit::rtn_options asymmetric;
  asymmetric.bits = 3;
  asymmetric.group = 16;
  onebit::rtn_options symmetric;
  symmetric.bits = 2;
  symmetric.symmetric = true;
  const std::map<std::string, onebit::lowbit_matrix> lowbits = {
      {"lowbit.w3g16", onebit::rtn(dense.data(), 3, 40, 40, asymmetric)},
      {"lowbit.w2sym", onebit::rtn(dense.data(), 3, 40, 40, symmetric)}};
  for (const auto& [name, m] : lowbits) w.add(name, m);
  w.set_metadata("producer", "test_safetensors");
  w.write(base + ".safetensors");

  // The expected content, as onebit reads it back: every tensor's values, every layer's signs,
  // g, h, and its gemv on a fixed x.
  const io::mapped_file file(base + ".safetensors");
  std::ofstream out(base + ".expected");
  out << "onebit-expected 1\n";
  for (const io::tensor_info& t : file.tensors()) {
    bool in_layer = false;
    for (const std::string& name : file.names())
      for (const char* suffix : {".W", ".g", ".h"}) in_layer = in_layer || t.name == name + suffix;
    for (const std::string& name : file.lowbit_names())
      for (const char* suffix : {".planes", ".scales", ".zeros"})
        in_layer = in_layer || t.name == name + suffix;
    if (in_layer) continue;
    out << "tensor " << hex_of(t.name) << " " << io::to_string(t.type) << " ";
    for (std::size_t i = 0; i < t.shape.size(); ++i) out << (i ? "," : "") << t.shape[i];
    if (t.shape.empty()) out << "-";
    out << float_list(file.floats(t.name)) << "\n";
  }
  for (const std::string& name : file.names()) {
    const onebit::linear_view<> layer = file.layer(name);
    const std::size_t in = layer.in_features(), out_features = layer.out_features();
    out << "layer " << hex_of(name) << " " << out_features << " " << in << "\n";
    for (std::size_t j = 0; j < out_features; ++j) {
      out << "signs ";
      for (std::size_t i = 0; i < in; ++i) out << (layer.W(j, i) < 0 ? '-' : '+');
      out << "\n";
    }
    std::vector<float> g(in), h(out_features), x(in), y(out_features);
    onebit::to_float(layer.g, g.data(), in);
    onebit::to_float(layer.h, h.data(), out_features);
    for (std::size_t i = 0; i < in; ++i) x[i] = static_cast<float>(static_cast<int>(i * 37 % 17) - 8) / 8.0f;
    onebit::gemv(layer, x.data(), y.data(), onebit::kernel::reference);
    out << "g" << float_list(g) << "\nh" << float_list(h) << "\nx" << float_list(x) << "\ny"
        << float_list(y) << "\n";
    CHECK(same_layer(file.load_layer(name), layers.at(name)));
  }
  for (const std::string& name : file.lowbit_names()) {
    const onebit::lowbit_matrix m = file.load_lowbit(name);
    CHECK(same_lowbit(m, lowbits.at(name)));
    std::vector<float> values(m.rows() * m.cols());
    m.dequantize(values.data(), m.cols());
    out << "lowbit " << hex_of(name) << " " << m.rows() << " " << m.cols() << float_list(values) << "\n";
  }
  CHECK(out.good());
}

bool same_lowbit(const onebit::lowbit_matrix& a, const onebit::lowbit_matrix& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols() || a.bits() != b.bits() ||
      a.group() != b.group() || a.symmetric() != b.symmetric() || a.scales() != b.scales() ||
      a.zeros() != b.zeros())
    return false;
  for (std::size_t r = 0; r < a.rows(); ++r)
    for (std::size_t c = 0; c < a.cols(); ++c)
      if (a.code(r, c) != b.code(r, c)) return false;
  return true;
}

TEST_CASE("low-bit matrices round trip bit-identically next to OneBit layers") {
  const std::vector<float> w = onebit_test::gaussian(9 * 100);
  onebit::rtn_options three;
  three.bits = 3;
  three.group = 32;  // 100 columns: groups of 32, 32, 32 and 4
  onebit::rtn_options four;
  four.bits = 4;
  four.symmetric = true;
  onebit::rtn_options one;
  one.bits = 1;
  const onebit::lowbit_matrix a = onebit::rtn(w.data(), 9, 100, 100, three);
  const onebit::lowbit_matrix b = onebit::rtn(w.data(), 9, 100, 100, four);
  const onebit::lowbit_matrix c = onebit::rtn(w.data(), 3, 70, 100, one);
  const auto layer = onebit_test::random_layer(4, 100);
  io::writer writer;
  writer.add("q3", a);
  writer.add("s4", b);
  writer.add("one", c);
  writer.add("L", layer);
  CHECK_THROWS_WITH_AS(writer.add("q3", a), doctest::Contains("added twice"), std::invalid_argument);
  const std::string path = scratch() / "lowbit.safetensors";
  writer.write(path);

  io::read_options strict;
  strict.strict = true;
  const io::mapped_file file(path, strict);
  CHECK(file.names() == std::vector<std::string>{"L"});
  CHECK(file.lowbit_names() == std::vector<std::string>{"one", "q3", "s4"});
  CHECK(file.metadata().at("onebit.layer.q3") == "lowbit bits=3 cols=100 group=32 symmetric=0");
  CHECK(file.metadata().at("onebit.layer.s4") == "lowbit bits=4 cols=100 group=0 symmetric=1");
  CHECK(file.tensor("q3.planes").shape() == std::vector<std::uint64_t>{3, 9, 64});
  CHECK(file.tensor("q3.scales").shape() == std::vector<std::uint64_t>{9, 4});
  CHECK(file.file().find("s4.zeros") == nullptr);
  CHECK(same_lowbit(file.load_lowbit("q3"), a));
  CHECK(same_lowbit(file.load_lowbit("s4"), b));
  CHECK(same_lowbit(file.load_lowbit("one"), c));
  CHECK(same_layer(file.load_layer("L"), layer));
  CHECK((file.file().data_offset() + file.tensor("q3.planes").info->begin) % 64 == 0);
  CHECK_THROWS_WITH_AS((void)file.file().lowbit_at("L"), doctest::Contains("no low-bit matrix"), io::error);
}

TEST_CASE("hostile: low-bit declarations and tensors that do not fit") {
  // A valid 2x10 matrix of 2 bits, groups of 4 (3 groups): planes [2, 2, 64], scales and zeros [2, 3].
  const auto file_with = [](const std::string& declaration, const std::string& planes_shape = "[2,2,64]",
                            const std::string& scales_shape = "[2,3]", bool zeros = true,
                            float scale = 0.5f) {
    std::vector<unsigned char> data(256 + 48, 0);
    for (std::size_t i = 0; i < 6; ++i) std::memcpy(data.data() + 256 + 4 * i, &scale, 4);
    std::string header = R"({"__metadata__":{"format":"onebit","onebit.version":"1","onebit.layout":")" +
                         std::string(io::layout_name) + R"(","onebit.layer.m":")" + declaration +
                         R"("},"m.planes":{"dtype":"U8","shape":)" + planes_shape +
                         R"(,"data_offsets":[0,256]},"m.scales":{"dtype":"F32","shape":)" + scales_shape +
                         R"(,"data_offsets":[256,280]})";
    if (zeros) header += R"(,"m.zeros":{"dtype":"F32","shape":[2,3],"data_offsets":[280,304]})";
    return raw_file(header + "}", data);
  };
  const std::string ok = "lowbit bits=2 cols=10 group=4 symmetric=0";
  const aligned_copy good(file_with(ok));
  CHECK(parse(good).lowbit_names() == std::vector<std::string>{"m"});
  CHECK(parse(good).load_lowbit("m").dequantized(1, 9) == 0.0f);

  const std::string field = "__metadata__[\"onebit.layer.m\"]";
  expect_file_error(file_with("lowbit bits=2 cols=10 group=4"), "m", field, "lacks symmetric=");
  expect_file_error(file_with("lowbit bits=2 cols=10 group=4 symmetric=0 extra=1"), "m", field,
                    "\"extra=1\" is not one of");
  expect_file_error(file_with("lowbit bits=2 bits=2 cols=10 group=4 symmetric=0"), "m", field, "each once");
  expect_file_error(file_with("lowbit bits=-2 cols=10 group=4 symmetric=0"), "m", field, "decimal number");
  expect_file_error(file_with("lowbit bits=99999999999999999999 cols=10 group=4 symmetric=0"), "m", field,
                    "decimal number");
  expect_file_error(file_with("lowbit bits=9 cols=10 group=4 symmetric=0"), "m", field, "outside 1..8");
  expect_file_error(file_with("lowbit bits=1 cols=10 group=4 symmetric=1", "[2,2,64]", "[2,3]", false), "m",
                    field, "outside 2..8 (symmetric)");
  expect_file_error(file_with("lowbit bits=2 cols=10 group=11 symmetric=0"), "m", field, "do not fit");
  expect_file_error(file_with("lowbit bits=2 cols=0 group=0 symmetric=0"), "m", field, "do not fit");
  expect_file_error(file_with("lowbit bits=3 cols=10 group=4 symmetric=0"), "m.planes", "shape",
                    "holds 2 planes, but bits=3");
  expect_file_error(file_with("lowbit bits=2 cols=1000 group=0 symmetric=0"), "m.planes",
                    "shape", "cannot hold cols=1000");
  expect_file_error(file_with(ok, "[2,2,64]", "[3,2]"), "m.scales", "shape", "need [2, 3]");
  expect_file_error(file_with(ok, "[256]"), "m.planes", "shape", "with 3 dimensions");
  expect_file_error(file_with(ok, "[2,2,64]", "[2,3]", false), "m.zeros", "", "is missing");
  expect_file_error(file_with("lowbit bits=2 cols=10 group=4 symmetric=1"), "m.zeros", "",
                    "the low-bit matrix is symmetric");
  const aligned_copy nan_scale(file_with(ok, "[2,2,64]", "[2,3]", true, std::numeric_limits<float>::quiet_NaN()));
  const io::safetensors_view v = parse(nan_scale);
  expect_error([&] { (void)v.load_lowbit("m"); }, "m", "values", "not finite");
}

TEST_CASE("the post-LayerNorm is saved in the metadata and read back; files without it load off") {
  std::map<std::string, onebit::linear<>> layers;
  layers["off"] = onebit_test::random_layer(5, 70);
  layers["on"] = onebit_test::random_layer(9, 33);
  layers["on"].norm = {true, 1e-5f};
  layers["odd_eps"] = onebit_test::random_layer(3, 8);
  layers["odd_eps"].norm = {true, 0.1234567f};
  layers["zero_eps"] = onebit_test::random_layer(2, 8);
  layers["zero_eps"].norm = {true, 0.0f};
  layers["tiny_eps"] = onebit_test::random_layer(2, 8);
  layers["tiny_eps"].norm = {true, 1e-40f};  // a subnormal float
  const std::string path = scratch() / "post_norm.safetensors";
  io::save(path, layers);

  const io::mapped_file file(path);
  CHECK(file.metadata().at("onebit.layer.off") == "linear");
  CHECK(file.metadata().at("onebit.layer.on") == "linear norm=layernorm eps=1e-05");
  const auto loaded = io::load(path);
  for (const auto& [key, layer] : layers) {
    const std::string& name = key;  // INFO's lambda cannot capture a structured binding
    INFO(name);
    CHECK(same_layer(loaded.at(name), layer));
    CHECK(loaded.at(name).norm.enabled == layer.norm.enabled);
    CHECK(loaded.at(name).norm.eps == layer.norm.eps);
    CHECK(file.layer(name).norm == layer.norm);
    CHECK(file.load_layer(name).norm == layer.norm);
  }
  // The zero-copy view runs the norm: the same bits as the layer.
  const std::vector<float> x = onebit_test::gaussian(2 * 33);
  std::vector<float> a(2 * 9), b(2 * 9);
  onebit::gemm(layers["on"], x.data(), 2, 33, a.data(), 9);
  onebit::gemm(file.layer("on"), x.data(), 2, 33, b.data(), 9);
  CHECK(a == b);

  // A file from before the norm existed: "linear" loads with the norm off.
  const aligned_copy old(raw_file(layer_header(), std::vector<unsigned char>(272)));
  CHECK_FALSE(parse(old).load_layer("L").norm.enabled);
}

TEST_CASE("hostile: post-norm declarations that do not parse are refused, naming the field") {
  const std::vector<unsigned char> data(272);
  const std::string field = "__metadata__[\"onebit.layer.L\"]";
  for (const char* kind : {"linear norm=layernorm eps=nan", "linear norm=layernorm eps=inf",
                           "linear norm=layernorm eps=-1", "linear norm=layernorm eps=",
                           "linear norm=rmsnorm eps=1e-5", "linear norm=layernorm",
                           "linear norm=layernorm eps=1e-5 x=1", "linear norm=layernorm eps=1e99",
                           "linear norm=layernorm eps=0x1p-3", "linearx"}) {
    INFO(kind);
    std::string header = layer_header();
    header.replace(header.find("\"onebit.layer.L\":\"linear\""), 25,
                   std::string("\"onebit.layer.L\":\"") + kind + "\"");
    expect_file_error(raw_file(header, data), "L", field, "a OneBit layer is \"linear\"");
  }
  std::string good = layer_header();
  good.replace(good.find("\"onebit.layer.L\":\"linear\""), 25,
               "\"onebit.layer.L\":\"linear norm=layernorm eps=2.5e-3\"");
  const aligned_copy copy(raw_file(good, data));
  CHECK(parse(copy).load_layer("L").norm == onebit::post_norm{true, 2.5e-3f});

  // The writer refuses an eps no reader would take.
  io::writer w;
  onebit::linear<> layer = onebit_test::random_layer(2, 8);
  layer.norm = {true, -1.0f};
  CHECK_THROWS_WITH_AS(w.add("L", layer), doctest::Contains("post_norm eps"),
                       std::invalid_argument);
}

}  // namespace test_safetensors
