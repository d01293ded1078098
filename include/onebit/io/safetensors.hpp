// Safetensors files in and out: any safetensors file read (every dtype, with __metadata__),
// OneBit layers and plain tensors written, and layers served zero-copy from a memory-mapped file.
//
// The file format (https://github.com/huggingface/safetensors): 8 bytes N (little-endian u64),
// N bytes of JSON header, then the data region; the header maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to the data region) and may
// hold "__metadata__", a map of strings.
//
// OneBit layers in it (docs/design.md, "On-disk format"), for a layer NAME of `out` outputs and `in`
// inputs:
//
//   NAME.W  U8  [out, row_bytes]  the signs in the bit layout of sign_matrix.hpp: row j is output
//                                 j, element i is bit i % 8 of byte i / 8 (LSB first), bit 1 is
//                                 -1; row_bytes = ceil(in / 8) rounded up to 64, padding bits 0
//   NAME.g  F16 [in]
//   NAME.h  F16 [out]
//
// and in __metadata__: "format": "onebit", "onebit.version": "1", "onebit.layout": the layout's
// name (layout_name below), and "onebit.layer.NAME": "linear" for every layer, or, for a layer
// whose post-LayerNorm is on (linear.hpp's post_norm), "linear norm=layernorm eps=E" with E the
// float eps in decimal (the shortest text that reads back to the same float). Files written
// before the norm existed say "linear" and load with the norm off; a reader that predates it
// refuses a layer with the norm rather than run it without. A low-bit matrix
// (lowbit_matrix.hpp, what rtn() makes) NAME of k-bit codes is NAME.planes U8
// [k, rows, row_bytes] (its k bit-planes, each in the same bit layout), NAME.scales F32
// [rows, groups] and, unless symmetric, NAME.zeros F32 [rows, groups], declared by
// "onebit.layer.NAME": "lowbit bits=K cols=N group=G symmetric=0|1". The writer puts
// every W and planes first, right after a header padded with spaces to a multiple of 64 bytes, so every W
// starts on a 64-byte boundary of the file (and of a mapping of it), then the other tensors by
// decreasing element size, back to back, each on its natural alignment. Tensors are contiguous
// and fill the data region exactly, as the reference implementation (the Python `safetensors`
// package) requires, so it reads these files as they are.
//
// Reading never trusts the file. Before any tensor byte is touched, the reader checks: the
// header length against the file size and a cap (read_options::max_header_bytes, 100 MB by
// default, checked before anything is allocated); the JSON (nlohmann-json, UTF-8 checked) and its
// structure; every name once only; every dtype; every shape (products checked against 64-bit
// overflow); every [begin, end) inside the data region and equal to shape x dtype in length; no
// two tensors overlapping; for each declared OneBit layer, the dtypes and shapes of its three
// tensors. A violation throws onebit::io::error naming the file, the tensor and the field. Files
// with gaps between tensors or bytes after the last one are read (read_options::strict refuses
// them, as the reference implementation does).
//
// Zero-copy needs each W on a 64-byte boundary in memory and g, h on 2-byte ones. Files this
// writer made always qualify. For a file that does not (another writer's), layer() refuses with
// an error that says so, and load_layer() / load() copy, which works for any valid file.
//
// This header is not part of <onebit/onebit.hpp>: it brings in nlohmann-json and POSIX files,
// which a program that only runs layers does not need. Include <onebit/io/safetensors.hpp>.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <locale>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../half.hpp"
#include "../linear.hpp"
#include "../lowbit_matrix.hpp"
#include "../sign_matrix.hpp"
#include "detail/dtype.hpp"
#include "detail/file.hpp"
#include "detail/json_header.hpp"
#include "detail/text.hpp"

namespace onebit::io {

// The "format" metadata value, the version this library writes and reads, and the layout.
inline constexpr const char* format_name = "onebit";
inline constexpr int format_version = 1;
inline constexpr const char* layout_name = "signs-rowmajor-lsb1neg-rows64";

// A file that cannot be read as what it claims to be (or cannot be opened, mapped or written):
// `file`, the `tensor` (empty when the problem is with the file as a whole) and the `field`
// (e.g. "data_offsets", "dtype", "shape", "header length", "__metadata__[\"format\"]") that is
// wrong. A std::invalid_argument, as all bad input to onebit is.
class error : public std::invalid_argument {
 public:
  error(std::string file, std::string tensor, std::string field, const std::string& problem)
      : std::invalid_argument(message(file, tensor, field, problem)),
        file_(std::move(file)),
        tensor_(std::move(tensor)),
        field_(std::move(field)) {}

  const std::string& file() const noexcept { return file_; }
  const std::string& tensor() const noexcept { return tensor_; }
  const std::string& field() const noexcept { return field_; }

 private:
  static std::string message(const std::string& file, const std::string& tensor,
                             const std::string& field, const std::string& problem) {
    std::string m = "onebit::io: " + detail::printable(file, 4096) + ": ";
    if (!tensor.empty() || !field.empty()) {
      if (!tensor.empty()) m += "tensor " + detail::quote(tensor);
      if (!tensor.empty() && !field.empty()) m += ", ";
      if (!field.empty()) m += "field " + detail::printable(field);
      m += ": ";
    }
    return m + problem;
  }

  std::string file_, tensor_, field_;
};

struct read_options {
  // The largest JSON header accepted (the reference implementation's limit).
  std::uint64_t max_header_bytes = 100'000'000;
  // Also require what the reference implementation requires: the header starts with '{', and
  // the tensors lie back to back from offset 0 to the end of the file, with no gap.
  bool strict = false;
};

// One tensor as the header declares it (already checked against the file).
struct tensor_info {
  std::string name;
  dtype type = dtype::U8;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0, end = 0;  // byte offsets in the data region

  std::uint64_t elements() const noexcept {
    std::uint64_t n = 1;
    for (std::uint64_t d : shape) n *= d;  // checked when the file was read
    return n;
  }
  std::uint64_t bytes() const noexcept { return end - begin; }
};

// A tensor's bytes in memory, as they are in the file (little-endian, row-major).
struct tensor_view {
  const tensor_info* info = nullptr;
  const std::byte* data = nullptr;

