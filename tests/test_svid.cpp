// SVID: the error identity, never worse than one scale / per-row / per-column scales, signs and
// FP16 value vectors, every input type and path, bad input — and, on the 36 matrices of a real
// trained model (tinyllamas stories260K), the error sqrt(1 − σ₁²/‖W‖_F²) of its README within
// 0.2%, before and after the FP16 rounding of g and h.
#include <onebit/quant/svid.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_svid {

namespace {

using onebit::isa;
using onebit::rank1_method;
using onebit::row_major_matrix;

std::vector<isa> runnable_paths() {
  std::vector<isa> run;
  for (isa path : onebit::all_isas)
    if (onebit::supports(path)) run.push_back(path);
  return run;
}

row_major_matrix structured(std::size_t rows, std::size_t cols) {
  std::lognormal_distribution<float> scale(0.0f, 0.6f);
  std::vector<float> rs(rows), cs(cols);
  for (float& v : rs) v = scale(onebit_test::rng());
  for (float& v : cs) v = scale(onebit_test::rng());
  const std::vector<float> g = onebit_test::gaussian(rows * cols);
  row_major_matrix m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c)
      m(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)) = g[r * cols + c] * rs[r] * cs[c];
  return m;
}

// The least-squares errors of sign(W) times one scale, a scale per row, a scale per column.
struct scale_errors {
  double one, row, col;
};
scale_errors baseline_errors(const row_major_matrix& w) {
  const Eigen::MatrixXd a = w.cast<double>().cwiseAbs();
  const double n2 = a.squaredNorm();
  const double mean = a.mean();
  const double one = (a.array() - mean).matrix().squaredNorm();
  const Eigen::VectorXd rm = a.rowwise().mean(), cm = a.colwise().mean().transpose();
  const double row = (a.colwise() - rm).squaredNorm(), col = (a.rowwise() - cm.transpose()).squaredNorm();
  return {std::sqrt(one / n2), std::sqrt(row / n2), std::sqrt(col / n2)};
}

template <class Word>
Eigen::MatrixXd dense_double(const onebit::linear<Word>& layer) {
  Eigen::MatrixXd m(layer.out_features(), layer.in_features());
  for (std::size_t j = 0; j < layer.out_features(); ++j)
    for (std::size_t i = 0; i < layer.in_features(); ++i)
      m(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(i)) =
          layer.W(j, i) * static_cast<double>(onebit::to_float(layer.h[j])) *
          static_cast<double>(onebit::to_float(layer.g[i]));
  return m;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no exception";
}
bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("svid: the error identity, the reported errors, and never worse than scales") {
  const std::size_t shapes[][2] = {{1, 1}, {3, 5}, {17, 64}, {64, 17}, {100, 130}};
  for (const auto& shape : shapes) {
    const row_major_matrix w = structured(shape[0], shape[1]);
    for (rank1_method method : {rank1_method::svd, rank1_method::nmf}) {
      onebit::svid_options opt;
      opt.method = method;
      const onebit::svid_result<> r = onebit::svid_with_error(w, opt);
      const Eigen::MatrixXd wd = w.cast<double>(), approx = dense_double(r.layer);
      Eigen::MatrixXd hg(wd.rows(), wd.cols());
      for (Eigen::Index j = 0; j < wd.rows(); ++j)
        for (Eigen::Index i = 0; i < wd.cols(); ++i)
          hg(j, i) = static_cast<double>(onebit::to_float(r.layer.h[static_cast<std::size_t>(j)])) *
                     onebit::to_float(r.layer.g[static_cast<std::size_t>(i)]);
      const double lhs = (wd - approx).norm(), rhs = (wd.cwiseAbs() - hg).norm();
      INFO(shape[0], "x", shape[1], " ", onebit::to_string(method));
      // ‖W − sign(W) ⊙ h gᵀ‖ = ‖|W| − h gᵀ‖ (h, g >= 0).
      CHECK(lhs == doctest::Approx(rhs).epsilon(1e-12));
      // The reported error of the stored layer is the measured one.
      CHECK(r.relative_error == doctest::Approx(lhs / wd.norm()).epsilon(1e-5));
      // FP16 rounding of g and h costs little; the rank-1 error is never worse than the scales.
      CHECK(r.relative_error <= r.rank1.relative_error + 2e-3);
      const scale_errors s = baseline_errors(w);
      // (in squares: rank1's error comes from ‖W‖² − σ², good to ~1e-7 of ‖W‖²)
      const double e2 = r.rank1.relative_error * r.rank1.relative_error;
      CHECK(e2 <= s.one * s.one + 1e-6);
      CHECK(e2 <= s.row * s.row + 1e-6);
      CHECK(e2 <= s.col * s.col + 1e-6);
      CHECK(r.relative_error <= std::min({s.one, s.row, s.col}) + 2e-3);
      // Balanced before rounding: ‖h‖ ≈ ‖g‖.
      double nh = 0, ng = 0;
      for (onebit::half v : r.layer.h) nh += std::pow(onebit::to_float(v), 2);
      for (onebit::half v : r.layer.g) ng += std::pow(onebit::to_float(v), 2);
      CHECK(std::sqrt(nh) == doctest::Approx(std::sqrt(ng)).epsilon(2e-3));
      // h and g are the rank-1 factor rounded to nearest FP16.
      for (std::size_t j = 0; j < r.layer.h.size(); ++j)
        CHECK(r.layer.h[j] == onebit::to_half(r.rank1.a[static_cast<Eigen::Index>(j)]));
      // svid is svid_with_error's layer.
      const onebit::linear<> plain = onebit::svid(w, opt);
      CHECK(plain.W == r.layer.W);
      CHECK(plain.g == r.layer.g);
      CHECK(plain.h == r.layer.h);
    }
  }
}

