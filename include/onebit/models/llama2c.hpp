// Reading llama2.c's files: the legacy ("version 0") model checkpoint and the tokenizer
// (tok512.bin and friends), as plain structs of std::vector<float>, one vector per tensor and
// per layer, each matrix row-major out x in, so it goes straight to
// sign_matrix::from_dense(data, out, in, in) or to svid.
//
// Checkpoint layout (little-endian; llama2.c export.py legacy_export, read by run.c):
//
//   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len   (28 bytes)
//   float32 tensors back to back, no padding, each group holding all layers, layer 0 first:
//     token_embedding_table  vocab x dim
//     rms_att_weight         n_layers x dim
//     wq                     n_layers x (dim x dim)
//     wk, wv                 n_layers x (kv_dim x dim)      kv_dim = dim / n_heads * n_kv_heads
//     wo                     n_layers x (dim x dim)
//     rms_ffn_weight         n_layers x dim
//     w1 (gate), w3 (up)     n_layers x (hidden_dim x dim)  (w2 between them)
//     w2 (down)              n_layers x (dim x hidden_dim)
//     rms_final_weight       dim
//     freq_cis_real, _imag   seq_len x head_size/2 each     (legacy RoPE tables)
//     wcls                   vocab x dim, only when the classifier is not shared
//
// The sign of vocab_size says whether the classifier is shared: positive means the
// classifier is the token embedding (no wcls in the file), negative means |vocab_size| tokens
// and a separate wcls at the end. This is run.c's rule.
//
// Validation: every header field (positive sizes, n_heads dividing dim into an even head
// size, n_kv_heads dividing n_heads, sizes no checkpoint could have), then the file size
// against exactly what the header implies — a short file names the first tensor it cuts, a
// long one the trailing bytes. Format errors throw std::invalid_argument; a file that cannot
// be opened or read throws std::system_error. Both messages start with the file's name.
// Nothing is read before the header and the size agree, so nothing is read out of bounds.
//
// Tokenizer layout: int32 max_token_length, then for each of vocab_size tokens (the count is
// the model's, not stored): float32 score, int32 len, len bytes of UTF-8 (no terminator).
#pragma once

#include <cerrno>
#include <cmath>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace onebit::io {

// The seven header fields, as stored, plus what follows from them.
struct llama2c_config {
  int dim = 0;         // transformer width
  int hidden_dim = 0;  // SwiGLU FFN width
  int n_layers = 0;
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // key/value heads (grouped-query attention when fewer than n_heads)
  int vocab_size = 0;  // tokens; always positive here (the file's sign is shared_classifier)
  int seq_len = 0;     // maximum sequence length
  bool shared_classifier = true;  // the classifier is the token embedding (no wcls)

  int head_size() const noexcept { return n_heads == 0 ? 0 : dim / n_heads; }
  int kv_dim() const noexcept { return head_size() * n_kv_heads; }
};

// One transformer layer's tensors. Matrices are row-major out x in (PyTorch's Linear.weight).
struct llama2c_layer {
  std::vector<float> rms_att;  // dim
  std::vector<float> wq;       // dim x dim
  std::vector<float> wk;       // kv_dim x dim
  std::vector<float> wv;       // kv_dim x dim
  std::vector<float> wo;       // dim x dim
  std::vector<float> rms_ffn;  // dim
  std::vector<float> w1;       // hidden_dim x dim (gate)
  std::vector<float> w2;       // dim x hidden_dim (down)
  std::vector<float> w3;       // hidden_dim x dim (up)
};

struct llama2c_checkpoint {
  llama2c_config config;
  std::vector<float> token_embedding;  // vocab x dim
  std::vector<llama2c_layer> layers;   // n_layers
  std::vector<float> rms_final;        // dim
  std::vector<float> freq_cis_real;    // seq_len x head_size/2 (legacy; run.c ignores them)
  std::vector<float> freq_cis_imag;    // seq_len x head_size/2
  std::vector<float> wcls;             // vocab x dim when not shared, else empty

  // The vocab x dim output matrix: wcls, or the token embedding when shared.
  const std::vector<float>& classifier() const noexcept {
    return config.shared_classifier ? token_embedding : wcls;
  }
};

