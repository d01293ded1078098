// The bodies behind half.hpp: the scalar bit-level conversions (the oracle, and the rule the
// SIMD instructions follow) and one bulk body per instruction set. They work on raw binary16
// bit patterns (std::uint16_t) so that this file needs nothing from half.hpp.
//
// Every bulk body gives, element for element, exactly the bits of the scalar conversion; the
// tests run each body this CPU can run against the scalar one. None of them allocates, throws,
// or touches memory outside [src, src + n) and [dst, dst + n); src and dst must not overlap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../cpu.hpp"
#include "target.hpp"

namespace onebit::detail {

// binary16: sign bit 15, exponent bits 14..10 (bias 15), mantissa bits 9..0.
// binary32: sign bit 31, exponent bits 30..23 (bias 127), mantissa bits 22..0.
// Rebasing an exponent from binary16 to binary32 adds 127 - 15 = 112.

// Exact: every binary16 value is a binary32 value. A NaN keeps its sign and its 10 payload
// bits (moved to the top of the binary32 mantissa) and comes out quiet (bit 22 set), a
// signalling NaN included: this is what vcvtph2ps and AArch64 FCVT produce.
constexpr std::uint32_t float_bits_from_half_bits(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) {
    if (mantissa == 0) return sign | 0x7f800000u;
    return sign | 0x7fc00000u | (mantissa << 13);
  }
  if (exponent != 0) return sign | ((exponent + 112u) << 23) | (mantissa << 13);
  if (mantissa == 0) return sign;
  // A subnormal half (mantissa * 2^-24) is a normal float: shift the leading 1 up to bit 10,
  // lowering the exponent from that of 2^-14 (biased 113) once per shift.
  std::uint32_t biased = 113;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    --biased;
  }
  return sign | (biased << 23) | ((mantissa & 0x3ffu) << 13);
}

// Round to nearest, ties to even, in every range: finite values from 65520 = 65504 + half an
// ulp upwards round to infinity (65520 is a tie between 65504, odd, and 2^16, even); half
// subnormals are produced, not flushed; magnitudes up to 2^-25 (a tie between 0 and 2^-24)
// round to a zero of the input's sign. A NaN keeps its sign and the top 10 bits of its payload
// (float bits 22..13 become half bits 9..0) and is made quiet (bit 9 set), so a signalling
// NaN, or one whose payload lives only in the low 13 bits, still comes out a NaN and never
// infinity: this is what vcvtps2ph and AArch64 FCVT produce.
constexpr std::uint16_t half_bits_from_float_bits(std::uint32_t f) noexcept {
  const std::uint32_t sign = (f >> 16) & 0x8000u;
  const std::uint32_t magnitude = f & 0x7fffffffu;
  if (magnitude > 0x7f800000u)
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  if (magnitude >= 0x477ff000u)  // 65520 and above, infinity included
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  if (magnitude >= 0x38800000u) {  // [2^-14, 65520): the half is normal
    // Dropping 13 mantissa bits: adding 0xfff, plus 1 when the kept part is odd, carries into
    // the kept part exactly when the dropped bits are above half, or at half with an odd
    // kept part; a carry out of the mantissa correctly bumps the exponent.
    const std::uint32_t rebased = magnitude - (112u << 23);
    const std::uint32_t rounded = rebased + 0xfffu + ((rebased >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | (rounded >> 13));
  }
  if (magnitude <= 0x33000000u)  // at most 2^-25, float subnormals included
    return static_cast<std::uint16_t>(sign);
  // (2^-25, 2^-14): the result counts units of 2^-24. The float is m * 2^(e - 150) with the
  // implicit bit in m, that is m * 2^(e - 126) units, a right shift by 126 - e in [14, 24].
  // A result of 0x400 (rounded up to 2^-14) is the smallest normal's encoding, as it should.
  const std::uint32_t e = magnitude >> 23;
  const std::uint32_t m = (magnitude & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126u - e;
  const std::uint32_t rounded = m + ((1u << (shift - 1)) - 1u) + ((m >> shift) & 1u);
  return static_cast<std::uint16_t>(sign | (rounded >> shift));
}

inline float float_from_half_bits(std::uint16_t h) noexcept {
  const std::uint32_t bits = float_bits_from_half_bits(h);
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline std::uint16_t half_bits_from_float(float f) noexcept {
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return half_bits_from_float_bits(bits);
}

inline void halves_to_floats_scalar(const std::uint16_t* src, float* dst, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) dst[i] = float_from_half_bits(src[i]);
}

inline void floats_to_halves_scalar(const float* src, std::uint16_t* dst, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) dst[i] = half_bits_from_float(src[i]);
}

#if ONEBIT_X86

// vcvtps2ph's immediate names the rounding, so MXCSR.RC never applies; MXCSR.FTZ does not
// flush half subnormal results and MXCSR.DAZ only turns float subnormals, which round to a
// signed zero anyway, into that same zero. The x86 bodies are thus exact whatever MXCSR holds.
inline constexpr int half_rounding = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// The full-width AVX-512 conversions are written as zero-masked ones with all 16 lanes live:
// GCC 12's unmasked _mm512_cvtph_ps trips -Wmaybe-uninitialized (its _mm512_undefined_ps, GCC
// bug 105593) and its unmasked _mm512_cvtps_ph is, at -O0, a macro passing -1 as the mask,
// which -Wsign-conversion rejects. A consumer's -Werror would turn either into a build failure.
inline constexpr __mmask16 half_all_lanes = 0xffff;

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX2)