TEST_CASE("svid signs: sign(W) with sign(0) = sign(-0.0) = +1, padding 0, every word type") {
  row_major_matrix w = structured(9, 77);
  w(0, 0) = 0.0f;
  w(1, 5) = -0.0f;
  w(2, 76) = -1e-30f;
  const onebit::sign_matrix<> expected = onebit::sign_matrix<>::from_dense(w.data(), 9, 77, 77);
  const onebit::linear<std::uint64_t> l64 = onebit::svid(w);
  CHECK(l64.W == expected);
  CHECK(l64.W(0, 0) == 1);
  CHECK(l64.W(1, 5) == 1);
  CHECK(l64.W(2, 76) == -1);
  CHECK(onebit::sign_matrix<>(onebit::svid<std::uint8_t>(w).W) == expected);
  CHECK(onebit::sign_matrix<>(onebit::svid<std::uint16_t>(w).W) == expected);
  CHECK(onebit::sign_matrix<>(onebit::svid<std::uint32_t>(w).W) == expected);
  // Padding bits past column 77 are zero, as sign_matrix promises.
  for (std::size_t r = 0; r < 9; ++r) {
    const std::uint64_t last = l64.W.row(r)[1];
    CHECK((last >> (77 - 64)) == 0u);
    for (std::size_t word = 2; word < l64.W.stride_words(); ++word) CHECK(l64.W.row(r)[word] == 0u);
  }
  CHECK(l64.in_features() == 77);
  CHECK(l64.out_features() == 9);
}

TEST_CASE("svid on every path: the same signs and, to float rounding, the same layer") {
  for (std::size_t cols : {1u, 15u, 16u, 17u, 33u, 64u, 100u, 257u}) {
    const row_major_matrix w = structured(23, cols);
    std::vector<onebit::svid_result<>> results;
    for (isa path : runnable_paths()) {
      onebit::svid_options opt;
      opt.path = path;
      results.push_back(onebit::svid_with_error(w, opt));
      INFO("cols ", cols, " path ", std::string(onebit::to_string(path)));
      CHECK(results.back().layer.W == results.front().layer.W);
      CHECK(results.back().relative_error ==
            doctest::Approx(results.front().relative_error).epsilon(1e-5));
      CHECK(results.back().rank1.sigma == doctest::Approx(results.front().rank1.sigma).epsilon(1e-6));
    }
  }
}

