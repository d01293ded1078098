#include <onebit/models/llama2c.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <system_error>
#include <vector>

namespace test_llama2c {

namespace io = onebit::io;
namespace fs = std::filesystem;

namespace {

const std::string data_dir = std::string(ONEBIT_DATA_DIR) + "/tinyllamas";
const std::string model_path = data_dir + "/stories260K.bin";
const std::string tokenizer_path = data_dir + "/tok512.bin";

// The message of the E that f throws, or a marker that fails every check on it.
template <class E = std::invalid_argument, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no exception>";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The bytes of a test-data file; a missing or unreadable one fails the test case, naming it
// (the tiny Llama ships in tests/data: see tests/data/README.md).
std::vector<unsigned char> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) FAIL("cannot open test data " << path << " (tests/data/README.md lists the files)");
  std::vector<unsigned char> bytes(std::istreambuf_iterator<char>(in), {});
  if (bytes.empty()) FAIL("test data " << path << " is empty");
  return bytes;
}

// A scratch directory of its own, removed at the end.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::random_device rd;
    path = fs::temp_directory_path() /
           ("onebit_llama2c_" + std::to_string(rd()) + "_" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::vector<unsigned char>& bytes) const {
    const std::string p = (path / name).string();
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    return p;
  }
};

void put_i32(std::vector<unsigned char>& b, std::int32_t v) {
  unsigned char raw[4];
  std::uint32_t u;
  std::memcpy(&u, &v, 4);
  for (int i = 0; i < 4; ++i) raw[i] = static_cast<unsigned char>(u >> (8 * i));
  b.insert(b.end(), raw, raw + 4);
}
void put_f32(std::vector<unsigned char>& b, float v) {
  std::int32_t i;
  std::memcpy(&i, &v, 4);
  put_i32(b, i);
}

// A small synthetic checkpoint: every float is its own index (so each tensor is recognisable).
std::vector<unsigned char> synthetic(std::int32_t dim, std::int32_t hidden, std::int32_t layers,
                                     std::int32_t heads, std::int32_t kv_heads,
                                     std::int32_t vocab, std::int32_t seq_len) {
  std::vector<unsigned char> b;
  for (std::int32_t v : {dim, hidden, layers, heads, kv_heads, vocab, seq_len}) put_i32(b, v);
  const std::int64_t head = dim / heads, kv = head * kv_heads, V = vocab < 0 ? -vocab : vocab;
  const std::int64_t floats = V * dim + layers * (2 * dim + 2 * dim * dim + 2 * kv * dim +
                                                  3 * hidden * dim) +
                              dim + seq_len * head + (vocab < 0 ? V * dim : 0);
  for (std::int64_t i = 0; i < floats; ++i) put_f32(b, static_cast<float>(i));
  return b;
}
std::vector<unsigned char> small_model(std::int32_t vocab = 10) {
  return synthetic(8, 12, 2, 4, 2, vocab, 6);
}

void set_field(std::vector<unsigned char>& b, int field, std::int32_t v) {
  std::vector<unsigned char> f;
  put_i32(f, v);
  std::memcpy(b.data() + 4 * field, f.data(), 4);
}

std::string parse_error(const std::vector<unsigned char>& b) {
  return message_of([&] { io::parse_llama2c(b.data(), b.size(), "m.bin"); });
}

double frobenius(const std::vector<float>& w) {
  double s = 0;
  for (float v : w) s += static_cast<double>(v) * v;
  return std::sqrt(s);
}

}  // namespace

