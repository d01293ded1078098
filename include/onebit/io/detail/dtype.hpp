// The element types of safetensors, with their names in files and their sizes in bits, and the
// exact conversions of the floating-point ones to float.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string_view>
#include <type_traits>

#include "../../half.hpp"

namespace onebit::io {

// Every dtype of the safetensors format: the classic ones, the 8-bit floats, and the sub-byte
// floats (F4 packs two elements per byte, F6 four per three bytes; a tensor of them must fill
// whole bytes). C64 is a complex of two F32.
enum class dtype {
  BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64,
  C64, F4, F6_E2M3, F6_E3M2,
};

inline constexpr dtype all_dtypes[] = {
    dtype::BOOL, dtype::U8,  dtype::I8,   dtype::F8_E5M2, dtype::F8_E4M3, dtype::F8_E8M0,
    dtype::I16,  dtype::U16, dtype::F16,  dtype::BF16,    dtype::I32,     dtype::U32,
    dtype::F32,  dtype::F64, dtype::I64,  dtype::U64,     dtype::C64,     dtype::F4,
    dtype::F6_E2M3, dtype::F6_E3M2};

// The name a file uses, e.g. "F16".
constexpr const char* to_string(dtype t) noexcept {
  switch (t) {
    case dtype::BOOL: return "BOOL";
    case dtype::U8: return "U8";
    case dtype::I8: return "I8";
    case dtype::F8_E5M2: return "F8_E5M2";
    case dtype::F8_E4M3: return "F8_E4M3";
    case dtype::F8_E8M0: return "F8_E8M0";
    case dtype::I16: return "I16";
    case dtype::U16: return "U16";
    case dtype::F16: return "F16";
    case dtype::BF16: return "BF16";
    case dtype::I32: return "I32";
    case dtype::U32: return "U32";
    case dtype::F32: return "F32";
    case dtype::F64: return "F64";
    case dtype::I64: return "I64";
    case dtype::U64: return "U64";
    case dtype::C64: return "C64";
    case dtype::F4: return "F4";
    case dtype::F6_E2M3: return "F6_E2M3";
    case dtype::F6_E3M2: return "F6_E3M2";
  }
  return "?";
}

inline std::optional<dtype> parse_dtype(std::string_view name) noexcept {
  for (dtype t : all_dtypes)
    if (name == to_string(t)) return t;
  return std::nullopt;
}

// Bits of one element.
constexpr unsigned dtype_bits(dtype t) noexcept {
  switch (t) {
    case dtype::BOOL:
    case dtype::U8:
    case dtype::I8:
    case dtype::F8_E5M2:
    case dtype::F8_E4M3:
    case dtype::F8_E8M0: return 8;
    case dtype::I16:
    case dtype::U16:
    case dtype::F16:
    case dtype::BF16: return 16;
    case dtype::I32:
    case dtype::U32:
    case dtype::F32: return 32;
    case dtype::F64:
    case dtype::I64:
    case dtype::U64:
    case dtype::C64: return 64;
    case dtype::F4: return 4;
    case dtype::F6_E2M3:
    case dtype::F6_E3M2: return 6;
  }
  return 8;
}

namespace detail {

// Little-endian loads that need no alignment.
template <class T>
T load_le(const unsigned char* p) noexcept {
  std::make_unsigned_t<T> v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    v = static_cast<std::make_unsigned_t<T>>(v | (static_cast<std::make_unsigned_t<T>>(p[i]) << (8 * i)));
  T out;
  std::memcpy(&out, &v, sizeof out);
  return out;
}

inline float float_from_bits(std::uint32_t bits) noexcept {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// OCP FP8 E4M3 ("FN": no infinities; S.1111.111 is NaN), bias 7, subnormals kept.
inline float f8_e4m3_to_float(unsigned char b) noexcept {
  const bool negative = (b & 0x80) != 0;
  const unsigned exponent = (b >> 3) & 15u, mantissa = b & 7u;
  float v;
  if (exponent == 15 && mantissa == 7)
    v = std::numeric_limits<float>::quiet_NaN();
  else if (exponent == 0)
    v = static_cast<float>(mantissa) * 0x1p-9f;  // 2^-6 * m/8
  else
    v = (1.0f + static_cast<float>(mantissa) / 8.0f) *
        float_from_bits(static_cast<std::uint32_t>(exponent - 7 + 127) << 23);
  return negative ? -v : v;
}

// FP8 E5M2 is the top byte of an IEEE binary16.
inline float f8_e5m2_to_float(unsigned char b) noexcept {
  return to_float(half::from_bits(static_cast<std::uint16_t>(b << 8)));
}

// E8M0: a power of two 2^(b - 127); 0xFF is NaN.
inline float f8_e8m0_to_float(unsigned char b) noexcept {
  if (b == 0xff) return std::numeric_limits<float>::quiet_NaN();
  if (b == 0) return 0x1p-127f;  // below float's normal range: a subnormal, exact
  return float_from_bits(static_cast<std::uint32_t>(b) << 23);
}

inline float bf16_to_float(std::uint16_t bits) noexcept {
  return float_from_bits(static_cast<std::uint32_t>(bits) << 16);
}

}  // namespace detail

}  // namespace onebit::io
