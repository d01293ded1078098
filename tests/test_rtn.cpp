// RTN against a scalar double evaluation of ALGORITHMS.md §3, written independently here (its
// own ties-to-even rounding), for every bits 1..8, groups 0/1/7/32/cols and a non-dividing one,
// symmetric and asymmetric: codes, scales and zeros exactly; the s/2 bound; constant groups
// exact; the bit-planes; storage_bits; every input type; bad input.
#include <onebit/quant/rtn.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support.hpp"

namespace test_rtn {

namespace {

using onebit::row_major_matrix;

// Round half to even, by hand (not nearbyint: the oracle must not share the library's call).
double round_half_even(double x) {
  const double r = std::floor(x), d = x - r;
  if (d > 0.5) return r + 1;
  if (d < 0.5) return r;
  return std::fmod(r, 2.0) == 0.0 ? r : r + 1;
}

struct oracle_matrix {
  std::vector<unsigned> q;          // rows x cols
  std::vector<float> s, z;          // rows x groups
  std::size_t groups = 0, G = 0;
};

// §3 in double, with the documented storage: s rounded to float, z and q from the stored s.
oracle_matrix oracle(const row_major_matrix& w, int bits, std::size_t group, bool symmetric) {
  const std::size_t rows = static_cast<std::size_t>(w.rows()), cols = static_cast<std::size_t>(w.cols());
  oracle_matrix o;
  o.G = group == 0 ? cols : group;
  o.groups = (cols + o.G - 1) / o.G;
  o.q.resize(rows * cols);
  o.s.resize(rows * o.groups);
  o.z.resize(rows * o.groups);
  const double levels = std::pow(2.0, bits) - 1, half_levels = std::pow(2.0, bits - 1) - 1;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t g = 0; g < o.groups; ++g) {
      const std::size_t c0 = g * o.G, c1 = std::min(cols, c0 + o.G);
      double mn = std::numeric_limits<double>::infinity(), mx = -mn;
      for (std::size_t c = c0; c < c1; ++c) {
        mn = std::min(mn, static_cast<double>(w(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c))));
        mx = std::max(mx, static_cast<double>(w(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c))));
      }
      float s;
      if (mx == mn)
        s = mn == 0 ? 1.0f : static_cast<float>(std::fabs(mn));
      else if (symmetric)
        s = static_cast<float>(std::max(std::fabs(mn), std::fabs(mx)) / half_levels);
      else
        s = static_cast<float>((mx - mn) / levels);
      if (s == 0.0f) s = std::numeric_limits<float>::denorm_min();
      const double sd = s;
      const float z = symmetric ? static_cast<float>(half_levels + 1)
                                : static_cast<float>(round_half_even(-mn / sd));
      o.s[r * o.groups + g] = s;
      o.z[r * o.groups + g] = z;
      for (std::size_t c = c0; c < c1; ++c) {
        const double v = round_half_even(w(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)) / sd);
        const double q = symmetric ? std::clamp(v, -half_levels, half_levels) + z
                                   : std::clamp(v + z, 0.0, levels);
        o.q[r * cols + c] = static_cast<unsigned>(q);
      }
    }
  return o;
}