TEST_CASE("stories260K.bin loads with the README's configuration, offsets and shapes") {
  const io::llama2c_checkpoint m = io::read_llama2c(model_path);
  const io::llama2c_config& c = m.config;
  CHECK(c.dim == 64);
  CHECK(c.hidden_dim == 172);
  CHECK(c.n_layers == 5);
  CHECK(c.n_heads == 8);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.vocab_size == 512);
  CHECK(c.seq_len == 512);
  CHECK(c.shared_classifier);
  CHECK(c.head_size() == 8);
  CHECK(c.kv_dim() == 32);

  // The README's table: first byte of each group and its float count over all layers.
  const auto layout = io::llama2c_layout(c);
  struct row { const char* name; std::uint64_t offset, floats; };
  const row table[] = {{"token_embedding_table", 28, 32768}, {"rms_att_weight", 131100, 320},
                       {"wq", 132380, 20480},      {"wk", 214300, 10240},
                       {"wv", 255260, 10240},      {"wo", 296220, 20480},
                       {"rms_ffn_weight", 378140, 320}, {"w1", 379420, 55040},
                       {"w2", 599580, 55040},      {"w3", 819740, 55040},
                       {"rms_final_weight", 1039900, 64},    {"freq_cis_real", 1040156, 2048},
                       {"freq_cis_imag", 1048348, 2048}};
  REQUIRE(layout.size() == 13);
  for (std::size_t i = 0; i < 13; ++i) {
    CAPTURE(table[i].name);
    CHECK(layout[i].name == table[i].name);
    CHECK(layout[i].offset == table[i].offset);
    CHECK(layout[i].layers * layout[i].floats == table[i].floats);
  }
  CHECK(io::llama2c_file_bytes(c) == 1056540u);

  // Shapes.
  CHECK(m.token_embedding.size() == 512u * 64u);
  REQUIRE(m.layers.size() == 5);
  for (const auto& L : m.layers) {
    CHECK(L.rms_att.size() == 64);
    CHECK(L.wq.size() == 64u * 64u);
    CHECK(L.wk.size() == 32u * 64u);
    CHECK(L.wv.size() == 32u * 64u);
    CHECK(L.wo.size() == 64u * 64u);
    CHECK(L.rms_ffn.size() == 64);
    CHECK(L.w1.size() == 172u * 64u);
    CHECK(L.w2.size() == 64u * 172u);
    CHECK(L.w3.size() == 172u * 64u);
  }
  CHECK(m.rms_final.size() == 64);
  CHECK(m.freq_cis_real.size() == 2048);
  CHECK(m.freq_cis_imag.size() == 2048);
  CHECK(m.wcls.empty());
  CHECK(&m.classifier() == &m.token_embedding);

  // Values: the bytes at the README's offsets, layer l at offset + 4*l*rows*cols.
  const std::vector<unsigned char> bytes = file_bytes(model_path);
  REQUIRE(bytes.size() == 1056540u);
  auto at = [&](std::size_t offset) {
    float v;
    std::memcpy(&v, bytes.data() + offset, 4);
    return v;
  };
  CHECK(m.token_embedding[0] == at(28));
  CHECK(m.layers[3].wq[5] == at(132380 + 4 * 3 * 4096 + 4 * 5));
  CHECK(m.layers[4].w2.back() == at(819740 - 4));
  CHECK(m.layers[2].wk[64 * 7 + 3] == at(214300 + 4 * 2 * 2048 + 4 * (64 * 7 + 3)));
  CHECK(m.freq_cis_imag.back() == at(1056540 - 4));

  // The README's oracles: ‖W‖_F of a few matrices, and the RoPE tables.
  CHECK(frobenius(m.token_embedding) == doctest::Approx(55.8975).epsilon(1e-5));
  CHECK(frobenius(m.layers[0].wq) == doctest::Approx(15.1103).epsilon(1e-5));
  CHECK(frobenius(m.layers[1].wv) == doctest::Approx(2.2226).epsilon(1e-4));
  CHECK(frobenius(m.layers[4].w2) == doctest::Approx(14.4986).epsilon(1e-5));
  CHECK(frobenius(m.layers[3].w3) == doctest::Approx(13.3933).epsilon(1e-5));
  double worst = 0;
  for (int pos = 0; pos < 512; ++pos)
    for (int i = 0; i < 4; ++i) {
      const double angle = pos * std::pow(10000.0, -2.0 * i / 8.0);
      worst = std::max(worst, std::fabs(m.freq_cis_real[pos * 4 + i] - std::cos(angle)));
      worst = std::max(worst, std::fabs(m.freq_cis_imag[pos * 4 + i] - std::sin(angle)));
    }
  CHECK(worst < 1e-5);
}

