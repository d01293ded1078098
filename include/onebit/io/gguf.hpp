// GGUF files in (llama.cpp's format, versions 2 and 3): typed metadata, tensor infos and the
// tensors, memory-mapped and checked once, before any tensor byte is read.
//
// The format (ggml's docs/gguf.md), all little-endian:
//
//   "GGUF", u32 version, u64 tensor_count, u64 kv_count,
//   kv_count x { string key, u32 value_type, value },
//   tensor_count x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset },
//   padding to `general.alignment` (a u32, 32 when absent), then the data region; each
//   tensor's offset is relative to it and a multiple of the alignment.
//
// A string is u64 length + bytes (no terminator). A value is a scalar (u8 i8 u16 i16 u32 i32
// f32 bool u64 i64 f64), a string, or an array: u32 element type, u64 count, the elements.
// ne[0] is the innermost dimension: a 2-D weight is ne[1] rows of ne[0] inputs, and blocks of a
// quantised type run along ne[0] (io/detail/ggml_blocks.hpp).
//
// Reading never trusts the file: every length, count, dimension, type, offset and the
// alignment is checked against the bytes that are really there (and products against 64-bit
// overflow) before use; no two tensors may overlap and no name or key may repeat. A violation
// throws io::gguf_error (a std::invalid_argument) naming the file, the tensor or key, and the
// field. Version 1 (32-bit counts), big-endian files and arrays of arrays are refused.
//
// Tensors of F32, F16, BF16, Q8_0, Q4_0 and Q1_0 dequantise to float; every other type of
// io/detail/ggml_blocks.hpp is listed and its bytes are served as they are. A Q1_0 tensor
// loads as a group_scaled_linear (layer(), group_scaled_linear.hpp): it is repacked once, the
// sign convention converted.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../group_scaled_linear.hpp"
#include "../half.hpp"
#include "detail/file.hpp"
#include "detail/ggml_blocks.hpp"
#include "detail/text.hpp"

namespace onebit::io {

// A GGUF file that cannot be read as one: the `file`, the tensor or metadata key (`item`,
// empty for the file as a whole) and the `field` that is wrong.
class gguf_error : public std::invalid_argument {
 public:
  gguf_error(std::string file, std::string item, std::string field, const std::string& problem)
      : std::invalid_argument(message(file, item, field, problem)),
        file_(std::move(file)), item_(std::move(item)), field_(std::move(field)) {}

  const std::string& file() const noexcept { return file_; }
  const std::string& item() const noexcept { return item_; }
  const std::string& field() const noexcept { return field_; }

 private:
  static std::string message(const std::string& file, const std::string& item,
                             const std::string& field, const std::string& problem) {
    std::string m = "onebit::io::gguf: " + detail::printable(file, 4096) + ": ";
    if (!item.empty()) m += detail::quote(item) + ", ";
    if (!field.empty()) m += "field " + detail::printable(field) + ": ";
    return m + problem;
  }
  std::string file_, item_, field_;
};

enum class gguf_type : std::uint32_t {
  uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, boolean = 7,
  string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12,
};

inline const char* to_string(gguf_type t) noexcept {
  switch (t) {
    case gguf_type::uint8: return "u8";
    case gguf_type::int8: return "i8";
    case gguf_type::uint16: return "u16";
    case gguf_type::int16: return "i16";
    case gguf_type::uint32: return "u32";
    case gguf_type::int32: return "i32";
    case gguf_type::float32: return "f32";
    case gguf_type::boolean: return "bool";
    case gguf_type::string: return "string";
    case gguf_type::array: return "array";
    case gguf_type::uint64: return "u64";
    case gguf_type::int64: return "i64";
    case gguf_type::float64: return "f64";
  }
  return "unknown";
}

// One tensor as its info declares it, checked against the file.
struct gguf_tensor_info {
  std::string name;
  std::vector<std::uint64_t> ne;  // dimensions, innermost first
  std::uint32_t type = 0;         // ggml_type
  std::uint64_t offset = 0;       // in the data region
  std::uint64_t bytes = 0;

