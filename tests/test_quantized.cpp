// popcount_int8, lut and popcount_binary on every path this CPU runs, plain and packed, against
// a scalar integer oracle written here from ALGORITHMS.md §4: bit-identical, and within §4's
// error bound of exact math.
#include <onebit/gemm.hpp>
#include <onebit/kernels/reference_int.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_quantized {

namespace {

using onebit::isa;
using onebit::kernel;

constexpr kernel int8_kernels[] = {kernel::popcount_int8, kernel::lut, kernel::vnni_int8};

float to_f(float v) { return v; }
float to_f(onebit::half v) { return onebit::to_float(v); }

// §4's scalar twin of the integer kernels (kernels/reference_int.hpp), on a = x ⊙ g.
template <class Word, class T>
std::vector<float> oracle(const onebit::linear<Word>& layer, const T* x, std::size_t batch,
                          std::size_t ldx, bool binary) {
  const std::size_t in = layer.in_features(), out = layer.out_features();
  std::vector<float> a(batch * in), y(batch * out);
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t i = 0; i < in; ++i)
      a[b * in + i] = to_f(x[b * ldx + i]) * onebit::to_float(layer.g[i]);
  const auto* w = reinterpret_cast<const unsigned char*>(layer.W.data());
  auto* run = binary ? &onebit::kernels::reference_int::binary_gemm
                     : &onebit::kernels::reference_int::int8_gemm;
  run(w, layer.W.stride_bytes(), out, in, layer.h.data(), a.data(), batch, in, y.data(), out);
  return y;
}

std::vector<isa> paths() { return onebit::supported_isas(); }

// Every integer kernel, path and layout on one case: y (strided, unaligned) equals the oracle
// bit for bit; the gaps between y rows stay untouched.
template <class Word, class T>
void check_case(std::size_t out, std::size_t in, std::size_t batch) {
  auto layer = onebit_test::random_layer<Word>(out, in);
  onebit_test::fill_padding_with_garbage(layer.W);
  const std::size_t ldx = in + 3, ldy = out + 5;
  onebit_test::offset_buffer<T> x(batch * ldx, 1);
  const std::vector<T> v = onebit_test::activations<T>(batch * ldx);
  std::copy(v.begin(), v.end(), x.data());
  const std::vector<float> want_int8 = oracle(layer, x.data(), batch, ldx, false);
  const std::vector<float> want_binary = oracle(layer, x.data(), batch, ldx, true);
  // §4's bound against exact math, on every case: |y − exact| ≤ |h_j|·(m/254)·n (plus the float
  // rounding of the final two multiplies).
  const auto exact = onebit_test::exact_gemm(layer, x.data(), batch, ldx);
  std::size_t outside = 0;
  for (std::size_t b = 0; b < batch; ++b) {
    double m = 0;
    for (std::size_t i = 0; i < in; ++i)
      m = std::max(m, std::fabs(static_cast<double>(to_f(x.data()[b * ldx + i]) *
                                                    onebit::to_float(layer.g[i]))));
    for (std::size_t j = 0; j < out; ++j) {
      const double bound = std::fabs(onebit::to_float(layer.h[j])) * (m / 254) *
                               static_cast<double>(in) * (1 + 1e-6) +
                           1e-6 * std::fabs(exact.y[b * out + j]) + 1e-30;
      outside += !(std::fabs(want_int8[b * out + j] - exact.y[b * out + j]) <= bound);
    }
  }
  CHECK_MESSAGE(outside == 0, out, "x", in, " batch ", batch, ": ", outside,
                " int8 outputs outside §4's bound");
  for (kernel k : {kernel::popcount_int8, kernel::lut, kernel::vnni_int8, kernel::popcount_binary}) {
    const std::vector<float>& want = k == kernel::popcount_binary ? want_binary : want_int8;
    for (isa path : paths()) {
      const onebit::gemm_options options{k, path};
      const onebit::packed_linear packed = onebit::pack(layer, options);
      for (bool use_packed : {false, true}) {
        onebit_test::offset_buffer<float> y(batch * ldy, 3, -55.0f);
        if (use_packed)
          onebit::gemm(packed, x.data(), batch, ldx, y.data(), ldy);
        else
          onebit::gemm(layer, x.data(), batch, ldx, y.data(), ldy, options);
        std::size_t differ = 0, gaps = 0;
        for (std::size_t b = 0; b < batch; ++b) {
          for (std::size_t j = 0; j < out; ++j)
            differ += !(y.data()[b * ldy + j] == want[b * out + j]);
          for (std::size_t j = out; j < ldy && b + 1 < batch; ++j) gaps += y.data()[b * ldy + j] != -55.0f;
        }
        CHECK_MESSAGE(differ == 0, std::string(onebit::to_string(k)), " ",
                      std::string(onebit::to_string(path)), use_packed ? " packed " : " plain ",
                      out, "x", in, " batch ", batch, " word bits ", 8 * sizeof(Word), ": ",
                      differ, " outputs differ from the integer oracle");
        CHECK(gaps == 0);
      }
    }
  }
}

