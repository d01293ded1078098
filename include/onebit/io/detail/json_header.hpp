// The JSON header of a safetensors file, read with nlohmann-json's SAX interface into exactly
// the structure the format allows, and nothing else:
//
//   { "__metadata__": { "key": "value", ... },                       (optional, strings only)
//     "NAME": { "dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end] }, ... }
//
// Why SAX rather than a DOM: the handler refuses anything else the moment it appears (a nested
// value where a number belongs, a fourth level of nesting, an unknown field), so a hostile header
// never costs more than the few strings and numbers it legitimately holds, and it sees every key
// as it comes, so a name given twice is an error (a DOM keeps only the last). nlohmann-json
// checks the JSON itself, UTF-8 included: a name that is not valid UTF-8 is a parse error.
//
// Nothing here throws but std::bad_alloc: a problem is returned, naming the tensor and the field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "text.hpp"

namespace onebit::io::detail {

struct raw_tensor {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::uint64_t offsets[2] = {0, 0};
  bool has_dtype = false, has_shape = false, has_offsets = false;
};

struct raw_header {
  std::vector<std::pair<std::string, std::string>> metadata;  // in file order
  std::vector<raw_tensor> tensors;                            // in file order
};

// What is wrong, and where: the tensor (empty for the header as a whole) and the field.
struct problem {
  std::string tensor;
  std::string field;
  std::string what;
};

class header_sax {
 public:
  using json = nlohmann::json;
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  explicit header_sax(raw_header& out) : out_(out) {}

  const problem& error() const noexcept { return error_; }

  bool null() { return unexpected("null"); }
  bool boolean(bool) { return unexpected("a boolean"); }
  bool number_integer(number_integer_t v) {
    // nlohmann gives a number with a minus sign here (and -0 as 0).
    if (v >= 0) return number_unsigned(static_cast<number_unsigned_t>(v));
    return unexpected("a negative number");
  }
  bool number_unsigned(number_unsigned_t v) {
    if (state_ == state::in_shape) {
      current().shape.push_back(v);
      return true;
    }
    if (state_ == state::in_offsets) {
      raw_tensor& t = current();
      if (offsets_seen_ == 2)
        return fail(t.name, "data_offsets", "has more than two values (it is [begin, end])");
      t.offsets[offsets_seen_++] = v;
      return true;
    }
    return unexpected("a number");
  }
  bool number_float(number_float_t, const string_t&) {
    return unexpected("a number that is not an integer below 2^64");
  }
  bool binary(binary_t&) { return unexpected("binary data"); }

  bool string(string_t& value) {
    if (state_ == state::expect_metadata_value) {
      out_.metadata.emplace_back(std::move(metadata_key_), std::move(value));
      state_ = state::in_metadata;
      return true;
    }
    if (state_ == state::expect_dtype) {
      current().dtype = std::move(value);
      state_ = state::in_tensor;
      return true;
    }
    return unexpected("a string");
  }

  bool start_object(std::size_t) {
    switch (state_) {
      case state::expect_root: state_ = state::in_root; return true;
      case state::expect_metadata: state_ = state::in_metadata; return true;
      case state::expect_tensor: state_ = state::in_tensor; return true;
      default: return unexpected("an object");
    }
  }

  bool key(string_t& name) {
    if (state_ == state::in_root) {
      if (!root_keys_.insert(name).second)
        return fail(name, "", "appears twice in the header (names must be unique)");
      if (name == "__metadata__") {
        state_ = state::expect_metadata;
      } else {
        out_.tensors.emplace_back();
        out_.tensors.back().name = std::move(name);
        state_ = state::expect_tensor;
      }
      return true;
    }
    if (state_ == state::in_metadata) {
      if (!metadata_keys_.insert(name).second)
        return fail("", metadata_field(name), "appears twice in __metadata__");
      metadata_key_ = std::move(name);
      state_ = state::expect_metadata_value;
      return true;
    }
    if (state_ == state::in_tensor) {
      raw_tensor& t = current();
      bool* seen = nullptr;
      state next = state::in_tensor;
      if (name == "dtype") {
        seen = &t.has_dtype;
        next = state::expect_dtype;
      } else if (name == "shape") {
        seen = &t.has_shape;
        next = state::expect_shape;
      } else if (name == "data_offsets") {
        seen = &t.has_offsets;
        next = state::expect_offsets;
      } else {
        return fail(t.name, name,
                    "is not a field of a tensor (they are dtype, shape and data_offsets)");
      }
      if (*seen) return fail(t.name, name, "appears twice");
      *seen = true;
      state_ = next;
      return true;
    }
    return unexpected("a key");
  }