  const std::string& name() const noexcept { return info->name; }
  dtype type() const noexcept { return info->type; }
  const std::vector<std::uint64_t>& shape() const noexcept { return info->shape; }
  std::size_t bytes() const noexcept { return static_cast<std::size_t>(info->bytes()); }
  std::size_t elements() const noexcept { return static_cast<std::size_t>(info->elements()); }
};

// Every element as float: exact for F32, F16, BF16, the F8 types, BOOL and integers up to 2^24;
// F64 and larger integers round to nearest. C64 and the sub-byte floats throw io::error.
inline std::vector<float> to_floats(const tensor_view& t, const std::string& file = "") {
  const std::size_t n = t.elements();
  const auto* p = reinterpret_cast<const unsigned char*>(t.data);
  std::vector<float> out(n);
  using detail::load_le;
  switch (t.type()) {
    case dtype::F32:
      for (std::size_t i = 0; i < n; ++i) out[i] = detail::float_from_bits(load_le<std::uint32_t>(p + 4 * i));
      break;
    case dtype::F16: {
      std::vector<half> h(n);
      for (std::size_t i = 0; i < n; ++i) h[i] = half::from_bits(load_le<std::uint16_t>(p + 2 * i));
      to_float(h.data(), out.data(), n);
      break;
    }
    case dtype::BF16:
      for (std::size_t i = 0; i < n; ++i) out[i] = detail::bf16_to_float(load_le<std::uint16_t>(p + 2 * i));
      break;
    case dtype::F64:
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t bits = load_le<std::uint64_t>(p + 8 * i);
        double d;
        std::memcpy(&d, &bits, sizeof d);
        out[i] = static_cast<float>(d);
      }
      break;
    case dtype::F8_E4M3: for (std::size_t i = 0; i < n; ++i) out[i] = detail::f8_e4m3_to_float(p[i]); break;
    case dtype::F8_E5M2: for (std::size_t i = 0; i < n; ++i) out[i] = detail::f8_e5m2_to_float(p[i]); break;
    case dtype::F8_E8M0: for (std::size_t i = 0; i < n; ++i) out[i] = detail::f8_e8m0_to_float(p[i]); break;
    case dtype::BOOL: for (std::size_t i = 0; i < n; ++i) out[i] = p[i] != 0 ? 1.0f : 0.0f; break;
    case dtype::U8: for (std::size_t i = 0; i < n; ++i) out[i] = p[i]; break;
    case dtype::I8: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::int8_t>(p[i]); break;
    case dtype::U16: for (std::size_t i = 0; i < n; ++i) out[i] = load_le<std::uint16_t>(p + 2 * i); break;
    case dtype::I16: for (std::size_t i = 0; i < n; ++i) out[i] = load_le<std::int16_t>(p + 2 * i); break;
    case dtype::U32: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(load_le<std::uint32_t>(p + 4 * i)); break;
    case dtype::I32: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(load_le<std::int32_t>(p + 4 * i)); break;
    case dtype::U64: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(load_le<std::uint64_t>(p + 8 * i)); break;
    case dtype::I64: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(load_le<std::int64_t>(p + 8 * i)); break;
    case dtype::C64:
    case dtype::F4:
    case dtype::F6_E2M3:
    case dtype::F6_E3M2:
      throw error(file, t.name(), "dtype",
                  std::string(to_string(t.type())) + " does not convert to float");
  }
  return out;
}

namespace detail {

inline std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i == 8 && shape.size() > 10) {
      s += ", ... (" + std::to_string(shape.size()) + " dimensions)";
      break;
    }
    s += (i == 0 ? "" : ", ") + std::to_string(shape[i]);
  }
  return s + "]";
}

inline bool little_endian() noexcept {
  const std::uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

inline constexpr std::string_view layer_key_prefix = "onebit.layer.";

// The metadata value of a OneBit layer (see the top of this file). The eps text is written and
// read in the classic locale, whatever the program's global one.
inline std::string linear_kind(const post_norm& norm) {
  if (!norm.enabled) return "linear";
  std::string text;
  for (int digits = 6; digits <= 9; ++digits) {  // 9 significant digits round-trip any float
    std::ostringstream out;
    out.imbue(std::locale::classic());
    out.precision(digits);
    out << norm.eps;
    text = out.str();
    std::istringstream back(text);
    back.imbue(std::locale::classic());
    float read = 0;
    if ((back >> read) && read == norm.eps) break;
  }
  return "linear norm=layernorm eps=" + text;
}

// Reads "linear" or "linear norm=layernorm eps=E" into `norm`; false for anything else.
inline bool parse_linear_kind(const std::string& value, post_norm& norm) {
  norm = post_norm{};
  if (value == "linear") return true;
  const std::string prefix = "linear norm=layernorm eps=";
  if (value.compare(0, prefix.size(), prefix) != 0 || value.size() == prefix.size()) return false;
  const std::string text = value.substr(prefix.size());
  for (const char c : text)
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+'))
      return false;
  std::istringstream in(text);
  in.imbue(std::locale::classic());
  float eps = 0;
  if (!(in >> eps) || in.peek() != std::char_traits<char>::eof()) return false;
  if (!(eps >= 0 && eps <= std::numeric_limits<float>::max())) return false;
  norm = post_norm{true, eps};
  return true;
}

}  // namespace detail

// A OneBit layer as a file declares it, checked: where its three tensors are and its sizes.
struct layer_info {
  std::string name;
  const tensor_info* W = nullptr;
  const tensor_info* g = nullptr;
  const tensor_info* h = nullptr;
  std::size_t out = 0, in = 0, row_bytes = 0;
  post_norm norm{};
};

// A low-bit matrix as a file declares it, checked.
struct lowbit_info {
  std::string name;
  const tensor_info* planes = nullptr;
  const tensor_info* scales = nullptr;
  const tensor_info* zeros = nullptr;  // null when symmetric
  std::size_t rows = 0, cols = 0, group = 0, row_bytes = 0;
  int bits = 0;
  bool symmetric = false;
};

// A safetensors file in memory the caller owns (a buffer it read, an engine's arena, a mapping),
// parsed and checked at construction; the bytes must outlive this object and what it hands out.
class safetensors_view {
 public:
  safetensors_view() = default;
  // Move-only: layer_info points into this object's own tables.
  safetensors_view(const safetensors_view&) = delete;
  safetensors_view& operator=(const safetensors_view&) = delete;
  safetensors_view(safetensors_view&&) noexcept = default;
  safetensors_view& operator=(safetensors_view&&) noexcept = default;

  // `source` names the bytes in error messages (a path, "<memory>").
  safetensors_view(const void* data, std::size_t size, std::string source = "<memory>",
                   const read_options& options = {})
      : base_(static_cast<const std::byte*>(data)), size_(size), source_(std::move(source)) {
    parse(options);
  }

