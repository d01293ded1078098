// onebit-convert's conversion of a GGUF file (io/gguf.hpp) to a onebit safetensors file, as a
// function tests call directly; convert.hpp's options, report and writer.
//
//   * chosen: matrices (2-D, or with trailing dimensions of 1) whose names match an include
//     pattern and no exclude pattern; the default patterns also cover llama.cpp's names
//     (blk.N.attn_q.weight ... blk.N.ffn_down.weight);
//   * converted: F32, F16 and BF16 matrices as convert.hpp converts them (SVID to OneBit
//     layers, or RTN); Q1_0 matrices to group-scaled 1-bit layers, their signs and scales
//     kept exactly (the sign convention turned to onebit's), stored as two tensors
//     NAME.signs (U8 [out, row bytes], the bit layout of sign_matrix.hpp) and NAME.scales
//     (F16 [out, groups]) declared by the metadata "group_scaled.NAME": "group=G cols=N", which
//     load_group_scaled() reads back. A chosen tensor of another type is refused, named;
//   * passed through: every other tensor, shape reversed to safetensors' outermost-first order,
//     byte for byte for F32, F16, BF16, F64 and the integer types, dequantised to F32 for Q8_0,
//     Q4_0 and Q1_0; a tensor of a type safetensors cannot hold (the other ggml block types) is
//     refused, named (leave it out with --exclude or convert it first);
//   * metadata: each scalar or string of the GGUF file as "gguf.KEY" (arrays, such as the
//     tokenizer's vocabulary, are not carried over).
#pragma once

#include "../group_scaled_linear.hpp"
#include "../io/gguf.hpp"
#include "convert.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <string>
#include <vector>