// Checks every code, scale and zero, the dequantised values, the s/2 and s bounds, and the
// planes. Returns the number of mismatches.
std::size_t check_against_oracle(const row_major_matrix& w, int bits, std::size_t group, bool symmetric) {
  const onebit::lowbit_matrix m = onebit::rtn(w, {bits, group, symmetric});
  const oracle_matrix o = oracle(w, bits, group, symmetric);
  const std::size_t rows = static_cast<std::size_t>(w.rows()), cols = static_cast<std::size_t>(w.cols());
  REQUIRE(m.rows() == rows);
  REQUIRE(m.cols() == cols);
  REQUIRE(m.groups_per_row() == o.groups);
  REQUIRE(m.group_size() == o.G);
  std::size_t bad = 0;
  const row_major_matrix d = onebit::dequantized(m);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t g = 0; g < o.groups; ++g) {
      bad += m.scale(r, g) != o.s[r * o.groups + g];
      bad += m.zero(r, g) != o.z[r * o.groups + g];
    }
    for (std::size_t c = 0; c < cols; ++c) {
      const unsigned q = m.code(r, c);
      bad += q != o.q[r * cols + c];
      for (int b = 0; b < bits; ++b) bad += m.plane(b)(r, c) != (((q >> b) & 1u) ? -1 : 1);
      const double s = m.scale(r, c / o.G), z = m.zero(r, c / o.G);
      const float expected = static_cast<float>(s * (q - z));
      bad += m.dequantized(r, c) != expected;
      bad += d(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)) != expected;
      // Within s/2 where w is inside the grid's reach, within s anywhere in the group's range.
      const double x = w(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
      const double lo = symmetric ? -(std::pow(2.0, bits - 1) - 1) : -z;
      const double hi = symmetric ? std::pow(2.0, bits - 1) - 1 : std::pow(2.0, bits) - 1 - z;
      const double err = std::fabs(x - expected), slack = std::fabs(expected) * 0x1p-24;
      if (x / s >= lo - 0.5 && x / s <= hi + 0.5)
        bad += !(err <= s / 2 * (1 + 1e-12) + slack);
      else
        bad += !(err <= s * (1 + 1e-12) + slack);
    }
  }
  return bad;
}

row_major_matrix gaussian_matrix(std::size_t rows, std::size_t cols) {
  const std::vector<float> v = onebit_test::gaussian(rows * cols);
  row_major_matrix m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  for (std::size_t i = 0; i < rows * cols; ++i) m.data()[i] = v[i];
  return m;
}

// Rows whose groups have exact ties: each group holds its min and max (so s is the power of two
// 2^-3 exactly) and values (m + 1/2)·s.
row_major_matrix tie_matrix(std::size_t rows, std::size_t cols, std::size_t group, int bits,
                            bool symmetric) {
  const std::size_t G = group == 0 ? cols : group;
  const double s = 0.125;
  const int levels = (1 << bits) - 1, half_levels = (1 << (bits - 1)) - 1;
  row_major_matrix m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  std::uniform_int_distribution<int> pick(symmetric ? -half_levels : 0,
                                          symmetric ? half_levels - 1 : levels - 1);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) {
      const std::size_t i = c % G;
      double v = (pick(onebit_test::rng()) + 0.5) * s;
      if (i == 0) v = symmetric ? -half_levels * s : 0.0;
      if (i == 1) v = symmetric ? half_levels * s : levels * s;
      m(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)) = static_cast<float>(v);
    }
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

TEST_CASE("rtn equals the double evaluation of §3: every bits, groups, symmetric or not") {
  const std::size_t shapes[][2] = {{3, 23}, {2, 64}, {5, 33}, {1, 1}, {4, 7}, {2, 200}};
  for (const auto& shape : shapes) {
    const std::size_t rows = shape[0], cols = shape[1];
    row_major_matrix w = gaussian_matrix(rows, cols);
    // Special rows: a constant one, a zero one, an all-positive and an all-negative one.
    if (rows >= 3) {
      w.row(0).setConstant(-0.75f);
      w.row(1).setZero();
      w.row(2) = w.row(2).cwiseAbs();
    }
    if (rows >= 4) w.row(3) = -w.row(3).cwiseAbs();
    for (int bits = 1; bits <= 8; ++bits)
      for (std::size_t group : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{32}, cols,
                                std::size_t{5}}) {
        if (group > cols) continue;
        for (bool symmetric : {false, true}) {
          if (symmetric && bits == 1) continue;
          INFO(rows, "x", cols, " bits ", bits, " group ", group, symmetric ? " symmetric" : "");
          CHECK(check_against_oracle(w, bits, group, symmetric) == 0);
          CHECK(check_against_oracle(tie_matrix(rows, cols, group, bits, symmetric), bits, group,
                                     symmetric) == 0);
        }
      }
  }
}

