// The conversion behind onebit-convert, as a function tests call directly: a float model's
// safetensors file in, its chosen linear layers converted, the rest passed through, a writer out.
//
//   * chosen: 2-D tensors whose names match one of the include patterns (shell globs, `*`
//     crossing dots) and none of the exclude patterns (a norm matched by a broad pattern is
//     1-D, so it stays);
//   * converted: SVID to a OneBit layer (1 bit per weight plus FP16 g and h), named after the
//     tensor less its ".weight" suffix, so "blk.0.wq.weight" becomes "blk.0.wq.W", ".g", ".h";
//     or RTN to a k-bit low-bit matrix ("blk.0.wq.planes", ".scales", ".zeros");
//   * passed through: every other tensor, byte for byte, borrowed from the input (no copy until
//     the file is written), and the input's metadata (but "format", which becomes "onebit").
//
// The report has, per converted layer, its shape, bits per parameter (the format's own count,
// and what it takes in the file) and relative error ‖W0 − Ŵ‖_F / ‖W0‖_F. OneBit layers and
// low-bit matrices already in the input stay what they are.
#pragma once

#include "../io/safetensors.hpp"
#include "../quant/rtn.hpp"
#include "../quant/svid.hpp"

#include <fnmatch.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace onebit::models {

// svid: a OneBit layer (1 bit per weight and FP16 g, h); rtn: a k-bit low-bit matrix.
enum class method { svid, rtn };

inline const char* to_string(method m) noexcept {
  switch (m) {
    case method::svid: return "svid";
    case method::rtn: return "rtn";
  }
  return "?";
}

// The linear layers of the Llama family: Hugging Face names (q_proj ... down_proj) and Meta /
// llama2.c names (attention.wq ... feed_forward.w3). Embeddings, norms and the classifier stay.
inline const std::vector<std::string> default_include = {
    "*_proj.weight", "*.attention.w[qkvo].weight", "*.feed_forward.w[123].weight"};

struct convert_options {
  std::vector<std::string> include = default_include;
  std::vector<std::string> exclude;
  method how = method::svid;
  onebit::svid_options svid;
  onebit::rtn_options rtn;
  std::string strip_suffix = ".weight";
  std::string producer = "onebit-convert";
};

struct layer_report {
  std::string tensor;  // the input tensor
  std::string layer;   // the output layer's name
  std::size_t out = 0, in = 0;
  std::string kind;                    // "onebit" or e.g. "rtn w4 g128"
  std::uint64_t parameters = 0;        // onebit: out·in + in + out (g and h too); rtn: out·in
  double bits_per_parameter = 0;       // the format's own count (storage_bits / parameters)
  double file_bits_per_parameter = 0;  // what the tensors take in the file (64-byte rows)
  double relative_error = 0;           // ‖W0 − Ŵ‖_F / ‖W0‖_F
};

struct conversion {
  onebit::io::writer writer;
  std::vector<layer_report> layers;
  std::uint64_t converted_parameters = 0;  // weights of the converted matrices
  std::uint64_t kept_parameters = 0;       // elements of the tensors passed through
  std::uint64_t kept_bytes = 0;
  // What the writer borrows from besides the input.
  std::deque<onebit::linear<>> storage;
  std::deque<onebit::lowbit_matrix> lowbit_storage;
};

// ‖W0 − Ŵ‖_F / ‖W0‖_F of a low-bit matrix, in double.
inline double relative_error(const std::vector<float>& w0, const onebit::lowbit_matrix& m) {
  double diff = 0, norm = 0;
  for (std::size_t r = 0; r < m.rows(); ++r)
    for (std::size_t c = 0; c < m.cols(); ++c) {
      const double w = w0[r * m.cols() + c];
      const double d = w - static_cast<double>(m.dequantized(r, c));
      diff += d * d;
      norm += w * w;
    }
  return norm == 0 ? 0.0 : std::sqrt(diff / norm);
}

inline bool matches(const std::string& name, const std::vector<std::string>& patterns) {
  for (const std::string& p : patterns)
    if (::fnmatch(p.c_str(), name.c_str(), 0) == 0) return true;
  return false;
}

// Which tensors of `input` the options convert, in file order.
inline std::vector<const onebit::io::tensor_info*> chosen(const onebit::io::safetensors_view& input,
                                                          const convert_options& options) {
  std::vector<const onebit::io::tensor_info*> out;
  for (const onebit::io::tensor_info& t : input.tensors())
    if (t.shape.size() == 2 && matches(t.name, options.include) &&
        !matches(t.name, options.exclude))
      out.push_back(&t);
  return out;
}

inline std::string layer_name(const std::string& tensor, const std::string& suffix) {
  if (!suffix.empty() && tensor.size() > suffix.size() &&
      tensor.compare(tensor.size() - suffix.size(), suffix.size(), suffix) == 0)
    return tensor.substr(0, tensor.size() - suffix.size());
  return tensor;
}

