// The batched bodies (issue 14, item 2): lut's batched AVX-512 body against the integer oracle
// bit for bit, and the exact kernel's packed body (whose sums now go half to the FMA units)
// against its bound and against the bits each batch row gives alone. Every path this CPU runs,
// forced one by one; the batched body itself only exists on avx512 and avx512_icl, and the
// cases say which body ran so a machine without it shows that visibly.
#include <onebit/gemm.hpp>
#include <onebit/kernels/layer_norm.hpp>
#include <onebit/kernels/reference_int.hpp>
#include <onebit/parallel.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_batched {

namespace {

using onebit::isa;
using onebit::kernel;

constexpr std::size_t crossover = onebit::kernels::lut::batched_from;

float to_f(float v) { return v; }
float to_f(onebit::half v) { return onebit::to_float(v); }

// reference_int's int8 product of a = x ⊙ g, then the layer's post-norm where it is on (the one
// finishing function every path uses, so the bits must match).
template <class T>
std::vector<float> int8_oracle(const onebit::linear<>& layer, const T* x, std::size_t batch,
                               std::size_t ldx) {
  const std::size_t in = layer.in_features(), out = layer.out_features();
  std::vector<float> a(batch * in), y(batch * out);
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t i = 0; i < in; ++i)
      a[b * in + i] = to_f(x[b * ldx + i]) * onebit::to_float(layer.g[i]);
  onebit::kernels::reference_int::int8_gemm(reinterpret_cast<const unsigned char*>(layer.W.data()),
                                            layer.W.stride_bytes(), out, in, layer.h.data(),
                                            a.data(), batch, in, y.data(), out);
  if (layer.norm.enabled)
    for (std::size_t b = 0; b < batch; ++b)
      onebit::kernels::layer_norm::row(y.data() + b * out, out, layer.norm.eps);
  return y;
}

bool has_batched_lut(isa path) { return path == isa::avx512 || path == isa::avx512_icl; }

// lut, packed for each path, on strided unaligned x and y with garbage in W's padding: every
// output equals the oracle; the gaps between y rows stay untouched; the body reported is the
// batched one exactly from the crossover on, where the path has it.
template <class T>
void check_lut(std::size_t out, std::size_t in, std::size_t batch, bool norm) {
  auto layer = onebit_test::random_layer(out, in);
  layer.norm.enabled = norm;
  onebit_test::fill_padding_with_garbage(layer.W);
  const std::size_t ldx = in + 5, ldy = out + 3;
  onebit_test::offset_buffer<T> x(batch * ldx, 1);
  const std::vector<T> v = onebit_test::activations<T>(batch * ldx);
  std::copy(v.begin(), v.end(), x.data());
  const std::vector<float> want = int8_oracle(layer, x.data(), batch, ldx);
  for (isa path : onebit_test::runnable_paths()) {
    const auto packed = onebit::pack(layer, onebit::gemm_options{kernel::lut, path});
    onebit_test::offset_buffer<float> y(batch * ldy, 1, -77.0f);
    auto p = onebit::prepare(packed, x.data(), batch, ldx, y.data(), ldy);
    p.run();
    const std::string body = p.body_name();
    const bool batched = body.find("batched") != std::string::npos;
    CHECK_MESSAGE(batched == (has_batched_lut(path) && batch >= crossover), body, " on ",
                  std::string(onebit::to_string(path)), " at batch ", batch);
    std::size_t differ = 0, gaps = 0;
    for (std::size_t b = 0; b < batch; ++b) {
      for (std::size_t j = 0; j < out; ++j) differ += !(y.data()[b * ldy + j] == want[b * out + j]);
      for (std::size_t j = out; j < ldy && b + 1 < batch; ++j) gaps += y.data()[b * ldy + j] != -77.0f;
    }
    CHECK_MESSAGE(differ == 0, body, " ", out, "x", in, " batch ", batch, " norm ", norm, ": ",
                  differ, " outputs differ from reference_int");
    CHECK(gaps == 0);
  }
}

constexpr std::size_t odd_sizes[] = {1, 7, 63, 64, 65, 127};

}  // namespace

