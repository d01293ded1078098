// OneBit's post-LayerNorm (linear.hpp's post_norm) on every kernel and path: against a double
// evaluation of LN(((x ⊙ g) · Wᵀ) ⊙ h) within a stated bound; the integer kernels bit-identical
// across instruction sets; the finish the same bits however the rows and batch are split.
#include <onebit/kernels/reference_int.hpp>
#include <onebit/parallel.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_post_norm {

namespace {

using onebit::kernel;

// LayerNorm of one row in double, biased variance, no affine (nn.LayerNorm's definition).
std::vector<double> layer_norm(const double* p, std::size_t n, double eps, double* sigma) {
  double mean = 0;
  for (std::size_t j = 0; j < n; ++j) mean += p[j];
  mean /= static_cast<double>(n);
  double var = 0;
  for (std::size_t j = 0; j < n; ++j) var += (p[j] - mean) * (p[j] - mean);
  var /= static_cast<double>(n);
  const double s = std::sqrt(var + eps);
  std::vector<double> out(n);
  for (std::size_t j = 0; j < n; ++j) out[j] = (p[j] - mean) / s;
  if (sigma != nullptr) *sigma = s;
  return out;
}

bool exact_kernel(kernel k) {
  return k == kernel::automatic || k == kernel::reference || k == kernel::add_only;
}

// a = x ⊙ g rounded to float, as prepare() computes it (kernels/reference_int.hpp's input).
template <class T>
std::vector<float> prepared_a(const onebit::linear<>& layer, const T* x, std::size_t batch,
                              std::size_t ldx) {
  const std::size_t in = layer.in_features();
  std::vector<float> a(batch * in);
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t i = 0; i < in; ++i)
      a[b * in + i] = static_cast<float>(onebit_test::as_double(x[b * ldx + i])) *
                      onebit::to_float(layer.g[i]);
  return a;
}

template <class T>
std::vector<T> to_activations(const std::vector<float>& v) {
  std::vector<T> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    if constexpr (std::is_same_v<T, float>)
      out[i] = v[i];
    else
      out[i] = onebit::to_half(v[i]);
  }
  return out;
}

// Runs gemm with the norm on for x (batch rows ldx apart) into y (ldy apart, gaps filled
// with a marker) and checks every output against the double reference:
//  * exact kernels: with Δ the pre-norm bound of test_gemm for the batch row (the largest over
//    its outputs) and s = sqrt(σ² + eps) of the exact row, the norm moves μ by at most Δ and s
//    by at most Δ (the l2 triangle inequality, eps only shrinks it), so
//      |out_j − ref_j| ≤ (2 + |ref_j|)·Δ / (s − Δ) + 2^-22·|ref_j| + 2^-40;
//  * integer kernels: their scalar twin (kernels/reference_int.hpp) gives the pre-norm bits
//    exactly, so only the finish's own rounding remains: 2^-22·|ref_j| + 2^-40.
// Returns y (batch x out, gaps dropped) for the bit-identity checks.
template <class T>
std::vector<float> check_one(const onebit::linear<>& layer, const std::vector<T>& x,
                             std::size_t batch, std::size_t ldx, kernel k, onebit::isa path) {
  const std::size_t in = layer.in_features(), out = layer.out_features(), ldy = out + 5;
  onebit_test::offset_buffer<float> y(batch * ldy, 3, -12345.0f);
  onebit::gemm(layer, x.data(), batch, ldx, y.data(), ldy, onebit::gemm_options{k, path});

  std::vector<double> pre(batch * out), slack(batch, 0.0);
  const auto [ran_int8, ran_binary] =
      std::pair{k == kernel::popcount_int8 || k == kernel::lut || k == kernel::vnni_int8,
                k == kernel::popcount_binary};
  if (exact_kernel(k)) {
    const auto exact = onebit_test::exact_gemm(layer, x.data(), batch, ldx);
    pre = exact.y;
    for (std::size_t b = 0; b < batch; ++b)
      for (std::size_t j = 0; j < out; ++j) {
        const double scale = exact.scale[b * out + j], want = exact.y[b * out + j];
        const double bound = k == kernel::reference
                                 ? std::ldexp(1.0, -23) * (scale + std::fabs(want))
                                 : static_cast<double>(in + 2) * std::ldexp(1.0, -24) * scale;
        slack[b] = std::max(slack[b], bound);
      }
  } else {
    const std::vector<float> a = prepared_a(layer, x.data(), batch, ldx);
    std::vector<float> twin(batch * out);
    const auto w = reinterpret_cast<const unsigned char*>(layer.W.data());
    if (ran_int8)
      onebit::kernels::reference_int::int8_gemm(w, layer.W.stride_bytes(), out, in,
                                                layer.h.data(), a.data(), batch, in,
                                                twin.data(), out);
    else if (ran_binary)
      onebit::kernels::reference_int::binary_gemm(w, layer.W.stride_bytes(), out, in,
                                                  layer.h.data(), a.data(), batch, in,
                                                  twin.data(), out);
    for (std::size_t i = 0; i < twin.size(); ++i) pre[i] = twin[i];
  }

  std::vector<float> got(batch * out);
  std::size_t bad = 0, gaps_touched = 0;
  double worst = 0;
  for (std::size_t b = 0; b < batch; ++b) {
    double s = 0;
    const std::vector<double> ref = layer_norm(pre.data() + b * out, out, layer.norm.eps, &s);
    for (std::size_t j = 0; j < out; ++j) {
      const double v = y.data()[b * ldy + j];
      got[b * out + j] = y.data()[b * ldy + j];
      const double delta = slack[b];
      const double bound = (delta > 0 ? (s > delta ? (2 + std::fabs(ref[j])) * delta / (s - delta)
                                                   : HUGE_VAL)
                                      : 0.0) +
                           std::ldexp(1.0, -22) * std::fabs(ref[j]) + std::ldexp(1.0, -40);
      const double err = std::fabs(v - ref[j]);
      if (!(err <= bound)) ++bad;
      worst = std::max(worst, err / bound);
    }
    for (std::size_t j = out; j < ldy && b + 1 < batch; ++j)
      gaps_touched += y.data()[b * ldy + j] != -12345.0f;
  }
  CHECK_MESSAGE(bad == 0, onebit::to_string(k), " on ", onebit::to_string(path), " ", out, "x",
                in, " batch ", batch, ": ", bad, " outputs outside the bound; worst error/bound ",
                worst);
  CHECK(gaps_touched == 0);
  return got;
}

