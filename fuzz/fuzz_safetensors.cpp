// libFuzzer target over onebit's safetensors reader. For any bytes, the reader must either
// refuse them with onebit::io::error or accept a file that is consistent all the way through:
//
//  * every declared OneBit layer loads as an owning copy, and where a zero-copy view is
//    possible, the view equals the copy and gemv over both gives the same bits; every declared
//    low-bit matrix loads, or is refused for a scale or zero that is not finite;
//  * every tensor that converts to float converts (every byte of it is read);
//  * writing what was read (layers, tensors, metadata) and reading it back in strict mode gives
//    the same layers and the same tensor bytes.
//
// Anything else (a crash, an out-of-bounds read under ASan, undefined behaviour under UBSan, an
// exception of another type, a mismatch) is a finding. Built by scripts/fuzz.sh with clang++
// -fsanitize=fuzzer,address,undefined; built without -DONEBIT_LIBFUZZER it is a replay program
// that runs the files or directories given on its command line once (the corpus test).
#include <onebit/gemm.hpp>
#include <onebit/io/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

namespace io = onebit::io;

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_safetensors: FINDING: %s\n", what);
  std::abort();
}

void check_layers(const io::safetensors_view& file) {
  for (const std::string& name : file.names()) {
    const onebit::linear<> owned = file.load_layer(name);
    if (owned.in_features() != file.layer_at(name).in ||
        owned.out_features() != file.layer_at(name).out)
      finding("load_layer has the wrong shape");
    onebit::linear_view<> view;
    try {
      view = file.layer(name);
    } catch (const io::error&) {
      continue;  // misaligned for zero-copy: refused, as documented
    }
    if (!(view.W == owned.W.view())) finding("zero-copy W differs from the owning copy");
    if (std::memcmp(view.g, owned.g.data(), owned.g.size() * sizeof(onebit::half)) != 0 ||
        std::memcmp(view.h, owned.h.data(), owned.h.size() * sizeof(onebit::half)) != 0)
      finding("zero-copy g or h differs from the owning copy");
    if (owned.in_features() == 0 || owned.out_features() == 0 || owned.in_features() > 4096)
      continue;
    std::vector<float> x(owned.in_features());
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) - 3.0f;
    std::vector<float> y_view(owned.out_features()), y_owned(owned.out_features());
    onebit::gemv(view, x.data(), y_view.data());
    onebit::gemv(owned, x.data(), y_owned.data());
    if (std::memcmp(y_view.data(), y_owned.data(), y_view.size() * sizeof(float)) != 0)
      finding("gemv over the zero-copy view differs from gemv over the copy");
  }
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

// The low-bit matrices that load (a scale or zero that is not finite is refused with io::error).
std::vector<std::pair<std::string, onebit::lowbit_matrix>> load_lowbits(const io::safetensors_view& file) {
  std::vector<std::pair<std::string, onebit::lowbit_matrix>> out;
  for (const std::string& name : file.lowbit_names()) {
    try {
      out.emplace_back(name, file.load_lowbit(name));
    } catch (const io::error& e) {
      if (e.field() != "values") throw;
    }
  }
  return out;
}

void check_tensors(const io::safetensors_view& file) {
  for (const io::tensor_info& t : file.tensors()) {
    try {
      const std::vector<float> f = file.floats(t.name);
      if (f.size() != t.elements()) finding("floats() has the wrong length");
    } catch (const io::error&) {
      // C64 and the sub-byte floats do not convert: refused, as documented.
    }
  }
}