TEST_CASE("lut's batched body equals reference_int bit for bit: odd shapes, around the crossover") {
  for (std::size_t out : odd_sizes)
    for (std::size_t in : odd_sizes)
      for (std::size_t batch : {crossover - 1, crossover, crossover + 1, std::size_t{9}})
        check_lut<float>(out, in, batch, false);
}

TEST_CASE("lut's batched body: batch 1 to 70, half and float, post-norm on and off") {
  for (std::size_t batch = 1; batch <= 70; ++batch) check_lut<float>(97, 250, batch, batch % 2 == 0);
  for (std::size_t batch : {2u, 5u, 33u}) check_lut<onebit::half>(130, 241, batch, batch == 5);
}

TEST_CASE("lut's batched body: wide and tall shapes, several column tiles and row spans") {
  check_lut<onebit::half>(65, 4095, 6, false);   // 273 chunks: 18 column tiles, the last short
  check_lut<float>(2100, 300, 5, true);          // 66 blocks: two spans of 64
  check_lut<float>(33, 481, 4, false);           // 481 columns: a tile boundary inside the data
}

// Batch 11 runs the batched body, batch 1 the single-row one (301 rows: 10 blocks, a group of
// six blocks per table load and one of four).
TEST_CASE("lut's bodies: any row ranges, and the parallel gemm on any thread count") {
  std::mt19937_64& rng = onebit_test::rng();
  const std::size_t out = 301, in = 700;
  const auto layer = onebit_test::random_layer(out, in);
  for (const std::size_t batch : {std::size_t{11}, std::size_t{1}}) {
    const std::vector<float> x = onebit_test::gaussian(batch * in);
    // The scalar int8 sums: every int8 body gives these bits.
    std::vector<float> scalar(batch * out);
    onebit::gemm(layer, x.data(), batch, in, scalar.data(), out,
                 onebit::gemm_options{kernel::popcount_int8, isa::portable});
    for (isa path : onebit_test::runnable_paths()) {
      const auto packed = onebit::pack(layer, onebit::gemm_options{kernel::lut, path});
      std::vector<float> whole(batch * out);
      onebit::gemm(packed, x.data(), batch, in, whole.data(), out);
      CHECK_MESSAGE(whole == scalar, std::string(onebit::to_string(path)), " batch ", batch);
      // Cuts anywhere, inside blocks too, run in reverse order.
      std::vector<float> parts(batch * out, -1.0f);
      auto p = onebit::prepare(packed, x.data(), batch, in, parts.data(), out);
      std::vector<std::size_t> cuts{0, out};
      std::uniform_int_distribution<std::size_t> cut(0, out);
      for (int i = 0; i < 7; ++i) cuts.push_back(cut(rng));
      std::sort(cuts.begin(), cuts.end());
      for (std::size_t i = cuts.size() - 1; i-- > 0;) p.run_rows(cuts[i], cuts[i + 1]);
      CHECK_MESSAGE(whole == parts, std::string(onebit::to_string(path)), " batch ", batch,
                    " row ranges");
      for (unsigned threads : {2u, 3u, 5u}) {
        onebit::thread_pool pool(threads);
        std::vector<float> y(batch * out, -1.0f);
        onebit::gemm(pool, packed, x.data(), batch, in, y.data(), out);
        CHECK_MESSAGE(whole == y, std::string(onebit::to_string(path)), " batch ", batch, " ",
                      threads, " threads");
      }
    }
  }
}

TEST_CASE("lut batched and popcount_int8 give the same bits at batch 64") {
  const auto layer = onebit_test::random_layer(200, 1000);
  const std::vector<float> x = onebit_test::gaussian(64 * 1000);
  std::vector<float> want(64 * 200), y(64 * 200);
  onebit::gemm(layer, x.data(), 64, 1000, want.data(), 200,
               onebit::gemm_options{kernel::popcount_int8, isa::portable});
  for (isa path : onebit_test::runnable_paths()) {
    onebit::gemm(onebit::pack(layer, onebit::gemm_options{kernel::lut, path}), x.data(), 64, 1000,
                 y.data(), 200);
    CHECK_MESSAGE(y == want, std::string(onebit::to_string(path)));
  }
}

