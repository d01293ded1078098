// RTN: round-to-nearest uniform quantisation of a rows x cols (out x in) matrix to k bits, with
// a scale and zero point per row or per group of G inputs of a row (ALGORITHMS.md §3).
//
// For each group, with min and max its smallest and largest values, and levels = 2^k − 1:
//
//   asymmetric  s = (max − min) / levels,   z = round(−min / s),
//               q = clamp(round(w / s) + z, 0, levels)
//   symmetric   s = max|w| / (2^(k−1) − 1),  q − z = clamp(round(w / s), −(2^(k−1) − 1),
//               2^(k−1) − 1), with z = 2^(k−1) (k >= 2)
//   and         ŵ = s·(q − z)                                (lowbit_matrix::dequantized)
//
// Exactly, so that a scalar evaluation in double reproduces every code:
//  * s is computed in double from the float min and max and stored as float; z and q are then
//    computed in double from the stored s (so the stored s, z and q agree with each other);
//  * round is round-to-nearest, ties to even (std::nearbyint in the default rounding mode);
//  * a constant group (max = min = v) is represented exactly: s = |v| (1 if v = 0), which the
//    formulas turn into q − z = ±1 (or 0);
//  * an s that underflows to 0 becomes the smallest float subnormal;
//  * a group whose range, or whose ŵ, overflows float throws std::invalid_argument.
// Within a group, every w with w/s + z in [−1/2, levels + 1/2] is within s/2 of ŵ (plus ŵ's
// float rounding); the rest of [min, max] (at most s/2 beyond, from rounding z) within s.
//
// Optional clipping search (rtn_options::clip_search, ALGORITHMS.md §3): the same formulas on
// the range shrunk by the factor that minimises the group's Σ(ŵ − w)²; the bounds above then
// hold on the shrunk range only.
//
// Bad input — bits outside 1..8 (2..8 symmetric), group > cols (0 means per row), zero sizes, a
// null pointer, a short stride, NaN or infinity (named by position): std::invalid_argument.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "../cpu.hpp"
#include "../detail/target.hpp"
#include "../half.hpp"
#include "../bfloat16.hpp"
#include "../detail/matrix_rows.hpp"
#include "../lowbit_matrix.hpp"
#include "matrix.hpp"