  const std::string& source() const noexcept { return source_; }
  std::size_t size() const noexcept { return size_; }
  // Where the data region starts in the file (8 + the header length).
  std::size_t data_offset() const noexcept { return data_begin_; }

  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  // Every tensor, in the order of their offsets.
  const std::vector<tensor_info>& tensors() const noexcept { return tensors_; }
  const tensor_info* find(const std::string& name) const {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  const tensor_info& info(const std::string& name) const {
    const tensor_info* t = find(name);
    if (t == nullptr) throw error(source_, name, "", "no such tensor in the file");
    return *t;
  }
  tensor_view tensor(const std::string& name) const {
    const tensor_info& t = info(name);
    return tensor_view{&t, base_ + data_begin_ + t.begin};
  }
  tensor_view tensor(const tensor_info& t) const {
    return tensor_view{&t, base_ + data_begin_ + t.begin};
  }
  std::vector<float> floats(const std::string& name) const {
    return to_floats(tensor(name), source_);
  }

  // Whether __metadata__ says "format": "onebit".
  bool is_onebit() const noexcept { return onebit_; }

  // The OneBit layers the file declares, sorted by name.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(layers_.size());
    for (const auto& entry : layers_) out.push_back(entry.first);
    return out;
  }
  bool contains(const std::string& layer) const { return layers_.count(layer) != 0; }
  const layer_info& layer_at(const std::string& name) const {
    const auto it = layers_.find(name);
    if (it == layers_.end())
      throw error(source_, name, "", "no OneBit layer of that name in the file");
    return it->second;
  }

  // The layer over the file's bytes, no copy: kernels run on it directly. Throws io::error if
  // W is not on a 64-byte boundary in memory, or its rows not a multiple of 64 bytes, or g or h
  // not 2-byte aligned (a file from another writer may be so; load_layer() copies instead).
  template <class Word = std::uint64_t>
  linear_view<Word> layer(const std::string& name) const {
    const layer_info& l = layer_at(name);
    if (!std::is_same_v<Word, std::uint8_t> && !detail::little_endian())
      throw error(source_, l.W->name, "", "zero-copy views need a little-endian machine");
    const std::byte* w = base_ + data_begin_ + l.W->begin;
    const std::byte* g = base_ + data_begin_ + l.g->begin;
    const std::byte* h = base_ + data_begin_ + l.h->begin;
    const std::string fallback = "; load_layer() or load() make an aligned copy";
    if (l.row_bytes % onebit::detail::cache_line != 0)
      throw error(source_, l.W->name, "shape",
                  "rows of " + std::to_string(l.row_bytes) +
                      " bytes are not a multiple of 64, so no zero-copy view" + fallback);
    if (reinterpret_cast<std::uintptr_t>(w) % onebit::detail::cache_line != 0)
      throw error(source_, l.W->name, "data_offsets",
                  "starts at byte " + std::to_string(data_begin_ + l.W->begin) +
                      " of the file, not on a 64-byte boundary in memory, so no zero-copy view" +
                      fallback);
    for (const auto& [t, p] : {std::pair{l.g, g}, std::pair{l.h, h}})
      if (reinterpret_cast<std::uintptr_t>(p) % alignof(half) != 0)
        throw error(source_, t->name, "data_offsets",
                    "starts at an odd address, so no zero-copy F16 view" + fallback);
    return linear_view<Word>{
        sign_matrix_view<const Word>(reinterpret_cast<const Word*>(w),
                                     static_cast<std::size_t>(l.W->bytes()), l.out, l.in,
                                     l.row_bytes),
        reinterpret_cast<const half*>(g), reinterpret_cast<const half*>(h), l.norm};
  }

  // An owning copy of the layer, from any valid file (any alignment, any row length).
  template <class Word = std::uint64_t>
  linear<Word> load_layer(const std::string& name) const {
    const layer_info& l = layer_at(name);
    const auto* w = reinterpret_cast<const unsigned char*>(base_ + data_begin_ + l.W->begin);
    linear<Word> out{sign_matrix<Word>(l.out, l.in), std::vector<half>(l.in),
                     std::vector<half>(l.out), l.norm};
    const std::size_t used = (l.in + 7) / 8;
    const unsigned tail = static_cast<unsigned>(l.in % 8);
    for (std::size_t r = 0; r < l.out; ++r) {
      const unsigned char* src = w + r * l.row_bytes;
      if (detail::little_endian()) {
        auto* dst = reinterpret_cast<unsigned char*>(out.W.row(r));
        std::memcpy(dst, src, used);
        if (tail != 0) dst[used - 1] = static_cast<unsigned char>(dst[used - 1] & ((1u << tail) - 1u));
      } else {
        for (std::size_t c = 0; c < l.in; ++c)
          if ((src[c / 8] >> (c % 8)) & 1u) out.W.set(r, c, -1);
      }
    }
    const auto* g = reinterpret_cast<const unsigned char*>(base_ + data_begin_ + l.g->begin);
    const auto* h = reinterpret_cast<const unsigned char*>(base_ + data_begin_ + l.h->begin);
    for (std::size_t i = 0; i < l.in; ++i)
      out.g[i] = half::from_bits(detail::load_le<std::uint16_t>(g + 2 * i));
    for (std::size_t j = 0; j < l.out; ++j)
      out.h[j] = half::from_bits(detail::load_le<std::uint16_t>(h + 2 * j));
    return out;
  }

  // The low-bit matrices the file declares, sorted by name.
  std::vector<std::string> lowbit_names() const {
    std::vector<std::string> out;
    for (const auto& entry : lowbits_) out.push_back(entry.first);
    return out;
  }
  const lowbit_info& lowbit_at(const std::string& name) const {
    const auto it = lowbits_.find(name);
    if (it == lowbits_.end())
      throw error(source_, name, "", "no low-bit matrix of that name in the file");
    return it->second;
  }
  // An owning copy of a low-bit matrix. Throws io::error for a scale or zero that is not finite.
  lowbit_matrix load_lowbit(const std::string& name) const {
    const lowbit_info& m = lowbit_at(name);
    const auto* planes = reinterpret_cast<const unsigned char*>(base_ + data_begin_ + m.planes->begin);
    std::vector<std::uint8_t> q(m.rows * m.cols, 0);
    for (int b = 0; b < m.bits; ++b)
      for (std::size_t r = 0; r < m.rows; ++r) {
        const unsigned char* row = planes + (static_cast<std::size_t>(b) * m.rows + r) * m.row_bytes;
        std::uint8_t* codes = q.data() + r * m.cols;
        for (std::size_t c = 0; c < m.cols; ++c)
          codes[c] = static_cast<std::uint8_t>(codes[c] | (((row[c / 8] >> (c % 8)) & 1u) << b));
      }
    const auto floats = [&](const tensor_info* t) {
      std::vector<float> v;
      if (t != nullptr) v = to_floats(tensor(*t), source_);
      return v;
    };
    const std::vector<float> scales = floats(m.scales), zeros = floats(m.zeros);
    try {
      return lowbit_matrix::from_codes(q.data(), m.rows, m.cols, m.cols, m.bits, m.group,
                                       scales.data(), m.symmetric ? nullptr : zeros.data());
    } catch (const std::invalid_argument& e) {
      throw error(source_, name, "values", e.what());
    }
  }