  std::uint64_t elements() const noexcept {
    std::uint64_t n = 1;
    for (std::uint64_t d : ne) n *= d;  // checked not to overflow when the file was read
    return n;
  }
  std::uint64_t cols() const noexcept { return ne.empty() ? 0 : ne[0]; }
  std::uint64_t rows() const noexcept { return ne.empty() ? 0 : elements() / ne[0]; }
  const char* type_name() const noexcept { return detail::geometry_of(type).name; }
};

namespace detail {

inline std::size_t gguf_scalar_bytes(gguf_type t) noexcept {
  switch (t) {
    case gguf_type::uint8: case gguf_type::int8: case gguf_type::boolean: return 1;
    case gguf_type::uint16: case gguf_type::int16: return 2;
    case gguf_type::uint32: case gguf_type::int32: case gguf_type::float32: return 4;
    case gguf_type::uint64: case gguf_type::int64: case gguf_type::float64: return 8;
    default: return 0;  // string, array, unknown
  }
}

inline std::uint64_t load_le(const unsigned char* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}

// Reads forward through the header; every read checks the bytes left first.
class gguf_cursor {
 public:
  gguf_cursor(const unsigned char* data, std::size_t size, const std::string& file)
      : data_(data), size_(size), file_(file) {}

  std::size_t position() const noexcept { return at_; }
  std::size_t left() const noexcept { return size_ - at_; }
  const unsigned char* here() const noexcept { return data_ + at_; }

  std::uint64_t u(std::size_t n, const std::string& item, const std::string& field) {
    need(n, item, field);
    const std::uint64_t v = load_le(data_ + at_, n);
    at_ += n;
    return v;
  }
  void skip(std::uint64_t n, const std::string& item, const std::string& field) {
    need(n, item, field);
    at_ += static_cast<std::size_t>(n);
  }
  std::string_view string(const std::string& item, const std::string& field) {
    const std::uint64_t n = u(8, item, field + " length");
    need(n, item, field);
    const std::string_view s(reinterpret_cast<const char*>(data_ + at_), static_cast<std::size_t>(n));
    at_ += static_cast<std::size_t>(n);
    return s;
  }
  [[noreturn]] void fail(const std::string& item, const std::string& field,
                         const std::string& problem) const {
    throw gguf_error(file_, item, field, problem);
  }

 private:
  void need(std::uint64_t n, const std::string& item, const std::string& field) const {
    if (n > left())
      fail(item, field, "needs " + std::to_string(n) + " bytes at offset " + std::to_string(at_) +
                            " but the file has " + std::to_string(left()) + " left");
  }
  const unsigned char* data_;
  std::size_t size_, at_ = 0;
  const std::string& file_;
};

}  // namespace detail

// A metadata value where it lies in the file: decoded (and converted) on request.
struct gguf_value {
  gguf_type type = gguf_type::uint8;
  gguf_type element = gguf_type::uint8;  // arrays: the elements' type
  std::uint64_t count = 1;               // arrays: the elements
  const unsigned char* at = nullptr;     // the value (arrays: the first element)
};

class gguf_file {
 public:
  // Maps and checks the file at `path`; throws gguf_error on any fault.
  explicit gguf_file(const std::string& path) : name_(path) {
    try {
      bytes_ = detail::file_bytes(path);
    } catch (const detail::os_failure& f) {
      throw gguf_error(path, "", "", f.message());
    }
    parse(reinterpret_cast<const unsigned char*>(bytes_.data()), bytes_.size());
  }
  // The same over bytes someone else owns (kept alive and unchanged while this object lives);
  // `name` is what errors call them.
  gguf_file(const std::byte* data, std::size_t size, std::string name) : name_(std::move(name)) {
    parse(reinterpret_cast<const unsigned char*>(data), size);
  }

  gguf_file(const gguf_file&) = delete;
  gguf_file& operator=(const gguf_file&) = delete;
  gguf_file(gguf_file&&) noexcept = default;
  gguf_file& operator=(gguf_file&&) noexcept = default;

  const std::string& path() const noexcept { return name_; }
  std::uint32_t version() const noexcept { return version_; }
  std::uint64_t alignment() const noexcept { return alignment_; }

