// bench_gemm: the OneBit layer's kernels beside an FP16 and an FP32 GEMM, at the shapes of a
// 7B model's projections (4096x4096, 11008x4096, 4096x11008; out x in), batch 1 to 64, on one
// and two threads; and prompt-sized batches (256, 512) on one thread for the kernels that have
// batched bodies, at 4096x4096 and 11008x4096.
//
//   ./build/benchmarks/bench_gemm --benchmark_out=results.json --benchmark_out_format=json
//   /usr/bin/python3 benchmarks/plot.py results.json speedup.png
//
// Rows, in the order they run and print (baselines first in every group):
//
//   gemm/<out>x<in>/batch:<b>/threads:<t>/fp16              F16C+FMA, hand-written (fp16_gemm.hpp)
//   gemm/<out>x<in>/batch:<b>/threads:<t>/eigen_fp32_sse2   Eigen, default flags: SSE2 only
//   gemm/<out>x<in>/batch:<b>/threads:<t>/eigen_fp32_avx2   Eigen, -mavx2 -mfma for that file
//   gemm/<out>x<in>/batch:<b>/threads:<t>/onebit_<kernel>[_packed]
//                                           onebit::gemm on the plain layer, or on pack(layer, k)
//   gemm/<out>x<in>/batch:<256|512>/threads:1/{fp16, onebit_add_only_packed, onebit_lut_packed,
//                                           onebit_vnni_int8}: the prompt-sized rows
//   gemm/<out>x<in>/batch:<b>/threads:<t>/onebit_group128_<kernel>_packed
//                                           a group-scaled layer (ggml Q1_0's form: the same
//                                           signs, one FP16 scale per row and 128 inputs)
//   streamed/4096x4096/batch:1/threads:<t>/<kernel>         weights rotated through > 2x LLC
//   parallel/round_trip/threads:<t>/onebit_thread_pool      parallel_for(t, nothing): the
//                                           hand-off and the wait every parallel product pays
//
// Counters: `weights/s` (out·in·batch per second), `weight_bytes` (bytes of weights one call
// reads: 2 per FP16 weight, 4 per FP32 one, the packed bits plus g and h for onebit),
// `bytes_per_second` (weight bytes read per second), and `speedup`, the FP16 row's time of the
// same group over this row's (1.0 on the FP16 row). The FP16 row runs first in its group, in
// this process, so the ratio is of two measurements of one run; plot.py recomputes it from the
// JSON times, so it is there even when a filter skipped the FP16 row. `vs_batch1` (onebit rows
// at batch > 1) is this row's weights/s over the same row's at batch 1 (same shape and threads)
// in this run: how much cheaper a batch row is than a lone one.
//
// Times: CPU time of the calling thread for one thread, wall time (UseRealTime) for two.
// The binary is built without -march (see CMakeLists.txt): every fast path is chosen at run time.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <unistd.h>

#include <onebit/group_scaled_gemm.hpp>
#include <onebit/onebit.hpp>

#include "eigen_gemm.hpp"
#include "fp16_gemm.hpp"
#include "thread_team.hpp"

namespace {

struct shape {
  std::size_t out, in;
  std::string name() const { return std::to_string(out) + "x" + std::to_string(in); }
};

constexpr shape shapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
constexpr std::size_t batches[] = {1, 2, 4, 8, 16, 32, 64};
constexpr unsigned thread_counts[] = {1, 2};
constexpr std::size_t prompt_batches[] = {256, 512};  // one thread, prompt_shape() shapes only
constexpr std::size_t max_batch = 512;
constexpr double min_time = 0.1;  // seconds per row: the whole binary runs in a few minutes

// ---------------------------------------------------------------------------------------------
// The layer of one shape in every format, with its activations. Rows run in registration order,
// shape by shape, so only the current shape is kept (11008x4096 in FP32 alone is 180 MB).

struct layer_set {
  shape s{0, 0};
  bench::aligned_buffer<float> w32;  // out x in, Eigen's W; the FP16 and 1-bit ones derive
  bench::fp16_matrix w16;
  onebit::linear<> w1;
  std::map<onebit::kernel, onebit::packed_linear> packed;  // w1 packed per kernel, on demand
  bench::aligned_buffer<float> x;  // max_batch x in
  bench::aligned_buffer<float> y;  // max_batch x out
};

// Deterministic, fast, roughly normal values (sum of four uniforms).
class value_stream {
 public:
  explicit value_stream(std::uint64_t seed) : s_(seed) {}
  float next() {
    float sum = 0.0f;
    for (int i = 0; i < 4; ++i) {
      s_ += 0x9e3779b97f4a7c15ull;
      std::uint64_t z = s_;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      z ^= z >> 31;
      sum += static_cast<float>(z >> 40) * (1.0f / 16777216.0f) - 0.5f;
    }
    return sum * 1.7320508f;  // variance 1
  }

