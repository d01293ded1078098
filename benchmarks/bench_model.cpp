// bench_model: a whole Llama-shaped model timed end to end, the way an engine's user asks:
// tokens per second decoding (at contexts 128 and 1024) and prefilling (one prompt of 512
// tokens), on one and two threads, 1-bit against FP16 weights, and where the time goes.
//
//   ./build/benchmarks/bench_model --json=build/bench_model.json
//   /usr/bin/python3 benchmarks/plot_model.py build/bench_model.json build/model.png
//
// Models have random weights at real shapes (nothing here depends on their values):
//   7b  Llama-2-7B:      dim 4096, hidden 11008, 32 layers, 32 heads, vocab 32000
//   1b  TinyLlama-1.1B:  dim 2048, hidden 5632,  22 layers, 32 heads (4 key/value), vocab 32000
// Every linear layer of a block is a packed OneBit layer (onebit::pack for --kernel, lut by
// default) or, for the baseline, an FP16 matrix run by the F16C+FMA GEMM of fp16_gemm.hpp;
// the embedding and the classifier are FP16 in both. The forward pass is the library's
// (models/llama.hpp, llama::forward_tokens): one implementation for the examples, the tests
// and this benchmark.
//
// Decode at context C: the KV cache holds C positions (random values: attention's cost does
// not depend on them), then --decode tokens are timed one by one (after one untimed). Prefill:
// one forward_tokens call of --prefill tokens from position 0. Wall time throughout.
//
// The streaming-read bandwidth of the machine is measured in the same run (1 and 2 threads,
// the widest loads the CPU has, best of 7 over a 1 GiB buffer), and decode is reported against
// the bound it sets: the bytes of weights one token reads (every packed layer with its g and
// h, the classifier, one embedding row) over that bandwidth; a second bound adds the KV cache
// a token reads.
//
// Peak memory: the process's VmHWM, reset (/proc/self/clear_refs) before each model is built.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <onebit/models/llama.hpp>

#include "fp16_gemm.hpp"

namespace llama = onebit::llama;

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// Random bits, fast: splitmix64.
struct bits_stream {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

// Random halves of magnitude 2^-7 .. 2^-6 and random sign: four per 64 random bits.
void fill_halves(std::uint16_t* p, std::size_t n, bits_stream& r) {
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const std::uint64_t z = r.next();
    for (int u = 0; u < 4; ++u)
      p[i + u] = static_cast<std::uint16_t>(((z >> (16 * u)) & 0x83FFu) | 0x2000u);
  }
  for (; i < n; ++i) p[i] = static_cast<std::uint16_t>((r.next() & 0x83FFu) | 0x2000u);
}

// ---------------------------------------------------------------------------------------------
// The FP16 layer: fp16_gemm's rows split over the pool in ranges of whole 48-row tiles.

class fp16_layer final : public llama::layer {
 public:
  explicit fp16_layer(bench::fp16_matrix w) : w_(std::move(w)) {}
  std::size_t in_features() const override { return w_.cols(); }
  std::size_t out_features() const override { return w_.rows(); }
  void forward(const float* x, float* y) const override {
    bench::fp16_gemm(w_, x, 1, w_.cols(), y, w_.rows(), path_);
  }
  void forward_rows(const float* x, std::size_t rows, float* y,
                    const llama::run_context& ctx) const override {
    const std::size_t out = w_.rows(), tiles = (out + 47) / 48;
    auto part = [&](std::size_t begin, std::size_t end) {
      bench::fp16_gemm(w_, x, rows, w_.cols(), y, out, std::min(out, begin * 48),
                       std::min(out, end * 48), path_);
    };
    if (ctx.pool == nullptr || ctx.pool->size() == 1) {
      part(0, tiles);
      return;
    }
    const std::size_t parts = std::min(tiles, ctx.pool->size());
    ctx.pool->parallel_for(parts, [&](std::size_t i) {
      part(tiles * i / parts, tiles * (i + 1) / parts);
    });
  }
  std::string kind() const override { return "fp16"; }
  std::size_t storage_bits() const override { return 16 * w_.rows() * w_.cols(); }
  std::size_t bytes() const noexcept { return w_.bytes(); }