  bool end_object() {
    switch (state_) {
      case state::in_root: state_ = state::done; return true;
      case state::in_metadata: state_ = state::in_root; return true;
      case state::in_tensor: {
        const raw_tensor& t = current();
        if (!t.has_dtype) return fail(t.name, "dtype", "is missing");
        if (!t.has_shape) return fail(t.name, "shape", "is missing");
        if (!t.has_offsets) return fail(t.name, "data_offsets", "is missing");
        state_ = state::in_root;
        return true;
      }
      default: return unexpected("the end of an object");
    }
  }

  bool start_array(std::size_t) {
    if (state_ == state::expect_shape) {
      state_ = state::in_shape;
      return true;
    }
    if (state_ == state::expect_offsets) {
      offsets_seen_ = 0;
      state_ = state::in_offsets;
      return true;
    }
    return unexpected("an array");
  }

  bool end_array() {
    if (state_ == state::in_shape) {
      state_ = state::in_tensor;
      return true;
    }
    if (state_ == state::in_offsets) {
      if (offsets_seen_ != 2)
        return fail(current().name, "data_offsets",
                    "has " + std::to_string(offsets_seen_) + " values; it needs [begin, end]");
      state_ = state::in_tensor;
      return true;
    }
    return unexpected("the end of an array");
  }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::json::exception& e) {
    // e.what() may quote the offending bytes: keep the message printable, and drop the
    // "[json.exception.parse_error.101] " tag.
    std::string what = e.what();
    if (what.rfind("[json.exception", 0) == 0 && what.find("] ") != std::string::npos)
      what.erase(0, what.find("] ") + 2);
    return fail("", "header",
                "is not valid JSON (at byte " + std::to_string(position) + " of the header): " +
                    printable(what, 240));
  }

 private:
  enum class state {
    expect_root,
    in_root,
    expect_metadata,
    in_metadata,
    expect_metadata_value,
    expect_tensor,
    in_tensor,
    expect_dtype,
    expect_shape,
    in_shape,
    expect_offsets,
    in_offsets,
    done,
  };

  raw_tensor& current() { return out_.tensors.back(); }

  static std::string metadata_field(const std::string& key) {
    return "__metadata__[" + quote(key) + "]";
  }

  bool fail(std::string tensor, std::string field, std::string what) {
    if (!failed_) error_ = problem{std::move(tensor), std::move(field), std::move(what)};
    failed_ = true;
    return false;
  }

  // A value that has no place where it stands: say what was expected there.
  bool unexpected(const char* found) {
    const std::string got = std::string(": found ") + found;
    switch (state_) {
      case state::expect_root: return fail("", "header", "is not a JSON object" + got);
      case state::expect_metadata:
        return fail("", "__metadata__", "is not an object of strings" + got);
      case state::in_metadata:
      case state::expect_metadata_value:
        return fail("", metadata_field(metadata_key_), "is not a string" + got);
      case state::expect_tensor:
        return fail(current().name, "",
                    "is not an object with dtype, shape and data_offsets" + got);
      case state::expect_dtype: return fail(current().name, "dtype", "is not a string" + got);
      case state::expect_shape:
        return fail(current().name, "shape", "is not an array of dimensions" + got);
      case state::in_shape:
        return fail(current().name, "shape",
                    "holds something other than a dimension (an integer 0 .. 2^64-1)" + got);
      case state::expect_offsets:
      case state::in_offsets:
        return fail(current().name, "data_offsets",
                    "is not an array [begin, end] of integers 0 .. 2^64-1" + got);
      default: return fail("", "header", "has an unexpected value" + got);
    }
  }

  raw_header& out_;
  state state_ = state::expect_root;
  std::set<std::string> root_keys_, metadata_keys_;
  std::string metadata_key_;
  int offsets_seen_ = 0;
  bool failed_ = false;
  problem error_;
};

// Parses header bytes [first, last) into `out`; on failure returns false with `why` set.
inline bool parse_header_json(const char* first, const char* last, raw_header& out,
                              problem& why) {
  header_sax sax(out);
  const bool ok = nlohmann::json::sax_parse(first, last, &sax, nlohmann::json::input_format_t::json,
                                            /*strict=*/true, /*ignore_comments=*/false);
  if (ok) return true;
  why = sax.error();
  if (why.field.empty() && why.tensor.empty() && why.what.empty())
    why = problem{"", "header", "is not a valid safetensors header"};
  return false;
}

}  // namespace onebit::io::detail