// Where one group of tensors lies in a checkpoint file: `layers` tensors of `floats` floats
// each, back to back from byte `offset` (layer l at offset + 4*l*floats). The embedding,
// rms_final, the RoPE tables and wcls are groups of one.
struct llama2c_tensor_group {
  std::string name;       // e.g. "wq" or "token_embedding_table"
  std::uint64_t offset;   // bytes from the start of the file
  std::uint64_t layers;   // tensors in the group: n_layers, or 1
  std::uint64_t floats;   // float32 count of each tensor
  bool per_layer;         // whether the group holds one tensor per layer

  std::uint64_t end() const noexcept { return offset + 4 * layers * floats; }
  // "wq (layer 3)", or the name of a group of one.
  std::string tensor_name(std::uint64_t layer) const {
    return per_layer ? name + " (layer " + std::to_string(layer) + ")" : name;
  }
};

namespace detail {

// Past these a header field is not a size any llama2.c checkpoint has (the largest Llama has
// dim 16,384, hidden_dim 53,248, 126 layers, a 128,256-token vocabulary); a corrupt header
// (random bytes, a wrong file) is refused before any arithmetic on it. With these bounds every
// byte count of the layout stays below 2^60, so no sum of them wraps.
//                                             dim      hidden   layers   heads    kv heads
inline constexpr std::int64_t llama2c_max_field[7] = {1 << 20, 1 << 22, 1 << 12, 1 << 20, 1 << 20,
                                                     1 << 24, 1 << 24};
//                                                   vocab    seq_len
inline constexpr std::uint64_t llama2c_header_bytes = 7 * 4;

inline bool host_little_endian() noexcept {
  const std::uint16_t probe = 1;
  unsigned char first = 0;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

inline std::uint32_t load_u32_le(const unsigned char* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
inline std::int32_t load_i32_le(const unsigned char* p) noexcept {
  const std::uint32_t u = load_u32_le(p);
  std::int32_t v;
  std::memcpy(&v, &u, 4);
  return v;
}
inline float load_f32_le(const unsigned char* p) noexcept {
  const std::uint32_t u = load_u32_le(p);
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}
inline void load_floats_le(const unsigned char* p, std::size_t n, float* out) noexcept {
  if (host_little_endian()) {
    std::memcpy(out, p, n * 4);
  } else {
    for (std::size_t i = 0; i < n; ++i) out[i] = load_f32_le(p + 4 * i);
  }
}

[[noreturn]] inline void llama2c_fail(const std::string& file, const std::string& what) {
  throw std::invalid_argument(file + ": " + what);
}

// The file's bytes, or std::system_error naming it.
inline std::vector<unsigned char> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in)
    throw std::system_error(errno ? errno : ENOENT, std::generic_category(),
                            path + ": cannot open");
  const std::streamoff end = in.tellg();
  if (end < 0) throw std::system_error(EIO, std::generic_category(), path + ": cannot size");
  std::vector<unsigned char> bytes(static_cast<std::size_t>(end));
  in.seekg(0);
  if (!bytes.empty() && !in.read(reinterpret_cast<char*>(bytes.data()),
                                 static_cast<std::streamsize>(bytes.size())))
    throw std::system_error(EIO, std::generic_category(),
                            path + ": read failed after " + std::to_string(in.gcount()) +
                                " of " + std::to_string(bytes.size()) + " bytes");
  return bytes;
}

}  // namespace detail