 private:
  bench::fp16_matrix w_;
  bench::fp16_path path_ = bench::fp16_best_path();
};

std::shared_ptr<fp16_layer> random_fp16(std::size_t out, std::size_t in, bits_stream& r) {
  bench::fp16_matrix w(out, in);
  for (std::size_t row = 0; row < out; ++row) {
    fill_halves(w.row(row), in, r);
    std::fill(w.row(row) + in, w.row(row) + w.stride(), std::uint16_t{0});
  }
  return std::make_shared<fp16_layer>(std::move(w));
}

// A packed OneBit layer of random signs; g around 1 and h around 1/sqrt(in), so that a
// layer keeps the scale of its input.
std::shared_ptr<llama::packed_onebit_layer> random_onebit(std::size_t out, std::size_t in,
                                                          onebit::kernel k, bits_stream& r) {
  onebit::linear<> l;
  l.W = onebit::sign_matrix<>(out, in);
  std::uint64_t* words = l.W.data();
  for (std::size_t i = 0; i < l.W.bytes() / 8; ++i) words[i] = r.next();
  l.g.resize(in);
  l.h.resize(out);
  for (auto& v : l.g) v = onebit::to_half(0.75f + 0.5f * static_cast<float>(r.next() >> 40) * 0x1p-24f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(in));
  for (auto& v : l.h)
    v = onebit::to_half(scale * (0.75f + 0.5f * static_cast<float>(r.next() >> 40) * 0x1p-24f));
  return std::make_shared<llama::packed_onebit_layer>(onebit::pack(l, k));
}

// ---------------------------------------------------------------------------------------------

struct shape {
  std::string name;
  llama::config cfg;
};

shape shape_named(const std::string& name, int seq_len) {
  llama::config c;
  if (name == "7b") {
    c.dim = 4096, c.hidden_dim = 11008, c.n_layers = 32, c.n_heads = 32, c.n_kv_heads = 32;
  } else if (name == "1b") {
    c.dim = 2048, c.hidden_dim = 5632, c.n_layers = 22, c.n_heads = 32, c.n_kv_heads = 4;
  } else {
    throw std::invalid_argument("bench_model: unknown model '" + name + "' (7b, 1b)");
  }
  c.vocab_size = 32000;
  c.seq_len = seq_len;
  return {name, c};
}

struct built_model {
  llama::model m;
  std::size_t weight_bytes_per_token = 0;  // what one decoded token reads of the weights
  std::size_t weight_bytes = 0;            // all weights, the embedding too
  double build_seconds = 0;
};

built_model build(const shape& s, bool fp16, onebit::kernel k) {
  const auto start = clock_type::now();
  bits_stream r{0x5eedull + static_cast<std::uint64_t>(s.cfg.dim) * 131 + (fp16 ? 7 : 0)};
  built_model b;
  llama::model& m = b.m;
  m.cfg = s.cfg;
  const std::size_t dim = static_cast<std::size_t>(s.cfg.dim),
                    hidden = static_cast<std::size_t>(s.cfg.hidden_dim),
                    kv = static_cast<std::size_t>(s.cfg.kv_dim()),
                    vocab = static_cast<std::size_t>(s.cfg.vocab_size);
  m.token_embedding_half.resize(vocab * dim);
  fill_halves(reinterpret_cast<std::uint16_t*>(m.token_embedding_half.data()), vocab * dim, r);
  auto classifier = random_fp16(vocab, dim, r);
  b.weight_bytes_per_token = classifier->bytes() + dim * 2;
  b.weight_bytes = classifier->bytes() + vocab * dim * 2;
  m.classifier_layer = classifier;
  m.rms_final.assign(dim, 1.0f);
  for (int l = 0; l < s.cfg.n_layers; ++l) {
    llama::block blk;
    blk.rms_att.assign(dim, 1.0f);
    blk.rms_ffn.assign(dim, 1.0f);
    auto make = [&](std::size_t out, std::size_t in) -> llama::layer_ptr {
      if (fp16) {
        auto f = random_fp16(out, in, r);
        b.weight_bytes_per_token += f->bytes();
        b.weight_bytes += f->bytes();
        return f;
      }
      auto p = random_onebit(out, in, k, r);
      const std::size_t bytes = p->packed().bytes() + 2 * (in + out);
      b.weight_bytes_per_token += bytes;
      b.weight_bytes += bytes;
      return p;
    };
    blk.wq = make(dim, dim);
    blk.wk = make(kv, dim);
    blk.wv = make(kv, dim);
    blk.wo = make(dim, dim);
    blk.w1 = make(hidden, dim);
    blk.w2 = make(dim, hidden);
    blk.w3 = make(hidden, dim);
    m.blocks.push_back(std::move(blk));
  }
  b.build_seconds = seconds_since(start);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Memory: the streaming read bandwidth, peak RSS, what is available.

std::size_t meminfo_kib(const char* field) {
  std::ifstream f("/proc/meminfo");
  std::string key;
  std::size_t value = 0;
  std::string unit;
  while (f >> key >> value >> unit)
    if (key == field) return value;
  return 0;
}

std::size_t status_kib(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field, 0) == 0) return std::strtoull(line.c_str() + std::strlen(field), nullptr, 10);
  return 0;
}

