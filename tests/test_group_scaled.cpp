// group_scaled_linear on every kernel, layout and instruction-set path: the exact float path
// within its stated bound of the exact (double) product, the int8 path bit-identical on every
// path and layout and within the int8 bound, row ranges and threads giving the same bits, and
// a Q1_0 layer from a numpy-written GGUF file run against its dequantised weights.
#include <onebit/group_scaled_gemm.hpp>
#include <onebit/io/gguf.hpp>
#include <onebit/parallel.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_group_scaled {

namespace {

using onebit::gemm_options;
using onebit::group_scaled_linear;
using onebit::half;
using onebit::isa;
using onebit::kernel;

group_scaled_linear random_layer(std::size_t out, std::size_t in, std::size_t group) {
  group_scaled_linear layer(out, in, group);
  std::bernoulli_distribution coin(0.5);
  std::lognormal_distribution<float> magnitude(-2.0f, 1.0f);
  for (std::size_t j = 0; j < out; ++j) {
    auto* row = reinterpret_cast<unsigned char*>(layer.signs().row(j));
    for (std::size_t i = 0; i < in; ++i)
      if (coin(onebit_test::rng())) row[i / 8] = static_cast<unsigned char>(row[i / 8] | (1u << (i % 8)));
    // Garbage in the padding bits: no kernel may read them as weights.
    if (in % 8 != 0) row[in / 8] = static_cast<unsigned char>(row[in / 8] | (0xffu << (in % 8)));
    for (std::size_t b = (in + 7) / 8; b < layer.signs().stride_bytes(); ++b) row[b] = 0xa5;
    for (std::size_t g = 0; g < layer.groups_per_row(); ++g)
      layer.set_scale(j, g, onebit::to_half(coin(onebit_test::rng()) ? magnitude(onebit_test::rng())
                                                                     : -magnitude(onebit_test::rng())));
  }
  return layer;
}

template <class T>
float as_float(T v) {
  if constexpr (std::is_same_v<T, half>) return onebit::to_float(v); else return v;
}

struct shape {
  std::size_t out, in, group;
};
const shape shapes[] = {{1, 8, 8},     {7, 64, 16},   {33, 130, 16},  {65, 256, 128},
                        {37, 384, 128}, {3, 1000, 40}, {40, 127, 64},  {64, 1, 8},
                        {31, 520, 256}, {9, 63, 24}};

template <class T>
void check_all_paths() {
  for (const shape& s : shapes) {
    CAPTURE(s.out);
    CAPTURE(s.in);
    CAPTURE(s.group);
    const group_scaled_linear layer = random_layer(s.out, s.in, s.group);
    for (std::size_t batch : {std::size_t{1}, std::size_t{2}, std::size_t{5}}) {
      CAPTURE(batch);
      const std::size_t ldx = s.in + 3, ldy = s.out + 2;
      // x starts one element past an aligned buffer: unaligned activations.
      std::vector<T> xs = onebit_test::activations<T>(batch * ldx + 1);
      const T* x = xs.data() + 1;
      // The exact product and the bound's S.
      std::vector<double> exact(batch * s.out), scale_sum(batch * s.out), dsum(s.out);
      std::vector<float> m(batch);
      for (std::size_t b = 0; b < batch; ++b) {
        float mb = 0;
        for (std::size_t i = 0; i < s.in; ++i) mb = std::max(mb, std::fabs(as_float(x[b * ldx + i])));
        m[b] = mb;
        for (std::size_t j = 0; j < s.out; ++j) {
          double e = 0, S = 0, D = 0;
          for (std::size_t i = 0; i < s.in; ++i) {
            const double w = layer.weight(j, i), xi = as_float(x[b * ldx + i]);
            e += w * xi;
            S += std::fabs(w * xi);
            D += std::fabs(w);
          }
          exact[b * s.out + j] = e;
          scale_sum[b * s.out + j] = S;
          dsum[j] = D;
        }
      }
      const double groups = static_cast<double>(layer.groups_per_row());
      const double u = std::ldexp(1.0, -24);
      std::vector<float> int8_first;
      for (isa path : onebit_test::runnable_paths())
        for (kernel k : {kernel::automatic, kernel::reference, kernel::add_only, kernel::lut,
                         kernel::popcount_int8, kernel::vnni_int8})
          for (bool packed : {false, true}) {
            CAPTURE(onebit::to_string(path));
            CAPTURE(onebit::to_string(k));
            CAPTURE(packed);
            std::vector<float> y(batch * ldy, 1234.5f);
            const gemm_options options{k, path};
            onebit::prepared_group_gemm p;
            onebit::packed_group_scaled pk;
            if (packed) {
              pk = onebit::pack(layer, options);
              p = onebit::prepare(pk, x, batch, ldx, y.data(), ldy);
            } else {
              p = onebit::prepare(layer, x, batch, ldx, y.data(), ldy, options);
            }
            // Rows in uneven ranges: the same bits as one range (checked below against
            // another run).
            const std::size_t cut1 = s.out / 3, cut2 = s.out - s.out / 4;
            p.run_rows(0, cut1);
            p.run_rows(cut2, s.out + 7);
            p.run_rows(cut1, cut2);
            std::vector<float> whole(batch * ldy, 1234.5f);
            onebit::gemm(layer, x, batch, ldx, whole.data(), ldy, options);
            const bool int8 = p.chosen_kernel() == kernel::lut;
            for (std::size_t b = 0; b < batch; ++b) {
              for (std::size_t j = 0; j < s.out; ++j) {
                const float got = y[b * ldy + j];
                const double e = exact[b * s.out + j];
                const double bound =
                    int8 ? 1.01 * (m[b] / 254.0) * dsum[j] + 1e-5 * scale_sum[b * s.out + j]
                         : (static_cast<double>(s.group) + groups + 6) * u * scale_sum[b * s.out + j];
                REQUIRE_MESSAGE(std::fabs(got - e) <= bound,
                                "row " << j << " batch " << b << ": " << got << " vs " << e
                                       << " bound " << bound << " body " << p.body_name());
                if (!packed) REQUIRE(std::memcmp(&whole[b * ldy + j], &got, 4) == 0);
              }
              for (std::size_t j = s.out; j < ldy; ++j) REQUIRE(y[b * ldy + j] == 1234.5f);
            }
            if (int8) {
              std::vector<float> rows(y);
              if (int8_first.empty())
                int8_first = rows;
              else
                REQUIRE_MESSAGE(std::memcmp(rows.data(), int8_first.data(), rows.size() * 4) == 0,
                                "int8 bits differ on " << p.body_name());
            }
          }
    }
  }
}

}  // namespace