 private:
  [[noreturn]] void fail(const std::string& tensor, const std::string& field,
                         const std::string& problem) const {
    throw error(source_, tensor, field, problem);
  }

  void parse(const read_options& options) {
    if (base_ == nullptr && size_ != 0) fail("", "", "null buffer");
    if (size_ < 8)
      fail("", "header length",
           "the file is " + std::to_string(size_) +
               " bytes, shorter than the 8-byte header length that starts a safetensors file");
    const auto* bytes = reinterpret_cast<const unsigned char*>(base_);
    const std::uint64_t n = detail::load_le<std::uint64_t>(bytes);
    if (n > options.max_header_bytes)
      fail("", "header length",
           "the header is said to be " + std::to_string(n) + " bytes, over the limit of " +
               std::to_string(options.max_header_bytes));
    if (n > size_ - 8)
      fail("", "header length",
           "the header is said to be " + std::to_string(n) + " bytes, but only " +
               std::to_string(size_ - 8) + " follow the length in a file of " +
               std::to_string(size_) + " bytes (truncated?)");
    if (options.strict && (n == 0 || bytes[8] != '{'))
      fail("", "header", "does not start with '{' (strict)");
    data_begin_ = 8 + static_cast<std::size_t>(n);
    const std::uint64_t data_size = size_ - data_begin_;

    detail::raw_header raw;
    detail::problem why;
    const char* json = reinterpret_cast<const char*>(bytes + 8);
    if (!detail::parse_header_json(json, json + n, raw, why)) fail(why.tensor, why.field, why.what);

    for (auto& [key, value] : raw.metadata) metadata_.emplace(std::move(key), std::move(value));

    tensors_.reserve(raw.tensors.size());
    for (detail::raw_tensor& r : raw.tensors) {
      tensor_info t;
      t.name = std::move(r.name);
      const auto type = parse_dtype(r.dtype);
      if (!type)
        fail(t.name, "dtype",
             detail::quote(r.dtype, 40) +
                 " is not a safetensors dtype (BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, "
                 "F64, I64, U64, F8_E4M3, F8_E5M2, F8_E8M0, C64, F4, F6_E2M3, F6_E3M2)");
      t.type = *type;
      t.shape = std::move(r.shape);
      // Every dimension multiplies, zeros set aside, so that no shape overflows in any order.
      std::uint64_t product = 1;
      bool zero = false;
      for (std::uint64_t d : t.shape) {
        if (d == 0) {
          zero = true;
          continue;
        }
        if (!detail::checked_mul(product, d, product))
          fail(t.name, "shape",
               detail::shape_text(t.shape) + " has more than 2^64 elements");
      }
      const std::uint64_t elements = zero ? 0 : product;
      std::uint64_t bits = 0;
      if (!detail::checked_mul(elements, dtype_bits(t.type), bits))
        fail(t.name, "shape",
             detail::shape_text(t.shape) + " of " + to_string(t.type) +
                 " is more than 2^64 bits");
      if (bits % 8 != 0)
        fail(t.name, "shape",
             detail::shape_text(t.shape) + " of " + to_string(t.type) + " is " +
                 std::to_string(bits) + " bits, not a whole number of bytes");
      t.begin = r.offsets[0];
      t.end = r.offsets[1];
      if (t.begin > t.end)
        fail(t.name, "data_offsets",
             "begin " + std::to_string(t.begin) + " is after end " + std::to_string(t.end));
      if (t.end > data_size)
        fail(t.name, "data_offsets",
             "[" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                 ") runs past the end of the data region (" + std::to_string(data_size) +
                 " bytes after a header of " + std::to_string(n) + " in a file of " +
                 std::to_string(size_) + "; truncated?)");
      if (t.end - t.begin != bits / 8)
        fail(t.name, "data_offsets",
             "[" + std::to_string(t.begin) + ", " + std::to_string(t.end) + ") is " +
                 std::to_string(t.end - t.begin) + " bytes, but shape " +
                 detail::shape_text(t.shape) + " of " + to_string(t.type) + " needs " +
                 std::to_string(bits / 8));
      tensors_.push_back(std::move(t));
    }

    std::stable_sort(tensors_.begin(), tensors_.end(), [](const tensor_info& a, const tensor_info& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    // Sorted by begin, a tensor overlaps an earlier one iff it starts before the furthest end
    // seen so far. Empty tensors hold no bytes and overlap nothing.
    const tensor_info* furthest = nullptr;
    std::uint64_t expected = 0;
    for (const tensor_info& t : tensors_) {
      if (options.strict && t.begin != expected)
        fail(t.name, "data_offsets",
             "begins at " + std::to_string(t.begin) + ", not at " + std::to_string(expected) +
                 " where the tensor before it ends (strict: tensors lie back to back)");
      expected = t.end;
      if (t.begin == t.end) continue;
      if (furthest != nullptr && t.begin < furthest->end)
        fail(t.name, "data_offsets",
             "[" + std::to_string(t.begin) + ", " + std::to_string(t.end) + ") overlaps tensor " +
                 detail::quote(furthest->name) + " at [" + std::to_string(furthest->begin) + ", " +
                 std::to_string(furthest->end) + ")");
      if (furthest == nullptr || t.end > furthest->end) furthest = &t;
    }
    if (options.strict && expected != data_size)
      fail("", "data_offsets",
           "the tensors end at " + std::to_string(expected) + " but the data region is " +
               std::to_string(data_size) + " bytes (strict: no bytes after the last tensor)");
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);

    parse_onebit();
  }

  void parse_onebit() {
    const auto format = metadata_.find("format");
    if (format == metadata_.end() || format->second != format_name) return;
    onebit_ = true;
    const auto version = metadata_.find("onebit.version");
    if (version == metadata_.end())
      fail("", "__metadata__[\"onebit.version\"]", "is missing from a file of format onebit");
    if (version->second != std::to_string(format_version))
      fail("", "__metadata__[\"onebit.version\"]",
           "is " + detail::quote(version->second, 40) + "; this reader knows version " +
               std::to_string(format_version));
    const auto layout = metadata_.find("onebit.layout");
    if (layout == metadata_.end() || layout->second != layout_name)
      fail("", "__metadata__[\"onebit.layout\"]",
           (layout == metadata_.end() ? std::string("is missing")
                                      : "is " + detail::quote(layout->second, 60)) +
               "; this reader knows " + detail::quote(layout_name));

    for (auto it = metadata_.lower_bound(std::string(detail::layer_key_prefix));
         it != metadata_.end() && it->first.compare(0, detail::layer_key_prefix.size(),
                                                    detail::layer_key_prefix) == 0;
         ++it) {
      const std::string name = it->first.substr(detail::layer_key_prefix.size());
      const std::string field = "__metadata__[" + detail::quote(it->first) + "]";
      post_norm norm;
      if (it->second.rfind("linear", 0) == 0) {
        if (!detail::parse_linear_kind(it->second, norm))
          fail(name, field,
               "is " + detail::quote(it->second, 60) +
                   "; a OneBit layer is \"linear\" or \"linear norm=layernorm eps=E\" (E a "
                   "finite float >= 0)");
        layer_info l = check_linear(name);
        l.norm = norm;
        layers_.emplace(name, l);
      } else if (it->second.rfind("lowbit ", 0) == 0) {
        lowbits_.emplace(name, check_lowbit(name, field, it->second));
      } else {
        fail(name, field,
             "declares a layer of kind " + detail::quote(it->second, 40) +
                 "; this reader knows \"linear\" and \"lowbit ...\"");
      }
    }
  }

  // The three tensors of a declared OneBit layer, with the dtypes and shapes the format says.
  layer_info check_linear(const std::string& name) {
    layer_info l;
    l.name = name;
    const auto need = [&](const char* suffix, dtype type, std::size_t rank) {
      const std::string tname = name + suffix;
      const tensor_info* t = find(tname);
      if (t == nullptr)
        fail(tname, "", "is missing: the OneBit layer " + detail::quote(name) + " needs it");
      if (t->type != type)
        fail(tname, "dtype",
             std::string("is ") + to_string(t->type) + "; a OneBit layer's " + (suffix + 1) +
                 " is " + to_string(type));
      if (t->shape.size() != rank)
        fail(tname, "shape",
             "is " + detail::shape_text(t->shape) + "; a OneBit layer's " + (suffix + 1) +
                 " has " + std::to_string(rank) + (rank == 1 ? " dimension" : " dimensions"));
      return t;
    };
    l.W = need(".W", dtype::U8, 2);
    l.g = need(".g", dtype::F16, 1);
    l.h = need(".h", dtype::F16, 1);
    // Every size below was checked against the data region, so it fits in size_t.
    l.out = static_cast<std::size_t>(l.W->shape[0]);
    l.row_bytes = static_cast<std::size_t>(l.W->shape[1]);
    l.in = static_cast<std::size_t>(l.g->shape[0]);
    if (l.h->shape[0] != l.W->shape[0])
      fail(l.h->name, "shape",
           "has " + std::to_string(l.h->shape[0]) + " values but " + l.W->name + " has " +
               std::to_string(l.out) + " rows (outputs)");
    if (l.row_bytes < (l.in + 7) / 8)
      fail(l.W->name, "shape",
           "rows of " + std::to_string(l.row_bytes) + " bytes cannot hold the " +
               std::to_string(l.in) + " signs (inputs, the length of " + l.g->name + ")");
    if (l.out != 0 && l.in == 0)
      fail(l.g->name, "shape", "is empty: a layer with outputs needs inputs");
    return l;
  }

  // A declared low-bit matrix: "lowbit bits=K cols=N group=G symmetric=0|1", and its tensors
  // NAME.planes U8 [K, rows, row_bytes], NAME.scales F32 [rows, groups], NAME.zeros likewise
  // unless symmetric.
  lowbit_info check_lowbit(const std::string& name, const std::string& field,
                           const std::string& value) {
    lowbit_info m;
    m.name = name;
    std::map<std::string, std::uint64_t> fields;
    std::size_t at = 7;  // past "lowbit "
    while (at < value.size()) {
      std::size_t end = value.find(' ', at);
      if (end == std::string::npos) end = value.size();
      const std::string item = value.substr(at, end - at);
      at = end + 1;
      const std::size_t eq = item.find('=');
      const std::string key = item.substr(0, eq);
      const std::string digits = eq == std::string::npos ? "" : item.substr(eq + 1);
      std::uint64_t v = 0;
      bool ok = !digits.empty() && digits.size() <= 19 && (key == "bits" || key == "cols" ||
                                                          key == "group" || key == "symmetric");
      for (const char c : digits) {
        ok = ok && c >= '0' && c <= '9';
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
      }
      if (!ok || !fields.emplace(key, v).second)
        fail(name, field,
             detail::quote(item, 40) + " is not one of bits=, cols=, group=, symmetric= (each "
             "once, a decimal number)");
    }
    for (const char* key : {"bits", "cols", "group", "symmetric"})
      if (fields.count(key) == 0) fail(name, field, std::string("lacks ") + key + "=");
    const std::uint64_t bits = fields["bits"], cols = fields["cols"], group = fields["group"];
    m.symmetric = fields["symmetric"] == 1;
    if (fields["symmetric"] > 1) fail(name, field, "symmetric= is 0 or 1");
    if (bits < (m.symmetric ? 2u : 1u) || bits > 8)
      fail(name, field, "bits=" + std::to_string(bits) + " is outside " +
                            (m.symmetric ? "2..8 (symmetric)" : "1..8"));
    if (cols == 0 || group > cols)
      fail(name, field, "cols=" + std::to_string(cols) + " and group=" + std::to_string(group) +
                            " do not fit (0 < group <= cols, or group 0 for one per row)");
    const auto need = [&](const char* suffix, dtype type, std::size_t rank) {
      const std::string tname = name + suffix;
      const tensor_info* t = find(tname);
      if (t == nullptr)
        fail(tname, "", "is missing: the low-bit matrix " + detail::quote(name) + " needs it");
      if (t->type != type || t->shape.size() != rank)
        fail(tname, t->type != type ? "dtype" : "shape",
             std::string("is ") + to_string(t->type) + " " + detail::shape_text(t->shape) +
                 "; a low-bit matrix's " + (suffix + 1) + " is " + to_string(type) + " with " +
                 std::to_string(rank) + " dimensions");
      return t;
    };
    m.planes = need(".planes", dtype::U8, 3);
    m.scales = need(".scales", dtype::F32, 2);
    if (!m.symmetric) m.zeros = need(".zeros", dtype::F32, 2);
    else if (find(name + ".zeros") != nullptr)
      fail(name + ".zeros", "", "is present, but the low-bit matrix is symmetric (no zeros)");
    m.bits = static_cast<int>(bits);
    m.cols = static_cast<std::size_t>(cols);
    m.group = static_cast<std::size_t>(group);
    m.rows = static_cast<std::size_t>(m.planes->shape[1]);
    m.row_bytes = static_cast<std::size_t>(m.planes->shape[2]);
    const std::uint64_t size = group == 0 ? cols : group;
    const std::uint64_t groups = (cols + size - 1) / size;
    if (m.planes->shape[0] != bits)
      fail(m.planes->name, "shape", "holds " + std::to_string(m.planes->shape[0]) +
                                        " planes, but bits=" + std::to_string(bits));
    if (m.row_bytes < (cols + 7) / 8)
      fail(m.planes->name, "shape", "rows of " + std::to_string(m.row_bytes) +
                                        " bytes cannot hold cols=" + std::to_string(cols));
    for (const tensor_info* t : {m.scales, m.zeros})
      if (t != nullptr && (t->shape[0] != m.rows || t->shape[1] != groups))
        fail(t->name, "shape", "is " + detail::shape_text(t->shape) + "; " +
                                   std::to_string(m.rows) + " rows of " + std::to_string(groups) +
                                   " groups need [" + std::to_string(m.rows) + ", " +
                                   std::to_string(groups) + "]");
    if (m.rows == 0) fail(m.planes->name, "shape", "has no rows");
    return m;
  }

  const std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  std::string source_;
  std::size_t data_begin_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<tensor_info> tensors_;
  std::map<std::string, std::size_t> index_;
  bool onebit_ = false;
  std::map<std::string, layer_info> layers_;
  std::map<std::string, lowbit_info> lowbits_;
};

// A safetensors file mapped into memory (read-only) and checked: its OneBit layers as zero-copy
// views the kernels run on, and every tensor's bytes. Move-only; the views it hands out are valid
// while it lives.
class mapped_file {
 public:
  explicit mapped_file(const std::string& path, const read_options& options = {}) : path_(path) {
    try {
      bytes_ = detail::file_bytes(path);
    } catch (const detail::os_failure& e) {
      throw error(path, "", "", e.message());
    }
    view_ = safetensors_view(bytes_.data(), bytes_.size(), path, options);
  }
  mapped_file(mapped_file&&) noexcept = default;
  mapped_file& operator=(mapped_file&&) noexcept = default;