// Parses and validates the 28-byte header (throws std::invalid_argument naming `file` and the
// field). `bytes` must hold at least `size` bytes; fewer than 28 is an error.
inline llama2c_config parse_llama2c_header(const unsigned char* bytes, std::size_t size,
                                           const std::string& file = "<memory>") {
  using detail::llama2c_fail;
  if (size < detail::llama2c_header_bytes)
    llama2c_fail(file, "llama2.c checkpoint: the file is " + std::to_string(size) +
                           " bytes, smaller than the 28-byte header (7 int32 fields)");
  static const char* const names[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                       "n_kv_heads", "vocab_size", "seq_len"};
  int v[7];
  for (int i = 0; i < 7; ++i) v[i] = detail::load_i32_le(bytes + 4 * i);
  for (int i = 0; i < 7; ++i) {
    // vocab_size may be negative (unshared classifier), never zero.
    const long long magnitude = i == 5 ? std::llabs(static_cast<long long>(v[i])) : v[i];
    if (magnitude <= 0)
      llama2c_fail(file, std::string("llama2.c checkpoint: header field ") + names[i] + " is " +
                             std::to_string(v[i]) + "; it must be " +
                             (i == 5 ? "nonzero" : "positive"));
    if (magnitude > detail::llama2c_max_field[i])
      llama2c_fail(file, std::string("llama2.c checkpoint: header field ") + names[i] + " is " +
                             std::to_string(v[i]) + ", beyond any real checkpoint (limit " +
                             std::to_string(detail::llama2c_max_field[i]) +
                             "); not a llama2.c version 0 file?");
  }
  llama2c_config c;
  c.dim = v[0];
  c.hidden_dim = v[1];
  c.n_layers = v[2];
  c.n_heads = v[3];
  c.n_kv_heads = v[4];
  c.shared_classifier = v[5] > 0;
  c.vocab_size = v[5] > 0 ? v[5] : -v[5];
  c.seq_len = v[6];
  if (c.dim % c.n_heads != 0)
    llama2c_fail(file, "llama2.c checkpoint: header field n_heads " + std::to_string(c.n_heads) +
                           " does not divide dim " + std::to_string(c.dim));
  if (c.head_size() % 2 != 0)
    llama2c_fail(file, "llama2.c checkpoint: header fields dim " + std::to_string(c.dim) +
                           " / n_heads " + std::to_string(c.n_heads) + " give head size " +
                           std::to_string(c.head_size()) +
                           ", which RoPE needs even (it rotates pairs)");
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
    llama2c_fail(file, "llama2.c checkpoint: header field n_kv_heads " +
                           std::to_string(c.n_kv_heads) + " does not divide n_heads " +
                           std::to_string(c.n_heads));
  return c;
}

// Every tensor group's place in a file with this header, in file order. Sizes are bounded by
// the header checks (each field at most 2^24), so no sum here can wrap.
inline std::vector<llama2c_tensor_group> llama2c_layout(const llama2c_config& c) {
  const std::uint64_t dim = static_cast<std::uint64_t>(c.dim);
  const std::uint64_t hidden = static_cast<std::uint64_t>(c.hidden_dim);
  const std::uint64_t kv = static_cast<std::uint64_t>(c.kv_dim());
  const std::uint64_t vocab = static_cast<std::uint64_t>(c.vocab_size);
  const std::uint64_t layers = static_cast<std::uint64_t>(c.n_layers);
  const std::uint64_t half_head = static_cast<std::uint64_t>(c.head_size() / 2);
  std::vector<llama2c_tensor_group> t;
  std::uint64_t offset = detail::llama2c_header_bytes;
  auto add = [&](const char* name, std::uint64_t floats, bool per_layer) {
    t.push_back({name, offset, per_layer ? layers : 1, floats, per_layer});
    offset = t.back().end();
  };
  add("token_embedding_table", vocab * dim, false);
  add("rms_att_weight", dim, true);
  add("wq", dim * dim, true);
  add("wk", kv * dim, true);
  add("wv", kv * dim, true);
  add("wo", dim * dim, true);
  add("rms_ffn_weight", dim, true);
  add("w1", hidden * dim, true);
  add("w2", dim * hidden, true);
  add("w3", hidden * dim, true);
  add("rms_final_weight", dim, false);
  add("freq_cis_real", static_cast<std::uint64_t>(c.seq_len) * half_head, false);
  add("freq_cis_imag", static_cast<std::uint64_t>(c.seq_len) * half_head, false);
  if (!c.shared_classifier) add("wcls", vocab * dim, false);
  return t;
}

// The exact size in bytes of a checkpoint with this header.
inline std::uint64_t llama2c_file_bytes(const llama2c_config& c) {
  return llama2c_layout(c).back().end();
}