 private:
  std::uint64_t s_;
};

layer_set& layers(shape s) {
  static layer_set current;
  if (current.s.out == s.out && current.s.in == s.in) return current;
  current = layer_set{};  // free the previous shape first
  current.s = s;
  value_stream values(s.out * 131 + s.in);
  current.w32 = bench::make_aligned<float>(s.out * s.in);
  for (std::size_t i = 0; i < s.out * s.in; ++i) current.w32[i] = values.next() * 0.02f;
  current.w16 = bench::fp16_matrix::from_dense(current.w32.get(), s.out, s.in, s.in);
  current.w1.W = onebit::sign_matrix<>::from_dense(current.w32.get(), s.out, s.in, s.in);
  current.w1.g.resize(s.in);
  current.w1.h.resize(s.out);
  for (auto& v : current.w1.g) v = onebit::to_half(0.5f + std::fabs(values.next()) * 0.25f);
  for (auto& v : current.w1.h) v = onebit::to_half(0.01f + std::fabs(values.next()) * 0.01f);
  current.x = bench::make_aligned<float>(max_batch * s.in);
  for (std::size_t i = 0; i < max_batch * s.in; ++i) current.x[i] = values.next();
  current.y = bench::make_aligned<float>(max_batch * s.out);
  return current;
}

std::size_t onebit_weight_bytes(const onebit::linear<>& layer) {
  return layer.W.bytes() + 2 * (layer.in_features() + layer.out_features());
}

// The last-level cache, from sysconf, else /sys, else a guess large enough for any desktop.
std::size_t last_level_cache_bytes() {
#ifdef _SC_LEVEL3_CACHE_SIZE
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 > 0) return static_cast<std::size_t>(l3);
#endif
  std::size_t best = 0;
  for (int index = 0; index < 8; ++index) {
    std::ifstream file("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) +
                       "/size");
    std::size_t value = 0;
    char unit = 0;
    if (!(file >> value)) continue;
    if (file >> unit) value *= unit == 'K' ? 1024 : unit == 'M' ? 1024 * 1024 : 1;
    best = std::max(best, value);
  }
  return best != 0 ? best : std::size_t{64} << 20;
}

// ---------------------------------------------------------------------------------------------
// Timing and counters shared by every row.

struct group {  // one shape, batch, thread count, and whether the weights stream from memory
  shape s;
  std::size_t batch;
  unsigned threads;
  bool streamed;
  auto key() const { return std::make_tuple(s.out, s.in, batch, threads, streamed); }
};

std::map<std::tuple<std::size_t, std::size_t, std::size_t, unsigned, bool>, double>&
fp16_seconds() {
  static std::map<std::tuple<std::size_t, std::size_t, std::size_t, unsigned, bool>, double> m;
  return m;
}

