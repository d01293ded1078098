// bench_quant: the research half of onebit at the shapes of a 7B model, on one thread.
//
//   ./build/benchmarks/bench_quant --benchmark_out=quant.json --benchmark_out_format=json
//
// Rows, in the order they run and print (baselines first in every group):
//
//   svid/4096x11008/plain_power_iteration   a straightforward scalar SVID: power iteration on
//                                           |W| with two separate mat-vec passes per step in
//                                           double, the same start, tolerance and cap, then the
//                                           signs and the FP16 value vectors
//   svid/4096x11008/svd                     onebit::svid, rank1_method::svd
//   svid/4096x11008/nmf                     onebit::svid, rank1_method::nmf
//   rtn/4096x11008/bits:<k>/group:<G>       onebit::rtn (one pass; the codes as bit-planes)
//   lowbit/4096x4096/batch:<b>/eigen_fp32_sse2   Eigen GEMV/GEMM of the dequantised matrix,
//   lowbit/4096x4096/batch:<b>/eigen_fp32_avx2   default flags (SSE2) and -mavx2 -mfma
//   lowbit/4096x4096/batch:<b>/onebit_1bit       the SVID layer of the same matrix, packed
//   lowbit/4096x4096/batch:<b>/bits:<k>/group:<G>/<packed|plain>
//                                           a prepared_lowbit_gemm reused across calls: the
//                                           per-call prepare (copies, Σx, tables) is timed
//
// The SVID matrix is synthetic with rank-1-structured magnitudes, W_ij = a_i·b_j·z_ij (a, b
// log-normal, z normal; fixed seed), the shape of a 7B model's down projection. Counters: svid
// rows report `iterations` and `relative_error` (of the stored layer for svid, measured by one
// extra pass outside the clock); lowbit rows `bits_per_weight` (the format's storage bits per
// weight) and `speedup` against the SSE2 Eigen row of the same batch.
//
// Times are the calling thread's CPU time (one thread throughout). Built without -march (see
// CMakeLists.txt): onebit picks its paths at run time.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <time.h>

#include <onebit/quant.hpp>

#include "eigen_gemm.hpp"

namespace {

constexpr std::size_t svid_rows = 4096, svid_cols = 11008;
constexpr std::size_t lowbit_out = 4096, lowbit_in = 4096;

// ---------------------------------------------------------------- SVID

const std::vector<float>& svid_matrix() {
  static const std::vector<float> w = [] {
    std::mt19937_64 engine(20261123);
    std::lognormal_distribution<float> scale(0.0f, 0.5f);
    std::normal_distribution<float> z(0.0f, 1.0f);
    std::vector<float> a(svid_rows), b(svid_cols), m(svid_rows * svid_cols);
    for (float& v : a) v = scale(engine);
    for (float& v : b) v = scale(engine) * 0.02f;
    for (std::size_t r = 0; r < svid_rows; ++r)
      for (std::size_t c = 0; c < svid_cols; ++c) m[r * svid_cols + c] = a[r] * b[c] * z(engine);
    return m;
  }();
  return w;
}

struct plain_svid {
  onebit::linear<> layer;
  int iterations = 0;
};

// The straightforward implementation: scalar loops in double, u = |W| v and v = |W|ᵀu as two
// passes, normalising each, until σ changes by at most 1e-6 relative (or 100 steps).
plain_svid plain_power_iteration(const float* w, std::size_t rows, std::size_t cols) {
  std::vector<double> u(rows), v(cols, 1.0 / std::sqrt(static_cast<double>(cols))), next(cols);
  double sigma = 0, previous = 0;
  plain_svid out;
  for (int it = 1; it <= 100; ++it) {
    for (std::size_t r = 0; r < rows; ++r) {
      double s = 0;
      for (std::size_t c = 0; c < cols; ++c) s += std::fabs(w[r * cols + c]) * v[c];
      u[r] = s;
    }
    double nu = 0;
    for (double x : u) nu += x * x;
    nu = std::sqrt(nu);
    for (double& x : u) x /= nu;
    std::fill(next.begin(), next.end(), 0.0);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c) next[c] += u[r] * std::fabs(w[r * cols + c]);
    double nv = 0;
    for (double x : next) nv += x * x;
    sigma = std::sqrt(nv);
    for (std::size_t c = 0; c < cols; ++c) v[c] = next[c] / sigma;
    out.iterations = it;
    if (std::fabs(sigma - previous) <= 1e-6 * sigma) break;
    previous = sigma;
  }
  out.layer.W = onebit::sign_matrix<>::from_dense(w, rows, cols, cols);
  out.layer.h.resize(rows);
  out.layer.g.resize(cols);
  const double root = std::sqrt(sigma);
  for (std::size_t r = 0; r < rows; ++r) out.layer.h[r] = onebit::to_half(static_cast<float>(u[r] * root));
  for (std::size_t c = 0; c < cols; ++c) out.layer.g[c] = onebit::to_half(static_cast<float>(v[c] * root));
  return out;
}