TEST_CASE("tok512.bin loads: 512 pieces, byte fallbacks, merges by score") {
  const io::llama2c_tokenizer t = io::read_llama2c_tokenizer(tokenizer_path, 512);
  CHECK(t.max_token_length == 7);
  REQUIRE(t.size() == 512);
  CHECK(t.pieces[0] == "<unk>");
  CHECK(t.pieces[1] == "\n<s>\n");
  CHECK(t.pieces[2] == "\n</s>\n");
  CHECK(t.pieces[3] == "<0x00>");
  CHECK(t.pieces[258] == "<0xFF>");
  CHECK(t.scores[3] == 0.0f);
  CHECK(t.pieces[259] == " t");
  CHECK(t.pieces[260] == "he");
  CHECK(t.pieces[261] == " a");
  std::size_t longest = 0;
  for (std::size_t i = 259; i < 512; ++i) {
    CHECK(t.scores[i] == -static_cast<float>(i - 259));
    if (t.pieces[i].size() > t.pieces[longest].size()) longest = i;
  }
  CHECK(t.pieces[longest] == " friend");

  // Decoding: a leading space goes after BOS, a byte-fallback piece is its byte.
  CHECK(t.decode(1, 259) == "t");
  CHECK(t.decode(259, 259) == " t");
  CHECK(t.decode(259, 3 + 0x0A) == "\n");
  CHECK(t.decode(259, 3 + 0xC3) == std::string(1, static_cast<char>(0xC3)));
  CHECK_THROWS_AS(t.decode(1, 512), std::invalid_argument);
  const std::string text = "Once upon a time, there was a little girl named Lily.";
  const std::vector<int> ids = t.encode(text);
  REQUIRE(ids.size() > 2);
  CHECK(ids[0] == 1);
  CHECK(ids.size() < text.size() / 2);  // merges happened
  CHECK(t.decode(std::vector<int>(ids.begin() + 1, ids.end())) == text);
  // A character outside the vocabulary falls back to its UTF-8 bytes.
  const std::vector<int> euro = t.encode("\xE2\x82\xAC", false);
  CHECK(t.decode(euro, 1) == "\xE2\x82\xAC");
}

TEST_CASE("a synthetic checkpoint round-trips, shared and unshared classifier") {
  temp_dir dir;
  const auto shared = small_model(10);
  const io::llama2c_checkpoint m = io::read_llama2c(dir.write("shared.bin", shared));
  CHECK(m.config.vocab_size == 10);
  CHECK(m.config.shared_classifier);
  CHECK(m.token_embedding.size() == 80);
  CHECK(m.token_embedding[0] == 0.0f);
  CHECK(m.layers[0].rms_att[0] == 80.0f);   // right after the embedding
  CHECK(m.layers[1].rms_att[0] == 88.0f);   // layer 1 follows layer 0 within the group
  CHECK(m.layers[0].wq[0] == 96.0f);
  CHECK(m.layers[0].wk.size() == 4u * 8u);  // kv_dim = 2 * 2
  CHECK(m.freq_cis_real.size() == 6);       // seq_len x head_size / 2
  CHECK(m.wcls.empty());

  const auto unshared = small_model(-10);
  CHECK(unshared.size() == shared.size() + 4 * 80);
  const io::llama2c_checkpoint u = io::read_llama2c(dir.write("unshared.bin", unshared));
  CHECK(u.config.vocab_size == 10);
  CHECK_FALSE(u.config.shared_classifier);
  REQUIRE(u.wcls.size() == 80);
  CHECK(&u.classifier() == &u.wcls);
  CHECK(u.wcls[0] == static_cast<float>((shared.size() - 28) / 4));  // after freq_cis_imag
  CHECK(u.layers[1].w3 == m.layers[1].w3);
}

TEST_CASE("malformed headers are refused naming the field") {
  const auto good = small_model();
  CHECK_NOTHROW(io::parse_llama2c(good.data(), good.size()));

  const char* names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                          "seq_len"};
  for (int field = 0; field < 7; ++field)
    for (std::int32_t bad : {0, -1, -64, INT32_MIN, (1 << 24) + 1, INT32_MAX}) {
      if (field <= 4 && bad == (1 << 24) + 1) bad = (field == 1 ? 1 << 22 : field == 2 ? 1 << 12 : 1 << 20) + 2;
      if (field == 5 && bad < 0 && bad != INT32_MIN) continue;  // negative vocab: unshared
      auto b = good;
      set_field(b, field, bad);
      const std::string e = parse_error(b);
      CAPTURE(e);
      CHECK(contains(e, "m.bin: "));
      CHECK(contains(e, std::string("header field ") + names[field]));
    }

  auto b = good;
  set_field(b, 3, 3);  // n_heads 3 does not divide dim 8
  CHECK(contains(parse_error(b), "n_heads 3 does not divide dim 8"));
  set_field(b, 3, 8);  // head size 1: RoPE pairs need an even head size
  set_field(b, 4, 2);
  CHECK(contains(parse_error(b), "head size 1"));
  b = good;
  set_field(b, 4, 3);  // n_kv_heads 3 does not divide n_heads 4
  CHECK(contains(parse_error(b), "n_kv_heads 3 does not divide n_heads 4"));
  set_field(b, 4, 8);  // more kv heads than heads
  CHECK(contains(parse_error(b), "n_kv_heads 8 does not divide n_heads 4"));

  // Large but plausible sizes whose tensors the file cannot hold: refused from the sizes
  // alone, before any allocation.
  b = good;
  set_field(b, 0, 1 << 20);
  set_field(b, 1, 1 << 22);
  set_field(b, 2, 1 << 12);
  set_field(b, 5, -(1 << 24));
  set_field(b, 6, 1 << 24);
  const std::string e = parse_error(b);
  CAPTURE(e);
  CHECK(contains(e, "truncated"));
  CHECK(contains(e, "token_embedding_table"));
}