TEST_CASE("rtn exhaustively over every 4-value group from a small grid") {
  // All 7^4 rows of four values from {-1.5, -1, -0.5, 0, 0.25, 1, 1.5}: constant groups, ties,
  // one-signed groups, zeros, all of them.
  const float values[] = {-1.5f, -1.0f, -0.5f, 0.0f, 0.25f, 1.0f, 1.5f};
  row_major_matrix w(7 * 7 * 7 * 7, 4);
  for (Eigen::Index r = 0; r < w.rows(); ++r)
    for (Eigen::Index c = 0, k = r; c < 4; ++c, k /= 7) w(r, c) = values[k % 7];
  for (int bits = 1; bits <= 8; ++bits)
    for (std::size_t group : {0u, 1u, 2u, 3u})
      for (bool symmetric : {false, true}) {
        if (symmetric && bits == 1) continue;
        INFO("bits ", bits, " group ", group, symmetric ? " symmetric" : "");
        CHECK(check_against_oracle(w, bits, group, symmetric) == 0);
      }
}

TEST_CASE("ties round to even") {
  // One group {0, 1.875, 0.0625, 0.1875, 0.3125}: s = 1.875 / 15 = 0.125, z = 0, and the last
  // three are 0.5, 1.5 and 2.5 steps: codes 0, 2, 2.
  row_major_matrix w(1, 5);
  w << 0.0f, 1.875f, 0.0625f, 0.1875f, 0.3125f;
  const onebit::lowbit_matrix m = onebit::rtn(w, {4, 0, false});
  CHECK(m.scale(0, 0) == 0.125f);
  CHECK(m.zero(0, 0) == 0.0f);
  CHECK(m.code(0, 1) == 15);
  CHECK(m.code(0, 2) == 0);
  CHECK(m.code(0, 3) == 2);
  CHECK(m.code(0, 4) == 2);
  // Symmetric, 3 bits: s = 0.75 / 3 = 0.25; ±0.125 and ±0.375 are ±0.5 and ±1.5 steps.
  row_major_matrix v(1, 5);
  v << 0.75f, 0.125f, -0.125f, 0.375f, -0.375f;
  const onebit::lowbit_matrix s = onebit::rtn(v, {3, 0, true});
  CHECK(s.scale(0, 0) == 0.25f);
  CHECK(s.zero(0, 0) == 4.0f);
  CHECK(s.code(0, 0) == 7);
  CHECK(s.code(0, 1) == 4);
  CHECK(s.code(0, 2) == 4);
  CHECK(s.code(0, 3) == 6);
  CHECK(s.code(0, 4) == 2);
}

TEST_CASE("constant groups are exact: group 1 reproduces every value at every bits") {
  const row_major_matrix w = gaussian_matrix(6, 19) * 1000.0f;
  for (int bits = 1; bits <= 8; ++bits)
    for (bool symmetric : {false, true}) {
      if (symmetric && bits == 1) continue;
      const onebit::lowbit_matrix m = onebit::rtn(w, {bits, 1, symmetric});
      CHECK(onebit::dequantized(m) == w);
    }
  const row_major_matrix c = row_major_matrix::Constant(3, 10, 3.1f);
  CHECK(onebit::dequantized(onebit::rtn(c, {2, 0, false})) == c);
  CHECK(onebit::dequantized(onebit::rtn(c, {2, 4, true})) == c);
  CHECK(onebit::dequantized(onebit::rtn(-c, {1, 0, false})) == -c);
  CHECK(onebit::dequantized(onebit::rtn(row_major_matrix::Zero(2, 3), {5, 0, false})) == row_major_matrix::Zero(2, 3));
}

