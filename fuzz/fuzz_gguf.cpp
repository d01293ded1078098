// libFuzzer target over onebit's GGUF reader (io/gguf.hpp). For any bytes, the reader must
// either refuse them with io::gguf_error or accept a file that is consistent all the way
// through:
//
//  * every metadata value reads with the getter of its type (strings, arrays of every element
//    type), and a getter of another type refuses with gguf_error;
//  * every tensor lies inside the file (ASan sees any byte read past it), and each one of a
//    dequantisable type dequantises to elements() floats;
//  * every 2-D Q1_0 tensor loads as a group_scaled_linear whose weights are the dequantised
//    ones, bit for bit, and whose gemv on the exact kernel (add_only, packed for this CPU's
//    path) stays within the stated bound of a double product with the dequantised weights
//    (when they are finite); the lut kernel runs too.
//
// Anything else (a crash, a sanitizer report, another exception type, a mismatch) is a finding.
// Built by scripts/fuzz.sh with clang++ -fsanitize=fuzzer,address,undefined; without
// -DONEBIT_LIBFUZZER it is a replay program over the files or directories on its command line.
#include <onebit/group_scaled_gemm.hpp>
#include <onebit/io/gguf.hpp>

#include <cmath>

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
  std::fprintf(stderr, "fuzz_gguf: FINDING: %s\n", what);
  std::abort();
}

void check_metadata(const io::gguf_file& f) {
  for (const std::string& key : f.keys()) {
    const io::gguf_type t = f.type(key);
    switch (t) {
      case io::gguf_type::string: (void)f.get_string(key); break;
      case io::gguf_type::float32:
      case io::gguf_type::float64: (void)f.get_float(key); break;
      case io::gguf_type::boolean: (void)f.get_bool(key); break;
      case io::gguf_type::array: {
        const io::gguf_type e = f.array_type(key);
        const std::uint64_t n = f.array_size(key);
        std::uint64_t got = 0;
        if (e == io::gguf_type::string) {
          got = f.get_strings(key).size();
        } else if (e == io::gguf_type::float32 || e == io::gguf_type::float64) {
          got = f.get_floats(key).size();
        } else {
          try {
            got = f.get_ints(key).size();
          } catch (const io::gguf_error&) {
            got = n;  // a u64 past int64's range: refused, as documented
          }
        }
        if (got != n) finding("an array read back with the wrong length");
        break;
      }
      default:
        try {
          (void)f.get_int(key);
        } catch (const io::gguf_error&) {
          (void)f.get_uint(key);  // a u64 past int64's range still reads unsigned
        }
    }
    bool refused = false;
    try {
      if (t == io::gguf_type::string) (void)f.get_float(key); else (void)f.get_string(key);
    } catch (const io::gguf_error&) {
      refused = true;
    }
    if (!refused) finding("a getter of the wrong type did not refuse");
  }
}

void check_products(const onebit::group_scaled_linear& layer, const std::vector<float>& w) {
  const std::size_t in = layer.in_features(), out = layer.out_features();
  if (in > 4096 || out > 64) return;
  bool finite = true;
  for (float v : w) finite = finite && std::isfinite(v);
  std::vector<float> x(in), y(out);
  for (std::size_t i = 0; i < in; ++i) x[i] = static_cast<float>(i % 7) - 3.0f;
  onebit::gemv(onebit::pack(layer, onebit::kernel::lut), x.data(), y.data());
  onebit::gemv(onebit::pack(layer, onebit::kernel::add_only), x.data(), y.data());
  if (!finite) return;
  const double u = std::ldexp(1.0, -24), groups = static_cast<double>(layer.groups_per_row());
  for (std::size_t j = 0; j < out; ++j) {
    double exact = 0, scale = 0;
    for (std::size_t i = 0; i < in; ++i) {
      exact += static_cast<double>(w[j * in + i]) * x[i];
      scale += std::fabs(static_cast<double>(w[j * in + i]) * x[i]);
    }
    if (!(std::fabs(y[j] - exact) <= (128.0 + groups + 6.0) * u * scale + 1e-30))
      finding("the exact group-scaled product is outside its bound");
  }
}

void check_tensors(const io::gguf_file& f) {
  for (const io::gguf_tensor_info& t : f.tensors()) {
    if (!io::detail::dequantizable(t.type)) {
      volatile unsigned char sink = 0;  // every byte of the tensor is inside the file
      const unsigned char* p = f.data(t);
      for (std::uint64_t i = 0; i < t.bytes; ++i) sink = static_cast<unsigned char>(sink ^ p[i]);
      (void)sink;
      continue;
    }
    const std::vector<float> v = f.dequantize(t.name);
    if (v.size() != t.elements()) finding("dequantize gave the wrong length");
    if (t.type != 41 || t.elements() != t.ne[0] * t.rows()) continue;
    bool two_d = true;
    for (std::size_t d = 2; d < t.ne.size(); ++d) two_d = two_d && t.ne[d] == 1;
    if (!two_d) continue;
    const onebit::group_scaled_linear layer = f.layer(t.name);
    const std::size_t in = layer.in_features();
    for (std::size_t j = 0; j < layer.out_features(); ++j)
      for (std::size_t i = 0; i < in; ++i) {
        const float w = layer.weight(j, i);
        if (std::memcmp(&w, &v[j * in + i], 4) != 0) finding("a Q1_0 layer's weight differs");
      }
    check_products(layer, v);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A first byte with its top bit set shifts the bytes off the 64-byte boundary.
  const std::size_t shift = size != 0 && (data[0] & 0x80) != 0 ? 3 : 0;
  onebit::detail::aligned_buffer buffer(size + shift + 1);
  if (size != 0) std::memcpy(buffer.data() + shift, data, size);
  try {
    const io::gguf_file f(buffer.data() + shift, size, "fuzz input");
    check_metadata(f);
    check_tensors(f);
  } catch (const io::gguf_error&) {
    return 0;  // a refusal is a correct answer
  }
  return 0;
}

#ifndef ONEBIT_LIBFUZZER
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
  std::printf("fuzz_gguf replay: %zu inputs, no finding\n", runs);
  return runs == 0 ? 1 : 0;
}
#endif