// The clock Google Benchmark reports for the row: thread CPU time for one thread, wall time
// for two.
double now_seconds(unsigned threads) {
  if (threads == 1) {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

template <class Call>
void measure(benchmark::State& state, const group& g, std::size_t weight_bytes, bool is_fp16,
             Call&& call, const std::string& batch1_key = "") {
  call();  // first touch, outside the clock
  const double start = now_seconds(g.threads);
  for (auto _ : state) {
    call();
    benchmark::ClobberMemory();
  }
  const double seconds =
      (now_seconds(g.threads) - start) / static_cast<double>(std::max<benchmark::IterationCount>(
                                             state.iterations(), 1));
  const double weights = static_cast<double>(g.s.out * g.s.in * g.batch);
  state.counters["weights/s"] =
      benchmark::Counter(weights, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_bytes"] = static_cast<double>(weight_bytes);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(weight_bytes));
  if (is_fp16) fp16_seconds()[g.key()] = seconds;
  if (!batch1_key.empty()) {
    // Weights per second at batch 1 of the same row, if it ran earlier in this process.
    static std::map<std::string, double> batch1_rate;
    const double rate = weights / seconds;
    if (g.batch == 1) batch1_rate[batch1_key] = rate;
    const auto one = batch1_rate.find(batch1_key);
    if (g.batch > 1 && one != batch1_rate.end()) state.counters["vs_batch1"] = rate / one->second;
  }
  const auto base = fp16_seconds().find(g.key());
  if (base != fp16_seconds().end()) state.counters["speedup"] = base->second / seconds;
}

// Rows [begin, end) of the output split over the team; `align` keeps each part a whole number
// of the kernel's row tiles.
template <class Rows>
void split_rows(bench::thread_team& team, std::size_t rows, std::size_t align, Rows&& rows_fn) {
  team.run([&](unsigned i) {
    const auto [begin, end] = team.part(i, rows, align);
    if (begin < end) rows_fn(begin, end);
  });
}

// ---------------------------------------------------------------------------------------------
// The rows. One function per kernel; each is registered once per (shape, batch, threads).

void fp16(benchmark::State& state, group g) {
  layer_set& L = layers(g.s);
  bench::thread_team team(g.threads);
  const bench::fp16_path path = bench::fp16_best_path();
  state.SetLabel(bench::to_string(path));
  measure(state, g, g.s.out * g.s.in * 2, true, [&] {
    split_rows(team, g.s.out, 48, [&](std::size_t begin, std::size_t end) {
      bench::fp16_gemm(L.w16, L.x.get(), g.batch, g.s.in, L.y.get(), g.s.out, begin, end, path);
    });
  });
}

void eigen_fp32_sse2(benchmark::State& state, group g) {
  layer_set& L = layers(g.s);
  bench::thread_team team(g.threads);
  state.SetLabel(bench::eigen_sse2::simd_instruction_sets());
  measure(state, g, g.s.out * g.s.in * 4, false, [&] {
    split_rows(team, g.s.out, 64, [&](std::size_t begin, std::size_t end) {
      bench::eigen_sse2::gemm(L.w32.get() + begin * g.s.in, end - begin, g.s.in, L.x.get(),
                              g.batch, L.y.get() + begin, g.s.out);
    });
  });
}

void eigen_fp32_avx2(benchmark::State& state, group g) {
  if (!bench::eigen_avx2::available()) {
    state.SkipWithError("this CPU lacks AVX2 or FMA (or the file was built without them)");
    return;
  }
  layer_set& L = layers(g.s);
  bench::thread_team team(g.threads);
  state.SetLabel(bench::eigen_avx2::simd_instruction_sets());
  measure(state, g, g.s.out * g.s.in * 4, false, [&] {
    split_rows(team, g.s.out, 64, [&](std::size_t begin, std::size_t end) {
      bench::eigen_avx2::gemm(L.w32.get() + begin * g.s.in, end - begin, g.s.in, L.x.get(),
                              g.batch, L.y.get() + begin, g.s.out);
    });
  });
}

// onebit: the plain layer (the standard layout, as a file or an engine hands it over) or the
// layer packed once for the kernel; one thread calls gemm, two split rows over the library's
// own thread_pool. Preparing the activations (x ⊙ g, quantisation, tables) is inside the
// timed call, as it is in every real one.
const onebit::packed_linear& packed_for(layer_set& L, onebit::kernel k) {
  auto it = L.packed.find(k);
  if (it == L.packed.end()) it = L.packed.emplace(k, onebit::pack(L.w1, k)).first;
  return it->second;
}

std::size_t packed_weight_bytes(const onebit::packed_linear& p) {
  return p.bytes() + 2 * (p.in_features() + p.out_features());
}

void onebit_gemm(benchmark::State& state, group g, onebit::kernel k, bool packed) {
  layer_set& L = layers(g.s);
  const onebit::packed_linear* P = packed ? &packed_for(L, k) : nullptr;
  onebit::thread_pool pool(g.threads);
  const std::size_t bytes = P ? packed_weight_bytes(*P) : onebit_weight_bytes(L.w1);
  const onebit::gemm_options options{k, std::nullopt};
  measure(
      state, g, bytes, false,
      [&] {
        if (g.threads == 1) {
          if (P)
            onebit::gemm(*P, L.x.get(), g.batch, g.s.in, L.y.get(), g.s.out);
          else
            onebit::gemm(L.w1, L.x.get(), g.batch, g.s.in, L.y.get(), g.s.out, options);
        } else {
          if (P)
            onebit::gemm(pool, *P, L.x.get(), g.batch, g.s.in, L.y.get(), g.s.out);
          else
            onebit::gemm(pool, L.w1, L.x.get(), g.batch, g.s.in, L.y.get(), g.s.out, options);
        }
      },
      g.s.name() + "/" + std::to_string(g.threads) + "/" + onebit::to_string(k) +
          (packed ? "_packed" : ""));
  // The path, and the body that runs (a batched one from its crossover on).
  const onebit::prepared_gemm p =
      P ? onebit::prepare(*P, L.x.get(), g.batch, g.s.in, L.y.get(), g.s.out)
        : onebit::prepare(L.w1, L.x.get(), g.batch, g.s.in, L.y.get(), g.s.out, options);
  state.SetLabel(std::string(onebit::to_string(p.path())) + " " + p.body_name());
}

// Group-scaled 1-bit weights (group_scaled_gemm.hpp; ggml Q1_0's form): the signs of w1 and
// one FP16 scale per row and 128 inputs (the mean |w| of the group), packed once per kernel.
struct group_set {
  shape s{0, 0};
  onebit::group_scaled_linear layer;
  std::map<onebit::kernel, onebit::packed_group_scaled> packed;
};

const onebit::packed_group_scaled& group_packed_for(shape s, onebit::kernel k) {
  static group_set current;
  if (current.s.out != s.out || current.s.in != s.in) {
    current = group_set{};
    current.s = s;
    layer_set& L = layers(s);
    constexpr std::size_t G = 128;
    const std::size_t groups = (s.in + G - 1) / G;
    std::vector<onebit::half> d(s.out * groups);
    for (std::size_t j = 0; j < s.out; ++j)
      for (std::size_t grp = 0; grp < groups; ++grp) {
        double total = 0;
        const std::size_t end = std::min(s.in, (grp + 1) * G);
        for (std::size_t i = grp * G; i < end; ++i) total += std::fabs(L.w32[j * s.in + i]);
        d[j * groups + grp] = onebit::to_half(static_cast<float>(total / static_cast<double>(end - grp * G)));
      }
    current.layer = onebit::group_scaled_linear(L.w1.W, std::move(d), G);
  }
  auto it = current.packed.find(k);
  if (it == current.packed.end()) it = current.packed.emplace(k, onebit::pack(current.layer, k)).first;
  return it->second;
}

void onebit_group(benchmark::State& state, group g, onebit::kernel k) {
  const onebit::packed_group_scaled& P = group_packed_for(g.s, k);
  layer_set& L = layers(g.s);
  state.SetLabel(onebit::to_string(P.path()));
  onebit::thread_pool pool(g.threads);
  // The signs (1 bit a weight) and the scales (2 bytes per 128 weights).
  const std::size_t bytes = g.s.out * ((g.s.in + 7) / 8) + 2 * g.s.out * ((g.s.in + 127) / 128);
  measure(state, g, bytes, false, [&] {
    if (g.threads == 1)
      onebit::gemm(P, L.x.get(), g.batch, g.s.in, L.y.get(), g.s.out);
    else
      onebit::gemm(pool, P, L.x.get(), g.batch, g.s.in, L.y.get(), g.s.out);
  });
}

// ---------------------------------------------------------------------------------------------
// Weights streamed from memory: every call reads the next of enough copies of the layer that
// the copies together are more than twice the last-level cache, so none is still cached when
// its turn comes again. Batch 1, where the weights are all the traffic there is.

// Google Benchmark calls a row's function several times while it sizes the iteration count:
// the copies (about 1 GiB here) are made once and kept until another row needs other copies.
struct rotation_slot {
  std::string tag;
  std::shared_ptr<void> copies;  // a std::vector of the layer type named by tag
};
rotation_slot& current_rotation() {
  static rotation_slot slot;
  return slot;
}

template <class Layer>
const std::vector<Layer>& rotation(const std::string& tag, const Layer& layer,
                                   std::size_t bytes_each) {
  rotation_slot& slot = current_rotation();
  if (slot.tag != tag || !slot.copies) {
    slot.copies.reset();
    const std::size_t target = 2 * last_level_cache_bytes() + (std::size_t{64} << 20);
    const std::size_t copies = std::max<std::size_t>(2, (target + bytes_each - 1) / bytes_each);
    slot.copies = std::make_shared<std::vector<Layer>>(copies, layer);
    slot.tag = tag;
  }
  return *static_cast<const std::vector<Layer>*>(slot.copies.get());
}

void set_rotation_counters(benchmark::State& state, std::size_t copies, std::size_t bytes) {
  state.counters["copies"] = static_cast<double>(copies);
  state.counters["rotation_MiB"] = static_cast<double>(copies * bytes) / (1 << 20);
}

void fp16_streamed(benchmark::State& state, group g) {
  layer_set& L = layers(g.s);
  const std::vector<bench::fp16_matrix>& copies = rotation("fp16/" + g.s.name(), L.w16, L.w16.bytes());
  bench::thread_team team(g.threads);
  const bench::fp16_path path = bench::fp16_best_path();
  state.SetLabel(bench::to_string(path));
  std::size_t next = 0;
  measure(state, g, g.s.out * g.s.in * 2, true, [&] {
    const bench::fp16_matrix& w = copies[next];
    next = next + 1 == copies.size() ? 0 : next + 1;
    split_rows(team, g.s.out, 48, [&](std::size_t begin, std::size_t end) {
      bench::fp16_gemm(w, L.x.get(), g.batch, g.s.in, L.y.get(), g.s.out, begin, end, path);
    });
  });
  set_rotation_counters(state, copies.size(), L.w16.bytes());
}

void onebit_streamed(benchmark::State& state, group g, onebit::kernel k) {
  layer_set& L = layers(g.s);
  const std::vector<onebit::linear<>>& copies =
      rotation("onebit/" + g.s.name(), L.w1, onebit_weight_bytes(L.w1));
  state.SetLabel(onebit::to_string(onebit::resolve_isa()));
  std::size_t next = 0;
  measure(state, g, onebit_weight_bytes(L.w1), false, [&] {
    const onebit::linear<>& layer = copies[next];
    next = next + 1 == copies.size() ? 0 : next + 1;
    onebit::gemm(layer, L.x.get(), g.batch, g.s.in, L.y.get(), g.s.out, k);
  });
  set_rotation_counters(state, copies.size(), onebit_weight_bytes(L.w1));
}

void onebit_streamed_packed(benchmark::State& state, group g, onebit::kernel k) {
  layer_set& L = layers(g.s);
  const onebit::packed_linear& P = packed_for(L, k);
  const std::vector<onebit::packed_linear>& copies = rotation(
      "onebit_packed/" + std::string(onebit::to_string(k)) + "/" + g.s.name(), P,
      packed_weight_bytes(P));
  state.SetLabel(onebit::to_string(P.path()));
  std::size_t next = 0;
  measure(state, g, packed_weight_bytes(P), false, [&] {
    const onebit::packed_linear& layer = copies[next];
    next = next + 1 == copies.size() ? 0 : next + 1;
    onebit::gemm(layer, L.x.get(), g.batch, g.s.in, L.y.get(), g.s.out);
  });
  set_rotation_counters(state, copies.size(), packed_weight_bytes(P));
}

// The empty parallel round trip: one index per thread, each doing nothing, back to back as a
// forward pass calls its products; wall time. What is left of a product's time on two threads
// beyond half its one-thread time is this plus the imbalance of the two halves.
void round_trip(benchmark::State& state, unsigned threads) {
  onebit::thread_pool pool(threads);
  std::atomic<std::size_t> sink{0};
  pool.parallel_for(threads, [&](std::size_t i) { sink.fetch_add(i, std::memory_order_relaxed); });
  for (auto _ : state)
    pool.parallel_for(threads, [&](std::size_t i) {
      if (i == threads) sink.fetch_add(1, std::memory_order_relaxed);  // never: keeps f real
    });
  benchmark::DoNotOptimize(sink.load());
}

// ---------------------------------------------------------------------------------------------
// Registration: the table, group by group.

std::string row_name(const char* section, const group& g, const std::string& kernel) {
  return std::string(section) + "/" + g.s.name() + "/batch:" + std::to_string(g.batch) +
         "/threads:" + std::to_string(g.threads) + "/" + kernel;
}

void add(const std::string& name, const group& g, std::function<void(benchmark::State&)> fn) {
  benchmark::internal::Benchmark* b = benchmark::RegisterBenchmark(
      name.c_str(), [fn = std::move(fn)](benchmark::State& state) { fn(state); });
  b->Unit(benchmark::kMillisecond)->MinTime(min_time);
  if (g.threads > 1) b->UseRealTime();
}

// The onebit rows of every group: the exact kernel on the plain layout and packed, then the
// quantised-activation kernels (int8 and binary; see include/onebit/kernels/).
struct onebit_row {
  const char* name;
  onebit::kernel k;
  bool packed;
};
const onebit_row onebit_rows[] = {
    {"onebit_add_only", onebit::kernel::add_only, false},
    {"onebit_add_only_packed", onebit::kernel::add_only, true},
    {"onebit_popcount_int8", onebit::kernel::popcount_int8, false},
    {"onebit_lut_packed", onebit::kernel::lut, true},
    {"onebit_vnni_int8", onebit::kernel::vnni_int8, false},
    {"onebit_popcount_binary", onebit::kernel::popcount_binary, false},
};

// The scalar reference is the oracle, not a contender: one row where it finishes quickly.
bool reference_row(const group& g) {
  return g.s.out == 4096 && g.s.in == 4096 && g.batch == 1 && g.threads == 1;
}

void register_rows() {
  for (unsigned threads : thread_counts) {
    const std::string name =
        "parallel/round_trip/threads:" + std::to_string(threads) + "/onebit_thread_pool";
    benchmark::RegisterBenchmark(name.c_str(),
                                 [threads](benchmark::State& st) { round_trip(st, threads); })
        ->Unit(benchmark::kMicrosecond)
        ->MinTime(min_time)
        ->UseRealTime();
  }
  for (const shape& s : shapes)
    for (std::size_t batch : batches)
      for (unsigned threads : thread_counts) {
        const group g{s, batch, threads, false};
        add(row_name("gemm", g, "fp16"), g, [g](benchmark::State& st) { fp16(st, g); });
        add(row_name("gemm", g, "eigen_fp32_sse2"), g,
            [g](benchmark::State& st) { eigen_fp32_sse2(st, g); });
        add(row_name("gemm", g, "eigen_fp32_avx2"), g,
            [g](benchmark::State& st) { eigen_fp32_avx2(st, g); });
        if (reference_row(g))
          add(row_name("gemm", g, "onebit_reference"), g, [g](benchmark::State& st) {
            onebit_gemm(st, g, onebit::kernel::reference, false);
          });
        for (const onebit_row& r : onebit_rows)
          add(row_name("gemm", g, r.name), g,
              [g, r](benchmark::State& st) { onebit_gemm(st, g, r.k, r.packed); });
        for (onebit::kernel k : {onebit::kernel::add_only, onebit::kernel::lut})
          add(row_name("gemm", g, std::string("onebit_group128_") + onebit::to_string(k) + "_packed"),
              g, [g, k](benchmark::State& st) { onebit_group(st, g, k); });
      }

  // Prompt-sized batches, one thread: the FP16 baseline and the rows with batched bodies (the
  // exact kernel packed, lut packed, vnni_int8 on the plain layout), at the two shapes the
  // batched targets name. The Eigen rows would take seconds per call here.
  for (const shape& s : shapes) {
    if (s.in != 4096) continue;  // 4096x4096 and 11008x4096
    for (std::size_t batch : prompt_batches) {
      const group g{s, batch, 1, false};
      add(row_name("gemm", g, "fp16"), g, [g](benchmark::State& st) { fp16(st, g); });
      for (const onebit_row& r : onebit_rows)
        if (r.k == onebit::kernel::vnni_int8 || (r.packed && r.k != onebit::kernel::popcount_binary))
          add(row_name("gemm", g, r.name), g,
              [g, r](benchmark::State& st) { onebit_gemm(st, g, r.k, r.packed); });
    }
  }

  for (unsigned threads : thread_counts) {
    const group g{shapes[0], 1, threads, true};
    add(row_name("streamed", g, "fp16"), g, [g](benchmark::State& st) { fp16_streamed(st, g); });
    if (threads != 1) continue;
    add(row_name("streamed", g, "onebit_add_only"), g, [g](benchmark::State& st) {
      onebit_streamed(st, g, onebit::kernel::add_only);
    });
    for (const onebit_row& r : onebit_rows)
      if (r.packed)
        add(row_name("streamed", g, r.name), g,
            [g, r](benchmark::State& st) { onebit_streamed_packed(st, g, r.k); });
  }
}

// Before any timing: every baseline this binary will run computes the right thing (on a small
// odd-shaped problem, against a double evaluation of its own weights). A fast wrong baseline
// would make every ratio a lie.
bool baselines_agree() {
  const std::size_t out = 70, in = 333, batch = 5;
  value_stream values(7);
  std::vector<float> w(out * in), x(batch * in), y(batch * out);
  for (float& v : w) v = values.next();
  for (float& v : x) v = values.next();
  const bench::fp16_matrix w16 = bench::fp16_matrix::from_dense(w.data(), out, in, in);
  bool ok = true;
  auto check = [&](const char* name, bool half_weights, std::size_t rows) {
    for (std::size_t b = 0; b < rows; ++b)
      for (std::size_t j = 0; j < out; ++j) {
        double exact = 0.0, magnitude = 0.0;
        for (std::size_t k = 0; k < in; ++k) {
          const double wk = half_weights ? w16.at(j, k) : w[j * in + k];
          exact += x[b * in + k] * wk;
          magnitude += std::fabs(x[b * in + k] * wk);
        }
        if (std::fabs(y[b * out + j] - exact) > 1e-5 * magnitude) {
          std::fprintf(stderr, "bench_gemm: the %s baseline is wrong: y[%zu][%zu] = %g, not %g\n",
                       name, b, j, static_cast<double>(y[b * out + j]), exact);
          ok = false;
          return;
        }
      }
  };
  for (std::size_t rows : {std::size_t{1}, batch}) {  // the GEMV and the GEMM paths
    bench::fp16_gemm(w16, x.data(), rows, in, y.data(), out, bench::fp16_best_path());
    check("fp16", true, rows);
    bench::eigen_sse2::gemm(w.data(), out, in, x.data(), rows, y.data(), out);
    check("eigen_fp32_sse2", false, rows);
    if (bench::eigen_avx2::available()) {
      bench::eigen_avx2::gemm(w.data(), out, in, x.data(), rows, y.data(), out);
      check("eigen_fp32_avx2", false, rows);
    }
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("onebit_isa", onebit::to_string(onebit::resolve_isa()));
  benchmark::AddCustomContext("fp16_path", bench::to_string(bench::fp16_best_path()));
  benchmark::AddCustomContext("eigen_sse2_simd", bench::eigen_sse2::simd_instruction_sets());
  benchmark::AddCustomContext("eigen_avx2_simd", bench::eigen_avx2::available()
                                                     ? bench::eigen_avx2::simd_instruction_sets()
                                                     : "unavailable");
  benchmark::AddCustomContext("last_level_cache_bytes",
                              std::to_string(last_level_cache_bytes()));
  if (!baselines_agree()) return 1;
  register_rows();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