TEST_CASE("storage_bits is exact; groups, planes and their padding") {
  const row_major_matrix w = gaussian_matrix(3, 23);
  // 3x23, 4 bits, group 5: 5 groups per row (the last of 3 columns).
  const onebit::lowbit_matrix a = onebit::rtn(w, {4, 5, false});
  CHECK(a.groups_per_row() == 5);
  CHECK(a.group() == 5);
  CHECK(a.storage_bits() == 4u * 69u + 64u * 15u);
  const onebit::lowbit_matrix s = onebit::rtn(w, {3, 5, true});
  CHECK(s.storage_bits() == 3u * 69u + 32u * 15u);
  CHECK(s.symmetric());
  const onebit::lowbit_matrix p = onebit::rtn(w, {2, 0, false});
  CHECK(p.group() == 0);
  CHECK(p.group_size() == 23);
  CHECK(p.groups_per_row() == 1);
  CHECK(p.storage_bits() == 2u * 69u + 64u * 3u);
  // 4096 x 4096 at 4 bits per group of 128: 4.5 bits per weight with float scale and zero.
  CHECK(onebit::rtn(gaussian_matrix(2, 256), {4, 128, false}).storage_bits() == 4u * 512u + 64u * 4u);
  for (int b = 0; b < a.bits(); ++b) {
    const onebit::sign_matrix<>& plane = a.plane(b);
    CHECK(plane.rows() == 3);
    CHECK(plane.cols() == 23);
    for (std::size_t r = 0; r < 3; ++r) CHECK((plane.row(r)[0] >> 23) == 0u);
  }
  CHECK_THROWS_AS(a.plane(4), std::out_of_range);
}

TEST_CASE("from_codes rebuilds an rtn result; half, bfloat16 and strided input") {
  const row_major_matrix w = gaussian_matrix(4, 37);
  for (bool symmetric : {false, true}) {
    const onebit::lowbit_matrix m = onebit::rtn(w, {3, 8, symmetric});
    std::vector<std::uint8_t> q(4 * 40, 0);
    for (std::size_t r = 0; r < 4; ++r)
      for (std::size_t c = 0; c < 37; ++c) q[r * 40 + c] = static_cast<std::uint8_t>(m.code(r, c));
    const onebit::lowbit_matrix back = onebit::lowbit_matrix::from_codes(
        q.data(), 4, 37, 40, 3, 8, m.scales().data(), symmetric ? nullptr : m.zeros().data());
    CHECK(onebit::dequantized(back) == onebit::dequantized(m));
    CHECK(back.storage_bits() == m.storage_bits());
    CHECK(back.symmetric() == symmetric);
    for (int b = 0; b < 3; ++b) CHECK(back.plane(b) == m.plane(b));
  }
  std::vector<onebit::half> h(4 * 40);
  std::vector<onebit::bfloat16> bf(4 * 40);
  row_major_matrix wh(4, 37), wb(4, 37);
  for (Eigen::Index r = 0; r < 4; ++r)
    for (Eigen::Index c = 0; c < 37; ++c) {
      const std::size_t i = static_cast<std::size_t>(r * 40 + c);
      h[i] = onebit::to_half(w(r, c));
      bf[i] = onebit::to_bfloat16(w(r, c));
      wh(r, c) = onebit::to_float(h[i]);
      wb(r, c) = onebit::to_float(bf[i]);
    }
  CHECK(onebit::dequantized(onebit::rtn(h.data(), 4, 37, 40, {4, 16, false})) ==
        onebit::dequantized(onebit::rtn(wh, {4, 16, false})));
  CHECK(onebit::dequantized(onebit::rtn(bf.data(), 4, 37, 40, {4, 16, true})) ==
        onebit::dequantized(onebit::rtn(wb, {4, 16, true})));
  row_major_matrix wide = row_major_matrix::Constant(4, 50, 99.0f);
  wide.leftCols(37) = w;
  CHECK(onebit::dequantized(onebit::rtn(wide.leftCols(37), {2, 0, false})) ==
        onebit::dequantized(onebit::rtn(w, {2, 0, false})));
  // dequantize into a strided buffer leaves the gaps alone.
  const onebit::lowbit_matrix m = onebit::rtn(w);
  std::vector<float> out(4 * 41, -5.0f);
  m.dequantize(out.data(), 41);
  for (std::size_t r = 0; r < 4; ++r) {
    for (std::size_t c = 0; c < 37; ++c) CHECK(out[r * 41 + c] == m.dequantized(r, c));
    for (std::size_t c = 37; c < 41; ++c) CHECK(out[r * 41 + c] == -5.0f);
  }
}