constexpr std::size_t odd_sizes[] = {1, 7, 63, 64, 65, 127};

}  // namespace

TEST_CASE("the paths this CPU runs and the ones it skips") {
  for (isa path : onebit::all_isas) {
    const std::string missing = onebit::detail::missing_features(path, onebit::cpu());
    if (!missing.empty())
      MESSAGE("skipped path ", std::string(onebit::to_string(path)), ": this CPU or build lacks ",
              missing);
  }
  CHECK(!paths().empty());
}

TEST_CASE("a = x ⊙ g: each path's body equals the scalar products, lengths 0 to 70, in place") {
  std::vector<float> x(80), g(80);
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = std::ldexp(static_cast<float>(i * 2654435761u % 2001) - 1000.0f, -7);
    g[i] = std::ldexp(static_cast<float>(i * 40503u % 997) + 1.0f, -9);
  }
  x[5] = std::numeric_limits<float>::infinity();
  x[9] = -0.0f;
  g[32] = 0x1p120f;  // times x[33]: a product that overflows to infinity
  x[33] = 0x1p10f;
  for (isa path : paths()) {
    const auto hadamard = onebit::detail::quantizers_for(path).hadamard;
    for (std::size_t n = 0; n <= 70; ++n) {
      // Unaligned: one float past the start of each buffer, with a sentinel on both sides.
      std::vector<float> a(n + 2, -7.0f), in_place(n + 2, -7.0f);
      std::copy_n(x.begin() + 1, n, in_place.begin() + 1);
      hadamard(x.data() + 1, g.data(), n, a.data() + 1);
      hadamard(in_place.data() + 1, g.data(), n, in_place.data() + 1);
      std::size_t differ = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const float want = x[1 + i] * g[i];
        differ += std::memcmp(&a[1 + i], &want, 4) != 0;
        differ += std::memcmp(&in_place[1 + i], &want, 4) != 0;
      }
      CHECK_MESSAGE(differ == 0, std::string(onebit::to_string(path)), " n ", n);
      CHECK(a[0] == -7.0f);
      CHECK(a[n + 1] == -7.0f);
      CHECK(in_place[0] == -7.0f);
      CHECK(in_place[n + 1] == -7.0f);
    }
  }
}

TEST_CASE("each path's int8 rows, bit-planes and sign planes equal the scalar ones") {
  namespace quantize = onebit::kernels::quantize;
  // Rows as prepare lays them out: a zero-padded to 64 floats, q and the planes to 64 bytes.
  for (isa path : paths()) {
    const onebit::detail::quantizers body = onebit::detail::quantizers_for(path);
    for (std::size_t n = 1; n <= 200; n += n < 70 ? 1 : 43) {
      for (int kind = 0; kind < 4; ++kind) {  // random, ties, one infinity, all zero
        const std::size_t padded = (n + 63) / 64 * 64;
        onebit_test::offset_buffer<float> a(padded, 0, 0.0f);
        for (std::size_t i = 0; i < n; ++i) {
          const float spread = static_cast<float>(i * 2654435761u % 2001) - 1000.0f;
          const float tie = static_cast<float>(static_cast<int>(i % 9) - 4) * 0.5f;
          a.data()[i] = kind == 1 ? tie : kind == 3 ? 0.0f : std::ldexp(spread, -9);
        }
        if (kind == 2) a.data()[n / 2] = -std::numeric_limits<float>::infinity();
        std::vector<std::int8_t> q(padded, 0), want_q(padded, 0);
        const quantize::int8_row got = body.int8(a.data(), n, q.data());
        const quantize::int8_row want = quantize::int8(a.data(), n, want_q.data());
        const std::string where = std::string(onebit::to_string(path)) + " n " + std::to_string(n) +
                                  " kind " + std::to_string(kind);
        CHECK_MESSAGE(std::memcmp(&got.scale, &want.scale, 4) == 0, where);
        CHECK_MESSAGE(got.sum == want.sum, where);
        CHECK_MESSAGE(std::memcmp(q.data(), want_q.data(), n) == 0, where);
        const std::size_t stride = padded / 8;
        std::vector<unsigned char> planes(8 * stride, 0xa5), want_planes(8 * stride, 0x5a);
        body.planes(want_q.data(), n, planes.data(), stride);
        quantize::int8_planes(want_q.data(), n, want_planes.data(), stride);
        CHECK_MESSAGE(planes == want_planes, where);
        std::vector<unsigned char> signs(stride, 0xa5), want_signs(stride, 0x5a);
        body.signs(a.data(), n, signs.data(), stride);
        quantize::sign_plane(a.data(), n, want_signs.data(), stride);
        CHECK_MESSAGE(signs == want_signs, where);
      }
    }
  }
}