// ‖W − sign(W) ⊙ h gᵀ‖ / ‖W‖ in double.
double layer_error(const float* w, const onebit::linear<>& layer) {
  const std::size_t rows = layer.out_features(), cols = layer.in_features();
  std::vector<float> g(cols);
  onebit::to_float(layer.g.data(), g.data(), cols);
  double err = 0, norm = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    const double h = onebit::to_float(layer.h[r]);
    for (std::size_t c = 0; c < cols; ++c) {
      const double x = w[r * cols + c], d = std::fabs(x) - h * g[c];
      err += d * d;
      norm += x * x;
    }
  }
  return std::sqrt(err / norm);
}

void BM_svid_plain(benchmark::State& state) {
  const std::vector<float>& w = svid_matrix();
  plain_svid r;
  for (auto _ : state) {
    r = plain_power_iteration(w.data(), svid_rows, svid_cols);
    benchmark::DoNotOptimize(r.layer.g.data());
  }
  state.counters["iterations"] = r.iterations;
  state.counters["relative_error"] = layer_error(w.data(), r.layer);
}

void BM_svid(benchmark::State& state, onebit::rank1_method method) {
  const std::vector<float>& w = svid_matrix();
  onebit::svid_options options;
  options.method = method;
  for (auto _ : state) {
    onebit::linear<> layer = onebit::svid(w.data(), svid_rows, svid_cols, svid_cols, options);
    benchmark::DoNotOptimize(layer.g.data());
  }
  const onebit::svid_result<> r =
      onebit::svid_with_error(w.data(), svid_rows, svid_cols, svid_cols, options);
  state.counters["iterations"] = r.rank1.iterations;
  state.counters["converged"] = r.rank1.converged;
  state.counters["relative_error"] = r.relative_error;
}

void BM_rtn(benchmark::State& state, int bits, std::size_t group) {
  const std::vector<float>& w = svid_matrix();
  std::size_t storage = 0;
  for (auto _ : state) {
    const onebit::lowbit_matrix m = onebit::rtn(w.data(), svid_rows, svid_cols, svid_cols, {bits, group, false});
    storage = m.storage_bits();
    benchmark::DoNotOptimize(storage);
  }
  state.counters["bits_per_weight"] = static_cast<double>(storage) / (svid_rows * svid_cols);
}

// ---------------------------------------------------------------- low-bit layer

struct lowbit_data {
  std::vector<float> w, x, y;
  std::map<std::pair<int, std::size_t>, onebit::lowbit_matrix> matrices;  // (bits, group)
  std::map<std::pair<int, std::size_t>, std::vector<float>> dequantized;
  onebit::packed_linear one_bit;
};

lowbit_data& lowbit() {
  static lowbit_data d = [] {
    lowbit_data data;
    std::mt19937_64 engine(4096);
    std::normal_distribution<float> n(0.0f, 1.0f);
    data.w.resize(lowbit_out * lowbit_in);
    for (float& v : data.w) v = 0.02f * n(engine);
    data.x.resize(8 * lowbit_in);
    for (float& v : data.x) v = n(engine);
    data.y.resize(8 * lowbit_out);
    data.one_bit = onebit::pack(onebit::svid(data.w.data(), lowbit_out, lowbit_in, lowbit_in));
    return data;
  }();
  return d;
}

const onebit::lowbit_matrix& quantised(int bits, std::size_t group) {
  lowbit_data& d = lowbit();
  auto it = d.matrices.find({bits, group});
  if (it == d.matrices.end()) {
    it = d.matrices.emplace(std::make_pair(bits, group),
                            onebit::rtn(d.w.data(), lowbit_out, lowbit_in, lowbit_in, {bits, group, false}))
             .first;
    std::vector<float>& deq = d.dequantized[{bits, group}];
    deq.resize(lowbit_out * lowbit_in);
    it->second.dequantize(deq.data(), lowbit_in);
  }
  return it->second;
}

std::map<std::size_t, double>& eigen_seconds() {  // batch -> the SSE2 Eigen row's time
  static std::map<std::size_t, double> m;
  return m;
}

// The calling thread's CPU time: what Google Benchmark reports for a one-thread row, and what
// other processes on a shared machine do not inflate.
double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

template <class Call>
void timed(benchmark::State& state, std::size_t batch, bool baseline, Call&& call) {
  call();  // first touch, outside the clock
  const double start = thread_seconds();
  for (auto _ : state) {
    call();
    benchmark::ClobberMemory();
  }
  const double seconds = (thread_seconds() - start) /
                         static_cast<double>(std::max<benchmark::IterationCount>(state.iterations(), 1));
  if (baseline) eigen_seconds()[batch] = seconds;
  const auto base = eigen_seconds().find(batch);
  if (base != eigen_seconds().end()) state.counters["speedup"] = base->second / seconds;
}