TEST_CASE("svid from half, bfloat16, strided and column-major input") {
  const row_major_matrix w = structured(31, 45);
  std::vector<onebit::half> h(31 * 50);
  std::vector<onebit::bfloat16> b(31 * 50);
  row_major_matrix wh(31, 45), wb(31, 45);
  for (Eigen::Index r = 0; r < 31; ++r)
    for (Eigen::Index c = 0; c < 45; ++c) {
      const std::size_t i = static_cast<std::size_t>(r * 50 + c);
      h[i] = onebit::to_half(w(r, c));
      b[i] = onebit::to_bfloat16(w(r, c));
      wh(r, c) = onebit::to_float(h[i]);
      wb(r, c) = onebit::to_float(b[i]);
    }
  const onebit::svid_result<> from_half = onebit::svid_with_error(h.data(), 31, 45, 50);
  const onebit::svid_result<> from_float = onebit::svid_with_error(wh);
  CHECK(from_half.layer.W == from_float.layer.W);
  CHECK(from_half.layer.g == from_float.layer.g);
  CHECK(from_half.layer.h == from_float.layer.h);
  CHECK(from_half.relative_error == from_float.relative_error);
  const onebit::linear<> from_bf16 = onebit::svid(b.data(), 31, 45, 50);
  const onebit::linear<> from_bf16_float = onebit::svid(wb);
  CHECK(from_bf16.W == from_bf16_float.W);
  CHECK(from_bf16.g == from_bf16_float.g);

  // An Eigen block (row stride 60) and a column-major matrix (copied by Eigen::Ref).
  row_major_matrix wide = row_major_matrix::Zero(31, 60);
  wide.leftCols(45) = w;
  const Eigen::MatrixXf column_major = w;
  const onebit::linear<> a = onebit::svid(w), s = onebit::svid(wide.leftCols(45)),
                         c = onebit::svid(column_major);
  CHECK(a.W == s.W);
  CHECK(a.g == s.g);
  CHECK(a.h == c.h);
  // dense() is the matrix the layer stands for.
  const row_major_matrix d = onebit::dense(a);
  CHECK((d.cast<double>() - dense_double(a)).cwiseAbs().maxCoeff() <= 1e-6 * d.cwiseAbs().maxCoeff());
}

TEST_CASE("svid bad input throws std::invalid_argument naming what is wrong") {
  row_major_matrix w = structured(4, 6);
  w(3, 1) = std::numeric_limits<float>::quiet_NaN();
  CHECK(contains(message_of([&] { onebit::svid(w); }), "NaN at (3, 1) of a 4x6 matrix"));
  w(3, 1) = std::numeric_limits<float>::infinity();
  CHECK(contains(message_of([&] { onebit::svid_with_error(w); }), "infinity at (3, 1)"));
  std::vector<onebit::half> h(24, onebit::to_half(1.0f));
  h[7] = onebit::half::from_bits(0x7e00);
  CHECK(contains(message_of([&] { onebit::svid(h.data(), 4, 6, 6); }), "NaN at (1, 1)"));
  CHECK(contains(message_of([&] { onebit::svid(row_major_matrix::Zero(5, 5)); }), "all zeros"));
  CHECK(contains(message_of([&] { onebit::svid(row_major_matrix(0, 5)); }), "zero-size"));
  CHECK(contains(message_of([&] { onebit::svid(static_cast<const float*>(nullptr), 2, 2, 2); }),
                 "null"));
  const row_major_matrix ok = structured(4, 6);
  CHECK(contains(message_of([&] { onebit::svid(ok.data(), 4, 6, 5); }), "row_stride 5 < cols 6"));
  // Magnitudes whose balanced factors overflow FP16 (|W| ~ 1e12: h, g ~ 1e6).
  CHECK(contains(message_of([&] { onebit::svid(row_major_matrix::Constant(4, 4, 1e12f)); }),
                 "too large for FP16"));
  onebit::svid_options opt;
  opt.max_iterations = -1;
  CHECK(contains(message_of([&] { onebit::svid(ok, opt); }), "max_iterations"));
}

// ---------------------------------------------------------------- the real model