TEST_CASE_TEMPLATE("integer kernels equal the §4 oracle bit for bit, odd shapes", Word,
                   std::uint8_t, std::uint16_t, std::uint32_t, std::uint64_t) {
  for (std::size_t out : odd_sizes)
    for (std::size_t in : odd_sizes) check_case<Word, float>(out, in, 2);
}

TEST_CASE("integer kernels, batch 1 to 70, float and half") {
  for (std::size_t batch = 1; batch <= 70; batch += 3) check_case<std::uint64_t, float>(65, 127, batch);
  for (std::size_t batch : {1u, 4u, 33u}) check_case<std::uint64_t, onebit::half>(97, 200, batch);
}

TEST_CASE("integer kernels, wide and tall shapes") {
  for (std::size_t out : {1u, 7u, 64u, 65u}) check_case<std::uint64_t, onebit::half>(out, 4095, 2);
  check_case<std::uint32_t, float>(4095, 7, 3);
  check_case<std::uint64_t, float>(129, 4097, 1);
}

TEST_CASE("popcount_int8, lut and vnni_int8 are bit-identical to each other on every path") {
  const auto layer = onebit_test::random_layer(300, 1000);
  const std::vector<float> x = onebit_test::gaussian(5 * 1000);
  std::vector<float> first(5 * 300);
  onebit::gemm(layer, x.data(), 5, 1000, first.data(), 300,
               onebit::gemm_options{kernel::popcount_int8, isa::portable});
  for (kernel k : int8_kernels)
    for (isa path : paths()) {
      std::vector<float> y(5 * 300);
      onebit::gemm(onebit::pack(layer, onebit::gemm_options{k, path}), x.data(), 5, 1000,
                   y.data(), 300);
      CHECK_MESSAGE(y == first, std::string(onebit::to_string(k)), " ",
                    std::string(onebit::to_string(path)));
    }
}

TEST_CASE("int8 stays within |h|·(m/254)·n of exact math; typical error reported") {
  const std::size_t out = 256, in = 2048, batch = 4;
  const auto layer = onebit_test::random_layer(out, in);
  const std::vector<float> x = onebit_test::gaussian(batch * in);
  std::vector<float> y(batch * out);
  onebit::gemm(layer, x.data(), batch, in, y.data(), out, kernel::lut);
  const auto exact = onebit_test::exact_gemm(layer, x.data(), batch, in);
  double err2 = 0, norm2 = 0;
  std::size_t outside = 0;
  for (std::size_t b = 0; b < batch; ++b) {
    double m = 0;
    for (std::size_t i = 0; i < in; ++i)
      m = std::max(m, std::fabs(static_cast<double>(x[b * in + i] * onebit::to_float(layer.g[i]))));
    for (std::size_t j = 0; j < out; ++j) {
      const double e = std::fabs(y[b * out + j] - exact.y[b * out + j]);
      // §4's bound, plus the float rounding of the final two multiplies.
      const double bound = std::fabs(onebit::to_float(layer.h[j])) * (m / 254) * in * (1 + 1e-6) +
                           1e-6 * std::fabs(exact.y[b * out + j]);
      outside += !(e <= bound);
      err2 += e * e;
      norm2 += exact.y[b * out + j] * exact.y[b * out + j];
    }
  }
  CHECK(outside == 0);
  const double relative = std::sqrt(err2 / norm2);
  MESSAGE("int8 on Gaussian activations: relative RMS error against exact math ", relative);
  CHECK(relative < 0.05);  // 0.032 when written: a regression bound, not a goal
}