struct shape {
  std::size_t out, in, batch;
};
constexpr shape shapes[] = {{1, 7, 2},    {7, 1, 1},   {63, 65, 5},  {64, 64, 3},
                            {65, 127, 1}, {127, 63, 4}, {33, 129, 17}, {8, 200, 2}};

template <class T>
void every_kernel_every_path() {
  for (const shape& z : shapes) {
    onebit::linear<> layer = onebit_test::random_layer(z.out, z.in);
    onebit_test::fill_padding_with_garbage(layer.W);
    layer.norm = {true, 1e-5f};
    const std::size_t ldx = z.in + 3;
    const std::vector<T> x = to_activations<T>(onebit_test::gaussian(z.batch * ldx));
    for (kernel k : onebit::all_kernels) {
      std::vector<float> first;
      for (onebit::isa path : onebit_test::runnable_paths()) {
        const std::vector<float> got = check_one(layer, x, z.batch, ldx, k, path);
        if (exact_kernel(k)) continue;
        if (first.empty()) {
          first = got;
        } else {
          const bool same = std::memcmp(first.data(), got.data(), got.size() * sizeof(float)) == 0;
          CHECK_MESSAGE(same, onebit::to_string(k), " on ", onebit::to_string(path), " ", z.out,
                        "x", z.in, ": not the bits of the first path");
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("post_norm is off by default; linear{W, g, h} and pack keep what the layer says") {
  onebit::linear<> plain{onebit::sign_matrix<>(3, 5), std::vector<onebit::half>(5),
                         std::vector<onebit::half>(3)};
  CHECK_FALSE(plain.norm.enabled);
  CHECK(plain.norm.eps == 1e-5f);
  CHECK_FALSE(plain.view().norm.enabled);
  onebit::linear<> layer = onebit_test::random_layer(9, 70);
  layer.norm = {true, 1e-3f};
  CHECK(layer.view().norm == layer.norm);
  for (kernel k : onebit::all_kernels)
    for (onebit::isa path : onebit_test::runnable_paths()) {
      const onebit::packed_linear p = onebit::pack(layer, onebit::gemm_options{k, path});
      CHECK(p.norm == layer.norm);
    }
}

TEST_CASE("every kernel on every path applies the norm: float activations") {
  every_kernel_every_path<float>();
}

TEST_CASE("every kernel on every path applies the norm: half activations") {
  every_kernel_every_path<onebit::half>();
}

TEST_CASE("with the norm, gemm is the finish of the product without it, bit for bit, packed too") {
  onebit::linear<> layer = onebit_test::random_layer(65, 129);
  const std::size_t batch = 6;
  const std::vector<float> x = onebit_test::gaussian(batch * 129);
  for (kernel k : onebit::all_kernels)
    for (onebit::isa path : onebit_test::runnable_paths()) {
      const onebit::gemm_options options{k, path};
      std::vector<float> plain(batch * 65), normed(batch * 65), packed(batch * 65);
      layer.norm = {};
      onebit::gemm(layer, x.data(), batch, 129, plain.data(), 65, options);
      for (std::size_t b = 0; b < batch; ++b)
        onebit::kernels::layer_norm::row(plain.data() + b * 65, 65, 0.25f);
      layer.norm = {true, 0.25f};
      onebit::gemm(layer, x.data(), batch, 129, normed.data(), 65, options);
      const onebit::packed_linear p = onebit::pack(layer, options);
      onebit::gemm(p, x.data(), batch, 129, packed.data(), 65);
      CHECK_MESSAGE(std::memcmp(plain.data(), normed.data(), plain.size() * 4) == 0,
                    onebit::to_string(k), " on ", onebit::to_string(path));
      // A packed layer may sum in another order than the plain one (its own kernel body); its
      // norm is still the finish of its own product.
      std::vector<float> packed_plain(batch * 65);
      onebit::packed_linear q = onebit::pack(layer, options);
      q.norm = {};
      onebit::gemm(q, x.data(), batch, 129, packed_plain.data(), 65);
      for (std::size_t b = 0; b < batch; ++b)
        onebit::kernels::layer_norm::row(packed_plain.data() + b * 65, 65, 0.25f);
      CHECK(std::memcmp(packed_plain.data(), packed.data(), packed.size() * 4) == 0);
    }
}

TEST_CASE("any split of rows and batch rows, and the parallel gemm, give the same bits") {
  onebit::linear<> layer = onebit_test::random_layer(100, 77);
  layer.norm = {true, 1e-5f};
  const std::size_t batch = 7;
  const std::vector<float> x = onebit_test::gaussian(batch * 77);
  onebit::thread_pool pool2(2), pool3(3);
  for (kernel k : {kernel::reference, kernel::add_only, kernel::popcount_int8, kernel::lut,
                   kernel::popcount_binary})
    for (onebit::isa path : onebit_test::runnable_paths()) {
      const onebit::gemm_options options{k, path};
      std::vector<float> whole(batch * 100), split(batch * 100, -1.0f), two(batch * 100),
          three(batch * 100), packed_one(batch * 100), packed_three(batch * 100);
      onebit::gemm(layer, x.data(), batch, 77, whole.data(), 100, options);
      const onebit::prepared_gemm p =
          onebit::prepare(layer, x.data(), batch, 77, split.data(), 100, options);
      CHECK(p.needs_finish());
      // Ranges in reverse order, of uneven sizes; then the batch finished in three pieces.
      for (std::size_t end = 100; end > 0;) {
        const std::size_t begin = end > 13 ? end - 13 : 0;
        p.run_rows(begin, end);
        end = begin;
      }
      p.finish_rows(4, 7);
      p.finish_rows(0, 1);
      p.finish_rows(1, 4);
      onebit::gemm(pool2, layer, x.data(), batch, 77, two.data(), 100, options);
      onebit::gemm(pool3, layer, x.data(), batch, 77, three.data(), 100, options);
      const onebit::packed_linear packed = onebit::pack(layer, options);
      onebit::gemm(packed, x.data(), batch, 77, packed_one.data(), 100);
      onebit::gemm(pool3, packed, x.data(), batch, 77, packed_three.data(), 100);
      const std::size_t bytes = whole.size() * sizeof(float);
      CHECK_MESSAGE(std::memcmp(whole.data(), split.data(), bytes) == 0, onebit::to_string(k));
      CHECK_MESSAGE(std::memcmp(whole.data(), two.data(), bytes) == 0, onebit::to_string(k));
      CHECK_MESSAGE(std::memcmp(whole.data(), three.data(), bytes) == 0, onebit::to_string(k));
      CHECK(std::memcmp(packed_one.data(), packed_three.data(), bytes) == 0);
    }
}

TEST_CASE("special rows: one output or a constant row normalise to zero") {
  onebit::linear<> one = onebit_test::random_layer(1, 40);
  one.norm = {true, 1e-5f};
  const std::vector<float> x = onebit_test::gaussian(3 * 40);
  std::vector<float> y(3, 7.0f);
  onebit::gemm(one, x.data(), 3, 40, y.data(), 1);
  for (float v : y) CHECK(v == 0.0f);
  // Every row the same signs and h: every output of a batch row equal, so all normalise to 0.
  onebit::linear<> same{onebit::sign_matrix<>(5, 16), std::vector<onebit::half>(16, onebit::to_half(1)),
                        std::vector<onebit::half>(5, onebit::to_half(0.5f))};
  same.norm = {true, 1e-5f};
  std::vector<float> z(5, 7.0f);
  onebit::gemv(same, x.data(), z.data());
  for (float v : z) CHECK(v == 0.0f);
}

TEST_CASE("a bad eps throws std::invalid_argument naming the layer and the field") {
  onebit::linear<> layer = onebit_test::random_layer(4, 8);
  const std::vector<float> x(8, 1.0f);
  std::vector<float> y(4);
  for (float eps : {-1.0f, std::nanf(""), HUGE_VALF}) {
    layer.norm = {true, eps};
    CHECK_THROWS_WITH_AS(onebit::gemv(layer, x.data(), y.data()),
                         doctest::Contains("post_norm eps"), std::invalid_argument);
  }
  layer.norm = {false, -1.0f};  // off: eps is not read
  CHECK_NOTHROW(onebit::gemv(layer, x.data(), y.data()));
}

}  // namespace test_post_norm