void reset_peak() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

// The streaming read: 256 bytes per step into four independent chains, with the widest loads
// the CPU has. A plain C++ loop, which a build without -march makes 16-byte SSE2 loads, read
// 17-19 GB/s on one thread of the development VM, where the FP16 runner's own decode read 27
// and this loop reads 28-31: the bound it set was too low (decode "above 100% of the bound").
#if ONEBIT_X86
ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)
std::uint64_t read_words_avx512(const std::uint64_t* p, std::size_t n) {
  __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a = _mm512_xor_si512(a, _mm512_loadu_si512(p + i));
    b = _mm512_xor_si512(b, _mm512_loadu_si512(p + i + 8));
    c = _mm512_xor_si512(c, _mm512_loadu_si512(p + i + 16));
    d = _mm512_xor_si512(d, _mm512_loadu_si512(p + i + 24));
  }
  std::uint64_t s = static_cast<std::uint64_t>(
      _mm512_reduce_add_epi64(_mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d))));
  for (; i < n; ++i) s += p[i];
  return s;
}
ONEBIT_TARGET_END

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX2)
__m256i load_xor2(const std::uint64_t* p) {
  return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)),
                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 4)));
}

std::uint64_t read_words_avx2(const std::uint64_t* p, std::size_t n) {
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a = _mm256_xor_si256(a, load_xor2(p + i));
    b = _mm256_xor_si256(b, load_xor2(p + i + 8));
    c = _mm256_xor_si256(c, load_xor2(p + i + 16));
    d = _mm256_xor_si256(d, load_xor2(p + i + 24));
  }
  const __m256i x = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
  std::uint64_t s = static_cast<std::uint64_t>(
      _mm256_extract_epi64(x, 0) ^ _mm256_extract_epi64(x, 1) ^ _mm256_extract_epi64(x, 2) ^
      _mm256_extract_epi64(x, 3));
  for (; i < n; ++i) s += p[i];
  return s;
}
ONEBIT_TARGET_END
#endif

std::uint64_t read_words_portable(const std::uint64_t* p, std::size_t n) {
  std::uint64_t acc[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int u = 0; u < 8; ++u) acc[u] += p[i + u];
  for (; i < n; ++i) acc[0] += p[i];
  std::uint64_t s = 0;
  for (std::uint64_t a : acc) s += a;
  return s;
}

using read_fn = std::uint64_t (*)(const std::uint64_t*, std::size_t);

read_fn widest_read() {
#if ONEBIT_X86
  if (onebit::supports(onebit::isa::avx512)) return &read_words_avx512;
  if (onebit::supports(onebit::isa::avx2)) return &read_words_avx2;
#endif
  return &read_words_portable;
}

