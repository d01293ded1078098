// The benchmark's FP16 baseline (benchmarks/fp16_gemm.hpp) is only an honest baseline if it
// computes the right thing: every path this CPU has, forced one by one, against a double
// evaluation of the same FP16 weights, on odd shapes, batch 1 to 70, strided and unaligned
// buffers, row ranges and small k blocks. Paths the CPU lacks are reported as skipped by name.
#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../benchmarks/fp16_gemm.hpp"

namespace test_baselines {

namespace {

using bench::fp16_matrix;
using bench::fp16_path;

// doctest prints a `const char*` in a message as a pointer: name paths with a std::string.
std::string name(fp16_path p) { return bench::to_string(p); }

constexpr fp16_path all_paths[] = {fp16_path::avx512, fp16_path::avx2, fp16_path::scalar};

// The paths to test here; the ones this CPU lacks are named once in the output.
std::vector<fp16_path> runnable_paths() {
  static bool said = false;
  std::vector<fp16_path> paths;
  std::string tested;
  for (fp16_path p : all_paths) {
    if (bench::fp16_supported(p)) {
      paths.push_back(p);
      tested += " " + name(p);
    } else if (!said) {
      MESSAGE("skipping the FP16 baseline's " << name(p) << " path: this CPU lacks it");
    }
  }
  if (!said) MESSAGE("testing the FP16 baseline's paths:" << tested);
  said = true;
  return paths;
}

float bits_to_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct problem {
  std::size_t out, in, batch, ldx, ldy, x_offset;
};

// Runs one problem on one path (optionally in row pieces, with a k block) and checks every
// output against sum_k x * W in double, within the float summation bound below; checks that y's
// gaps between rows are untouched.
void check(const problem& p, fp16_path path, std::size_t kc, std::mt19937& rng,
           bool split_rows) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(p.out * p.in);
  for (float& v : w) v = normal(rng);
  const fp16_matrix W = fp16_matrix::from_dense(w.data(), p.out, p.in, p.in);

  // x with NaN in every gap between rows and past the end: a kernel that reads past `in`
  // without masking would turn a result into NaN.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x_storage(p.x_offset + (p.batch - 1) * p.ldx + p.in + 64, nan);
  float* x = x_storage.data() + p.x_offset;
  for (std::size_t b = 0; b < p.batch; ++b)
    for (std::size_t k = 0; k < p.in; ++k) x[b * p.ldx + k] = normal(rng);

  const float sentinel = -12345.0f;
  std::vector<float> y((p.batch - 1) * p.ldy + p.out + 1, sentinel);

  if (split_rows) {
    // Three pieces at random cut points, as threads would compute them.
    std::uniform_int_distribution<std::size_t> cut(0, p.out);
    std::size_t a = cut(rng), c = cut(rng);
    if (a > c) std::swap(a, c);
    bench::fp16_gemm(W, x, p.batch, p.ldx, y.data(), p.ldy, 0, a, path, kc);
    bench::fp16_gemm(W, x, p.batch, p.ldx, y.data(), p.ldy, a, c, path, kc);
    bench::fp16_gemm(W, x, p.batch, p.ldx, y.data(), p.ldy, c, p.out, path, kc);
  } else {
    bench::fp16_gemm(W, x, p.batch, p.ldx, y.data(), p.ldy, 0, p.out, path, kc);
  }

  // Float summation bound: each lane adds at most in/8 products in sequence (16 lanes for
  // AVX-512, 8 for AVX2; the scalar path sums in double), then a few more roundings for the
  // lane sum, the k blocks and the final rounding: |error| <= (in/8 + 64) u sum |x w|.
  const double u = std::ldexp(1.0, -24);
  for (std::size_t b = 0; b < p.batch; ++b) {
    for (std::size_t j = 0; j < p.out; ++j) {
      double exact = 0.0, magnitude = 0.0;
      for (std::size_t k = 0; k < p.in; ++k) {
        const double product = static_cast<double>(x[b * p.ldx + k]) * W.at(j, k);
        exact += product;
        magnitude += std::fabs(product);
      }
      const double bound = (static_cast<double>(p.in) / 8.0 + 64.0) * u * magnitude + 1e-30;
      const double got = y[b * p.ldy + j];
      if (!(std::fabs(got - exact) <= bound)) {
        FAIL_CHECK("path " << name(path) << ", " << p.out << "x" << p.in
                           << " batch " << p.batch << " ldx " << p.ldx << " ldy " << p.ldy
                           << " kc " << kc << std::string(split_rows ? " (row pieces)" : "") << ": y[" << b
                           << "][" << j << "] = " << got << ", exact " << exact << ", bound "
                           << bound);
        return;
      }
    }
    for (std::size_t j = p.out; b + 1 < p.batch && j < p.ldy; ++j)
      if (y[b * p.ldy + j] != sentinel) {
        FAIL_CHECK("path " << name(path) << " wrote y[" << b << "][" << j
                           << "], past out = " << p.out);
        return;
      }
  }
  CHECK(y.back() == sentinel);
}

}  // namespace