namespace onebit::models {

// llama.cpp's names of the Llama family's linear layers.
inline const std::vector<std::string> gguf_default_include = {
    "blk.*.attn_[qkv].weight", "blk.*.attn_output.weight", "blk.*.ffn_gate.weight",
    "blk.*.ffn_up.weight", "blk.*.ffn_down.weight"};

struct gguf_conversion : conversion {
  std::deque<std::vector<float>> floats;           // dequantised tensors the writer borrows
  std::deque<std::vector<unsigned char>> bytes;    // group-scaled signs
  std::deque<std::vector<half>> halves;            // group-scaled scales
};

namespace detail {

inline bool is_matrix(const io::gguf_tensor_info& t) {
  if (t.ne.size() < 2) return false;
  for (std::size_t d = 2; d < t.ne.size(); ++d)
    if (t.ne[d] != 1) return false;
  return true;
}

inline std::vector<std::uint64_t> outer_first(const io::gguf_tensor_info& t) {
  return std::vector<std::uint64_t>(t.ne.rbegin(), t.ne.rend());
}

inline bool passes_as_is(std::uint32_t type, io::dtype& out) {
  using io::detail::ggml_type;
  switch (static_cast<ggml_type>(type)) {
    case ggml_type::f32: out = io::dtype::F32; return true;
    case ggml_type::f16: out = io::dtype::F16; return true;
    case ggml_type::bf16: out = io::dtype::BF16; return true;
    case ggml_type::f64: out = io::dtype::F64; return true;
    case ggml_type::i8: out = io::dtype::I8; return true;
    case ggml_type::i16: out = io::dtype::I16; return true;
    case ggml_type::i32: out = io::dtype::I32; return true;
    case ggml_type::i64: out = io::dtype::I64; return true;
    default: return false;
  }
}

}  // namespace detail

// Which tensors of `input` the options convert, in file order.
inline std::vector<const io::gguf_tensor_info*> chosen(const io::gguf_file& input,
                                                       const convert_options& options) {
  std::vector<const io::gguf_tensor_info*> out;
  const bool defaults = options.include == default_include;
  for (const io::gguf_tensor_info& t : input.tensors())
    if (detail::is_matrix(t) &&
        (matches(t.name, options.include) || (defaults && matches(t.name, gguf_default_include))) &&
        !matches(t.name, options.exclude))
      out.push_back(&t);
  return out;
}

// Converts; the result's writer borrows from `input` and from the result (keep both alive
// until the file is written). Throws std::invalid_argument naming the tensor for a chosen
// tensor that is not a float or Q1_0 matrix, a matrix SVID refuses, or a tensor that cannot be
// passed through.
inline gguf_conversion convert(const io::gguf_file& input, const convert_options& options,
                               const progress_fn& progress = {}) {
  using io::detail::ggml_type;
  gguf_conversion c;
  const std::vector<const io::gguf_tensor_info*> todo = chosen(input, options);
  std::vector<bool> converted(input.tensors().size(), false);
  for (std::size_t k = 0; k < todo.size(); ++k) {
    const io::gguf_tensor_info& t = *todo[k];
    if (progress) progress(k, todo.size(), t.name);
    converted[static_cast<std::size_t>(&t - input.tensors().data())] = true;
    const std::string where = "tensor " + io::detail::quote(t.name) + ": ";
    const auto rows = static_cast<std::size_t>(t.rows()), cols = static_cast<std::size_t>(t.cols());
    layer_report r;
    r.tensor = t.name;
    r.layer = layer_name(t.name, options.strip_suffix);
    r.out = rows;
    r.in = cols;
    try {
      if (t.type == static_cast<std::uint32_t>(ggml_type::q1_0)) {
        const group_scaled_linear layer = input.layer(t.name);
        const std::size_t stride = layer.signs().stride_bytes(), groups = layer.groups_per_row();
        const auto* signs = reinterpret_cast<const unsigned char*>(layer.signs().data());
        c.bytes.emplace_back(signs, signs + rows * stride);
        c.halves.push_back(layer.scales());
        c.writer.add(r.layer + ".signs", io::dtype::U8, {rows, stride}, c.bytes.back().data(),
                     c.bytes.back().size());
        c.writer.add(r.layer + ".scales", c.halves.back().data(), {rows, groups});
        c.writer.set_metadata("group_scaled." + r.layer,
                              "group=" + std::to_string(layer.group_size()) +
                                  " cols=" + std::to_string(cols));
        r.kind = "group128";
        r.parameters = static_cast<std::uint64_t>(rows) * cols;
        r.bits_per_parameter = static_cast<double>(layer.storage_bits()) / static_cast<double>(r.parameters);
        r.file_bits_per_parameter =
            8.0 * static_cast<double>(rows * stride + 2 * rows * groups) / static_cast<double>(r.parameters);
        r.relative_error = 0;  // kept exactly
      } else {
        if (t.type != static_cast<std::uint32_t>(ggml_type::f32) &&
            t.type != static_cast<std::uint32_t>(ggml_type::f16) &&
            t.type != static_cast<std::uint32_t>(ggml_type::bf16))
          throw std::invalid_argument(std::string("type ") + t.type_name() +
                                      " is not a float weight (F32, F16, BF16) or Q1_0; leave it "
                                      "out with --exclude");
        const std::vector<float> w = input.dequantize(t.name);
        convert_matrix(c, r, w, rows, cols, options);
      }
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(where + e.what());
    }
    c.converted_parameters += static_cast<std::uint64_t>(rows) * cols;
    c.layers.push_back(std::move(r));
  }
  for (std::size_t i = 0; i < input.tensors().size(); ++i) {
    if (converted[i]) continue;
    const io::gguf_tensor_info& t = input.tensors()[i];
    io::dtype type{};
    if (detail::passes_as_is(t.type, type)) {
      c.writer.add(t.name, type, detail::outer_first(t), input.data(t), static_cast<std::size_t>(t.bytes));
      c.kept_bytes += t.bytes;
    } else if (io::detail::dequantizable(t.type)) {
      c.floats.push_back(input.dequantize(t.name));
      c.writer.add(t.name, c.floats.back().data(), detail::outer_first(t));
      c.kept_bytes += 4 * t.elements();
    } else {
      throw std::invalid_argument("tensor " + io::detail::quote(t.name) + ": type " + t.type_name() +
                                  " has no safetensors dtype; leave it out with --exclude");
    }
    c.kept_parameters += t.elements();
  }
  for (const std::string& key : input.keys()) {
    std::string value;
    switch (input.type(key)) {
      case io::gguf_type::string: value = input.get_string(key); break;
      case io::gguf_type::float32:
      case io::gguf_type::float64: value = std::to_string(input.get_float(key)); break;
      case io::gguf_type::boolean: value = input.get_bool(key) ? "true" : "false"; break;
      case io::gguf_type::array: continue;
      case io::gguf_type::uint64: value = std::to_string(input.get_uint(key)); break;
      default: value = std::to_string(input.get_int(key)); break;
    }
    try {
      c.writer.set_metadata("gguf." + key, value);
    } catch (const std::invalid_argument&) {
      // A key or value the safetensors header cannot hold as text (not UTF-8): left out.
    }
  }
  c.writer.set_metadata("converter", options.producer + " (" + to_string(options.how) + ", from GGUF)");
  if (progress) progress(todo.size(), todo.size(), "");
  return c;
}

// A group-scaled layer that convert() wrote (NAME.signs, NAME.scales, "group_scaled.NAME").
// Throws io::error when they are missing or do not fit together.
inline group_scaled_linear load_group_scaled(const io::safetensors_view& file, const std::string& name) {
  const auto& meta = file.metadata();
  const auto it = meta.find("group_scaled." + name);
  if (it == meta.end())
    throw io::error(file.source(), name, "__metadata__", "no group-scaled layer of this name");
  std::size_t group = 0, cols = 0;
  if (std::sscanf(it->second.c_str(), "group=%zu cols=%zu", &group, &cols) != 2)
    throw io::error(file.source(), name, "__metadata__", "not \"group=G cols=N\": " + it->second);
  const io::tensor_info* signs = file.find(name + ".signs");
  const io::tensor_info* scales = file.find(name + ".scales");
  if (signs == nullptr || scales == nullptr || signs->type != io::dtype::U8 ||
      scales->type != io::dtype::F16 || signs->shape.size() != 2 || scales->shape.size() != 2 ||
      signs->shape[0] != scales->shape[0] || group == 0 || group % 8 != 0 || cols == 0 ||
      signs->shape[1] != sign_row_stride_bytes(cols) ||
      scales->shape[1] != (cols + group - 1) / group)
    throw io::error(file.source(), name, "shape", "the signs and scales do not make a group-scaled layer");
  const auto rows = static_cast<std::size_t>(signs->shape[0]);
  group_scaled_linear layer(rows, cols, group);
  const io::tensor_view s = file.tensor(*signs);
  const auto* bytes = reinterpret_cast<const unsigned char*>(s.data);
  const std::size_t stride = static_cast<std::size_t>(signs->shape[1]);
  for (std::size_t j = 0; j < rows; ++j)
    for (std::size_t g = 0; g * group < cols; ++g) layer.set_group_signs(j, g, bytes + j * stride + g * group / 8);
  const io::tensor_view d = file.tensor(*scales);
  const std::size_t groups = layer.groups_per_row();
  for (std::size_t j = 0; j < rows; ++j)
    for (std::size_t g = 0; g < groups; ++g) {
      half h;
      std::memcpy(&h, reinterpret_cast<const unsigned char*>(d.data) + 2 * (j * groups + g), 2);
      layer.set_scale(j, g, h);
    }
  return layer;
}

}  // namespace onebit::models