namespace onebit {

struct rtn_options {
  int bits = 4;            // 1..8 (2..8 symmetric)
  std::size_t group = 0;   // inputs per group; 0: one group per row
  bool symmetric = false;  // z = 2^(bits−1), s from max|w|
  // Per group, the range [min, max] (symmetric: max|w|) shrunk by the factor f of
  // 1, 1 − 1/80, ..., 1/4 (steps of 0.0125) whose grid gives the least Σ(ŵ − w)²; the first
  // such factor wins, so f = 1 (plain RTN) unless a smaller one is strictly better. Off: RTN
  // bit for bit.
  bool clip_search = false;
  // The instruction-set path of the code kernels (every path gives the same codes); unset:
  // ONEBIT_ISA, else the best (cpu.hpp). A path this CPU lacks throws std::invalid_argument.
  std::optional<isa> path = std::nullopt;
};

namespace detail::quant {

struct rtn_group {
  float s, z;
};

// s and z of one group of n finite values, by the rules above.
inline rtn_group rtn_parameters(const float* w, std::size_t n, int bits, bool symmetric) noexcept {
  float mn = w[0], mx = w[0];
  for (std::size_t i = 1; i < n; ++i) {
    mn = w[i] < mn ? w[i] : mn;
    mx = w[i] > mx ? w[i] : mx;
  }
  rtn_group p{1.0f, 0.0f};
  if (mx == mn) {
    p.s = mn == 0.0f ? 1.0f : std::fabs(mn);
  } else if (symmetric) {
    const double m = std::fmax(std::fabs(static_cast<double>(mn)), std::fabs(static_cast<double>(mx)));
    p.s = static_cast<float>(m / static_cast<double>((1 << (bits - 1)) - 1));
  } else {
    p.s = static_cast<float>((static_cast<double>(mx) - static_cast<double>(mn)) /
                             static_cast<double>((1 << bits) - 1));
  }
  if (p.s == 0.0f) p.s = std::numeric_limits<float>::denorm_min();
  if (symmetric)
    p.z = static_cast<float>(1 << (bits - 1));
  else
    p.z = static_cast<float>(std::nearbyint(-static_cast<double>(mn) / static_cast<double>(p.s)));
  return p;
}

// Σ(ŵ − w)² of one group on the grid (s, z), with the codes rtn_codes_body gives (the same
// double arithmetic) and ŵ rounded to float as lowbit_matrix::dequantized rounds it.
inline double rtn_group_error(const float* w, std::size_t n, rtn_group p, int bits,
                              bool symmetric) noexcept {
  const double s = p.s, z = p.z, m = static_cast<double>((1 << (bits - 1)) - 1);
  const double top = static_cast<double>((1 << bits) - 1);
  double e = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double r = std::nearbyint(static_cast<double>(w[i]) / s);
    const double q = symmetric ? (r < -m ? -m : r > m ? m : r) + z
                               : (r + z < 0.0 ? 0.0 : r + z > top ? top : r + z);
    const double d = static_cast<double>(static_cast<float>(s * (q - z))) - w[i];
    e += d * d;
  }
  return e;
}

// rtn_options::clip_search: s and z of the best shrunk range. The factors are k/80 for k = 80
// down to 20, exact in double; k = 80 is rtn_parameters itself, so the result's error is never
// above plain RTN's. A constant group is already exact and is not searched.
inline rtn_group rtn_clipped_parameters(const float* w, std::size_t n, int bits,
                                        bool symmetric) noexcept {
  rtn_group best = rtn_parameters(w, n, bits, symmetric);
  float mn = w[0], mx = w[0];
  for (std::size_t i = 1; i < n; ++i) {
    mn = w[i] < mn ? w[i] : mn;
    mx = w[i] > mx ? w[i] : mx;
  }
  if (mx == mn) return best;
  double best_error = rtn_group_error(w, n, best, bits, symmetric);
  const double absmax = std::fmax(std::fabs(static_cast<double>(mn)), std::fabs(static_cast<double>(mx)));
  for (int k = 79; k >= 20; --k) {
    const double f = k / 80.0;
    rtn_group p{1.0f, 0.0f};
    if (symmetric) {
      p.s = static_cast<float>(absmax * f / static_cast<double>((1 << (bits - 1)) - 1));
    } else {
      p.s = static_cast<float>((static_cast<double>(mx) - static_cast<double>(mn)) * f /
                               static_cast<double>((1 << bits) - 1));
    }
    if (p.s == 0.0f) p.s = std::numeric_limits<float>::denorm_min();
    p.z = symmetric ? static_cast<float>(1 << (bits - 1))
                    : static_cast<float>(std::nearbyint(-static_cast<double>(mn) * f /
                                                        static_cast<double>(p.s)));
    const double e = rtn_group_error(w, n, p, bits, symmetric);
    if (e < best_error) {
      best_error = e;
      best = p;
    }
  }
  return best;
}

// The codes of one group into q, and the smallest and largest code. One body, compiled twice:
// on x86-64 without SSE4.1 std::nearbyint is a library call per weight; in the SSE4.1 region
// both compilers inline it as roundsd (round to nearest even, no exception).
struct code_range {
  unsigned lo, hi;
};
// Always inlined, so that each wrapper below compiles it for its own instruction set.
template <bool Symmetric>
__attribute__((always_inline)) inline code_range rtn_codes_body(const float* w, std::size_t n, rtn_group p, int bits,
                          std::uint8_t* q) noexcept {
  const double s = p.s, z = p.z;
  // Symmetric: clamp round(w/s) to ±m, then add z; asymmetric: add z, then clamp to [0, top].
  const double m = static_cast<double>((1 << (bits - 1)) - 1);
  const double lo = Symmetric ? -m : 0.0, hi = Symmetric ? m : static_cast<double>((1 << bits) - 1);
  const double before = Symmetric ? 0.0 : z, after = Symmetric ? z : 0.0;
  code_range range{255, 0};
  for (std::size_t i = 0; i < n; ++i) {
    double code = std::nearbyint(static_cast<double>(w[i]) / s) + before;
    code = (code < lo ? lo : code > hi ? hi : code) + after;
    const unsigned c = static_cast<unsigned>(code);
    q[i] = static_cast<std::uint8_t>(c);
    range.lo = c < range.lo ? c : range.lo;
    range.hi = c > range.hi ? c : range.hi;
  }
  return range;
}

template <bool Symmetric>
code_range rtn_codes_portable(const float* w, std::size_t n, rtn_group p, int bits,
                              std::uint8_t* q) noexcept {
  return rtn_codes_body<Symmetric>(w, n, p, bits, q);
}

using rtn_codes_fn = code_range (*)(const float*, std::size_t, rtn_group, int,
                                    std::uint8_t*) noexcept;

#if ONEBIT_X86
ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_SSE41)
template <bool Symmetric>
code_range rtn_codes_sse41(const float* w, std::size_t n, rtn_group p, int bits,
                           std::uint8_t* q) noexcept {
  return rtn_codes_body<Symmetric>(w, n, p, bits, q);
}
ONEBIT_TARGET_END
#endif