TEST_CASE("rtn bad input throws std::invalid_argument naming what is wrong") {
  row_major_matrix w = gaussian_matrix(3, 8);
  CHECK(contains(message_of([&] { onebit::rtn(w, {0, 0, false}); }), "bits 0 is outside 1..8"));
  CHECK(contains(message_of([&] { onebit::rtn(w, {9, 0, false}); }), "bits 9"));
  CHECK(contains(message_of([&] { onebit::rtn(w, {-3, 0, false}); }), "bits -3"));
  CHECK(contains(message_of([&] { onebit::rtn(w, {1, 0, true}); }), "symmetric quantisation needs bits >= 2"));
  CHECK(contains(message_of([&] { onebit::rtn(w, {4, 9, false}); }), "group 9 > cols 8"));
  CHECK(contains(message_of([&] { onebit::rtn(row_major_matrix(0, 4)); }), "zero-size"));
  CHECK(contains(message_of([&] { onebit::rtn(static_cast<const float*>(nullptr), 2, 2, 2); }), "null"));
  CHECK(contains(message_of([&] { onebit::rtn(w.data(), 3, 8, 7); }), "row_stride 7 < cols 8"));
  w(2, 6) = std::numeric_limits<float>::quiet_NaN();
  CHECK(contains(message_of([&] { onebit::rtn(w); }), "NaN at (2, 6) of a 3x8 matrix"));
  w(2, 6) = -std::numeric_limits<float>::infinity();
  CHECK(contains(message_of([&] { onebit::rtn(w); }), "infinity at (2, 6)"));
  // A range that overflows a float scale, and a grid whose end overflows.
  row_major_matrix huge(1, 2);
  huge << -3e38f, 3e38f;
  CHECK(contains(message_of([&] { onebit::rtn(huge, {1, 0, false}); }), "overflows float"));
  CHECK(contains(message_of([&] { onebit::rtn(huge, {2, 0, false}); }), "overflows float"));
  CHECK_NOTHROW(onebit::rtn(huge, {2, 0, true}));
  // from_codes checks its codes, scales and zeros.
  const std::uint8_t q[4] = {0, 1, 2, 4};
  const float s[1] = {1.0f}, z[1] = {std::numeric_limits<float>::infinity()};
  CHECK(contains(message_of([&] { onebit::lowbit_matrix::from_codes(q, 1, 4, 4, 2, 0, s, nullptr); }),
                 "code 4 at (0, 3) does not fit in 2 bits"));
  CHECK(contains(message_of([&] { onebit::lowbit_matrix::from_codes(q, 1, 4, 4, 3, 0, s, z); }),
                 "not finite"));
  CHECK(contains(message_of([&] { onebit::lowbit_matrix::from_codes(q, 1, 4, 4, 3, 0, nullptr, z); }),
                 "null scales"));
}

