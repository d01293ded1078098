// Activation quantisation for the integer kernels, exactly as ALGORITHMS.md §4 says, so every
// integer technique and instruction set starts from the same integers and gives the same bits:
//
//  * a = x ⊙ g in float (half input converted exactly first; one rounding per product);
//  * int8, per batch row: m = max_i |a_i|; q_i = clamp(nearbyint(a_i · (127 / m)), −127, 127)
//    with 127 / m computed once in float and the current rounding mode (round-half-to-even by
//    default); the integer sums Σ_i q_i W_ji are exact, and y_j = (float(Σ) · (m / 127)) · h_j.
//    m = 0 gives y = 0. A non-finite m (NaN or infinite activations) gives q = 0 and scale NaN,
//    so that row of y is NaN: an integer kernel cannot represent it.
//  * binary, per batch row: β = mean_i |a_i| (summed left to right in float), s_i = sign(a_i)
//    (sign(0) = sign(−0) = +1), y_j = (float(n − 2·popcount(s XOR W_j)) · β) · h_j.
//
// Against exact math, int8 errs by at most |h_j| · (m / 254) · n (each q_i is within half a
// step of a_i · 127 / m), far less on average.
//
// The integers are also laid out for the kernels: the 8 two's-complement bit-planes of q (plane
// p holds bit p of every q_i, in the row layout of W: bit i % 8 of byte i / 8), and for binary
// one plane of sign bits; bits past `cols` are 0, so padding bits of W meet zeros.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

namespace onebit::kernels::quantize {

struct int8_row {
  float scale;        // m / 127 (0 when m = 0, NaN when m is not finite)
  std::int32_t sum;   // Σ_i q_i
};

// a[0, n) = x ⊙ g, one rounding per product, the first step of every prepare. a may be x
// (in place); no other overlap.
inline void hadamard(const float* x, const float* g, std::size_t n, float* a) noexcept {
  for (std::size_t i = 0; i < n; ++i) a[i] = x[i] * g[i];
}

// q[0, n) from a[0, n); q past n is the caller's (zeroed by prepare).
inline int8_row int8(const float* a, std::size_t n, std::int8_t* q) noexcept {
  float m = 0.0f;
  bool finite = true;
  for (std::size_t i = 0; i < n; ++i) {
    const float v = std::fabs(a[i]);
    finite = finite && v <= std::numeric_limits<float>::max();  // false for inf and NaN
    m = v > m ? v : m;
  }
  if (!finite) {
    std::memset(q, 0, n);
    return {std::numeric_limits<float>::quiet_NaN(), 0};
  }
  if (m == 0.0f) {
    std::memset(q, 0, n);
    return {0.0f, 0};
  }
  const float inverse = 127.0f / m;
  std::int32_t sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    float r = std::nearbyint(a[i] * inverse);
    r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
    q[i] = static_cast<std::int8_t>(r);
    sum += q[i];
  }
  return {m / 127.0f, sum};
}

// β = Σ|a_i| / n, summed left to right.
inline float binary_scale(const float* a, std::size_t n) noexcept {
  float total = 0.0f;
  for (std::size_t i = 0; i < n; ++i) total += std::fabs(a[i]);
  return total / static_cast<float>(n);
}

// The 8 bit-planes of q[0, n), plane p at planes + p * plane_stride; every byte of each plane
// (plane_stride of them) is written, bits past n as 0.
inline void int8_planes(const std::int8_t* q, std::size_t n, unsigned char* planes,
                        std::size_t plane_stride) noexcept {
  std::memset(planes, 0, 8 * plane_stride);
  for (std::size_t i = 0; i < n; ++i) {
    const auto bits = static_cast<unsigned>(static_cast<std::uint8_t>(q[i]));
    for (unsigned p = 0; p < 8; ++p)
      planes[p * plane_stride + i / 8] |= static_cast<unsigned char>(((bits >> p) & 1u) << (i % 8));
  }
}

// Sign bits of a[0, n) (1 for a_i < 0, so sign(±0) = +1), and the plane of valid columns.
inline void sign_plane(const float* a, std::size_t n, unsigned char* plane,
                       std::size_t plane_bytes) noexcept {
  std::memset(plane, 0, plane_bytes);
  for (std::size_t i = 0; i < n; ++i)
    plane[i / 8] |= static_cast<unsigned char>((a[i] < 0.0f ? 1u : 0u) << (i % 8));
}
inline void valid_plane(std::size_t n, unsigned char* plane, std::size_t plane_bytes) noexcept {
  std::memset(plane, 0, plane_bytes);
  std::memset(plane, 0xff, n / 8);
  if (n % 8) plane[n / 8] = static_cast<unsigned char>((1u << (n % 8)) - 1u);
}

// Σ_i q_i W_ji from the bit-plane counts popcount(P_p AND w) of one row: Σ_{W=−1} q_i =
// Σ_p c_p·count_p with c_p = 2^p for p < 7 and c_7 = −128 (two's complement), and the dot is
// Σq − 2·that.
inline std::int64_t int8_dot(std::int32_t q_sum, const std::uint64_t (&count)[8]) noexcept {
  std::int64_t negative = -static_cast<std::int64_t>(count[7] << 7);
  for (int p = 0; p < 7; ++p) negative += static_cast<std::int64_t>(count[p] << p);
  return q_sum - 2 * negative;
}

// y_j from an exact integer dot, in the order §4 fixes.
inline float scale_dot(std::int64_t dot, float row_scale, float h) noexcept {
  return (static_cast<float>(dot) * row_scale) * h;
}

}  // namespace onebit::kernels::quantize