  // Tensors, in file order.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const gguf_tensor_info& t : tensors_) out.push_back(t.name);
    return out;
  }
  const std::vector<gguf_tensor_info>& tensors() const noexcept { return tensors_; }
  const gguf_tensor_info* find(const std::string& name) const noexcept {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }
  const gguf_tensor_info& tensor(const std::string& name) const {
    const gguf_tensor_info* t = find(name);
    if (t == nullptr) throw gguf_error(name_, name, "", "no such tensor");
    return *t;
  }
  // The tensor's bytes in the mapping (info.bytes of them, any alignment the file gives).
  const unsigned char* data(const gguf_tensor_info& t) const noexcept {
    return data_region_ + t.offset;
  }

  // Every element as float, row-major: ne[1]·ne[2]·ne[3] rows of ne[0]. Throws gguf_error for
  // a type that does not dequantise (see the header comment).
  std::vector<float> dequantize(const std::string& name) const {
    const gguf_tensor_info& t = tensor(name);
    if (!detail::dequantizable(t.type))
      throw gguf_error(name_, name, "type",
                       std::string(t.type_name()) + " does not dequantise (F32, F16, BF16, "
                                                    "Q8_0, Q4_0 and Q1_0 do)");
    std::vector<float> out(static_cast<std::size_t>(t.elements()));
    detail::dequantize_blocks(t.type, data(t), out.size(), out.data());
    return out;
  }

  // A Q1_0 tensor (2-D: ne[1] outputs of ne[0] inputs) as a group-scaled layer of group 128:
  // W_ji = d_{j, i/128}·s_ji, the bits turned to onebit's sign convention (bit 1 = −1).
  group_scaled_linear layer(const std::string& name) const {
    const gguf_tensor_info& t = tensor(name);
    if (t.type != static_cast<std::uint32_t>(detail::ggml_type::q1_0))
      throw gguf_error(name_, name, "type",
                       std::string(t.type_name()) + " is not Q1_0: only Q1_0 loads as a layer");
    if (t.ne.size() > 2 && t.elements() != t.ne[0] * t.ne[1])
      throw gguf_error(name_, name, "ne", "a layer is 2-D");
    const std::size_t in = static_cast<std::size_t>(t.ne[0]),
                      out = static_cast<std::size_t>(t.rows());
    const std::size_t groups = in / 128;
    group_scaled_linear layer(out, in, 128);
    const unsigned char* src = data(t);
    for (std::size_t j = 0; j < out; ++j)
      for (std::size_t gi = 0; gi < groups; ++gi, src += 18) {
        layer.set_scale(j, gi, half::from_bits(detail::load_u16(src)));
        unsigned char signs[16];
        for (std::size_t k = 0; k < 16; ++k)
          signs[k] = static_cast<unsigned char>(~src[2 + k]);  // ggml: bit 1 = +d
        layer.set_group_signs(j, gi, signs);
      }
    return layer;
  }

