// FP16 storage: the IEEE binary16 type the OneBit value vectors g and h are kept in, and its
// conversions to and from float, one value at a time and in bulk.
//
// The conversions are the IEEE ones and the bulk ones give exactly the bits of the scalar
// ones, so a result never depends on which CPU, instruction set or batch size produced it:
//
// * half -> float is exact. A NaN keeps its sign and its 10-bit payload (moved to the top of
//   the float mantissa) and comes out quiet.
// * float -> half rounds to nearest, ties to even. Half subnormals are kept (never flushed);
//   65520 (65504 plus half an ulp) and everything above round to infinity; the sign of zero
//   is kept. A NaN keeps its sign and the top 10 bits of its payload and comes out quiet (so
//   a signalling NaN, or one whose payload is only in the low 13 bits, stays a NaN).
//
// That NaN rule is what x86 F16C (vcvtph2ps, vcvtps2ph) and AArch64 FCVT do, so the SIMD bulk
// paths need no fix-up. A quiet half NaN therefore survives half -> float -> half unchanged;
// a signalling one comes back with its quiet bit (0x0200) set.
//
// The bulk conversions run on the path ONEBIT_ISA names or the best this CPU runs (or one
// forced per call): AVX-512 (16 at a time), AVX2/F16C (8 at a time), NEON, else a scalar
// loop. Their code is compiled in target regions, so a build without -march flags still
// carries them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "cpu.hpp"
#include "detail/half_convert.hpp"
#include "detail/target.hpp"

namespace onebit {

// One IEEE binary16 value as its bit pattern: sign bit 15, exponent bits 14..10 (bias 15),
// mantissa bits 9..0. A value-initialised half is +0.
struct half {
  std::uint16_t bits = 0;

  static constexpr half from_bits(std::uint16_t b) noexcept {
    half h;
    h.bits = b;
    return h;
  }

  // Equality is of bit patterns, not IEEE equality: a NaN equals a NaN with the same bits,
  // and +0 and -0 differ. It is the equality of storage (did these bytes change?); compare
  // to_float values for numeric equality.
  friend constexpr bool operator==(half a, half b) noexcept { return a.bits == b.bits; }
  friend constexpr bool operator!=(half a, half b) noexcept { return a.bits != b.bits; }
};

// The byte layout of every half array (files, the value vectors of a layer, SIMD loads) is
// exactly two bytes per element with nothing else in between.
static_assert(sizeof(half) == 2 && alignof(half) == 2, "half is two bytes");
static_assert(std::is_trivially_copyable_v<half> && std::is_standard_layout_v<half>,
              "half is plain storage: memcpy-able, and pointer-interconvertible with its bits");

inline float to_float(half h) noexcept { return detail::float_from_half_bits(h.bits); }

inline half to_half(float f) noexcept { return half::from_bits(detail::half_bits_from_float(f)); }

// dst[i] = to_float(src[i]) for i < n, bit for bit. Any n and alignment; src and dst must not
// overlap. Never allocates or throws. Runs on the path ONEBIT_ISA names, else the best one
// (cpu.hpp's detail::default_isa).
inline void to_float(const half* src, float* dst, std::size_t n) noexcept {
  // half is standard layout with a single uint16_t, so the arrays are arrays of bit patterns.
  detail::table_for<detail::half_family>(detail::default_isa())
      .to_floats(reinterpret_cast<const std::uint16_t*>(src), dst, n);
}

// dst[i] = to_half(src[i]) for i < n, bit for bit; as to_float above.
inline void to_half(const float* src, half* dst, std::size_t n) noexcept {
  detail::table_for<detail::half_family>(detail::default_isa())
      .to_halves(src, reinterpret_cast<std::uint16_t*>(dst), n);
}

// The same on a forced path (every path gives the same bits; this is for tests and
// benchmarks). Throws std::invalid_argument when this CPU or build cannot run `path`.
inline void to_float(const half* src, float* dst, std::size_t n, isa path) {
  detail::require_supported(path, "to_float");
  detail::table_for<detail::half_family>(path).to_floats(
      reinterpret_cast<const std::uint16_t*>(src), dst, n);
}

inline void to_half(const float* src, half* dst, std::size_t n, isa path) {
  detail::require_supported(path, "to_half");
  detail::table_for<detail::half_family>(path).to_halves(src, reinterpret_cast<std::uint16_t*>(dst),
                                                          n);
}

}  // namespace onebit