double stream_bandwidth(unsigned threads, std::size_t bytes) {
  const std::size_t n = bytes / 8;
  // Each thread's part starts on a cache line: a 64-byte load across two lines costs two.
  std::vector<std::uint64_t> storage(n + 8);
  const std::size_t skip = (8 - reinterpret_cast<std::uintptr_t>(storage.data()) / 8 % 8) % 8;
  std::uint64_t* const words = storage.data() + skip;
  for (std::size_t i = 0; i < n; ++i) words[i] = i;  // touched, so really mapped
  onebit::thread_pool pool(threads);
  std::atomic<std::uint64_t> sink{0};
  const read_fn read_words = widest_read();
  double best = 0;
  for (int rep = 0; rep < 8; ++rep) {  // the first one untimed: page and cache warm-up
    const auto start = clock_type::now();
    pool.parallel_for(threads, [&](std::size_t t) {
      const std::size_t begin = n * t / threads / 8 * 8, end = n * (t + 1) / threads / 8 * 8;
      sink.fetch_add(read_words(words + begin, end - begin));
    });
    const double s = seconds_since(start);
    if (rep > 0) best = std::max(best, static_cast<double>(bytes) / s);
  }
  if (sink.load() == 42) std::puts("");
  return best;
}

std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

// ---------------------------------------------------------------------------------------------

struct options {
  std::vector<std::string> models{"7b", "1b"};
  std::vector<unsigned> threads{1, 2};
  std::vector<int> contexts{128, 1024};
  int decode = 6;
  int prefill = 512;
  onebit::kernel k = onebit::kernel::lut;
  std::string fp16 = "auto";  // which shapes get the FP16 runner: auto, none, or a list
  std::string json = "bench_model.json";
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      const std::size_t len = std::strlen(name);
      return a.compare(0, len, name) == 0 ? a.c_str() + len : nullptr;
    };
    if (const char* v = value("--models=")) o.models = split_list(v);
    else if (const char* v = value("--threads=")) {
      o.threads.clear();
      for (const auto& t : split_list(v)) o.threads.push_back(static_cast<unsigned>(std::stoul(t)));
    } else if (const char* v = value("--contexts=")) {
      o.contexts.clear();
      for (const auto& t : split_list(v)) o.contexts.push_back(std::stoi(t));
    } else if (const char* v = value("--decode=")) o.decode = std::stoi(v);
    else if (const char* v = value("--prefill=")) o.prefill = std::stoi(v);
    else if (const char* v = value("--kernel=")) {
      const auto k = onebit::parse_kernel(v);
      if (!k) throw std::invalid_argument(std::string("bench_model: unknown kernel ") + v);
      o.k = *k;
    } else if (const char* v = value("--fp16=")) o.fp16 = v;
    else if (const char* v = value("--json=")) o.json = v;
    else
      throw std::invalid_argument(
          "bench_model: unknown argument " + a +
          " (--models=7b,1b --threads=1,2 --contexts=128,1024 --decode=N --prefill=N "
          "--kernel=lut --fp16=auto|none|1b,7b --json=PATH)");
  }
  return o;
}

struct run_result {
  std::string model, weights, phase;
  unsigned threads = 1;
  int context = 0, tokens = 0;
  double seconds = 0;
  llama::forward_profile profile;
  double kv_bytes_per_token = 0;
};

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

void fill_cache(llama::state& st, bits_stream& r) {
  for (auto* v : {&st.key_cache, &st.value_cache})
    for (float& f : *v) f = static_cast<float>(static_cast<std::int64_t>(r.next() >> 40) - (1 << 23)) * 0x1p-23f;
}

}  // namespace