// Checks that a file of `size` bytes is exactly what header `c` implies; returns the layout.
// A short file names the first tensor it cuts; a long one the bytes past the last tensor.
inline std::vector<llama2c_tensor_group> llama2c_check_size(const llama2c_config& c,
                                                           std::uint64_t size,
                                                           const std::string& file = "<memory>") {
  using detail::llama2c_fail;
  std::vector<llama2c_tensor_group> layout = llama2c_layout(c);
  const std::uint64_t expected = layout.back().end();
  if (size == expected) return layout;
  const std::string shape = "dim " + std::to_string(c.dim) + ", hidden_dim " +
                            std::to_string(c.hidden_dim) + ", n_layers " +
                            std::to_string(c.n_layers) + ", n_heads " +
                            std::to_string(c.n_heads) + ", n_kv_heads " +
                            std::to_string(c.n_kv_heads) + ", vocab_size " +
                            (c.shared_classifier ? "" : "-") + std::to_string(c.vocab_size) +
                            " (" + (c.shared_classifier ? "shared" : "unshared") +
                            " classifier), seq_len " + std::to_string(c.seq_len);
  if (size < expected) {
    for (const auto& g : layout)
      if (g.end() > size) {
        const std::uint64_t bytes = 4 * g.floats;
        // The first tensor of the group that does not fit (floats > 0: every field is >= 1).
        const std::uint64_t l = size <= g.offset ? 0 : (size - g.offset) / bytes;
        const std::uint64_t start = g.offset + l * bytes;
        llama2c_fail(file, "llama2.c checkpoint is truncated: " + std::to_string(size) +
                               " bytes, but the header (" + shape + ") implies " +
                               std::to_string(expected) + "; tensor " + g.tensor_name(l) +
                               " needs bytes [" + std::to_string(start) + ", " +
                               std::to_string(start + bytes) + ")");
      }
  }
  llama2c_fail(file, "llama2.c checkpoint is " + std::to_string(size) + " bytes, but the header (" +
                         shape + ") implies exactly " + std::to_string(expected) + ": " +
                         std::to_string(size - expected) + " bytes after the last tensor " +
                         layout.back().name +
                         (c.shared_classifier
                              ? " (a file with a separate classifier stores a negative vocab_size)"
                              : ""));
}

// Parses a whole checkpoint held in memory (`file` names it in errors).
inline llama2c_checkpoint parse_llama2c(const unsigned char* bytes, std::size_t size,
                                        const std::string& file = "<memory>") {
  llama2c_checkpoint m;
  m.config = parse_llama2c_header(bytes, size, file);
  const llama2c_config& c = m.config;
  const std::vector<llama2c_tensor_group> layout = llama2c_check_size(c, size, file);

  // The file is exactly as large as the layout: every tensor below lies inside it.
  std::size_t group = 0;
  auto take = [&](std::vector<float>& dst, std::uint64_t layer) {
    const llama2c_tensor_group& g = layout[group];
    dst.resize(static_cast<std::size_t>(g.floats));
    detail::load_floats_le(bytes + g.offset + 4 * layer * g.floats, dst.size(), dst.data());
  };
  take(m.token_embedding, 0);
  ++group;
  m.layers.resize(static_cast<std::size_t>(c.n_layers));
  for (auto field : {&llama2c_layer::rms_att, &llama2c_layer::wq, &llama2c_layer::wk,
                     &llama2c_layer::wv, &llama2c_layer::wo, &llama2c_layer::rms_ffn,
                     &llama2c_layer::w1, &llama2c_layer::w2, &llama2c_layer::w3}) {
    for (std::size_t l = 0; l < m.layers.size(); ++l) take(m.layers[l].*field, l);
    ++group;
  }
  take(m.rms_final, 0);
  ++group;
  take(m.freq_cis_real, 0);
  ++group;
  take(m.freq_cis_imag, 0);
  ++group;
  if (!c.shared_classifier) take(m.wcls, 0);
  return m;
}
// Reads a checkpoint file. std::system_error if it cannot be read, std::invalid_argument if
// it is not a consistent llama2.c version 0 checkpoint.
inline llama2c_checkpoint read_llama2c(const std::string& path) {
  // The header and the file's size are checked before the body is read, so a hostile header
  // never makes this allocate more than the file holds.
  {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in)
      throw std::system_error(errno ? errno : ENOENT, std::generic_category(),
                              path + ": cannot open");
    const std::streamoff end = in.tellg();
    if (end < 0) throw std::system_error(EIO, std::generic_category(), path + ": cannot size");
    unsigned char header[detail::llama2c_header_bytes] = {};
    const std::size_t have = static_cast<std::size_t>(
        std::min<std::streamoff>(end, static_cast<std::streamoff>(sizeof header)));
    in.seekg(0);
    if (!in.read(reinterpret_cast<char*>(header), static_cast<std::streamsize>(have)))
      throw std::system_error(EIO, std::generic_category(), path + ": cannot read the header");
    const llama2c_config c = parse_llama2c_header(header, have, path);
    llama2c_check_size(c, static_cast<std::uint64_t>(end), path);
  }
  const std::vector<unsigned char> bytes = detail::read_file_bytes(path);
  return parse_llama2c(bytes.data(), bytes.size(), path);
}

