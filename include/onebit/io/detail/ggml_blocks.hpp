// The ggml tensor types a GGUF file may hold: their block geometry (weights per block, bytes
// per block), so that every tensor's size is checked before a byte of it is read, and the
// decoders of the block formats onebit dequantises (ggml-common.h, ggml-quants.c).
//
//   F32   1 weight,  4 bytes          F16  1 weight, 2 bytes (IEEE binary16)
//   BF16  1 weight,  2 bytes (the top half of a float)
//   Q8_0  32 weights, {fp16 d; int8 qs[32]}:            w_j = d·qs[j]
//   Q4_0  32 weights, {fp16 d; uint8 qs[16]}:           w_j = d·((qs[j] & 15) − 8),
//                                                       w_{j+16} = d·((qs[j] >> 4) − 8), j < 16
//   Q1_0  128 weights, {fp16 d; uint8 qs[16]} (18 bytes, unaligned):
//                                                       w_j = bit (j % 8) of qs[j / 8] ? +d : −d
//
// Blocks lie along a row (ne[0]), so a row of a block type needs ne[0] a multiple of its block.
// The other types below are only sized (a file holding them is read, its tensors listed and
// passed through); types not listed make the file unreadable, since their size is unknown.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../../bfloat16.hpp"
#include "../../half.hpp"

namespace onebit::io::detail {

enum class ggml_type : std::uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
  q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15,
  i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, bf16 = 30, q1_0 = 41,
};

struct ggml_geometry {
  const char* name = nullptr;  // null: a type onebit does not know the size of
  std::uint32_t block = 0;     // weights per block
  std::uint32_t bytes = 0;     // bytes per block
};

inline ggml_geometry geometry_of(std::uint32_t type) noexcept {
  switch (static_cast<ggml_type>(type)) {
    case ggml_type::f32: return {"F32", 1, 4};
    case ggml_type::f16: return {"F16", 1, 2};
    case ggml_type::q4_0: return {"Q4_0", 32, 18};
    case ggml_type::q4_1: return {"Q4_1", 32, 20};
    case ggml_type::q5_0: return {"Q5_0", 32, 22};
    case ggml_type::q5_1: return {"Q5_1", 32, 24};
    case ggml_type::q8_0: return {"Q8_0", 32, 34};
    case ggml_type::q8_1: return {"Q8_1", 32, 36};
    case ggml_type::q2_k: return {"Q2_K", 256, 84};
    case ggml_type::q3_k: return {"Q3_K", 256, 110};
    case ggml_type::q4_k: return {"Q4_K", 256, 144};
    case ggml_type::q5_k: return {"Q5_K", 256, 176};
    case ggml_type::q6_k: return {"Q6_K", 256, 210};
    case ggml_type::q8_k: return {"Q8_K", 256, 292};
    case ggml_type::i8: return {"I8", 1, 1};
    case ggml_type::i16: return {"I16", 1, 2};
    case ggml_type::i32: return {"I32", 1, 4};
    case ggml_type::i64: return {"I64", 1, 8};
    case ggml_type::f64: return {"F64", 1, 8};
    case ggml_type::bf16: return {"BF16", 1, 2};
    case ggml_type::q1_0: return {"Q1_0", 128, 18};
  }
  return {};
}

// Whether dequantize_blocks decodes the type.
constexpr bool dequantizable(std::uint32_t type) noexcept {
  switch (static_cast<ggml_type>(type)) {
    case ggml_type::f32: case ggml_type::f16: case ggml_type::bf16: case ggml_type::q8_0:
    case ggml_type::q4_0: case ggml_type::q1_0: return true;
    default: return false;
  }
}

inline std::uint16_t load_u16(const unsigned char* p) noexcept {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
inline float load_half(const unsigned char* p) noexcept {
  return to_float(half::from_bits(load_u16(p)));
}

// `count` weights (a whole number of blocks) of a dequantizable type from `src` (any
// alignment, little-endian) into `dst`.
inline void dequantize_blocks(std::uint32_t type, const unsigned char* src, std::size_t count,
                              float* dst) noexcept {
  switch (static_cast<ggml_type>(type)) {
    case ggml_type::f32:
      for (std::size_t i = 0; i < count; ++i) {
        std::uint32_t bits = static_cast<std::uint32_t>(src[4 * i]) |
                             static_cast<std::uint32_t>(src[4 * i + 1]) << 8 |
                             static_cast<std::uint32_t>(src[4 * i + 2]) << 16 |
                             static_cast<std::uint32_t>(src[4 * i + 3]) << 24;
        std::memcpy(dst + i, &bits, 4);
      }
      return;
    case ggml_type::f16:
      for (std::size_t i = 0; i < count; ++i) dst[i] = load_half(src + 2 * i);
      return;
    case ggml_type::bf16:
      for (std::size_t i = 0; i < count; ++i)
        dst[i] = to_float(bfloat16::from_bits(load_u16(src + 2 * i)));
      return;
    case ggml_type::q8_0:
      for (std::size_t b = 0; b < count / 32; ++b, src += 34) {
        const float d = load_half(src);
        for (std::size_t j = 0; j < 32; ++j)
          dst[32 * b + j] = d * static_cast<float>(static_cast<std::int8_t>(src[2 + j]));
      }
      return;
    case ggml_type::q4_0:
      for (std::size_t b = 0; b < count / 32; ++b, src += 18) {
        const float d = load_half(src);
        for (std::size_t j = 0; j < 16; ++j) {
          dst[32 * b + j] = d * static_cast<float>((src[2 + j] & 15) - 8);
          dst[32 * b + j + 16] = d * static_cast<float>((src[2 + j] >> 4) - 8);
        }
      }
      return;
    case ggml_type::q1_0:
      for (std::size_t b = 0; b < count / 128; ++b, src += 18) {
        const float d = load_half(src);
        for (std::size_t j = 0; j < 128; ++j)
          dst[128 * b + j] = ((src[2 + j / 8] >> (j % 8)) & 1u) ? d : -d;
      }
      return;
    default:
      return;
  }
}

}  // namespace onebit::io::detail