  const std::string& path() const noexcept { return path_; }
  // Whether the bytes are mapped (zero-copy); false where the platform has no mmap.
  bool mapped() const noexcept { return bytes_.mapped(); }

  // The OneBit layers, sorted by name.
  std::vector<std::string> names() const { return view_.names(); }
  bool contains(const std::string& layer) const { return view_.contains(layer); }
  // A layer over the mapped bytes, no copy (see safetensors_view::layer).
  template <class Word = std::uint64_t>
  linear_view<Word> layer(const std::string& name) const {
    return view_.template layer<Word>(name);
  }
  template <class Word = std::uint64_t>
  linear<Word> load_layer(const std::string& name) const {
    return view_.template load_layer<Word>(name);
  }

  // The low-bit matrices, sorted by name, and owning copies of them.
  std::vector<std::string> lowbit_names() const { return view_.lowbit_names(); }
  lowbit_matrix load_lowbit(const std::string& name) const { return view_.load_lowbit(name); }

  // Every tensor and the metadata.
  const safetensors_view& file() const noexcept { return view_; }
  const std::map<std::string, std::string>& metadata() const noexcept { return view_.metadata(); }
  const std::vector<tensor_info>& tensors() const noexcept { return view_.tensors(); }
  tensor_view tensor(const std::string& name) const { return view_.tensor(name); }
  std::vector<float> floats(const std::string& name) const { return view_.floats(name); }

