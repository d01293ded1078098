// OneBit's own inference checkpoints (github xuyuzhuang11/OneBit,
// scripts/convert_llama_to_infer_ckpt.py, read by BitLinearInf), in and out.
//
// A 1-bit linear module NAME (Hugging Face Llama names: "model.layers.N.self_attn.q_proj",
// k_proj, v_proj, o_proj, "mlp.gate_proj", up_proj, down_proj) of `out` outputs and `in` inputs
// is three safetensors tensors:
//
//   NAME.weight        I8  [out, in/8]  the signs, eight per byte: bit = (1 − w)/2 (bit 1 means
//                                       −1), input i is bit i % 8 of byte i / 8 (LSB first)
//   NAME.input_factor  F16 [in]         g
//   NAME.weight_scale  F16 [out]        h
//
// and the module computes LayerNorm(((x ⊙ g) · sign(W)ᵀ) ⊙ h), an nn.LayerNorm(out,
// elementwise_affine=False), eps 1e-5. That is onebit's bit layout without the 64-byte row
// padding, so a layer converts bit for bit both ways; in % 8 must hold (the format has no
// padding), and a layer whose in is not a multiple of 8 is refused by name. The modules are
// found by their input_factor tensors; every other tensor of the file (embeddings, norms, the
// head) is not a 1-bit module and is left to the caller.
//
// Loaded layers have the post-norm on, eps 1e-5. Saved layers must have it on with that eps:
// OneBit's code applies exactly that norm, so a layer without it would run there as another
// function. input_factor and weight_scale are read from F16 (BF16 and F32 too, rounded to the
// nearest F16) and written as F16.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "../half.hpp"
#include "../linear.hpp"
#include "../sign_matrix.hpp"
#include "safetensors.hpp"