TEST_CASE("a file smaller than the header, truncated, or too long is refused") {
  const auto good = small_model();
  for (std::size_t n : {0, 1, 4, 27}) {
    const std::vector<unsigned char> b(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    const std::string e = parse_error(b);
    CAPTURE(e);
    CHECK(contains(e, "m.bin: "));
    CHECK(contains(e, "smaller than the 28-byte header"));
  }
  // Every truncation names the tensor it cuts.
  const auto layout = io::llama2c_layout(io::parse_llama2c_header(good.data(), good.size()));
  for (const auto& g : layout)
    for (std::uint64_t l = 0; l < g.layers; ++l) {
      const std::uint64_t start = g.offset + 4 * l * g.floats, end = start + 4 * g.floats;
      for (std::uint64_t cut : {start, start + 2, end - 1}) {
        const std::vector<unsigned char> b(good.begin(),
                                           good.begin() + static_cast<std::ptrdiff_t>(cut));
        const std::string e = parse_error(b);
        CAPTURE(e);
        CHECK(contains(e, "truncated"));
        CHECK(contains(e, "tensor " + g.tensor_name(l) + " needs bytes [" +
                              std::to_string(start) + ", " + std::to_string(end) + ")"));
      }
    }
  auto longer = good;
  longer.push_back(0);
  CHECK(contains(parse_error(longer), "1 bytes after the last tensor freq_cis_imag"));

  // The shared/unshared rule: wcls with a positive vocab_size is trailing data; a negative
  // vocab_size without wcls is a truncated wcls.
  const auto unshared = small_model(-10);
  auto wrong_sign = unshared;
  set_field(wrong_sign, 5, 10);
  const std::string e1 = parse_error(wrong_sign);
  CHECK(contains(e1, "320 bytes after the last tensor freq_cis_imag"));
  CHECK(contains(e1, "negative vocab_size"));
  auto missing = good;
  set_field(missing, 5, -10);
  CHECK(contains(parse_error(missing), "tensor wcls needs bytes"));
}

TEST_CASE("the real checkpoint, damaged, is refused through the file reader") {
  temp_dir dir;
  auto bytes = file_bytes(model_path);
  REQUIRE(bytes.size() == 1056540u);

  auto cut = bytes;
  cut.pop_back();
  std::string e = message_of([&] { io::read_llama2c(dir.write("cut.bin", cut)); });
  CAPTURE(e);
  CHECK(contains(e, "cut.bin: llama2.c checkpoint is truncated: 1056539 bytes"));
  CHECK(contains(e, "implies 1056540"));
  CHECK(contains(e, "tensor freq_cis_imag"));

  cut.resize(500000);  // w1 starts at 379,420, 44,032 bytes a layer: layer 2 is cut
  e = message_of([&] { io::read_llama2c(dir.write("cut.bin", cut)); });
  CHECK(contains(e, "tensor w1 (layer 2) needs bytes [467484, 511516)"));

  auto header_only = std::vector<unsigned char>(bytes.begin(), bytes.begin() + 28);
  e = message_of([&] { io::read_llama2c(dir.write("header.bin", header_only)); });
  CHECK(contains(e, "tensor token_embedding_table needs bytes [28, 131100)"));

  auto tiny = std::vector<unsigned char>(bytes.begin(), bytes.begin() + 20);
  e = message_of([&] { io::read_llama2c(dir.write("tiny.bin", tiny)); });
  CHECK(contains(e, "tiny.bin: llama2.c checkpoint: the file is 20 bytes, smaller than the 28-byte header"));

  auto heads = bytes;
  set_field(heads, 4, 3);
  e = message_of([&] { io::read_llama2c(dir.write("heads.bin", heads)); });
  CHECK(contains(e, "heads.bin: llama2.c checkpoint: header field n_kv_heads 3 does not divide n_heads 8"));

  const std::string absent = (dir.path / "absent.bin").string();
  e = message_of<std::system_error>([&] { io::read_llama2c(absent); });
  CHECK(contains(e, "absent.bin: cannot open"));
  e = message_of<std::system_error>([&] { io::read_llama2c_tokenizer(absent, 512); });
  CHECK(contains(e, "absent.bin: cannot open"));
}

TEST_CASE("malformed tokenizers are refused naming the token and field") {
  temp_dir dir;
  const auto good = file_bytes(tokenizer_path);
  REQUIRE(good.size() == 6227u);
  CHECK_NOTHROW(io::parse_llama2c_tokenizer(good.data(), good.size(), 512));

  // Truncated anywhere: the score, the length or the bytes of some token, named.
  for (std::size_t n = 0; n < good.size(); n += 37) {
    const std::string e = message_of(
        [&] { io::parse_llama2c_tokenizer(good.data(), n, 512, "t.bin"); });
    CAPTURE(n);
    CAPTURE(e);
    CHECK(contains(e, "t.bin: llama2.c tokenizer is truncated"));
  }
  std::string e = message_of([&] { io::parse_llama2c_tokenizer(good.data(), 4 + 4, 1, "t.bin"); });
  CHECK(contains(e, "the length of token 0 of 1 is missing"));
  e = message_of([&] { io::parse_llama2c_tokenizer(good.data(), 4 + 8 + 2, 1, "t.bin"); });
  CHECK(contains(e, "the 5 bytes of token 0 run past its end"));  // "<unk>"
  // A vocabulary smaller than the file leaves bytes over; a larger one runs out.
  e = message_of([&] { io::parse_llama2c_tokenizer(good.data(), good.size(), 511, "t.bin"); });
  CHECK(contains(e, "bytes after the last of 511 tokens"));
  e = message_of([&] { io::parse_llama2c_tokenizer(good.data(), good.size(), 513, "t.bin"); });
  CHECK(contains(e, "score of token 512 of 513 is missing"));
  e = message_of([&] { io::parse_llama2c_tokenizer(good.data(), good.size(), 1u << 30, "t.bin"); });
  CHECK(contains(e, "cannot hold 1073741824 tokens"));

  auto bad = good;
  set_field(bad, 0, 0);
  CHECK(contains(message_of([&] { io::parse_llama2c_tokenizer(bad.data(), bad.size(), 512); }),
                 "max_token_length is 0"));
  bad = good;
  std::vector<unsigned char> len;
  put_i32(len, -1);
  std::memcpy(bad.data() + 4 + 4, len.data(), 4);  // token 0's length
  CHECK(contains(message_of([&] { io::parse_llama2c_tokenizer(bad.data(), bad.size(), 512); }),
                 "the length of token 0 is -1"));
  len.clear();
  put_i32(len, 8);
  std::memcpy(bad.data() + 4 + 4, len.data(), 4);
  CHECK(contains(message_of([&] { io::parse_llama2c_tokenizer(bad.data(), bad.size(), 512); }),
                 "the length of token 0 is 8; it must be in 0..max_token_length (7)"));

  e = message_of([&] { io::read_llama2c_tokenizer(dir.write("short.bin", {7, 0, 0}), 512); });
  CHECK(contains(e, "short.bin: llama2.c tokenizer is truncated: 3 bytes"));
}

TEST_CASE("random damage never crashes the readers: each load succeeds or names an error") {
  // Under ASan/UBSan this is the out-of-bounds check: flipped header bytes and random cuts.
  std::mt19937 rng(7);
  const auto good = small_model(-10);
  const auto tok = file_bytes(tokenizer_path);
  int refused = 0, loaded = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    auto b = good;
    std::uniform_int_distribution<std::size_t> header_byte(0, 27), any_byte(0, b.size() - 1);
    const int flips = 1 + trial % 3;
    for (int f = 0; f < flips; ++f)
      b[trial % 2 ? header_byte(rng) : any_byte(rng)] = static_cast<unsigned char>(rng());
    if (trial % 5 == 0) b.resize(std::uniform_int_distribution<std::size_t>(0, b.size())(rng));
    try {
      const auto m = io::parse_llama2c(b.data(), b.size());
      CHECK(io::llama2c_file_bytes(m.config) == b.size());
      ++loaded;
    } catch (const std::invalid_argument&) {
      ++refused;
    }
    auto t = tok;
    for (int f = 0; f < flips; ++f)
      t[std::uniform_int_distribution<std::size_t>(0, 80)(rng)] = static_cast<unsigned char>(rng());
    if (trial % 4 == 0) t.resize(std::uniform_int_distribution<std::size_t>(0, t.size())(rng));
    try {
      io::parse_llama2c_tokenizer(t.data(), t.size(), 512);
      ++loaded;
    } catch (const std::invalid_argument&) {
      ++refused;
    }
  }
  MESSAGE("random damage: " << loaded << " loads, " << refused << " refusals");
  CHECK(refused > 1000);
}

}  // namespace test_llama2c
