// bfloat16 storage: the top 16 bits of an IEEE binary32 (sign, 8-bit exponent, 7-bit
// mantissa), the type trained checkpoints are often kept in. Only what the quantisers need to
// read such weights: the type, its exact conversion to float, and rounding a float to it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace onebit {

// One bfloat16 value as its bit pattern. A value-initialised bfloat16 is +0.
struct bfloat16 {
  std::uint16_t bits = 0;

  static constexpr bfloat16 from_bits(std::uint16_t b) noexcept {
    bfloat16 v;
    v.bits = b;
    return v;
  }
  // Equality of bit patterns (of storage), as for half.
  friend constexpr bool operator==(bfloat16 a, bfloat16 b) noexcept { return a.bits == b.bits; }
  friend constexpr bool operator!=(bfloat16 a, bfloat16 b) noexcept { return a.bits != b.bits; }
};

static_assert(sizeof(bfloat16) == 2 && alignof(bfloat16) == 2, "bfloat16 is two bytes");
static_assert(std::is_trivially_copyable_v<bfloat16> && std::is_standard_layout_v<bfloat16>,
              "bfloat16 is plain storage");

// Exact: a bfloat16 is a float with the low 16 mantissa bits zero (NaN payloads kept).
inline float to_float(bfloat16 v) noexcept {
  const std::uint32_t bits = static_cast<std::uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// dst[i] = to_float(src[i]) for i < n.
inline void to_float(const bfloat16* src, float* dst, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) dst[i] = to_float(src[i]);
}

// Round to nearest, ties to even; infinities kept, a NaN stays a (quiet) NaN with its sign.
inline bfloat16 to_bfloat16(float f) noexcept {
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u)  // NaN: keep sign and top payload, force quiet
    return bfloat16::from_bits(static_cast<std::uint16_t>((bits >> 16) | 0x0040u));
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return bfloat16::from_bits(static_cast<std::uint16_t>((bits + rounding) >> 16));
}

}  // namespace onebit