// One float matrix (rows x cols, row-major) converted as `options` asks, SVID to a OneBit layer
// or RTN to low-bit weights, added to c's writer under r.layer, and r filled in: the one step
// the safetensors and GGUF conversions share.
inline void convert_matrix(conversion& c, layer_report& r, const std::vector<float>& w,
                           std::size_t rows, std::size_t cols, const convert_options& options) {
  if (options.how == method::svid) {
    onebit::svid_result<> s = onebit::svid_with_error(w.data(), rows, cols, cols, options.svid);
    r.relative_error = s.relative_error;
    c.storage.push_back(std::move(s.layer));
    const onebit::linear<>& layer = c.storage.back();
    r.kind = "onebit";
    r.parameters = static_cast<std::uint64_t>(rows) * cols + rows + cols;
    r.bits_per_parameter = layer.bits_per_parameter();
    r.file_bits_per_parameter = 8.0 * static_cast<double>(layer.W.bytes() + 2 * (rows + cols)) /
                                static_cast<double>(r.parameters);
    c.writer.add(r.layer, layer);
  } else {
    c.lowbit_storage.push_back(onebit::rtn(w.data(), rows, cols, cols, options.rtn));
    const onebit::lowbit_matrix& m = c.lowbit_storage.back();
    r.relative_error = relative_error(w, m);
    r.kind = "rtn w" + std::to_string(m.bits()) +
             (m.group() == 0 ? std::string(" row") : " g" + std::to_string(m.group())) +
             (m.symmetric() ? " sym" : "");
    r.parameters = static_cast<std::uint64_t>(rows) * cols;
    r.bits_per_parameter =
        static_cast<double>(m.storage_bits()) / static_cast<double>(r.parameters);
    const double groups = static_cast<double>(rows * m.groups_per_row());
    r.file_bits_per_parameter =
        (8.0 * static_cast<double>(m.bits()) * static_cast<double>(rows * onebit::sign_row_stride_bytes(cols)) +
         (m.symmetric() ? 32.0 : 64.0) * groups) /
        static_cast<double>(r.parameters);
    c.writer.add(r.layer, m);
  }
}

// Called before each layer is converted: (layers done, layers in all, the tensor's name).
using progress_fn = std::function<void(std::size_t, std::size_t, const std::string&)>;

// Converts; the result's writer borrows from `input` (keep it alive until the file is written).
// Throws std::invalid_argument for a chosen tensor that is not a float matrix, a matrix SVID
// refuses (NaN, infinity, all zeros) or a name clash, each message naming the tensor.
inline conversion convert(const onebit::io::safetensors_view& input, const convert_options& options,
                          const progress_fn& progress = {}) {
  conversion c;
  const std::vector<const onebit::io::tensor_info*> todo = chosen(input, options);
  std::vector<bool> converted(input.tensors().size(), false);
  for (std::size_t k = 0; k < todo.size(); ++k) {
    const onebit::io::tensor_info& t = *todo[k];
    if (progress) progress(k, todo.size(), t.name);
    converted[static_cast<std::size_t>(&t - input.tensors().data())] = true;
    const std::string where = "tensor " + onebit::io::detail::quote(t.name) + ": ";
    if (t.type != onebit::io::dtype::F32 && t.type != onebit::io::dtype::F16 &&
        t.type != onebit::io::dtype::BF16)
      throw std::invalid_argument(where + "dtype " + onebit::io::to_string(t.type) +
                                  " is not a float weight (F32, F16, BF16); leave it out with --exclude");
    const auto rows = static_cast<std::size_t>(t.shape[0]), cols = static_cast<std::size_t>(t.shape[1]);
    const std::vector<float> w = input.floats(t.name);
    layer_report r;
    r.tensor = t.name;
    r.layer = layer_name(t.name, options.strip_suffix);
    r.out = rows;
    r.in = cols;
    try {
      convert_matrix(c, r, w, rows, cols, options);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(where + e.what());
    }
    c.converted_parameters += static_cast<std::uint64_t>(rows) * cols;
    c.layers.push_back(std::move(r));
  }
  // OneBit layers already in the input stay layers.
  for (const std::string& name : input.names()) {
    const onebit::io::layer_info& l = input.layer_at(name);
    for (const onebit::io::tensor_info* t : {l.W, l.g, l.h})
      converted[static_cast<std::size_t>(t - input.tensors().data())] = true;
    c.storage.push_back(input.load_layer(name));
    c.writer.add(name, c.storage.back());
  }
  for (const std::string& name : input.lowbit_names()) {
    const onebit::io::lowbit_info& m = input.lowbit_at(name);
    for (const onebit::io::tensor_info* t : {m.planes, m.scales, m.zeros})
      if (t != nullptr) converted[static_cast<std::size_t>(t - input.tensors().data())] = true;
    c.lowbit_storage.push_back(input.load_lowbit(name));
    c.writer.add(name, c.lowbit_storage.back());
  }
  for (std::size_t i = 0; i < input.tensors().size(); ++i) {
    if (converted[i]) continue;
    const onebit::io::tensor_info& t = input.tensors()[i];
    const onebit::io::tensor_view v = input.tensor(t);
    c.writer.add(t.name, t.type, t.shape, v.data, v.bytes());
    c.kept_parameters += t.elements();
    c.kept_bytes += t.bytes();
  }
  for (const auto& [key, value] : input.metadata()) {
    if (key == "format" || key.rfind("onebit.", 0) == 0) continue;
    c.writer.set_metadata(key, value);
  }
  c.writer.set_metadata("converter", options.producer + " (" + to_string(options.how) + ")");
  if (progress) progress(todo.size(), todo.size(), "");
  return c;
}

}  // namespace onebit::models
