// io::gguf_file against GGUF files written by an independent numpy script
// (tests/data/gguf/make_gguf.py, committed with its output), and against hostile files: every
// truncation and a corruption of each field the reader checks.
#include <onebit/io/gguf.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_gguf {

namespace {

namespace io = onebit::io;

const std::string dir = std::string(ONEBIT_DATA_DIR) + "/gguf/";

std::vector<unsigned char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return std::vector<unsigned char>((std::istreambuf_iterator<char>(in)),
                                    std::istreambuf_iterator<char>());
}

std::vector<float> read_floats(const std::string& path) {
  const std::vector<unsigned char> b = read_all(path);
  std::vector<float> f(b.size() / 4);
  std::memcpy(f.data(), b.data(), f.size() * 4);
  return f;
}

// Parses bytes from a 64-byte-aligned copy.
void parse(const std::vector<unsigned char>& bytes) {
  onebit::detail::aligned_buffer buffer(bytes.size() + 1);
  if (!bytes.empty()) std::memcpy(buffer.data(), bytes.data(), bytes.size());
  const io::gguf_file f(buffer.data(), bytes.size(), "bytes");
  for (const std::string& name : f.names())
    if (io::detail::dequantizable(f.tensor(name).type)) (void)f.dequantize(name);
}

// A second, minimal GGUF writer for hostile files: fields appended as given.
struct builder {
  std::vector<unsigned char> b;
  builder& u32(std::uint32_t v) { return raw(&v, 4); }
  builder& u64(std::uint64_t v) { return raw(&v, 8); }
  builder& str(const std::string& s) { u64(s.size()); return raw(s.data(), s.size()); }
  builder& raw(const void* p, std::size_t n) {
    // resize + memcpy: g++ 12 at -O3 warns falsely (stringop-overflow) on insert into an empty
    // vector.
    const std::size_t at = b.size();
    b.resize(at + n);
    if (n != 0) std::memcpy(b.data() + at, p, n);
    return *this;
  }
  builder& pad(std::size_t alignment) {
    while (b.size() % alignment != 0) b.push_back(0);
    return *this;
  }
  builder& zeros(std::size_t n) { b.insert(b.end(), n, 0); return *this; }
};

builder header(std::uint32_t version, std::uint64_t tensors, std::uint64_t kvs) {
  builder h;
  h.raw("GGUF", 4).u32(version).u64(tensors).u64(kvs);
  return h;
}

// One F32 tensor of 4 values at offset `offset`, then the data.
builder one_tensor(std::uint64_t ne0 = 4, std::uint32_t type = 0, std::uint64_t offset = 0,
                   std::uint32_t dims = 1) {
  builder h = header(3, 1, 0);
  h.str("w").u32(dims);
  for (std::uint32_t d = 0; d < dims; ++d) h.u64(d == 0 ? ne0 : 1);
  h.u32(type).u64(offset).pad(32).zeros(64);
  return h;
}

std::string refusal(const std::vector<unsigned char>& bytes) {
  try {
    parse(bytes);
  } catch (const io::gguf_error& e) {
    return e.field();
  }
  return "accepted";
}

}  // namespace