namespace onebit::io {

// The norm OneBit's BitLinear applies: nn.LayerNorm's default eps.
inline constexpr post_norm onebit_checkpoint_norm{true, 1e-5f};

namespace detail {

inline constexpr const char* checkpoint_weight = ".weight";
inline constexpr const char* checkpoint_g = ".input_factor";
inline constexpr const char* checkpoint_h = ".weight_scale";

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

inline std::vector<half> checkpoint_halves(const safetensors_view& file, const tensor_info& t) {
  const tensor_view v = file.tensor(t);
  std::vector<half> out(v.elements());
  const auto* p = reinterpret_cast<const unsigned char*>(v.data);
  if (t.type == dtype::F16) {
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = half::from_bits(load_le<std::uint16_t>(p + 2 * i));
  } else {
    const std::vector<float> f = to_floats(v, file.source());
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = to_half(f[i]);
  }
  return out;
}

}  // namespace detail

// The names of the 1-bit modules of a checkpoint (those with an input_factor), sorted.
inline std::vector<std::string> onebit_checkpoint_modules(const safetensors_view& file) {
  std::vector<std::string> names;
  const std::string suffix = detail::checkpoint_g;
  for (const tensor_info& t : file.tensors())
    if (detail::ends_with(t.name, suffix)) names.push_back(t.name.substr(0, t.name.size() - suffix.size()));
  std::sort(names.begin(), names.end());
  return names;
}

// One module of a checkpoint as a onebit layer, the norm on. Throws io::error naming the
// tensor and the field for a missing tensor, a wrong dtype or shapes that do not fit.
inline linear<> load_onebit_checkpoint_layer(const safetensors_view& file, const std::string& name) {
  const std::string src = file.source();
  const auto need = [&](const char* suffix) -> const tensor_info& {
    const tensor_info* t = file.find(name + suffix);
    if (t == nullptr)
      throw error(src, name + suffix, "",
                  "is missing: the OneBit module " + detail::quote(name) + " needs it");
    return *t;
  };
  const tensor_info& w = need(detail::checkpoint_weight);
  const tensor_info& g = need(detail::checkpoint_g);
  const tensor_info& h = need(detail::checkpoint_h);
  if (w.type != dtype::I8 && w.type != dtype::U8)
    throw error(src, w.name, "dtype",
                std::string("is ") + to_string(w.type) + "; a OneBit module's packed signs are I8");
  for (const tensor_info* t : {&g, &h})
    if (t->type != dtype::F16 && t->type != dtype::BF16 && t->type != dtype::F32)
      throw error(src, t->name, "dtype",
                  std::string("is ") + to_string(t->type) + "; OneBit's value vectors are F16");
  if (w.shape.size() != 2 || g.shape.size() != 1 || h.shape.size() != 1)
    throw error(src, w.shape.size() != 2 ? w.name : g.shape.size() != 1 ? g.name : h.name,
                "shape", "weight is [out, in/8], input_factor [in], weight_scale [out]");
  const std::size_t out = static_cast<std::size_t>(w.shape[0]);
  const std::size_t in = static_cast<std::size_t>(g.shape[0]);
  if (in % 8 != 0)
    throw error(src, g.name, "shape",
                "the OneBit module " + detail::quote(name) + " has in = " + std::to_string(in) +
                    ", not a multiple of 8: the checkpoint layout packs eight inputs a byte");
  if (w.shape[1] * 8 != in)
    throw error(src, w.name, "shape",
                "is " + detail::shape_text(w.shape) + " but input_factor has " +
                    std::to_string(in) + " values: weight must be [out, " +
                    std::to_string(in / 8) + "]");
  if (h.shape[0] != out)
    throw error(src, h.name, "shape",
                "has " + std::to_string(h.shape[0]) + " values for " + std::to_string(out) +
                    " outputs (the rows of " + w.name + ")");
  if (out == 0 || in == 0) throw error(src, w.name, "shape", "is empty");

  linear<> layer{sign_matrix<>(out, in), detail::checkpoint_halves(file, g),
                 detail::checkpoint_halves(file, h), onebit_checkpoint_norm};
  const auto* bytes = reinterpret_cast<const unsigned char*>(file.tensor(w).data);
  const std::size_t row_bytes = in / 8;
  for (std::size_t r = 0; r < out; ++r) {
    const unsigned char* src_row = bytes + r * row_bytes;
    if (detail::little_endian()) {
      // onebit's rows are these bytes followed by zero padding (sign_matrix starts all +1).
      std::memcpy(reinterpret_cast<unsigned char*>(layer.W.row(r)), src_row, row_bytes);
    } else {
      for (std::size_t c = 0; c < in; ++c)
        if ((src_row[c / 8] >> (c % 8)) & 1u) layer.W.set(r, c, -1);
    }
  }
  return layer;
}

inline std::map<std::string, linear<>> load_onebit_checkpoint(const safetensors_view& file) {
  std::map<std::string, linear<>> layers;
  for (const std::string& name : onebit_checkpoint_modules(file))
    layers.emplace(name, load_onebit_checkpoint_layer(file, name));
  return layers;
}

// Every 1-bit module of the OneBit checkpoint at `path`, by module name, the norm on.
inline std::map<std::string, linear<>> load_onebit_checkpoint(const std::string& path) {
  const mapped_file file(path);
  return load_onebit_checkpoint(file.file());
}

// The packed signs of a layer as the checkpoint stores them: out rows of in/8 bytes.
// Throws std::invalid_argument naming the layer when in % 8 != 0 or the norm is not OneBit's.
template <class Word>
std::vector<unsigned char> onebit_checkpoint_signs(const std::string& name,
                                                   const linear<Word>& layer) {
  const linear_view<Word> v = layer.view();  // checks g and h
  const std::size_t out = v.out_features(), in = v.in_features();
  const std::string where = "onebit::io::save_onebit_checkpoint: layer " + detail::quote(name);
  if (out == 0 || in == 0) throw std::invalid_argument(where + " is empty");
  if (in % 8 != 0)
    throw std::invalid_argument(where + " has in = " + std::to_string(in) +
                                ", not a multiple of 8: OneBit's layout packs eight inputs a byte");
  if (layer.norm != onebit_checkpoint_norm)
    throw std::invalid_argument(
        where + (layer.norm.enabled ? " has post_norm eps " + std::to_string(layer.norm.eps)
                                    : std::string(" has no post_norm")) +
        "; OneBit's BitLinear always applies LayerNorm with eps 1e-5, so the file would run as "
        "another function");
  std::vector<unsigned char> packed(out * (in / 8));
  for (std::size_t r = 0; r < out; ++r) {
    unsigned char* dst = packed.data() + r * (in / 8);
    for (std::size_t c = 0; c < in; ++c)
      if (v.W(r, c) < 0) dst[c / 8] = static_cast<unsigned char>(dst[c / 8] | (1u << (c % 8)));
  }
  return packed;
}

// Adds a layer's three checkpoint tensors to `w`. `signs` receives the packed bytes, which
// the writer borrows: keep them alive (and unmoved) until it has written.
template <class Word>
void add_onebit_checkpoint_layer(writer& w, const std::string& name, const linear<Word>& layer,
                                 std::vector<unsigned char>& signs) {
  signs = onebit_checkpoint_signs(name, layer);
  const std::size_t out = layer.out_features(), in = layer.in_features();
  w.add(name + detail::checkpoint_weight, dtype::I8, {out, in / 8}, signs.data(), signs.size());
  w.add(name + detail::checkpoint_g, layer.g.data(), {in});
  w.add(name + detail::checkpoint_h, layer.h.data(), {out});
}

// Writes the layers (and nothing else) as a OneBit checkpoint, atomically; __metadata__ says
// "format": "pt", as PyTorch's safetensors files do.
inline void save_onebit_checkpoint(const std::string& path,
                                   const std::map<std::string, linear<>>& layers) {
  writer w;
  w.set_metadata("format", "pt");
  std::vector<std::vector<unsigned char>> signs(layers.size());
  std::size_t i = 0;
  for (const auto& [name, layer] : layers) add_onebit_checkpoint_layer(w, name, layer, signs[i++]);
  w.write(path);
}

// Whole files, for onebit-convert: every tensor that is not a converted layer passes through
// byte for byte (borrowed from the input: keep it alive until the writer has written), and the
// input's metadata but "format" and the "onebit." keys. The conversion owns the layers and
// bytes the writer borrows; it may be moved (its deques keep their elements in place).
struct checkpoint_conversion {
  writer out;
  std::vector<std::string> layers;  // the converted modules, sorted
  std::deque<linear<>> owned;
  std::deque<std::vector<unsigned char>> bytes;
};

namespace detail {

inline void pass_metadata(const safetensors_view& input, writer& out) {
  for (const auto& [key, value] : input.metadata())
    if (key != "format" && key.compare(0, 7, "onebit.") != 0) out.set_metadata(key, value);
}

inline void pass_tensor(const safetensors_view& input, const tensor_info& t, writer& out) {
  out.add(t.name, t.type, t.shape, input.tensor(t).data, static_cast<std::size_t>(t.bytes()));
}

}  // namespace detail

// A OneBit checkpoint as a onebit file: each 1-bit module NAME becomes the onebit layer NAME
// (NAME.W, .g, .h, the post-norm in its metadata).
inline checkpoint_conversion convert_from_onebit_checkpoint(const safetensors_view& input) {
  checkpoint_conversion c;
  c.layers = onebit_checkpoint_modules(input);
  std::set<std::string> taken;
  for (const std::string& name : c.layers) {
    c.owned.push_back(load_onebit_checkpoint_layer(input, name));
    for (const char* suffix : {detail::checkpoint_weight, detail::checkpoint_g, detail::checkpoint_h})
      taken.insert(name + suffix);
  }
  detail::pass_metadata(input, c.out);
  for (const tensor_info& t : input.tensors())
    if (taken.count(t.name) == 0) detail::pass_tensor(input, t, c.out);
  std::size_t i = 0;
  for (const std::string& name : c.layers) c.out.add(name, c.owned[i++]);
  return c;
}

// A onebit file as a OneBit checkpoint: each OneBit layer NAME (which must have OneBit's norm
// and in % 8 == 0) becomes NAME.weight, .input_factor, .weight_scale; "format" is "pt". A file
// with low-bit matrices is refused: the checkpoint layout has no place for them.
inline checkpoint_conversion convert_to_onebit_checkpoint(const safetensors_view& input) {
  checkpoint_conversion c;
  if (!input.lowbit_names().empty())
    throw error(input.source(), input.lowbit_names().front(), "",
                "is a low-bit matrix; OneBit's checkpoint layout holds 1-bit modules only");
  c.layers = input.names();
  std::set<std::string> taken;
  for (const std::string& name : c.layers)
    for (const char* suffix : {".W", ".g", ".h"}) taken.insert(name + suffix);
  detail::pass_metadata(input, c.out);
  c.out.set_metadata("format", "pt");
  for (const tensor_info& t : input.tensors())
    if (taken.count(t.name) == 0) detail::pass_tensor(input, t, c.out);
  for (const std::string& name : c.layers) {
    c.owned.push_back(input.load_layer(name));
    c.bytes.emplace_back();
    add_onebit_checkpoint_layer(c.out, name, c.owned.back(), c.bytes.back());
  }
  return c;
}

}  // namespace onebit::io
