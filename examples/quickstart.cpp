// The README's first example: make a OneBit layer from a trained float matrix, run it, and
// compare with the float product it stands for.
#include <onebit/onebit.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const std::size_t out = 256, in = 512;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;

  // A "trained" matrix whose magnitudes have rank-1 structure, as real weights roughly do.
  std::vector<float> row_scale(out), col_scale(in), w(out * in);
  for (float& v : row_scale) v = std::exp(0.3f * normal(rng));
  for (float& v : col_scale) v = std::exp(0.3f * normal(rng));
  for (std::size_t j = 0; j < out; ++j)
    for (std::size_t i = 0; i < in; ++i)
      w[j * in + i] = 0.02f * row_scale[j] * col_scale[i] * normal(rng);

  // The OneBit layer: signs of w, and one value per output (h) and per input (g). Here h and
  // g are the mean magnitudes of rows and columns; SVID (quant/svid.hpp) finds the best ones.
  onebit::linear<> layer{onebit::sign_matrix<>::from_dense(w.data(), out, in, in),
                         std::vector<onebit::half>(in), std::vector<onebit::half>(out)};
  double total = 0;
  for (float v : w) total += std::fabs(v);
  const double mean = total / static_cast<double>(w.size());
  for (std::size_t i = 0; i < in; ++i) {
    double s = 0;
    for (std::size_t j = 0; j < out; ++j) s += std::fabs(w[j * in + i]);
    layer.g[i] = onebit::to_half(static_cast<float>(s / static_cast<double>(out) / std::sqrt(mean)));
  }
  for (std::size_t j = 0; j < out; ++j) {
    double s = 0;
    for (std::size_t i = 0; i < in; ++i) s += std::fabs(w[j * in + i]);
    layer.h[j] = onebit::to_half(static_cast<float>(s / static_cast<double>(in) / std::sqrt(mean)));
  }

  std::vector<float> x(in), y(out);
  for (float& v : x) v = normal(rng);
  onebit::gemv(layer, x.data(), y.data());  // y = ((x ⊙ g) · Wᵀ) ⊙ h

  double err = 0, norm = 0;
  for (std::size_t j = 0; j < out; ++j) {
    double exact = 0;
    for (std::size_t i = 0; i < in; ++i) exact += static_cast<double>(w[j * in + i]) * x[i];
    err += (y[j] - exact) * (y[j] - exact);
    norm += exact * exact;
  }
  std::printf("onebit quickstart: %zux%zu layer, %zu bits (%.4f bits per parameter)\n", out, in,
              layer.storage_bits(), layer.bits_per_parameter());
  std::printf("best path on this CPU: %s\n", onebit::to_string(onebit::best_isa()));
  std::printf("relative error of the 1-bit layer against the float layer: %.3f\n",
              std::sqrt(err / norm));
  return 0;
}