// The bodies per path (cpu.hpp, table_for): every x86 path runs the SSE4.1 one (the same
// code, where nearbyint is one roundsd instead of a library call), the others the portable one.
struct rtn_family {
  struct table {
    rtn_codes_fn symmetric = nullptr, asymmetric = nullptr;
  };
  static constexpr bool has(isa path) noexcept {
    return path == isa::portable || (ONEBIT_X86 != 0 && path == isa::sse41);
  }
  static table make(isa path) noexcept {
#if ONEBIT_X86
    if (path == isa::sse41) return {&rtn_codes_sse41<true>, &rtn_codes_sse41<false>};
#endif
    (void)path;
    return {&rtn_codes_portable<true>, &rtn_codes_portable<false>};
  }
};

inline rtn_codes_fn rtn_codes_for(isa path, bool symmetric) noexcept {
  const rtn_family::table& t = table_for<rtn_family>(path);
  return symmetric ? t.symmetric : t.asymmetric;
}

template <class T>
lowbit_matrix rtn_run(const T* w, std::size_t rows, std::size_t cols, std::size_t row_stride,
                      const rtn_options& o) {
  static_assert(is_weight_type<T>, "rtn: W is float, half or bfloat16");
  lowbit_matrix m = lowbit_access::make("rtn", rows, cols, o.bits, o.group, o.symmetric);
  check_matrix("rtn", w, rows, cols, row_stride);
  const std::size_t G = m.group_size(), groups = m.groups_per_row();
  float* scales = lowbit_access::scales(m);
  float* zeros = lowbit_access::zeros(m);
  row_reader<T> reader(w, cols, row_stride);
  std::vector<std::uint8_t> q(cols);
  const rtn_codes_fn codes = rtn_codes_for(resolve_isa(o.path), o.symmetric);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* x = reader.row(r);
    for (std::size_t c = 0; c < cols; ++c)
      if (!std::isfinite(x[c])) throw std::invalid_argument(nonfinite_message("rtn", x, r, rows, cols));
    for (std::size_t g = 0; g < groups; ++g) {
      const std::size_t c0 = g * G, n = cols - c0 < G ? cols - c0 : G;
      const rtn_group p = o.clip_search ? rtn_clipped_parameters(x + c0, n, o.bits, o.symmetric)
                                        : rtn_parameters(x + c0, n, o.bits, o.symmetric);
      auto fail = [&](const char* what) {
        throw std::invalid_argument("onebit::rtn: group " + std::to_string(g) + " of row " +
                                    std::to_string(r) + " of a " + shape_string(rows, cols) +
                                    " matrix: " + what);
      };
      if (!std::isfinite(p.s)) fail("its range overflows float");
      const code_range range = codes(x + c0, n, p, o.bits, q.data() + c0);
      for (unsigned code : {range.lo, range.hi})
        if (!std::isfinite(static_cast<float>(static_cast<double>(p.s) *
                                              (code - static_cast<double>(p.z)))))
          fail("a dequantised value overflows float");
      scales[r * groups + g] = p.s;
      zeros[r * groups + g] = p.z;
    }
    lowbit_access::set_row_codes(m, r, q.data());
  }
  return m;
}

}  // namespace detail::quant

// W (rows x cols, row-major, rows row_stride elements apart; float, half or bfloat16) quantised
// to options.bits bits per row or per group.
template <class T>
lowbit_matrix rtn(const T* w, std::size_t rows, std::size_t cols, std::size_t row_stride,
                  const rtn_options& options = {}) {
  return detail::quant::rtn_run(w, rows, cols, row_stride, options);
}
inline lowbit_matrix rtn(const Eigen::Ref<const row_major_matrix>& w,
                         const rtn_options& options = {}) {
  return rtn(w.data(), static_cast<std::size_t>(w.rows()), static_cast<std::size_t>(w.cols()),
             static_cast<std::size_t>(w.outerStride()), options);
}

}  // namespace onebit