TEST_CASE("binary: relative error reported; zero and non-finite rows") {
  const auto layer = onebit_test::random_layer(64, 512);
  std::vector<float> x = onebit_test::gaussian(3 * 512), y(3 * 64);
  onebit::gemm(layer, x.data(), 1, 512, y.data(), 64, kernel::popcount_binary);
  const auto exact = onebit_test::exact_gemm(layer, x.data(), 1, 512);
  double err2 = 0, norm2 = 0;
  for (std::size_t j = 0; j < 64; ++j) {
    err2 += (y[j] - exact.y[j]) * (y[j] - exact.y[j]);
    norm2 += exact.y[j] * exact.y[j];
  }
  MESSAGE("binary on Gaussian activations: relative RMS error against exact math ",
          std::sqrt(err2 / norm2));
  std::fill(x.begin(), x.begin() + 512, 0.0f);                     // row 0: all zero
  x[512 + 7] = std::numeric_limits<float>::quiet_NaN();            // row 1: NaN
  for (kernel k : {kernel::popcount_int8, kernel::lut, kernel::vnni_int8, kernel::popcount_binary})
    for (isa path : paths()) {
      onebit::gemm(layer, x.data(), 3, 512, y.data(), 64, onebit::gemm_options{k, path});
      bool zero = true, nan = true, finite = true;
      for (std::size_t j = 0; j < 64; ++j) {
        zero = zero && y[j] == 0.0f;
        nan = nan && std::isnan(y[64 + j]);
        finite = finite && std::isfinite(y[128 + j]);
      }
      CHECK_MESSAGE(zero, std::string(onebit::to_string(k)), " ", std::string(onebit::to_string(path)));
      CHECK_MESSAGE(nan, std::string(onebit::to_string(k)), " ", std::string(onebit::to_string(path)));
      CHECK_MESSAGE(finite, std::string(onebit::to_string(k)), " ", std::string(onebit::to_string(path)));
    }
}

TEST_CASE("integer kernels: row ranges over random splits equal the whole call") {
  std::mt19937_64& rng = onebit_test::rng();
  const auto layer = onebit_test::random_layer(301, 200);
  const std::vector<float> x = onebit_test::gaussian(3 * 200);
  for (kernel k : {kernel::popcount_int8, kernel::lut, kernel::vnni_int8, kernel::popcount_binary})
    for (isa path : paths()) {
      const auto packed = onebit::pack(layer, onebit::gemm_options{k, path});
      std::vector<float> whole(3 * 301), parts(3 * 301, -1.0f);
      onebit::gemm(packed, x.data(), 3, 200, whole.data(), 301);
      auto p = onebit::prepare(packed, x.data(), 3, 200, parts.data(), 301);
      std::vector<std::size_t> cuts{0, 301};
      std::uniform_int_distribution<std::size_t> cut(0, 301);
      for (int i = 0; i < 6; ++i) cuts.push_back(cut(rng));
      std::sort(cuts.begin(), cuts.end());
      for (std::size_t i = cuts.size() - 1; i-- > 0;) p.run_rows(cuts[i], cuts[i + 1]);
      CHECK_MESSAGE(whole == parts, std::string(onebit::to_string(k)), " ",
                    std::string(onebit::to_string(path)));
    }
}

TEST_CASE("int8 rounding ties go to even on every path, as the oracle's nearbyint does") {
  auto layer = onebit_test::random_layer(40, 300);
  for (auto& g : layer.g) g = onebit::to_half(1.0f);
  std::vector<float> x(300);
  x[0] = 127.0f;  // m = 127: 127 / m = 1, so every k + 0.5 below is a tie
  for (std::size_t i = 1; i < 300; ++i)
    x[i] = (static_cast<float>(i % 253) - 126.0f) + (i % 2 ? 0.5f : -0.5f);
  const std::vector<float> want = oracle(layer, x.data(), 1, 300, false);
  for (kernel k : int8_kernels)
    for (isa path : paths()) {
      std::vector<float> y(40);
      onebit::gemv(layer, x.data(), y.data(), onebit::gemm_options{k, path});
      CHECK_MESSAGE(y == want, std::string(onebit::to_string(k)), " ",
                    std::string(onebit::to_string(path)));
    }
}

}  // namespace test_quantized