TEST_CASE("group_scaled: float activations, every path, kernel and layout") { check_all_paths<float>(); }
TEST_CASE("group_scaled: half activations, every path, kernel and layout") { check_all_paths<half>(); }

TEST_CASE("group_scaled: the parallel gemm gives the one-thread bits") {
  const group_scaled_linear layer = random_layer(200, 384, 128);
  const std::vector<float> x = onebit_test::gaussian(3 * 384);
  onebit::thread_pool pool(3);
  for (kernel k : {kernel::add_only, kernel::lut}) {
    const onebit::packed_group_scaled packed = onebit::pack(layer, k);
    std::vector<float> one(3 * 200), many(3 * 200);
    onebit::gemm(packed, x.data(), 3, 384, one.data(), 200);
    onebit::gemm(pool, packed, x.data(), 3, 384, many.data(), 200);
    CHECK(std::memcmp(one.data(), many.data(), one.size() * 4) == 0);
  }
}

TEST_CASE("group_scaled: bad input is refused, naming the shapes") {
  const group_scaled_linear layer = random_layer(4, 64, 32);
  std::vector<float> x(64), y(4);
  CHECK_THROWS_AS(group_scaled_linear(4, 64, 12), std::invalid_argument);
  CHECK_THROWS_AS(group_scaled_linear(0, 64, 16), std::invalid_argument);
  CHECK_THROWS_AS(group_scaled_linear(onebit::sign_matrix<>(2, 64), std::vector<half>(3), 32),
                  std::invalid_argument);
  CHECK_THROWS_AS(onebit::gemm(layer, x.data(), 1, 63, y.data(), 4), std::invalid_argument);
  CHECK_THROWS_AS(onebit::gemm(layer, x.data(), 1, 64, y.data(), 3), std::invalid_argument);
  CHECK_THROWS_AS(onebit::gemm(layer, static_cast<const float*>(nullptr), 1, 64, y.data(), 4),
                  std::invalid_argument);
  CHECK_THROWS_AS(onebit::gemv(layer, x.data(), y.data(), gemm_options{kernel::popcount_binary, std::nullopt}),
                  std::invalid_argument);
  const onebit::packed_group_scaled packed = onebit::pack(layer, kernel::lut);
  CHECK_THROWS_AS(onebit::gemv(layer, x.data(), y.data(), kernel::popcount_binary), std::invalid_argument);
  CHECK_NOTHROW(onebit::gemm(layer, x.data(), 1, 64, y.data(), 4, kernel::lut));
  CHECK_THROWS_AS(onebit::gemv(packed, x.data(), y.data(), gemm_options{kernel::add_only, std::nullopt}),
                  std::invalid_argument);
  try {
    onebit::gemm(layer, x.data(), 1, 64, y.data(), 2);
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("4x64") != std::string::npos);
  }
}

TEST_CASE("group_scaled: a Q1_0 tensor of a GGUF file runs as its dequantised weights") {
  const onebit::io::gguf_file f(std::string(ONEBIT_DATA_DIR) + "/gguf/layer_v2.gguf");
  const std::string name = "blk.0.ffn_down.weight";
  const std::vector<float> w = f.dequantize(name);
  const group_scaled_linear layer = f.layer(name);
  const std::vector<float> x = onebit_test::gaussian(384);
  for (isa path : onebit_test::runnable_paths())
    for (kernel k : {kernel::add_only, kernel::lut}) {
      std::vector<float> y(5);
      onebit::gemv(onebit::pack(layer, gemm_options{k, path}), x.data(), y.data());
      for (std::size_t j = 0; j < 5; ++j) {
        double e = 0, S = 0, D = 0;
        float m = 0;
        for (std::size_t i = 0; i < 384; ++i) {
          e += static_cast<double>(w[j * 384 + i]) * x[i];
          S += std::fabs(static_cast<double>(w[j * 384 + i]) * x[i]);
          D += std::fabs(w[j * 384 + i]);
          m = std::max(m, std::fabs(x[i]));
        }
        const double bound = k == kernel::lut ? 1.01 * m / 254.0 * D + 1e-5 * S
                                              : (128 + 3 + 6) * std::ldexp(1.0, -24) * S;
        CHECK(std::fabs(y[j] - e) <= bound);
      }
    }
}

}  // namespace test_group_scaled