TEST_CASE("gguf: every type and metadata of a numpy-written version 3 file") {
  const io::gguf_file f(dir + "types.gguf");
  CHECK(f.version() == 3);
  CHECK(f.alignment() == 32);
  const std::vector<std::string> names{"t.f32", "t.f16", "t.bf16", "t.q8_0", "t.q4_0", "t.q1_0"};
  CHECK(f.names() == names);
  CHECK(f.tensor("t.f32").ne == std::vector<std::uint64_t>{7, 3});
  CHECK(f.tensor("t.f32").rows() == 3);
  CHECK(f.tensor("t.q1_0").ne == std::vector<std::uint64_t>{256, 3, 2});
  CHECK(f.tensor("t.q1_0").rows() == 6);
  CHECK(std::string(f.tensor("t.q4_0").type_name()) == "Q4_0");
  CHECK(f.tensor("t.q1_0").bytes == 12 * 18);

  // Bit for bit what numpy computed in float32.
  const std::vector<float> expected = read_floats(dir + "types.expected");
  std::size_t at = 0;
  for (const std::string& name : names) {
    const std::vector<float> v = f.dequantize(name);
    CAPTURE(name);
    REQUIRE(v.size() == f.tensor(name).elements());
    REQUIRE(at + v.size() <= expected.size());
    CHECK(std::memcmp(v.data(), expected.data() + at, v.size() * 4) == 0);
    at += v.size();
  }
  CHECK(at == expected.size());

  CHECK(f.keys().front() == "general.architecture");
  CHECK(f.keys().size() == 18);
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.get_string("general.name") == "onebit gguf test \xc3\xa9");
  CHECK(f.get_uint("test.u8") == 200);
  CHECK(f.get_int("test.i8") == -100);
  CHECK(f.get_uint("test.u16") == 60000);
  CHECK(f.get_int("test.i16") == -30000);
  CHECK(f.get_uint("test.u32") == 4000000000u);
  CHECK(f.get_int("test.i32") == -2000000000);
  CHECK(f.get_float("test.f32") == 0.5);
  CHECK(f.get_bool("test.bool"));
  CHECK(f.get_uint("test.u64") == (std::uint64_t{1} << 63) + 5);
  CHECK_THROWS_AS((void)f.get_int("test.u64"), io::gguf_error);  // does not fit an int64
  CHECK_THROWS_AS((void)f.get_uint("test.i8"), io::gguf_error);  // negative
  CHECK(f.get_int("test.i64") == -(std::int64_t{1} << 40));
  CHECK(f.get_float("test.f64") == 3.25);
  CHECK(f.get_strings("test.strings") == std::vector<std::string>{"a", "", "three words here"});
  CHECK(f.get_ints("test.ints") == std::vector<std::int64_t>{1, -2, 3});
  CHECK(f.get_floats("test.floats") == std::vector<double>{0.25, -1.5});
  CHECK(f.get_ints("test.bools") == std::vector<std::int64_t>{1, 0});
  CHECK(f.array_size("test.empty") == 0);
  CHECK(f.array_type("test.empty") == io::gguf_type::uint8);
  CHECK(f.type("test.strings") == io::gguf_type::array);

  // Wrong types and missing names say which key and field.
  try {
    (void)f.get_string("test.u8");
    FAIL("no error");
  } catch (const io::gguf_error& e) {
    CHECK(e.item() == "test.u8");
    CHECK(e.field() == "value_type");
    CHECK(std::string(e.what()).find("types.gguf") != std::string::npos);
  }
  CHECK_THROWS_AS((void)f.get_strings("test.ints"), io::gguf_error);
  CHECK_THROWS_AS((void)f.get_float("nope"), io::gguf_error);
  CHECK_THROWS_AS((void)f.dequantize("nope"), io::gguf_error);
  CHECK_THROWS_AS((void)f.layer("t.f32"), io::gguf_error);  // not Q1_0
  CHECK_THROWS_AS((void)f.layer("t.q1_0"), io::gguf_error);  // 3-D
  CHECK_THROWS_AS(io::gguf_file(dir + "no_such_file.gguf"), io::gguf_error);
}

TEST_CASE("gguf: a version 2 file with alignment 64 and a Q1_0 layer from known signs") {
  const io::gguf_file f(dir + "layer_v2.gguf");
  CHECK(f.version() == 2);
  CHECK(f.alignment() == 64);
  CHECK(f.names() == std::vector<std::string>{"blk.0.ffn_down.weight", "extra"});
  const std::vector<unsigned char> signs = read_all(dir + "layer_v2.signs");
  const std::vector<unsigned char> scale_bytes = read_all(dir + "layer_v2.scales");
  REQUIRE(signs.size() == 5 * 384);
  REQUIRE(scale_bytes.size() == 5 * 3 * 2);
  std::vector<onebit::half> scales(15);
  std::memcpy(scales.data(), scale_bytes.data(), 30);

  const std::vector<float> w = f.dequantize("blk.0.ffn_down.weight");
  REQUIRE(w.size() == 5 * 384);
  const onebit::group_scaled_linear layer = f.layer("blk.0.ffn_down.weight");
  REQUIRE(layer.out_features() == 5);
  REQUIRE(layer.in_features() == 384);
  CHECK(layer.group_size() == 128);
  for (std::size_t j = 0; j < 5; ++j)
    for (std::size_t i = 0; i < 384; ++i) {
      const float d = onebit::to_float(scales[j * 3 + i / 128]);
      const float want = static_cast<std::int8_t>(signs[j * 384 + i]) > 0 ? d : -d;
      REQUIRE(w[j * 384 + i] == want);
      REQUIRE(layer.weight(j, i) == want);
      REQUIRE(layer.signs()(j, i) == static_cast<std::int8_t>(signs[j * 384 + i]));
    }
  CHECK(f.dequantize("extra").size() == 6);
}

TEST_CASE("gguf: the committed files are what the numpy script writes") {
  if (std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
    MESSAGE("skipped: /usr/bin/python3 with numpy is not available; the committed files are used");
    return;
  }
  const std::filesystem::path out =
      std::filesystem::temp_directory_path() / ("onebit_gguf_" + std::to_string(std::rand()));
  const std::string command =
      "/usr/bin/python3 " + dir + "make_gguf.py " + out.string() + " >/dev/null";
  REQUIRE(std::system(command.c_str()) == 0);
  for (const char* name :
       {"types.gguf", "types.expected", "layer_v2.gguf", "layer_v2.signs", "layer_v2.scales"}) {
    CAPTURE(name);
    CHECK(read_all(out.string() + "/" + name) == read_all(dir + name));
  }
  std::filesystem::remove_all(out);
}

