// Per-matrix errors of the 1-bit and low-bit forms of a real model: for each of the 36 weight
// matrices of stories260K (the token embedding and wq wk wv wo w1 w2 w3 of 5 layers), the
// relative Frobenius error ‖W − Ŵ‖ / ‖W‖ of
//
//   one scale    Ŵ = sign(W) · mean|W|
//   per row      Ŵ_ij = sign(W_ij) · mean_j |W_ij|
//   SVID svd/nmf Ŵ = sign(W) ⊙ h gᵀ with g, h stored in FP16 (onebit::svid_with_error)
//   RTN k        onebit::rtn, k = 2, 3, 4 bits, one scale and zero per row, dequantised
//
// and the SVID optimum sqrt(1 − σ₁²/‖W‖²) from the rank-1 factor, which the data README's
// table gives too. Usage: tinyllama_matrices [path/to/stories260K.bin]
#include <onebit/models/llama2c.hpp>
#include <onebit/quant.hpp>

#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#ifndef ONEBIT_DATA_DIR
#define ONEBIT_DATA_DIR "tests/data"
#endif

namespace {

struct matrix_ref {
  std::string name;
  const float* data;
  std::size_t rows, cols;
};

double frobenius(const float* w, std::size_t n) {
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(w[i]) * w[i];
  return std::sqrt(s);
}

double error_of(const float* w, const std::vector<float>& approx, double norm) {
  double s = 0;
  for (std::size_t i = 0; i < approx.size(); ++i) {
    const double d = static_cast<double>(w[i]) - approx[i];
    s += d * d;
  }
  return std::sqrt(s) / norm;
}

double sign_of(float v) { return v < 0 ? -1.0 : 1.0; }  // sign(0) = +1, as everywhere in onebit

double one_scale(const matrix_ref& m, double norm) {
  const std::size_t n = m.rows * m.cols;
  double mean = 0;
  for (std::size_t i = 0; i < n; ++i) mean += std::fabs(m.data[i]);
  mean /= static_cast<double>(n);
  std::vector<float> approx(n);
  for (std::size_t i = 0; i < n; ++i) approx[i] = static_cast<float>(sign_of(m.data[i]) * mean);
  return error_of(m.data, approx, norm);
}

double per_row(const matrix_ref& m, double norm) {
  std::vector<float> approx(m.rows * m.cols);
  for (std::size_t r = 0; r < m.rows; ++r) {
    double mean = 0;
    for (std::size_t c = 0; c < m.cols; ++c) mean += std::fabs(m.data[r * m.cols + c]);
    mean /= static_cast<double>(m.cols);
    for (std::size_t c = 0; c < m.cols; ++c)
      approx[r * m.cols + c] = static_cast<float>(sign_of(m.data[r * m.cols + c]) * mean);
  }
  return error_of(m.data, approx, norm);
}

double rtn_error(const matrix_ref& m, int bits, double norm) {
  onebit::rtn_options options;
  options.bits = bits;
  const onebit::lowbit_matrix q = onebit::rtn(m.data, m.rows, m.cols, m.cols, options);
  std::vector<float> approx(m.rows * m.cols);
  q.dequantize(approx.data(), m.cols);
  return error_of(m.data, approx, norm);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string path =
      argc > 1 ? argv[1] : std::string(ONEBIT_DATA_DIR) + "/tinyllamas/stories260K.bin";
  onebit::io::llama2c_checkpoint model;
  try {
    model = onebit::io::read_llama2c(path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tinyllama_matrices: %s\n", e.what());
    return 1;
  }
  const auto& c = model.config;
  const auto dim = static_cast<std::size_t>(c.dim), hidden = static_cast<std::size_t>(c.hidden_dim),
             kv = static_cast<std::size_t>(c.kv_dim()),
             vocab = static_cast<std::size_t>(c.vocab_size);
  std::vector<matrix_ref> matrices{{"tok_emb", model.token_embedding.data(), vocab, dim}};
  for (std::size_t l = 0; l < model.layers.size(); ++l) {
    const auto& L = model.layers[l];
    const std::string p = "L" + std::to_string(l) + ".";
    matrices.push_back({p + "wq", L.wq.data(), dim, dim});
    matrices.push_back({p + "wk", L.wk.data(), kv, dim});
    matrices.push_back({p + "wv", L.wv.data(), kv, dim});
    matrices.push_back({p + "wo", L.wo.data(), dim, dim});
    matrices.push_back({p + "w1", L.w1.data(), hidden, dim});
    matrices.push_back({p + "w2", L.w2.data(), dim, hidden});
    matrices.push_back({p + "w3", L.w3.data(), hidden, dim});
  }

  std::printf("| matrix | shape | one scale | per row | SVID svd | SVID nmf | SVID optimum | RTN 4 | RTN 3 | RTN 2 |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  double sums[8] = {};
  for (const matrix_ref& m : matrices) {
    const double norm = frobenius(m.data, m.rows * m.cols);
    onebit::svid_options svd, nmf;
    nmf.method = onebit::rank1_method::nmf;
    const auto by_svd = onebit::svid_with_error(m.data, m.rows, m.cols, m.cols, svd);
    const auto by_nmf = onebit::svid_with_error(m.data, m.rows, m.cols, m.cols, nmf);
    const double sigma = by_svd.rank1.sigma;
    const double row[8] = {one_scale(m, norm),
                           per_row(m, norm),
                           by_svd.relative_error,
                           by_nmf.relative_error,
                           std::sqrt(std::max(0.0, 1.0 - sigma * sigma / (norm * norm))),
                           rtn_error(m, 4, norm),
                           rtn_error(m, 3, norm),
                           rtn_error(m, 2, norm)};
    std::printf("| `%s` | %zux%zu |", m.name.c_str(), m.rows, m.cols);
    for (int k = 0; k < 8; ++k) {
      std::printf(" %.4f |", row[k]);
      sums[k] += row[k];
    }
    std::printf("\n");
  }
  std::printf("| mean of %zu | |", matrices.size());
  for (double s : sums) std::printf(" %.4f |", s / static_cast<double>(matrices.size()));
  std::printf("\n");
  return 0;
}