// Writes back what was read and reads it again, strictly. (A symmetric matrix's zeros cannot be
// present: the reader refuses such a file.)
void check_round_trip(const io::safetensors_view& file) {
  io::writer w;
  std::vector<onebit::linear<>> layers;
  const std::vector<std::string> names = file.names();
  layers.reserve(names.size());
  std::vector<std::string> layer_tensors;
  for (const std::string& name : names) {
    layers.push_back(file.load_layer(name));
    w.add(name, layers.back());
    for (const char* suffix : {".W", ".g", ".h"}) layer_tensors.push_back(name + suffix);
  }
  // Low-bit matrices that load are written as such; the others' tensors as plain tensors.
  const auto lowbits = load_lowbits(file);
  for (const auto& [name, m] : lowbits) {
    w.add(name, m);
    for (const char* suffix : {".planes", ".scales", ".zeros"}) layer_tensors.push_back(name + suffix);
  }
  for (const io::tensor_info& t : file.tensors()) {
    bool in_layer = false;
    for (const std::string& n : layer_tensors) in_layer = in_layer || n == t.name;
    if (in_layer) continue;
    const io::tensor_view v = file.tensor(t);
    w.add(t.name, t.type, t.shape, v.data, v.bytes());
  }
  for (const auto& [key, value] : file.metadata()) {
    if (key.rfind("onebit.", 0) == 0) continue;  // the writer's own
    w.set_metadata(key, value);
  }
  const std::vector<std::byte> bytes = w.bytes();
  onebit::detail::aligned_buffer aligned(bytes.size());
  std::memcpy(aligned.data(), bytes.data(), bytes.size());
  io::read_options strict;
  strict.strict = true;
  const io::safetensors_view again(aligned.data(), bytes.size(), "round trip", strict);
  if (again.names() != names) finding("round trip changed the layer names");
  if (again.lowbit_names().size() != lowbits.size()) finding("round trip changed the low-bit names");
  for (const auto& [name, m] : lowbits)
    if (!same_lowbit(again.load_lowbit(name), m)) finding("round trip changed a low-bit matrix");
  for (std::size_t i = 0; i < names.size(); ++i) {
    const onebit::linear<> back = again.load_layer(names[i]);
    if (!(back.W == layers[i].W) || back.g != layers[i].g || back.h != layers[i].h)
      finding("round trip changed a layer");
    (void)again.layer(names[i]);  // the writer's files always allow zero-copy
  }
  for (const io::tensor_info& t : file.tensors()) {
    const io::tensor_info* u = again.find(t.name);
    if (u == nullptr) {
      // A symmetric low-bit matrix's zeros are not stored; nothing else may go missing.
      bool symmetric_zeros = false;
      for (const auto& [name, m] : lowbits) symmetric_zeros = symmetric_zeros || (m.symmetric() && t.name == name + ".zeros");
      if (!symmetric_zeros) finding("round trip lost a tensor");
      continue;
    }
    bool in_layer = false;
    for (const std::string& n : layer_tensors) in_layer = in_layer || n == t.name;
    if (in_layer) continue;  // compared as layers above: W is rewritten in the standard layout
    if (u->type != t.type || u->shape != t.shape || u->bytes() != t.bytes() ||
        std::memcmp(again.tensor(*u).data, file.tensor(t).data, static_cast<std::size_t>(t.bytes())) != 0)
      finding("round trip changed a tensor's bytes");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The reader gets the bytes at a 64-byte boundary (as from mmap), so that zero-copy views are
  // possible; a first byte with its top bit set shifts them by 2 to exercise the refusals too.
  const std::size_t shift = size != 0 && (data[0] & 0x80) != 0 ? 2 : 0;
  onebit::detail::aligned_buffer buffer(size + shift + 1);
  if (size != 0) std::memcpy(buffer.data() + shift, data, size);
  io::read_options options;
  options.max_header_bytes = 1 << 20;
  try {
    const io::safetensors_view file(buffer.data() + shift, size, "fuzz input", options);
    check_layers(file);
    (void)load_lowbits(file);
    check_tensors(file);
  } catch (const io::error&) {
    return 0;  // a refusal is a correct answer
  }
  try {
    const io::safetensors_view file(buffer.data() + shift, size, "fuzz input", options);
    check_round_trip(file);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    finding("writing back an accepted file failed");
  }
  return 0;
}

#ifndef ONEBIT_LIBFUZZER
// Replay: each argument is a file, or a directory whose files are run (not recursively).
#include <filesystem>
#include <fstream>
#include <iterator>

int main(int argc, char** argv) {
  std::size_t runs = 0;
  const auto run = [&](const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    ++runs;
  };
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path p(argv[i]);
    if (std::filesystem::is_directory(p)) {
      for (const auto& entry : std::filesystem::directory_iterator(p))
        if (entry.is_regular_file()) run(entry.path());
    } else {
      run(p);
    }
  }
  std::printf("fuzz_safetensors replay: %zu inputs, no finding\n", runs);
  return runs == 0 ? 1 : 0;
}
#endif