namespace {

struct reference_row {
  const char* name;
  double svid, norm, sigma;  // the README's SVID error, ‖W‖_F and σ₁(|W|)
};

// data/tinyllamas/README.md, "All 36 matrices".
constexpr reference_row readme[] = {
    {"tok_emb", 0.4313, 55.8975, 50.4322}, {"L0.wq", 0.5246, 15.1103, 12.8646},
    {"L0.wk", 0.4527, 10.2400, 9.1304},    {"L0.wv", 0.5944, 2.0903, 1.6809},
    {"L0.wo", 0.5966, 3.9139, 3.1412},     {"L0.w1", 0.5905, 13.3307, 10.7585},
    {"L0.w2", 0.5990, 13.0357, 10.4387},   {"L0.w3", 0.5969, 12.1307, 9.7325},
    {"L1.wq", 0.5099, 17.8321, 15.3397},   {"L1.wk", 0.4756, 10.4630, 9.2041},
    {"L1.wv", 0.5908, 2.2226, 1.7932},     {"L1.wo", 0.5894, 3.4400, 2.7789},
    {"L1.w1", 0.5954, 14.8082, 11.8969},   {"L1.w2", 0.5983, 12.0905, 9.6875},
    {"L1.w3", 0.5970, 11.6146, 9.3174},    {"L2.wq", 0.5580, 13.5189, 11.2185},
    {"L2.wk", 0.4950, 8.2735, 7.1890},     {"L2.wv", 0.5857, 2.7637, 2.2400},
    {"L2.wo", 0.5906, 4.4048, 3.5547},     {"L2.w1", 0.5938, 13.3832, 10.7679},
    {"L2.w2", 0.5992, 13.1281, 10.5101},   {"L2.w3", 0.5996, 12.6412, 10.1168},
    {"L3.wq", 0.5277, 14.5770, 12.3824},   {"L3.wk", 0.4547, 9.2586, 8.2464},
    {"L3.wv", 0.5929, 3.2026, 2.5791},     {"L3.wo", 0.5935, 5.1539, 4.1479},
    {"L3.w1", 0.5925, 13.0938, 10.5477},   {"L3.w2", 0.5979, 13.8261, 11.0822},
    {"L3.w3", 0.5978, 13.3933, 10.7368},   {"L4.wq", 0.5629, 10.8896, 9.0007},
    {"L4.wk", 0.5089, 6.8746, 5.9181},     {"L4.wv", 0.5892, 4.6615, 3.7665},
    {"L4.wo", 0.5975, 7.6582, 6.1411},     {"L4.w1", 0.5978, 12.9703, 10.3978},
    {"L4.w2", 0.5975, 14.4986, 11.6262},   {"L4.w3", 0.5945, 14.0340, 11.2847},
};

struct named_matrix {
  std::string name;
  std::size_t rows, cols;
  std::vector<float> data;
};

// The 36 weight matrices of stories260K.bin (llama2.c version 0: 7 int32, then float32 tensors
// back to back; data/tinyllamas/README.md), in the README's order.
std::vector<named_matrix> read_stories260k() {
  const std::string path = std::string(ONEBIT_DATA_DIR) + "/tinyllamas/stories260K.bin";
  std::ifstream file(path, std::ios::binary);
  REQUIRE_MESSAGE(file.good(), "cannot open ", path);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() == 1056540u);
  std::int32_t h[7];
  std::memcpy(h, bytes.data(), sizeof h);
  const std::size_t dim = static_cast<std::size_t>(h[0]), hidden = static_cast<std::size_t>(h[1]),
                    layers = static_cast<std::size_t>(h[2]), heads = static_cast<std::size_t>(h[3]),
                    kv_heads = static_cast<std::size_t>(h[4]), vocab = static_cast<std::size_t>(h[5]);
  REQUIRE(dim == 64);
  REQUIRE(hidden == 172);
  REQUIRE(layers == 5);
  REQUIRE(vocab == 512);
  const std::size_t kv_dim = dim * kv_heads / heads;
  std::size_t offset = 28;
  auto take = [&](std::size_t count) {
    const std::size_t at = offset;
    offset += 4 * count;
    REQUIRE(offset <= bytes.size());
    return at;
  };
  auto floats = [&](std::size_t at, std::size_t count) {
    std::vector<float> v(count);
    std::memcpy(v.data(), bytes.data() + at, 4 * count);
    return v;
  };
  std::vector<named_matrix> m;
  m.push_back({"tok_emb", vocab, dim, floats(take(vocab * dim), vocab * dim)});
  take(layers * dim);  // rms_att_weight
  struct group {
    const char* name;
    std::size_t rows, cols, at;
  };
  group groups[] = {{"wq", dim, dim, 0}, {"wk", kv_dim, dim, 0}, {"wv", kv_dim, dim, 0},
                    {"wo", dim, dim, 0}, {"w1", hidden, dim, 0}, {"w2", dim, hidden, 0},
                    {"w3", hidden, dim, 0}};
  for (group& g : groups) {
    if (std::string(g.name) == "w1") take(layers * dim);  // rms_ffn_weight
    g.at = take(layers * g.rows * g.cols);
  }
  CHECK(groups[0].at == 132380u);  // the README's offsets
  CHECK(groups[4].at == 379420u);
  CHECK(groups[6].at == 819740u);
  for (std::size_t l = 0; l < layers; ++l)
    for (const group& g : groups)
      m.push_back({"L" + std::to_string(l) + "." + g.name, g.rows, g.cols,
                   floats(g.at + 4 * l * g.rows * g.cols, g.rows * g.cols)});
  return m;
}

}  // namespace