 private:
  std::string path_;
  detail::file_bytes bytes_;
  safetensors_view view_;
};

// Collects tensors and OneBit layers, then writes them as one safetensors file. It borrows: the
// memory of everything added must stay valid until write() or bytes() returns.
class writer {
 public:
  // A metadata entry. "format" and the keys starting with "onebit." are the writer's own when
  // it holds OneBit layers.
  void set_metadata(const std::string& key, const std::string& value) {
    check_text(key, "metadata key");
    check_text(value, "metadata value");
    if (key.compare(0, 7, "onebit.") == 0)
      throw std::invalid_argument("onebit::io::writer: metadata key " + detail::quote(key) +
                                  " is reserved for the onebit format");
    metadata_[key] = value;
  }

  // A tensor of `bytes` bytes at `data`, which must be what shape x type needs.
  void add(const std::string& name, dtype type, std::vector<std::uint64_t> shape,
           const void* data, std::size_t bytes) {
    std::uint64_t elements = 1, bits = 0;
    for (std::uint64_t d : shape)
      if (!detail::checked_mul(elements, d, elements))
        throw std::invalid_argument("onebit::io::writer: tensor " + detail::quote(name) +
                                    " has a shape of more than 2^64 elements");
    if (!detail::checked_mul(elements, dtype_bits(type), bits) || bits % 8 != 0 ||
        bits / 8 != bytes)
      throw std::invalid_argument("onebit::io::writer: tensor " + detail::quote(name) + " of " +
                                  to_string(type) + " " + detail::shape_text(shape) + " needs " +
                                  std::to_string(bits) + " bits, given " +
                                  std::to_string(bytes) + " bytes");
    if (bytes != 0 && data == nullptr)
      throw std::invalid_argument("onebit::io::writer: tensor " + detail::quote(name) +
                                  " has null data");
    entry e;
    e.name = name;
    e.type = type;
    e.shape = std::move(shape);
    e.data = static_cast<const unsigned char*>(data);
    e.bytes = bytes;
    push(std::move(e));
  }
  void add(const std::string& name, const float* data, std::vector<std::uint64_t> shape) {
    const std::size_t n = count(shape);
    add(name, dtype::F32, std::move(shape), data, n * sizeof(float));
  }
  void add(const std::string& name, const half* data, std::vector<std::uint64_t> shape) {
    const std::size_t n = count(shape);
    add(name, dtype::F16, std::move(shape), data, n * sizeof(half));
  }