// A llama2.c tokenizer: pieces and merge scores by id, and run.c's encode / decode.
struct llama2c_tokenizer {
  static constexpr int unk = 0, bos = 1, eos = 2;

  std::uint32_t max_token_length = 0;
  std::vector<std::string> pieces;  // by token id
  std::vector<float> scores;        // by token id; higher merges first

  std::size_t size() const noexcept { return pieces.size(); }

  // The text of `token` following `previous`, as run.c prints it: after BOS a leading space
  // is dropped, and a byte-fallback piece "<0xHH>" stands for that one raw byte.
  std::string decode(int previous, int token) const {
    if (token < 0 || static_cast<std::size_t>(token) >= pieces.size())
      throw std::invalid_argument("llama2c_tokenizer::decode: token " + std::to_string(token) +
                                  " outside a vocabulary of " + std::to_string(pieces.size()));
    const std::string& piece = pieces[static_cast<std::size_t>(token)];
    std::size_t start = (previous == bos && !piece.empty() && piece[0] == ' ') ? 1 : 0;
    if (piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 && piece[5] == '>') {
      auto hex = [](char ch) -> int {
        if (ch >= '0' && ch <= '9') return ch - '0';
        if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
        if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
        return -1;
      };
      const int hi = hex(piece[3]), lo = hex(piece[4]);
      if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
    }
    return piece.substr(start);
  }

  // Decodes a token sequence that starts after `previous` (BOS for a fresh story).
  std::string decode(const std::vector<int>& tokens, int previous = bos) const {
    std::string text;
    for (int t : tokens) {
      text += decode(previous, t);
      previous = t;
    }
    return text;
  }