int main(int argc, char** argv) try {
  const options o = parse(argc, argv);
  const int max_context = *std::max_element(o.contexts.begin(), o.contexts.end());
  const int seq_len = std::max(max_context + o.decode + 2, o.prefill);
  std::printf("bench_model: CPU %s, %u hardware threads, onebit path %s, fp16 path %s\n",
              cpu_name().c_str(), std::thread::hardware_concurrency(),
              onebit::to_string(onebit::resolve_isa()), bench::to_string(bench::fp16_best_path()));

  const std::size_t stream_bytes = std::size_t{1} << 30;
  std::vector<std::pair<unsigned, double>> bandwidth;
  for (unsigned t : o.threads) {
    bandwidth.emplace_back(t, stream_bandwidth(t, stream_bytes));
    std::printf("streaming read, %u thread%s: %.1f GB/s\n", t, t > 1 ? "s" : "",
                bandwidth.back().second / 1e9);
  }
  auto bandwidth_for = [&](unsigned t) {
    for (const auto& [threads, bw] : bandwidth)
      if (threads == t) return bw;
    return bandwidth.back().second;
  };

  struct model_summary {
    std::string model, weights;
    double weight_bytes, weight_bytes_per_token, build_seconds, peak_rss_bytes;
  };
  std::vector<model_summary> models;
  std::vector<run_result> runs;

  for (const std::string& name : o.models) {
    const shape s = shape_named(name, seq_len);
    for (bool fp16 : {false, true}) {
      bool decode_only = false;
      if (fp16) {
        const std::vector<std::string> list = split_list(o.fp16);
        const bool listed = std::find(list.begin(), list.end(), name) != list.end();
        if (o.fp16 == "auto") {
          // FP16 weights of this shape, with the KV cache and a margin, must fit in memory.
          const double d = s.cfg.dim, kvd = s.cfg.kv_dim(), hd = s.cfg.hidden_dim;
          const double need = 2.0 * s.cfg.n_layers * (2 * d * d + 2 * d * kvd + 3 * d * hd) +
                              4.0 * s.cfg.vocab_size * d + 6.0 * (1u << 30);
          const double available = 1024.0 * static_cast<double>(meminfo_kib("MemAvailable:"));
          if (name == "1b") {
          } else if (need < available) {
            decode_only = true;  // 7B FP16 prefill would take minutes: decode only
          } else {
            std::printf("%s fp16: skipped, needs %.1f GiB, %.1f GiB available\n", name.c_str(),
                        need / (1u << 30), available / (1u << 30));
            continue;
          }
        } else if (!listed) {
          continue;
        } else {
          decode_only = name == "7b";
        }
      }
      const std::string weights = fp16 ? "fp16" : std::string("onebit_") + onebit::to_string(o.k);
      reset_peak();
      std::printf("== %s %s: building ...\n", name.c_str(), weights.c_str());
      std::fflush(stdout);
      built_model b = build(s, fp16, o.k);
      std::printf("   built in %.1f s: %.2f GiB of weights, %.2f GiB read per token\n",
                  b.build_seconds, b.weight_bytes / double(1u << 30),
                  b.weight_bytes_per_token / double(1u << 30));
      bits_stream r{99};
      const double kv_per_position = 2.0 * 4.0 * s.cfg.n_layers * s.cfg.kv_dim();
      for (unsigned t : o.threads) {
        std::unique_ptr<onebit::thread_pool> pool;
        if (t > 1) pool = std::make_unique<onebit::thread_pool>(t);
        for (int context : o.contexts) {
          llama::state st(s.cfg, 1);
          fill_cache(st, r);
          llama::forward_options fo{pool.get(), nullptr};
          int token = 1;
          llama::forward_tokens(b.m, st, &token, 1, context, fo);  // untimed
          run_result res{name, weights, "decode", t, context, o.decode, 0, {}, 0};
          fo.profile = &res.profile;
          const auto start = clock_type::now();
          for (int i = 0; i < o.decode; ++i) {
            token = static_cast<int>((token * 31 + 7) % s.cfg.vocab_size);
            llama::forward_tokens(b.m, st, &token, 1, context + 1 + i, fo);
          }
          res.seconds = seconds_since(start);
          res.kv_bytes_per_token = kv_per_position * (context + 1 + o.decode / 2.0);
          runs.push_back(res);
          std::printf("   decode, context %4d, %u thread%s: %7.2f tokens/s (%.1f ms/token: "
                      "products %.1f, attention %.1f, classifier %.1f, rest %.1f)\n",
                      context, t, t > 1 ? "s" : " ", o.decode / res.seconds,
                      1e3 * res.seconds / o.decode, 1e3 * res.profile.linear / o.decode,
                      1e3 * res.profile.attention / o.decode,
                      1e3 * res.profile.classifier / o.decode, 1e3 * res.profile.rest / o.decode);
          std::fflush(stdout);
        }
        if (!decode_only && o.prefill > 0) {
          llama::state st(s.cfg, static_cast<std::size_t>(o.prefill));
          std::vector<int> prompt(static_cast<std::size_t>(o.prefill));
          for (std::size_t i = 0; i < prompt.size(); ++i)
            prompt[i] = static_cast<int>((i * 7919 + 1) % static_cast<std::size_t>(s.cfg.vocab_size));
          run_result res{name, weights, "prefill", t, 0, o.prefill, 0, {}, 0};
          llama::forward_options fo{pool.get(), &res.profile};
          const auto start = clock_type::now();
          llama::forward_tokens(b.m, st, prompt.data(), prompt.size(), 0, fo);
          res.seconds = seconds_since(start);
          runs.push_back(res);
          std::printf("   prefill of %d tokens, %u thread%s: %7.2f tokens/s (%.2f s: products "
                      "%.2f, attention %.2f, classifier %.2f, rest %.2f)\n",
                      o.prefill, t, t > 1 ? "s" : " ", o.prefill / res.seconds, res.seconds,
                      res.profile.linear, res.profile.attention, res.profile.classifier,
                      res.profile.rest);
          std::fflush(stdout);
        }
      }
      const double peak = 1024.0 * static_cast<double>(status_kib("VmHWM:"));
      std::printf("   peak memory %.2f GiB\n", peak / (1u << 30));
      models.push_back({name, weights, static_cast<double>(b.weight_bytes),
                        static_cast<double>(b.weight_bytes_per_token), b.build_seconds, peak});
    }
  }

  // JSON: context, bandwidth, models, runs (with the decode bounds).
  std::ofstream out(o.json);
  out << "{\n  \"context\": {\"cpu\": \"" << json_escape(cpu_name()) << "\", \"hardware_threads\": "
      << std::thread::hardware_concurrency() << ", \"onebit_isa\": \""
      << onebit::to_string(onebit::resolve_isa()) << "\", \"fp16_path\": \""
      << bench::to_string(bench::fp16_best_path()) << "\", \"kernel\": \"" << onebit::to_string(o.k)
      << "\", \"decode_tokens\": " << o.decode << ", \"prefill_tokens\": " << o.prefill << "},\n";
  out << "  \"bandwidth\": [";
  for (std::size_t i = 0; i < bandwidth.size(); ++i)
    out << (i ? ", " : "") << "{\"threads\": " << bandwidth[i].first
        << ", \"bytes_per_second\": " << bandwidth[i].second << "}";
  out << "],\n  \"models\": [";
  for (std::size_t i = 0; i < models.size(); ++i) {
    const auto& m = models[i];
    out << (i ? ",\n    " : "\n    ") << "{\"model\": \"" << m.model << "\", \"weights\": \""
        << m.weights << "\", \"weight_bytes\": " << m.weight_bytes
        << ", \"weight_bytes_per_token\": " << m.weight_bytes_per_token
        << ", \"build_seconds\": " << m.build_seconds << ", \"peak_rss_bytes\": " << m.peak_rss_bytes
        << "}";
  }
  out << "],\n  \"runs\": [";
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    double per_token = 0;
    for (const auto& m : models)
      if (m.model == r.model && m.weights == r.weights) per_token = m.weight_bytes_per_token;
    const double bw = bandwidth_for(r.threads);
    const double tps = r.tokens / r.seconds;
    out << (i ? ",\n    " : "\n    ") << "{\"model\": \"" << r.model << "\", \"weights\": \""
        << r.weights << "\", \"phase\": \"" << r.phase << "\", \"threads\": " << r.threads
        << ", \"context\": " << r.context << ", \"tokens\": " << r.tokens
        << ", \"seconds\": " << r.seconds << ", \"tokens_per_second\": " << tps
        << ", \"linear_seconds\": " << r.profile.linear
        << ", \"attention_seconds\": " << r.profile.attention
        << ", \"classifier_seconds\": " << r.profile.classifier
        << ", \"rest_seconds\": " << r.profile.rest;
    if (r.phase == "decode")
      out << ", \"bound_tokens_per_second\": " << bw / per_token
          << ", \"bound_with_kv_tokens_per_second\": " << bw / (per_token + r.kv_bytes_per_token)
          << ", \"fraction_of_bound\": " << tps / (bw / per_token);
    out << "}";
  }
  out << "\n  ]\n}\n";
  std::printf("wrote %s\n", o.json.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_model: %s\n", e.what());
  return 1;
}