void BM_eigen(benchmark::State& state, bool avx2, std::size_t batch) {
  if (avx2 && !bench::eigen_avx2::available()) {
    state.SkipWithError("this CPU or build has no AVX2+FMA Eigen");
    return;
  }
  lowbit_data& d = lowbit();
  quantised(4, 128);  // Eigen multiplies the 4-bit group-128 matrix, dequantised
  const std::vector<float>& w = d.dequantized[{4, 128}];
  timed(state, batch, !avx2, [&] {
    if (avx2)
      bench::eigen_avx2::gemm(w.data(), lowbit_out, lowbit_in, d.x.data(), batch, d.y.data(), lowbit_out);
    else
      bench::eigen_sse2::gemm(w.data(), lowbit_out, lowbit_in, d.x.data(), batch, d.y.data(), lowbit_out);
  });
  state.counters["bits_per_weight"] = 32;
}

void BM_one_bit(benchmark::State& state, std::size_t batch) {
  lowbit_data& d = lowbit();
  timed(state, batch, false, [&] { onebit::gemm(d.one_bit, d.x.data(), batch, lowbit_in, d.y.data(), lowbit_out); });
  state.counters["bits_per_weight"] =
      static_cast<double>(lowbit_out * lowbit_in + 16 * (lowbit_out + lowbit_in)) / (lowbit_out * lowbit_in);
}

void BM_lowbit(benchmark::State& state, int bits, std::size_t group, bool packed, std::size_t batch) {
  lowbit_data& d = lowbit();
  const onebit::lowbit_matrix& m = quantised(bits, group);
  const onebit::lowbit_linear layer(m, {onebit::kernel::automatic, std::nullopt, packed});
  onebit::prepared_lowbit_gemm p;
  timed(state, batch, false, [&] {
    p.prepare(layer, d.x.data(), batch, lowbit_in, d.y.data(), lowbit_out);
    p.run();
  });
  state.counters["bits_per_weight"] = static_cast<double>(m.storage_bits()) / (lowbit_out * lowbit_in);
  state.SetLabel(onebit::to_string(layer.path()));
}

void register_all() {
  const std::string svid_shape = std::to_string(svid_rows) + "x" + std::to_string(svid_cols);
  benchmark::RegisterBenchmark(("svid/" + svid_shape + "/plain_power_iteration").c_str(), BM_svid_plain)
      ->Unit(benchmark::kMillisecond)->Iterations(2);
  benchmark::RegisterBenchmark(("svid/" + svid_shape + "/svd").c_str(), BM_svid, onebit::rank1_method::svd)
      ->Unit(benchmark::kMillisecond)->Iterations(5);
  benchmark::RegisterBenchmark(("svid/" + svid_shape + "/nmf").c_str(), BM_svid, onebit::rank1_method::nmf)
      ->Unit(benchmark::kMillisecond)->Iterations(5);
  for (int bits : {2, 4})
    benchmark::RegisterBenchmark(("rtn/" + svid_shape + "/bits:" + std::to_string(bits) + "/group:128").c_str(),
                                 BM_rtn, bits, std::size_t{128})
        ->Unit(benchmark::kMillisecond)->Iterations(2);

  const std::string shape = std::to_string(lowbit_out) + "x" + std::to_string(lowbit_in);
  for (std::size_t batch : {1u, 8u}) {
    const std::string prefix = "lowbit/" + shape + "/batch:" + std::to_string(batch) + "/";
    benchmark::RegisterBenchmark((prefix + "eigen_fp32_sse2").c_str(), BM_eigen, false, batch)
        ->Unit(benchmark::kMicrosecond)->MinTime(0.3);
    benchmark::RegisterBenchmark((prefix + "eigen_fp32_avx2").c_str(), BM_eigen, true, batch)
        ->Unit(benchmark::kMicrosecond)->MinTime(0.3);
    benchmark::RegisterBenchmark((prefix + "onebit_1bit").c_str(), BM_one_bit, batch)
        ->Unit(benchmark::kMicrosecond)->MinTime(0.3);
    for (int bits : {2, 4})
      for (std::size_t group : {std::size_t{0}, std::size_t{128}})
        for (bool packed : {true, false})
          benchmark::RegisterBenchmark((prefix + "bits:" + std::to_string(bits) + "/group:" +
                                        (group == 0 ? std::string("row") : std::to_string(group)) +
                                        (packed ? "/packed" : "/plain"))
                                           .c_str(),
                                       BM_lowbit, bits, group, packed, batch)
              ->Unit(benchmark::kMicrosecond)->MinTime(0.3);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  benchmark::AddCustomContext("onebit_path", onebit::to_string(onebit::resolve_isa()));
  benchmark::AddCustomContext("eigen_sse2", bench::eigen_sse2::simd_instruction_sets());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