// add_only's packed AVX-512 body adds half its table lookups with fma(p, 1, acc): the bound of
// add_only.hpp, (n + 2)·u·S_j, and the bits of each batch row alone, on every path.
TEST_CASE("add_only packed: within (n + 2)·u·S of exact, and each batch row's bits alone") {
  for (std::size_t in : {1u, 31u, 127u, 1000u}) {
    const std::size_t out = 77, batch = 9, ldx = in + 2;
    auto layer = onebit_test::random_layer(out, in);
    onebit_test::fill_padding_with_garbage(layer.W);
    onebit_test::offset_buffer<onebit::half> x(batch * ldx, 3);
    const auto v = onebit_test::activations<onebit::half>(batch * ldx);
    std::copy(v.begin(), v.end(), x.data());
    const auto exact = onebit_test::exact_gemm(layer, x.data(), batch, ldx);
    const double u = std::ldexp(1.0, -24);
    for (isa path : onebit_test::runnable_paths()) {
      const auto packed = onebit::pack(layer, onebit::gemm_options{kernel::add_only, path});
      std::vector<float> y(batch * out), alone(out);
      onebit::gemm(packed, x.data(), batch, ldx, y.data(), out);
      std::size_t outside = 0, differ = 0;
      for (std::size_t b = 0; b < batch; ++b) {
        onebit::gemm(packed, x.data() + b * ldx, 1, ldx, alone.data(), out);
        for (std::size_t j = 0; j < out; ++j) {
          const double bound = static_cast<double>(in + 2) * u * exact.scale[b * out + j];
          outside += !(std::fabs(y[b * out + j] - exact.y[b * out + j]) <= bound);
          differ += !(y[b * out + j] == alone[j]);
        }
      }
      CHECK_MESSAGE(outside == 0, std::string(onebit::to_string(path)), " in ", in);
      CHECK_MESSAGE(differ == 0, std::string(onebit::to_string(path)), " in ", in);
    }
  }
}

// gemm runs batches beyond detail::batch_slice in slices: the same bits as one prepared call
// of the whole batch, on one thread and on a pool, for every kernel and path, post-norm on.
TEST_CASE("gemm in batch slices equals one prepared call of the whole batch") {
  const std::size_t out = 70, in = 90, batch = 2 * onebit::detail::batch_slice + 5, ldx = in + 1;
  auto layer = onebit_test::random_layer(out, in);
  layer.norm.enabled = true;
  const std::vector<float> x = onebit_test::gaussian(batch * ldx);
  onebit::thread_pool pool(2);
  for (kernel k : {kernel::add_only, kernel::lut, kernel::popcount_int8, kernel::vnni_int8,
                   kernel::popcount_binary})
    for (isa path : onebit_test::runnable_paths()) {
      const onebit::gemm_options options{k, path};
      const auto packed = onebit::pack(layer, options);
      for (bool use_packed : {false, true}) {
        std::vector<float> whole(batch * out), sliced(batch * out, -1.0f), pooled(batch * out, -1.0f);
        if (use_packed) {
          onebit::prepare(packed, x.data(), batch, ldx, whole.data(), out).run();
          onebit::gemm(packed, x.data(), batch, ldx, sliced.data(), out);
          onebit::gemm(pool, packed, x.data(), batch, ldx, pooled.data(), out);
        } else {
          onebit::prepare(layer, x.data(), batch, ldx, whole.data(), out, options).run();
          onebit::gemm(layer, x.data(), batch, ldx, sliced.data(), out, options);
          onebit::gemm(pool, layer, x.data(), batch, ldx, pooled.data(), out, options);
        }
        const std::string what = std::string(onebit::to_string(k)) + " " +
                                 onebit::to_string(path) + (use_packed ? " packed" : " plain");
        CHECK_MESSAGE(sliced == whole, what);
        CHECK_MESSAGE(pooled == whole, what);
      }
    }
}

}  // namespace test_batched