  // run.c's encode: optional BOS, a dummy-prefix space for non-empty text, each UTF-8 code
  // point as its piece (or its bytes as byte-fallback tokens 3 + byte), then greedy merges of
  // the best-scoring adjacent pair until none is in the vocabulary; optional EOS.
  std::vector<int> encode(const std::string& text, bool add_bos = true, bool add_eos = false) const {
    auto lookup = [this](const std::string& s) -> int {
      for (std::size_t i = 0; i < pieces.size(); ++i)
        if (pieces[i] == s) return static_cast<int>(i);
      return -1;
    };
    std::vector<int> tokens;
    if (add_bos) tokens.push_back(bos);
    if (!text.empty()) {
      const int space = lookup(" ");
      if (space >= 0) tokens.push_back(space);
    }
    for (std::size_t i = 0; i < text.size();) {
      std::size_t len = 1;  // one UTF-8 code point: a lead byte and its continuation bytes
      while (i + len < text.size() && len < 4 &&
             (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80)
        ++len;
      const std::string cp = text.substr(i, len);
      const int id = lookup(cp);
      if (id >= 0) {
        tokens.push_back(id);
      } else {
        for (unsigned char b : cp) tokens.push_back(static_cast<int>(b) + 3);
      }
      i += len;
    }
    const std::size_t first = add_bos ? 1 : 0;
    for (;;) {
      float best = -1e10f;
      int best_id = -1;
      std::size_t best_at = 0;
      for (std::size_t i = first; i + 1 < tokens.size(); ++i) {
        const int id = lookup(pieces[static_cast<std::size_t>(tokens[i])] +
                              pieces[static_cast<std::size_t>(tokens[i + 1])]);
        if (id >= 0 && scores[static_cast<std::size_t>(id)] > best) {
          best = scores[static_cast<std::size_t>(id)];
          best_id = id;
          best_at = i;
        }
      }
      if (best_id < 0) break;
      tokens[best_at] = best_id;
      tokens.erase(tokens.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
    }
    if (add_eos) tokens.push_back(eos);
    return tokens;
  }
};

// Parses a tokenizer of `vocab_size` tokens held in memory (`file` names it in errors). The
// bytes must be exactly the tokenizer: a short file names the token and field it cuts.
inline llama2c_tokenizer parse_llama2c_tokenizer(const unsigned char* bytes, std::size_t size,
                                                 std::size_t vocab_size,
                                                 const std::string& file = "<memory>") {
  using detail::llama2c_fail;
  if (vocab_size == 0) llama2c_fail(file, "llama2.c tokenizer: vocab_size is 0");
  if (size < 4)
    llama2c_fail(file, "llama2.c tokenizer is truncated: " + std::to_string(size) +
                           " bytes, smaller than its 4-byte max_token_length field");
  llama2c_tokenizer t;
  const std::int32_t max_len = detail::load_i32_le(bytes);
  if (max_len <= 0 || max_len > (1 << 16))
    llama2c_fail(file, "llama2.c tokenizer: max_token_length is " + std::to_string(max_len) +
                           "; it must be in 1..65536");
  t.max_token_length = static_cast<std::uint32_t>(max_len);
  // Every token takes at least 8 bytes: a vocabulary the file cannot hold is refused before
  // anything is allocated for it.
  if (vocab_size > (size - 4) / 8 + 1)
    llama2c_fail(file, "llama2.c tokenizer is truncated: " + std::to_string(size) +
                           " bytes cannot hold " + std::to_string(vocab_size) +
                           " tokens (at least 8 bytes each)");
  t.pieces.reserve(vocab_size);
  t.scores.reserve(vocab_size);
  std::size_t at = 4;
  for (std::size_t id = 0; id < vocab_size; ++id) {
    const std::string token = "token " + std::to_string(id);
    if (size - at < 4)
      llama2c_fail(file, "llama2.c tokenizer is truncated at byte " + std::to_string(at) +
                             ": the score of " + token + " of " + std::to_string(vocab_size) +
                             " is missing");
    const float score = detail::load_f32_le(bytes + at);
    if (std::isnan(score))
      llama2c_fail(file, "llama2.c tokenizer: the score of " + token + " is NaN");
    at += 4;
    if (size - at < 4)
      llama2c_fail(file, "llama2.c tokenizer is truncated at byte " + std::to_string(at) +
                             ": the length of " + token + " of " + std::to_string(vocab_size) +
                             " is missing");
    const std::int32_t len = detail::load_i32_le(bytes + at);
    at += 4;
    if (len < 0 || static_cast<std::uint32_t>(len) > t.max_token_length)
      llama2c_fail(file, "llama2.c tokenizer: the length of " + token + " is " +
                             std::to_string(len) + "; it must be in 0..max_token_length (" +
                             std::to_string(t.max_token_length) + ")");
    if (size - at < static_cast<std::size_t>(len))
      llama2c_fail(file, "llama2.c tokenizer is truncated at byte " + std::to_string(at) +
                             ": the " + std::to_string(len) + " bytes of " + token +
                             " run past its end (" + std::to_string(size) + " bytes)");
    t.pieces.emplace_back(reinterpret_cast<const char*>(bytes + at), static_cast<std::size_t>(len));
    t.scores.push_back(score);
    at += static_cast<std::size_t>(len);
  }
  if (at != size)
    llama2c_fail(file, "llama2.c tokenizer: " + std::to_string(size - at) + " bytes after the last of " +
                           std::to_string(vocab_size) +
                           " tokens (a tokenizer for a larger vocabulary?)");
  return t;
}

// Reads a tokenizer file of `vocab_size` tokens (the model's vocab_size: the file does not
// store the count). std::system_error if it cannot be read, std::invalid_argument if bad.
inline llama2c_tokenizer read_llama2c_tokenizer(const std::string& path, std::size_t vocab_size) {
  const std::vector<unsigned char> bytes = detail::read_file_bytes(path);
  return parse_llama2c_tokenizer(bytes.data(), bytes.size(), vocab_size, path);
}

}  // namespace onebit::io