  // A OneBit layer: NAME.W, NAME.g, NAME.h and its metadata entry. W is written in the standard
  // layout (64-byte rows, padding bits 0) whatever the view's stride and padding hold.
  template <class Word>
  void add(const std::string& name, const linear_view<Word>& layer) {
    const std::size_t out = layer.out_features(), in = layer.in_features();
    if ((in != 0 && layer.g == nullptr) || (out != 0 && layer.h == nullptr))
      throw std::invalid_argument("onebit::io::writer: layer " + detail::quote(name) +
                                  " has a null g or h");
    if (out != 0 && in == 0)
      throw std::invalid_argument("onebit::io::writer: layer " + detail::quote(name) +
                                  " has outputs but no inputs");
    if (layer.norm.enabled && !(layer.norm.eps >= 0 &&
                                layer.norm.eps <= std::numeric_limits<float>::max()))
      throw std::invalid_argument("onebit::io::writer: layer " + detail::quote(name) +
                                  " has post_norm eps " + std::to_string(layer.norm.eps) +
                                  "; it must be finite and >= 0");
    check_text(name, "layer name");
    const std::string key = std::string(detail::layer_key_prefix) + name;
    check_new_layer(name, key, {".W", ".g", ".h"});
    entry w;
    w.name = name + ".W";
    w.type = dtype::U8;
    const std::size_t row_bytes = sign_row_stride_bytes(in);
    w.shape = {out, row_bytes};
    w.bytes = out * row_bytes;
    w.cols = in;
    w.blocks.push_back({reinterpret_cast<const unsigned char*>(layer.W.data()), out,
                        layer.W.stride_bytes()});
    push(std::move(w));
    add(name + ".g", layer.g, {in});
    add(name + ".h", layer.h, {out});
    layers_.emplace(key, detail::linear_kind(layer.norm));
  }
  template <class Word>
  void add(const std::string& name, const linear<Word>& layer) {
    add(name, layer.view());
  }

  // A low-bit matrix (lowbit_matrix.hpp): NAME.planes U8 [bits, rows, row_bytes] (plane
  // b's bit (r, c) is bit b of code q(r, c), each plane in the sign-matrix layout), NAME.scales
  // F32 [rows, groups], NAME.zeros F32 [rows, groups] unless symmetric, and its metadata entry
  // "lowbit bits=K cols=N group=G symmetric=0|1".
  void add(const std::string& name, const lowbit_matrix& m) {
    check_text(name, "layer name");
    const std::string key = std::string(detail::layer_key_prefix) + name;
    check_new_layer(name, key,
                    m.symmetric() ? std::initializer_list<const char*>{".planes", ".scales"}
                                  : std::initializer_list<const char*>{".planes", ".scales", ".zeros"});
    const std::size_t rows = m.rows(), cols = m.cols(), bits = static_cast<std::size_t>(m.bits());
    const std::size_t row_bytes = sign_row_stride_bytes(cols);
    entry p;
    p.name = name + ".planes";
    p.type = dtype::U8;
    p.shape = {bits, rows, row_bytes};
    p.bytes = bits * rows * row_bytes;
    p.cols = cols;
    for (int b = 0; b < m.bits(); ++b)
      p.blocks.push_back({reinterpret_cast<const unsigned char*>(m.plane(b).data()), rows,
                          m.plane(b).stride_bytes()});
    push(std::move(p));
    const std::uint64_t groups = m.groups_per_row();
    add(name + ".scales", m.scales().data(), {rows, groups});
    if (!m.symmetric()) add(name + ".zeros", m.zeros().data(), {rows, groups});
    layers_.emplace(key, "lowbit bits=" + std::to_string(m.bits()) + " cols=" +
                             std::to_string(cols) + " group=" + std::to_string(m.group()) +
                             " symmetric=" + (m.symmetric() ? "1" : "0"));
  }

  std::size_t size() const noexcept { return entries_.size(); }

  // The whole file in memory.
  std::vector<std::byte> bytes() const {
    std::vector<std::byte> out;
    emit([&](const void* p, std::size_t n) {
      const auto* b = static_cast<const std::byte*>(p);
      out.insert(out.end(), b, b + n);
    });
    return out;
  }

  // Writes the file: to a temporary name beside `path`, flushed, then renamed over `path`. On
  // failure (throws io::error) `path` is as it was and no temporary file is left.
  void write(const std::string& path) const {
    try {
      detail::atomic_file file(path);
      std::vector<unsigned char> buffer;
      buffer.reserve(buffer_bytes);
      const auto flush = [&] {
        file.write(buffer.data(), buffer.size());
        buffer.clear();
      };
      emit([&](const void* p, std::size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        if (buffer.size() + n > buffer_bytes) flush();
        if (n >= buffer_bytes) {
          file.write(b, n);
        } else {
          buffer.insert(buffer.end(), b, b + n);
        }
      });
      flush();
      file.commit();
    } catch (const detail::os_failure& e) {
      throw error(path, "", "", e.message());
    }
  }

 private:
  static constexpr std::size_t buffer_bytes = std::size_t{1} << 20;

  // Rows of signs in the bit layout, `stride` bytes apart in memory.
  struct sign_block {
    const unsigned char* data;
    std::size_t rows, stride;
  };

  struct entry {
    std::string name;
    dtype type = dtype::U8;
    std::vector<std::uint64_t> shape;
    const unsigned char* data = nullptr;
    std::size_t bytes = 0;
    // Sign matrices (cols signs a row), one after the other, written row by row in the
    // standard layout (64-byte rows), padding cleared, instead of `data`.
    std::vector<sign_block> blocks;
    std::size_t cols = 0;
    bool signs() const noexcept { return !blocks.empty(); }
  };