inline void halves_to_floats_avx2(const std::uint16_t* src, float* dst, std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  if (i < n) {
    // The last 1..7 go through a stack block so that no load or store passes the ends.
    alignas(16) std::uint16_t in[8] = {};
    alignas(32) float out[8];
    std::memcpy(in, src + i, (n - i) * sizeof(std::uint16_t));
    _mm256_store_ps(out, _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(in))));
    std::memcpy(dst + i, out, (n - i) * sizeof(float));
  }
}

inline void floats_to_halves_avx2(const float* src, std::uint16_t* dst, std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), half_rounding);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  if (i < n) {
    alignas(32) float in[8] = {};
    alignas(16) std::uint16_t out[8];
    std::memcpy(in, src + i, (n - i) * sizeof(float));
    _mm_store_si128(reinterpret_cast<__m128i*>(out),
                    _mm256_cvtps_ph(_mm256_load_ps(in), half_rounding));
    std::memcpy(dst + i, out, (n - i) * sizeof(std::uint16_t));
  }
}

ONEBIT_TARGET_END

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)

// The last 1..15 elements use masked loads and stores: masked-off lanes are not accessed (nor
// can they fault), so nothing outside the arrays is touched.
inline void halves_to_floats_avx512(const std::uint16_t* src, float* dst, std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm512_storeu_ps(dst + i, _mm512_maskz_cvtph_ps(half_all_lanes, h));
  }
  if (i < n) {
    const __mmask16 live = static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m256i h = _mm256_maskz_loadu_epi16(live, src + i);
    _mm512_mask_storeu_ps(dst + i, live, _mm512_maskz_cvtph_ps(live, h));
  }
}

inline void floats_to_halves_avx512(const float* src, std::uint16_t* dst, std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h =
        _mm512_maskz_cvtps_ph(half_all_lanes, _mm512_loadu_ps(src + i), half_rounding);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), h);
  }
  if (i < n) {
    const __mmask16 live = static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 f = _mm512_maskz_loadu_ps(live, src + i);
    _mm256_mask_storeu_epi16(dst + i, live, _mm512_maskz_cvtps_ph(live, f, half_rounding));
  }
}

ONEBIT_TARGET_END

#endif  // ONEBIT_X86

#if ONEBIT_ARM64

// FCVTL / FCVTN are in the aarch64 base, so no target region. Their results match the scalar
// rule under the FPCR Linux, macOS and Windows give every thread (round to nearest, DN = 0,
// AHP = 0); a thread that sets default-NaN mode gets the default NaN instead of the payload,
// and one that sets another rounding mode gets that rounding.
inline void halves_to_floats_neon(const std::uint16_t* src, float* dst, std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(src + i));
    vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
    vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
  }
  if (i < n) {
    std::uint16_t in[8] = {};
    float out[8];
    std::memcpy(in, src + i, (n - i) * sizeof(std::uint16_t));
    const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(in));
    vst1q_f32(out, vcvt_f32_f16(vget_low_f16(h)));
    vst1q_f32(out + 4, vcvt_high_f32_f16(h));
    std::memcpy(dst + i, out, (n - i) * sizeof(float));
  }
}

inline void floats_to_halves_neon(const float* src, std::uint16_t* dst, std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const float16x8_t h =
        vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(src + i)), vld1q_f32(src + i + 4));
    vst1q_u16(dst + i, vreinterpretq_u16_f16(h));
  }
  if (i < n) {
    float in[8] = {};
    std::uint16_t out[8];
    std::memcpy(in, src + i, (n - i) * sizeof(float));
    const float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(in)), vld1q_f32(in + 4));
    vst1q_u16(out, vreinterpretq_u16_f16(h));
    std::memcpy(dst + i, out, (n - i) * sizeof(std::uint16_t));
  }
}

#endif  // ONEBIT_ARM64


// The bulk bodies per path (cpu.hpp, table_for): F16C comes with the avx2 path and its
// 16-wide form with avx512, so sse41 runs the scalar loop, avx512_icl the avx512 body. A body
// runs only where its whole region string does (the compiler may use any instruction of the
// region anywhere in it), which the path's own feature check guarantees.
struct half_family {
  struct table {
    void (*to_floats)(const std::uint16_t*, float*, std::size_t) noexcept = nullptr;
    void (*to_halves)(const float*, std::uint16_t*, std::size_t) noexcept = nullptr;
    isa body_path = isa::portable;  // whose bodies these are
  };
  static constexpr bool has(isa path) noexcept {
    switch (path) {
      case isa::portable: return true;
      case isa::avx2:
      case isa::avx512: return ONEBIT_X86 != 0;
      case isa::neon: return ONEBIT_ARM64 != 0;
      default: return false;
    }
  }
  static table make(isa path) noexcept {
    switch (path) {
#if ONEBIT_X86
      case isa::avx2: return {&halves_to_floats_avx2, &floats_to_halves_avx2, path};
      case isa::avx512: return {&halves_to_floats_avx512, &floats_to_halves_avx512, path};
#endif
#if ONEBIT_ARM64
      case isa::neon: return {&halves_to_floats_neon, &floats_to_halves_neon, path};
#endif
      default: return {&halves_to_floats_scalar, &floats_to_halves_scalar, isa::portable};
    }
  }
};

}  // namespace onebit::detail
