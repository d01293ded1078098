// The program every consumer project builds: it uses onebit only through <onebit/onebit.hpp>
// and the names of the API contract (docs/design.md), runs a small OneBit layer and checks it
// against the formula. Prints "onebit consumer: ok" on success, which the test looks for.
#include <onebit/onebit.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++failures;
  }
}

}  // namespace

int main() {
  // W = sign(w0): 3 outputs x 5 inputs. Every value below is a small dyadic number, so the
  // sums are exact in float and the check can ask for equality.
  constexpr std::size_t out = 3, in = 5;
  const float w0[out * in] = {0.5f, -1.0f, 0.0f, 2.0f,  -0.25f,   // row 0
                              -3.0f, 1.0f, -0.5f, -1.0f, 4.0f,    // row 1
                              1.0f, 1.0f,  1.0f,  -1.0f, -0.0f};  // row 2
  const float g[in] = {1.0f, 0.5f, 2.0f, -1.0f, 0.25f};
  const float h[out] = {1.0f, -2.0f, 0.125f};
  const float x[in] = {1.0f, 2.0f, -3.0f, 4.0f, 8.0f};

  onebit::linear<> layer{onebit::sign_matrix<>::from_dense(w0, out, in, in), {}, {}};
  for (float v : g) layer.g.push_back(onebit::to_half(v));
  for (float v : h) layer.h.push_back(onebit::to_half(v));

  float y[out] = {};
  onebit::gemv(layer, x, y);

  for (std::size_t j = 0; j < out; ++j) {
    double sum = 0.0;
    for (std::size_t i = 0; i < in; ++i) {
      const double sign = std::signbit(w0[j * in + i]) && w0[j * in + i] != 0.0f ? -1.0 : 1.0;
      sum += static_cast<double>(x[i]) * g[i] * sign;
    }
    const double expected = sum * h[j];
    std::printf("y[%zu] = %g (expected %g)\n", j, static_cast<double>(y[j]), expected);
    check(static_cast<double>(y[j]) == expected, "gemv matches the formula");
  }

  check(onebit::to_float(onebit::to_half(0.1f)) == 0.0999755859375f, "to_half(0.1f)");
  check(onebit::to_float(onebit::to_half(65520.0f)) == INFINITY, "to_half overflows to inf");
  check(layer.storage_bits() == out * in + 16 * (in + out), "storage_bits");

  std::printf("cpu: %s path\n", onebit::to_string(onebit::best_isa()));
  if (failures != 0) return 1;
  std::printf("onebit consumer: ok\n");
  return 0;
}