TEST_CASE("svid on the 36 matrices of stories260K: the README's sqrt(1 - sigma^2/|W|^2) within 0.2%") {
  const std::vector<named_matrix> model = read_stories260k();
  REQUIRE(model.size() == 36);
  double worst[2][2] = {};  // [method][before, after FP16]: largest |err / expected − 1|
  double mean[2][2] = {};
  double mean_expected = 0;
  for (std::size_t k = 0; k < model.size(); ++k) {
    const named_matrix& w = model[k];
    const reference_row& ref = readme[k];
    REQUIRE(w.name == ref.name);
    const double expected = std::sqrt(1.0 - (ref.sigma * ref.sigma) / (ref.norm * ref.norm));
    mean_expected += expected / 36;
    for (int method = 0; method < 2; ++method) {
      onebit::svid_options opt;
      opt.method = method == 0 ? rank1_method::svd : rank1_method::nmf;
      const onebit::svid_result<> r = onebit::svid_with_error(w.data.data(), w.rows, w.cols, w.cols, opt);
      INFO(w.name, " ", onebit::to_string(opt.method), ": rank-1 error ", r.rank1.relative_error,
           ", with FP16 g and h ", r.relative_error, ", expected ", expected, " (README SVID ",
           ref.svid, "), ", r.rank1.iterations, " iterations");
      CHECK(r.rank1.converged);
      // The README's 4 decimals.
      CHECK(std::fabs(r.rank1.frobenius_norm - ref.norm) <= 5.01e-5);
      CHECK(std::fabs(r.rank1.sigma - ref.sigma) <= 5.01e-5);
      const double before = r.rank1.relative_error / expected - 1, after = r.relative_error / expected - 1;
      CHECK(std::fabs(before) <= 0.002);
      CHECK(std::fabs(after) <= 0.002);
      CHECK(std::fabs(r.relative_error - ref.svid) <= 0.002 * ref.svid);
      worst[method][0] = std::max(worst[method][0], std::fabs(before));
      worst[method][1] = std::max(worst[method][1], std::fabs(after));
      mean[method][0] += r.rank1.relative_error / 36;
      mean[method][1] += r.relative_error / 36;
    }
  }
  MESSAGE("stories260K, 36 matrices, mean SVID error: expected ", mean_expected, "; svd ",
          mean[0][0], " (FP16 g, h: ", mean[0][1], "); nmf ", mean[1][0], " (FP16: ", mean[1][1],
          "). Largest relative deviation from sqrt(1 - sigma^2/|W|^2): svd ", worst[0][0],
          " (FP16: ", worst[0][1], "), nmf ", worst[1][0], " (FP16: ", worst[1][1], ")");
}

}  // namespace test_svid