TEST_CASE("gguf: every truncation of a valid file is refused") {
  for (const char* name : {"types.gguf", "layer_v2.gguf"}) {
    const std::vector<unsigned char> bytes = read_all(dir + name);
    parse(bytes);
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      CAPTURE(n);
      const std::vector<unsigned char> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
      CHECK_THROWS_AS(parse(cut), io::gguf_error);
    }
  }
}

TEST_CASE("gguf: each checked field, corrupted, is refused and named") {
  CHECK(refusal(one_tensor().b) == "accepted");
  CHECK(refusal(one_tensor(4, 0, 0, 4).b) == "accepted");
  {
    builder h = header(3, 0, 0);
    h.b[0] = 'g';
    CHECK(refusal(h.b) == "magic");
  }
  CHECK(refusal(header(1, 0, 0).b) == "version");
  CHECK(refusal(header(0x03000000, 0, 0).b) == "version");  // big-endian
  CHECK(refusal(header(3, 0, 0).b) == "accepted");          // no tensors, no data region
  CHECK(refusal(header(3, 0, 1u << 30).b) == "metadata_kv_count");
  CHECK(refusal(header(3, std::uint64_t{1} << 60, 0).b) == "tensor_count");
  {
    builder h = header(3, 0, 1);
    h.str("k").u32(8).u64(1000).raw("abc", 3);  // a string longer than the file
    CHECK(refusal(h.b) == "value");
  }
  {
    builder h = header(3, 0, 1);
    h.str("k").u32(9).u32(9).u64(1);  // an array of arrays
    CHECK(refusal(h.b) == "array type");
  }
  {
    builder h = header(3, 0, 1);
    h.str("k").u32(9).u32(10).u64(std::uint64_t{1} << 61).u64(0);  // 2^61 u64s
    CHECK(refusal(h.b) == "array length");
  }
  {
    builder h = header(3, 0, 1);
    h.str("k").u32(13).u32(0);  // type 13
    CHECK(refusal(h.b) == "value_type");
  }
  {
    builder h = header(3, 0, 1);
    const unsigned char two = 2;
    h.str("k").u32(7).raw(&two, 1);
    CHECK(refusal(h.b) == "value");  // a bool of 2
  }
  {
    builder h = header(3, 0, 2);
    h.str("k").u32(4).u32(1).str("k").u32(4).u32(2);
    CHECK(refusal(h.b) == "key");  // twice
  }
  for (std::uint32_t alignment : {0u, 3u, 48u}) {
    builder h = header(3, 0, 1);
    h.str("general.alignment").u32(4).u32(alignment);
    CHECK(refusal(h.b) == "value");
  }
  {
    builder h = header(3, 0, 1);
    h.str("general.alignment").u32(10).u64(32);  // u64, not u32
    CHECK(refusal(h.b) == "value_type");
  }
  CHECK(refusal(one_tensor(4, 0, 0, 0).b) == "n_dims");
  CHECK(refusal(one_tensor(4, 0, 0, 5).b) == "n_dims");
  CHECK(refusal(one_tensor(0).b) == "ne[0]");
  CHECK(refusal(one_tensor(100).b) == "offset");            // 400 bytes, 64 there
  CHECK(refusal(one_tensor(4, 0, 16).b) == "offset");       // not a multiple of 32
  CHECK(refusal(one_tensor(4, 0, 32).b) == "accepted");     // 16 bytes at 32 of 64
  CHECK(refusal(one_tensor(4, 0, 64).b) == "offset");       // past the end
  CHECK(refusal(one_tensor(4, 0, ~std::uint64_t{31}).b) == "offset");  // offset + bytes overflows
  CHECK(refusal(one_tensor(4, 77).b) == "type");            // unknown ggml type
  CHECK(refusal(one_tensor(100, 41).b) == "ne[0]");         // not a multiple of 128
  CHECK(refusal(one_tensor(128, 12).b) == "ne[0]");         // Q4_K blocks are 256
  {
    builder h = header(3, 1, 0);
    h.str("w").u32(2).u64(std::uint64_t{1} << 40).u64(std::uint64_t{1} << 40).u32(0).u64(0);
    CHECK(refusal(h.b) == "ne");  // 2^80 elements
  }
  {
    builder h = header(3, 2, 0);
    h.str("a").u32(1).u64(16).u32(0).u64(0).str("b").u32(1).u64(4).u32(0).u64(32);
    h.pad(32).zeros(128);
    CHECK(refusal(h.b) == "offset");  // a's 64 bytes overlap b
  }
  {
    builder h = header(3, 2, 0);
    h.str("a").u32(1).u64(4).u32(0).u64(0).str("a").u32(1).u64(4).u32(0).u64(32);
    h.pad(32).zeros(64);
    CHECK(refusal(h.b) == "name");
  }
  // A tensor-less file that ends inside the padding is read; one with tensors is not.
  {
    builder h = header(3, 1, 0);
    h.str("w").u32(1).u64(4).u32(0).u64(0);
    CHECK(refusal(h.b) == "data");
  }
}

}  // namespace test_gguf