namespace {

// Σ(ŵ − w)² of one row group of m against w, in double from the dequantised floats.
double group_error(const row_major_matrix& w, const onebit::lowbit_matrix& m, std::size_t r,
                   std::size_t g) {
  const std::size_t G = m.group_size(), c1 = std::min(m.cols(), (g + 1) * G);
  double e = 0;
  for (std::size_t c = g * G; c < c1; ++c) {
    const double d = static_cast<double>(m.dequantized(r, c)) -
                     w(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
    e += d * d;
  }
  return e;
}

// The clipping search by brute force, independently of the header: for f = k/80, k = 80 down to
// 20, the grid of §3 on the range shrunk by f (s from f·(max − min) or f·max|w|, z from f·min),
// codes by round-half-even, the error of the float ŵ; the first least error wins. Returns s, z.
std::pair<float, float> clip_oracle(const std::vector<double>& v, int bits, bool symmetric) {
  const double mn = *std::min_element(v.begin(), v.end()), mx = *std::max_element(v.begin(), v.end());
  const double levels = std::pow(2.0, bits) - 1, half_levels = std::pow(2.0, bits - 1) - 1;
  std::pair<float, float> best{0.0f, 0.0f};
  double best_error = std::numeric_limits<double>::infinity();
  for (int k = 80; k >= 20; --k) {
    const double f = k / 80.0;
    float s = static_cast<float>(symmetric ? std::max(std::fabs(mn), std::fabs(mx)) * f / half_levels
                                           : (mx - mn) * f / levels);
    if (s == 0.0f) s = std::numeric_limits<float>::denorm_min();
    const float z = symmetric ? static_cast<float>(half_levels + 1)
                              : static_cast<float>(round_half_even(-mn * f / s));
    double e = 0;
    for (double x : v) {
      const double r = round_half_even(x / s);
      const double q = symmetric ? std::clamp(r, -half_levels, half_levels) + z
                                 : std::clamp(r + z, 0.0, levels);
      const double d = static_cast<double>(static_cast<float>(static_cast<double>(s) * (q - z))) - x;
      e += d * d;
    }
    if (e < best_error) {
      best_error = e;
      best = {s, z};
    }
  }
  return best;
}

}  // namespace

// Off by default, and off is plain RTN bit for bit (the oracle cases above run with the
// default). On: every group's squared error at most plain RTN's on the same grid (the search
// includes f = 1), strictly below for most groups of heavy-tailed (Student-t, 3 degrees of
// freedom) weights at 2 and 3 bits, and s, z those of the brute-force search; bits 2, 3, 4, 8,
// per row and groups 7 and 32 (of 70: a shorter last group), symmetric and asymmetric.
TEST_CASE("rtn clip search: never above plain RTN's error, equals plain RTN when off") {
  CHECK(onebit::rtn_options{}.clip_search == false);
  std::mt19937_64 rng(1717);
  std::student_t_distribution<double> t3(3.0);
  const std::size_t rows = 12, cols = 70;
  row_major_matrix w(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = static_cast<float>(0.02 * t3(rng));
  for (int bits : {2, 3, 4, 8})
    for (std::size_t group : {std::size_t{0}, std::size_t{7}, std::size_t{32}})
      for (bool symmetric : {false, true}) {
        CAPTURE(bits);
        CAPTURE(group);
        CAPTURE(symmetric);
        onebit::rtn_options plain{bits, group, symmetric};
        onebit::rtn_options clip = plain;
        clip.clip_search = true;
        const onebit::lowbit_matrix a = onebit::rtn(w, plain), b = onebit::rtn(w, clip);
        CHECK(check_against_oracle(w, bits, group, symmetric) == 0);
        std::size_t above = 0, below = 0, mismatched = 0, groups = 0;
        for (std::size_t r = 0; r < rows; ++r)
          for (std::size_t g = 0; g < a.groups_per_row(); ++g) {
            const double ea = group_error(w, a, r, g), eb = group_error(w, b, r, g);
            above += eb > ea;
            below += eb < ea;
            const std::size_t c0 = g * a.group_size(), c1 = std::min(cols, c0 + a.group_size());
            std::vector<double> v;
            for (std::size_t c = c0; c < c1; ++c)
              v.push_back(w(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)));
            const auto [s, z] = clip_oracle(v, bits, symmetric);
            mismatched += b.scale(r, g) != s || b.zero(r, g) != z;
            ++groups;
          }
        MESSAGE("W", bits, " group ", group, std::string(symmetric ? " symmetric" : " asymmetric"), ": clip search below plain RTN on ",
                below, " of ", groups, " groups");
        CHECK(above == 0);
        CHECK(mismatched == 0);
        if (bits <= 3) CHECK(below * 2 > groups);
      }
  // Constant groups stay exact (group 1: every value reproduced).
  onebit::rtn_options one{3, 1, false};
  one.clip_search = true;
  const row_major_matrix d = onebit::dequantized(onebit::rtn(w, one));
  CHECK(d == w);
}

}  // namespace test_rtn