TEST_CASE("binary16 conversions of the baseline round to nearest even and keep specials") {
  using bench::float_to_half_bits;
  using bench::half_bits_to_float;
  // Every half survives half -> float -> half; NaNs stay NaN (signalling ones become quiet).
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_bits_to_float(static_cast<std::uint16_t>(h));
    const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    if (is_nan) {
      CHECK(std::isnan(f));
      const std::uint16_t back = float_to_half_bits(f);
      CHECK(((back & 0x7c00) == 0x7c00 && (back & 0x3ff) != 0));
    } else {
      REQUIRE(float_to_half_bits(f) == h);
    }
  }
  CHECK(float_to_half_bits(65504.0f) == 0x7bff);
  CHECK(float_to_half_bits(65519.99f) == 0x7bff);
  CHECK(float_to_half_bits(65520.0f) == 0x7c00);  // the tie rounds up to inf
  CHECK(float_to_half_bits(-1e10f) == 0xfc00);
  CHECK(float_to_half_bits(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(float_to_half_bits(std::ldexp(1.0f, -25)) == 0x0000);        // tie to even: 0
  CHECK(float_to_half_bits(3.0f * std::ldexp(1.0f, -25)) == 0x0002);  // tie to even: 2
  CHECK(float_to_half_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
  CHECK(float_to_half_bits(1.0f + 3.0f * std::ldexp(1.0f, -11)) == 0x3c02);
  CHECK(float_to_half_bits(-0.0f) == 0x8000);
  CHECK(float_to_half_bits(bits_to_float(0x38800000u)) == 0x0400);  // 2^-14, smallest normal
  CHECK(float_to_half_bits(bits_to_float(0x387fffffu)) == 0x0400);  // rounds up into normals
}

#if ONEBIT_X86
ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX2)
static std::uint16_t f16c_convert(float f) {
  return static_cast<std::uint16_t>(
      _mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0));
}
ONEBIT_TARGET_END

TEST_CASE("binary16 conversion of the baseline agrees with F16C bit for bit") {
  if (!onebit::supports(onebit::isa::avx2)) {
    MESSAGE("skipping the F16C comparison: this CPU lacks AVX2/F16C");
    return;
  }
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> any;
  for (int i = 0; i < 2000000; ++i) {
    std::uint32_t u = any(rng);
    // Half the draws near the half range (exponents 100..150), where the rounding matters.
    if (i % 2 == 0) u = (u & 0x807fffffu) | ((100u + (u >> 23) % 51u) << 23);
    const float f = bits_to_float(u);
    if (std::isnan(f)) continue;
    REQUIRE(bench::float_to_half_bits(f) == f16c_convert(f));
  }
}
#endif

TEST_CASE("FP16 baseline: every path against a double evaluation, odd shapes, batch 1..70") {
  const std::vector<fp16_path> paths = runnable_paths();
  std::mt19937 rng(2024);

  const std::size_t outs[] = {1, 3, 7, 8, 9, 25, 47, 65};
  const std::size_t ins[] = {1, 5, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129, 300, 1000, 4097};
  const std::size_t some_batches[] = {1, 2, 3, 5, 8, 13, 64, 70};
  for (fp16_path path : paths) {
    INFO("path " << name(path));
    for (std::size_t out : outs)
      for (std::size_t in : ins)
        for (std::size_t batch : some_batches) {
          if (out * in * batch > 2000000) continue;
          check({out, in, batch, in, out, 0}, path, 0, rng, false);
        }
  }
}

TEST_CASE("FP16 baseline: every batch 1..70, strided and unaligned, k blocks, row pieces") {
  const std::vector<fp16_path> paths = runnable_paths();
  std::mt19937 rng(99);
  struct shape {
    std::size_t out, in;
  };
  const shape shapes[] = {{13, 33}, {65, 127}, {7, 1000}, {50, 300}};
  for (fp16_path path : paths) {
    INFO("path " << name(path));
    for (const shape& s : shapes)
      for (std::size_t batch = 1; batch <= 70; ++batch) {
        // Contiguous, aligned rows.
        check({s.out, s.in, batch, s.in, s.out, 0}, path, 0, rng, false);
        // x rows 3 floats apart and off by one float; y rows 5 floats apart; k in blocks of
        // 128 (so several blocks accumulate into y); computed in three row pieces.
        check({s.out, s.in, batch, s.in + 3, s.out + 5, 1}, path, 128, rng, true);
      }
  }
}

TEST_CASE("FP16 baseline: model-sized rows and k blocks, batch 1, 4, 64") {
  const std::vector<fp16_path> paths = runnable_paths();
  std::mt19937 rng(5);
  for (fp16_path path : paths) {
    INFO("path " << name(path));
    for (std::size_t batch : {1, 4, 64}) {
      check({50, 4097, batch, 4097, 50, 0}, path, 0, rng, false);
      check({50, 4097, batch, 4099, 53, 3}, path, 1024, rng, true);
    }
  }
}

TEST_CASE("FP16 baseline: empty ranges and zero-width layers write nothing or zeros") {
  for (fp16_path path : runnable_paths()) {
    INFO("path " << name(path));
    const std::vector<float> w(4 * 16, 1.0f);
    const fp16_matrix W = fp16_matrix::from_dense(w.data(), 4, 16, 16);
    std::vector<float> x(16, 1.0f), y(4, -1.0f);
    bench::fp16_gemm(W, x.data(), 1, 16, y.data(), 4, 2, 2, path);  // empty row range
    CHECK(y == std::vector<float>(4, -1.0f));
    bench::fp16_gemm(W, x.data(), 0, 16, y.data(), 4, 0, 4, path);  // batch 0
    CHECK(y == std::vector<float>(4, -1.0f));
    const fp16_matrix empty(4, 0);
    bench::fp16_gemm(empty, x.data(), 1, 16, y.data(), 4, 0, 4, path);
    CHECK(y == std::vector<float>(4, 0.0f));
  }
}

}  // namespace test_baselines