  // A layer's name and tensor names are all new; checked first, so that a clash leaves the
  // writer as it was.
  void check_new_layer(const std::string& name, const std::string& key,
                       std::initializer_list<const char*> suffixes) const {
    if (layers_.count(key) != 0)
      throw std::invalid_argument("onebit::io::writer: layer " + detail::quote(name) +
                                  " is added twice");
    for (const char* suffix : suffixes)
      if (names_.count(name + suffix) != 0)
        throw std::invalid_argument("onebit::io::writer: tensor " +
                                    detail::quote(name + suffix) + " is added twice");
  }

  static std::size_t count(const std::vector<std::uint64_t>& shape) {
    std::uint64_t n = 1;
    for (std::uint64_t d : shape)
      if (!detail::checked_mul(n, d, n) || n > std::numeric_limits<std::size_t>::max() / 8)
        throw std::invalid_argument("onebit::io::writer: shape " + detail::shape_text(shape) +
                                    " is larger than memory");
    return static_cast<std::size_t>(n);
  }

  // Names and metadata go into JSON, which holds UTF-8 only.
  static void check_text(const std::string& text, const char* what) {
    if (!detail::valid_utf8(text))
      throw std::invalid_argument(std::string("onebit::io::writer: ") + what + " " +
                                  detail::quote(text) + " is not valid UTF-8");
  }

  void push(entry e) {
    check_text(e.name, "tensor name");
    if (e.name == "__metadata__")
      throw std::invalid_argument("onebit::io::writer: \"__metadata__\" is not a tensor name");
    if (!names_.insert(e.name).second)
      throw std::invalid_argument("onebit::io::writer: tensor " + detail::quote(e.name) +
                                  " is added twice");
    entries_.push_back(std::move(e));
  }

  // Calls sink(bytes, n) with the file's bytes, in order.
  template <class Sink>
  void emit(Sink&& sink) const {
    if (!detail::little_endian())
      throw std::invalid_argument("onebit::io::writer: safetensors files are little-endian; "
                                  "this machine is not");
    // Sign matrices first (each a multiple of 64 bytes, so each starts 64-aligned), then the
    // rest by decreasing element size, so every tensor sits on its natural alignment.
    std::vector<const entry*> order;
    order.reserve(entries_.size());
    for (const entry& e : entries_)
      if (e.signs()) order.push_back(&e);
    const std::size_t signs = order.size();
    for (const entry& e : entries_)
      if (!e.signs()) order.push_back(&e);
    std::stable_sort(order.begin() + static_cast<std::ptrdiff_t>(signs), order.end(),
                     [](const entry* a, const entry* b) {
                       return dtype_bits(a->type) > dtype_bits(b->type);
                     });

    std::map<std::string, std::string> metadata = metadata_;
    const auto format = metadata.find("format");
    // A file that says it is onebit says which version and layout, layers or not.
    if (!layers_.empty() || (format != metadata.end() && format->second == format_name)) {
      if (format != metadata.end() && format->second != format_name)
        throw std::invalid_argument("onebit::io::writer: metadata \"format\" is " +
                                    detail::quote(format->second) +
                                    " but the file holds OneBit layers (format \"onebit\")");
      metadata["format"] = format_name;
      metadata["onebit.version"] = std::to_string(format_version);
      metadata["onebit.layout"] = layout_name;
      for (const auto& [key, kind] : layers_) metadata[key] = kind;
    }
    // The header as compact JSON, keys in the order above (names and metadata were checked to
    // be UTF-8 when added). Written by hand: the same bytes as nlohmann::ordered_json's dump(),
    // without instantiating a second JSON type in every file that includes this one.
    std::string json = "{";
    const auto key = [&json](std::string_view name) {
      if (json.size() > 1) json += ',';
      detail::append_json_string(json, name);
      json += ':';
    };
    if (!metadata.empty()) {
      key("__metadata__");
      json += '{';
      for (const auto& [name, value] : metadata) {
        if (json.back() != '{') json += ',';
        detail::append_json_string(json, name);
        json += ':';
        detail::append_json_string(json, value);
      }
      json += '}';
    }
    std::uint64_t offset = 0;
    for (const entry* e : order) {
      key(e->name);
      json += "{\"dtype\":\"";
      json += to_string(e->type);
      json += "\",\"shape\":[";
      for (std::size_t i = 0; i < e->shape.size(); ++i) {
        if (i != 0) json += ',';
        json += std::to_string(e->shape[i]);
      }
      json += "],\"data_offsets\":[" + std::to_string(offset) + ',' +
              std::to_string(offset + e->bytes) + "]}";
      offset += e->bytes;
    }
    json += '}';
    // Pad with spaces so that the data region, and with it every W, starts 64-byte aligned.
    json.append((onebit::detail::cache_line - (8 + json.size()) % onebit::detail::cache_line) %
                    onebit::detail::cache_line,
                ' ');
    unsigned char length[8];
    for (int i = 0; i < 8; ++i)
      length[i] = static_cast<unsigned char>(static_cast<std::uint64_t>(json.size()) >> (8 * i));
    sink(length, 8);
    sink(json.data(), json.size());

    std::vector<unsigned char> row;
    for (const entry* e : order) {
      if (!e->signs()) {
        if (e->bytes != 0) sink(e->data, e->bytes);
        continue;
      }
      const std::size_t row_bytes = sign_row_stride_bytes(e->cols);
      const std::size_t used = (e->cols + 7) / 8;
      const unsigned tail = static_cast<unsigned>(e->cols % 8);
      row.assign(row_bytes, 0);
      for (const sign_block& block : e->blocks)
        for (std::size_t r = 0; r < block.rows; ++r) {
          std::memcpy(row.data(), block.data + r * block.stride, used);
          if (tail != 0)
            row[used - 1] = static_cast<unsigned char>(row[used - 1] & ((1u << tail) - 1u));
          sink(row.data(), row_bytes);
        }
    }
  }

  std::vector<entry> entries_;
  std::set<std::string> names_;
  std::map<std::string, std::string> layers_;  // "onebit.layer.NAME": its kind
  std::map<std::string, std::string> metadata_;
};

// Writes the layers (and nothing else) to `path`, atomically.
template <class Word>
void save(const std::string& path, const std::map<std::string, linear<Word>>& layers) {
  writer w;
  for (const auto& [name, layer] : layers) w.add(name, layer);
  w.write(path);
}

// Every OneBit layer of the file, as owning copies.
inline std::map<std::string, linear<>> load(const std::string& path,
                                            const read_options& options = {}) {
  const mapped_file file(path, options);
  std::map<std::string, linear<>> layers;
  for (const std::string& name : file.names()) layers.emplace(name, file.load_layer(name));
  return layers;
}

}  // namespace onebit::io