  // Metadata, in file order of keys.
  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    out.reserve(key_order_.size());
    for (const auto* k : key_order_) out.push_back(*k);
    return out;
  }
  bool has(const std::string& key) const noexcept { return metadata_.count(key) != 0; }
  const gguf_value& value(const std::string& key) const {
    const auto it = metadata_.find(key);
    if (it == metadata_.end()) throw gguf_error(name_, key, "", "no such metadata key");
    return it->second;
  }
  gguf_type type(const std::string& key) const { return value(key).type; }

  // A scalar of any integer type (and bool), range-checked into the result type.
  std::int64_t get_int(const std::string& key) const {
    const gguf_value& v = scalar(key, "an integer");
    if (v.type == gguf_type::uint64) {
      const std::uint64_t u = detail::load_le(v.at, 8);
      if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        throw gguf_error(name_, key, "value", std::to_string(u) + " does not fit an int64");
      return static_cast<std::int64_t>(u);
    }
    return integer_at(v.type, v.at, key);
  }
  std::uint64_t get_uint(const std::string& key) const {
    const gguf_value& v = scalar(key, "an integer");
    if (v.type == gguf_type::uint64) return detail::load_le(v.at, 8);
    const std::int64_t i = integer_at(v.type, v.at, key);
    if (i < 0) throw gguf_error(name_, key, "value", std::to_string(i) + " is negative");
    return static_cast<std::uint64_t>(i);
  }
  double get_float(const std::string& key) const {
    const gguf_value& v = value(key);
    if (v.type != gguf_type::float32 && v.type != gguf_type::float64)
      throw wrong_type(key, v, "a float");
    return float_at(v.type, v.at);
  }
  bool get_bool(const std::string& key) const {
    const gguf_value& v = value(key);
    if (v.type != gguf_type::boolean) throw wrong_type(key, v, "a bool");
    return *v.at != 0;
  }
  std::string get_string(const std::string& key) const {
    const gguf_value& v = value(key);
    if (v.type != gguf_type::string) throw wrong_type(key, v, "a string");
    return string_at(v.at);
  }
  // Arrays: their length and element type, and the elements converted.
  std::uint64_t array_size(const std::string& key) const { return array(key, nullptr).count; }
  gguf_type array_type(const std::string& key) const { return array(key, nullptr).element; }
  std::vector<std::string> get_strings(const std::string& key) const {
    const gguf_value& v = array(key, "strings");
    if (v.element != gguf_type::string) throw wrong_type(key, v, "an array of strings");
    std::vector<std::string> out;
    out.reserve(static_cast<std::size_t>(v.count));
    const unsigned char* p = v.at;
    for (std::uint64_t i = 0; i < v.count; ++i) {
      out.push_back(string_at(p));
      p += 8 + out.back().size();
    }
    return out;
  }
  std::vector<std::int64_t> get_ints(const std::string& key) const {
    const gguf_value& v = array(key, "integers");
    const std::size_t w = detail::gguf_scalar_bytes(v.element);
    if (w == 0 || v.element == gguf_type::float32 || v.element == gguf_type::float64)
      throw wrong_type(key, v, "an array of integers");
    std::vector<std::int64_t> out(static_cast<std::size_t>(v.count));
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (v.element == gguf_type::uint64) {
        const std::uint64_t u = detail::load_le(v.at + 8 * i, 8);
        if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          throw gguf_error(name_, key, "value[" + std::to_string(i) + "]",
                           std::to_string(u) + " does not fit an int64");
        out[i] = static_cast<std::int64_t>(u);
      } else {
        out[i] = integer_at(v.element, v.at + w * i, key);
      }
    }
    return out;
  }
  std::vector<double> get_floats(const std::string& key) const {
    const gguf_value& v = array(key, "floats");
    if (v.element != gguf_type::float32 && v.element != gguf_type::float64)
      throw wrong_type(key, v, "an array of floats");
    const std::size_t w = detail::gguf_scalar_bytes(v.element);
    std::vector<double> out(static_cast<std::size_t>(v.count));
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = float_at(v.element, v.at + w * i);
    return out;
  }

 private:
  void parse(const unsigned char* data, std::size_t size) {
    detail::gguf_cursor c(data, size, name_);
    if (size < 4 || std::memcmp(data, "GGUF", 4) != 0) c.fail("", "magic", "not a GGUF file");
    c.skip(4, "", "magic");
    version_ = static_cast<std::uint32_t>(c.u(4, "", "version"));
    if (version_ != 2 && version_ != 3)
      c.fail("", "version",
             std::to_string(version_) + " is not 2 or 3" +
                 (version_ > 0xffff ? " (a big-endian file?)" : version_ == 1 ? " (version 1 is not read)" : ""));
    const std::uint64_t n_tensors = c.u(8, "", "tensor_count");
    const std::uint64_t n_kv = c.u(8, "", "metadata_kv_count");
    // Each entry takes at least this many bytes: counts that cannot fit are refused before
    // anything is reserved for them.
    if (n_kv > c.left() / 13) c.fail("", "metadata_kv_count", std::to_string(n_kv) + " entries cannot fit in the file");
    for (std::uint64_t k = 0; k < n_kv; ++k) {
      const std::string key(c.string("", "metadata key " + std::to_string(k)));
      gguf_value v;
      v.type = static_cast<gguf_type>(c.u(4, key, "value_type"));
      if (v.type == gguf_type::array) {
        v.element = static_cast<gguf_type>(c.u(4, key, "array type"));
        v.count = c.u(8, key, "array length");
        v.at = c.here();
        if (v.element == gguf_type::array) c.fail(key, "array type", "arrays of arrays are not read");
        skip_values(c, v.element, v.count, key);
      } else {
        v.at = c.here();
        skip_values(c, v.type, 1, key);
      }
      if (v.type == gguf_type::boolean || (v.type == gguf_type::array && v.element == gguf_type::boolean))
        for (std::uint64_t i = 0; i < v.count; ++i)
          if (v.at[i] > 1) c.fail(key, "value", "a bool is " + std::to_string(v.at[i]));
      const auto [it, fresh] = metadata_.emplace(key, v);
      if (!fresh) c.fail(key, "key", "the key appears twice");
      key_order_.push_back(&it->first);
    }
    alignment_ = 32;
    if (has("general.alignment")) {
      const gguf_value& a = metadata_.at("general.alignment");
      if (a.type != gguf_type::uint32)
        c.fail("general.alignment", "value_type", std::string("is ") + to_string(a.type) + ", not u32");
      alignment_ = detail::load_le(a.at, 4);
      if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0)
        c.fail("general.alignment", "value", std::to_string(alignment_) + " is not a power of 2");
    }
    if (n_tensors > c.left() / 24) c.fail("", "tensor_count", std::to_string(n_tensors) + " tensors cannot fit in the file");
    tensors_.reserve(static_cast<std::size_t>(n_tensors));
    for (std::uint64_t k = 0; k < n_tensors; ++k) {
      gguf_tensor_info t;
      t.name = std::string(c.string("", "tensor name " + std::to_string(k)));
      const std::uint64_t dims = c.u(4, t.name, "n_dims");
      if (dims == 0 || dims > 4) c.fail(t.name, "n_dims", std::to_string(dims) + " is not 1 to 4");
      std::uint64_t elements = 1;
      for (std::uint64_t d = 0; d < dims; ++d) {
        const std::uint64_t n = c.u(8, t.name, "ne[" + std::to_string(d) + "]");
        if (n == 0 || n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          c.fail(t.name, "ne[" + std::to_string(d) + "]", std::to_string(n) + " is not a dimension");
        if (!detail::checked_mul(elements, n, elements))
          c.fail(t.name, "ne", "the element count overflows 64 bits");
        t.ne.push_back(n);
      }
      t.type = static_cast<std::uint32_t>(c.u(4, t.name, "type"));
      const detail::ggml_geometry geo = detail::geometry_of(t.type);
      if (geo.name == nullptr) c.fail(t.name, "type", "ggml type " + std::to_string(t.type) + " is not known to onebit");
      if (t.ne[0] % geo.block != 0)
        c.fail(t.name, "ne[0]", std::to_string(t.ne[0]) + " is not a multiple of " + geo.name +
                                    "'s block of " + std::to_string(geo.block));
      if (!detail::checked_mul(elements / geo.block, geo.bytes, t.bytes))
        c.fail(t.name, "ne", "the byte count overflows 64 bits");
      t.offset = c.u(8, t.name, "offset");
      if (t.offset % alignment_ != 0)
        c.fail(t.name, "offset", std::to_string(t.offset) + " is not a multiple of the alignment " + std::to_string(alignment_));
      if (!tensor_index_.emplace(t.name, tensors_.size()).second)
        c.fail(t.name, "name", "the name appears twice");
      tensors_.push_back(std::move(t));
    }
    // The data region starts at the next multiple of the alignment (a file without tensors may
    // end before it).
    const std::uint64_t end = c.position();
    const std::uint64_t start = (end + alignment_ - 1) / alignment_ * alignment_;
    if (start < end) c.fail("", "general.alignment", "the data region's start overflows");
    const std::uint64_t data_bytes = start <= size ? size - start : 0;
    if (start > size && !tensors_.empty())
      c.fail("", "data", "the data region would start at " + std::to_string(start) +
                             ", past the end of the file (" + std::to_string(size) + " bytes)");
    data_region_ = data + (start <= size ? start : size);
    std::vector<const gguf_tensor_info*> by_offset;
    by_offset.reserve(tensors_.size());
    for (const gguf_tensor_info& t : tensors_) {
      std::uint64_t stop = 0;
      if (!detail::checked_add(t.offset, t.bytes, stop) || stop > data_bytes)
        c.fail(t.name, "offset", "[" + std::to_string(t.offset) + ", " + std::to_string(t.offset) + " + " +
                                     std::to_string(t.bytes) + ") is not inside the data region of " +
                                     std::to_string(data_bytes) + " bytes");
      by_offset.push_back(&t);
    }
    std::sort(by_offset.begin(), by_offset.end(),
              [](const gguf_tensor_info* a, const gguf_tensor_info* b) { return a->offset < b->offset; });
    for (std::size_t i = 1; i < by_offset.size(); ++i)
      if (by_offset[i - 1]->offset + by_offset[i - 1]->bytes > by_offset[i]->offset)
        c.fail(by_offset[i]->name, "offset", "overlaps tensor " + detail::quote(by_offset[i - 1]->name));
  }

  // Walks past `count` values of type t, checking each string's length.
  static void skip_values(detail::gguf_cursor& c, gguf_type t, std::uint64_t count,
                          const std::string& key) {
    if (t == gguf_type::string) {
      if (count > c.left() / 8) c.fail(key, "array length", std::to_string(count) + " strings cannot fit in the file");
      for (std::uint64_t i = 0; i < count; ++i) (void)c.string(key, "value");
      return;
    }
    const std::size_t w = detail::gguf_scalar_bytes(t);
    if (w == 0) c.fail(key, "value_type", std::to_string(static_cast<std::uint32_t>(t)) + " is not a GGUF type");
    if (count > c.left() / w)
      c.fail(key, "array length", std::to_string(count) + " values of " + std::to_string(w) +
                                      " bytes do not fit in the " + std::to_string(c.left()) + " bytes left");
    c.skip(count * w, key, "value");
  }

  const gguf_value& scalar(const std::string& key, const char* what) const {
    const gguf_value& v = value(key);
    const bool integer = v.type == gguf_type::uint8 || v.type == gguf_type::int8 ||
                         v.type == gguf_type::uint16 || v.type == gguf_type::int16 ||
                         v.type == gguf_type::uint32 || v.type == gguf_type::int32 ||
                         v.type == gguf_type::uint64 || v.type == gguf_type::int64 ||
                         v.type == gguf_type::boolean;
    if (!integer) throw wrong_type(key, v, what);
    return v;
  }
  const gguf_value& array(const std::string& key, const char*) const {
    const gguf_value& v = value(key);
    if (v.type != gguf_type::array) throw wrong_type(key, v, "an array");
    return v;
  }
  gguf_error wrong_type(const std::string& key, const gguf_value& v, const char* wanted) const {
    std::string is = to_string(v.type);
    if (v.type == gguf_type::array) is += std::string(" of ") + to_string(v.element);
    return gguf_error(name_, key, "value_type", "is " + is + ", not " + wanted);
  }
  static std::int64_t integer_at(gguf_type t, const unsigned char* p, const std::string&) {
    const std::size_t w = detail::gguf_scalar_bytes(t);
    const std::uint64_t u = detail::load_le(p, w);
    switch (t) {
      case gguf_type::int8: return static_cast<std::int8_t>(u);
      case gguf_type::int16: return static_cast<std::int16_t>(u);
      case gguf_type::int32: return static_cast<std::int32_t>(u);
      case gguf_type::int64: return static_cast<std::int64_t>(u);
      default: return static_cast<std::int64_t>(u);  // unsigned up to 32 bits, bool
    }
  }
  static double float_at(gguf_type t, const unsigned char* p) noexcept {
    if (t == gguf_type::float32) {
      const auto bits = static_cast<std::uint32_t>(detail::load_le(p, 4));
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    const std::uint64_t bits = detail::load_le(p, 8);
    double d;
    std::memcpy(&d, &bits, 8);
    return d;
  }
  static std::string string_at(const unsigned char* p) {
    const std::uint64_t n = detail::load_le(p, 8);  // checked when the file was read
    return std::string(reinterpret_cast<const char*>(p + 8), static_cast<std::size_t>(n));
  }

  std::string name_;
  detail::file_bytes bytes_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::map<std::string, gguf_value> metadata_;
  std::vector<const std::string*> key_order_;  // into metadata_'s keys (stable under moves)
  std::vector<gguf_tensor_info> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
  const unsigned char* data_region_ = nullptr;
};

}  // namespace onebit::io
