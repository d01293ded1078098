// The engine's attention for a block of queries that share one key/value head, and SwiGLU's
// gate, per instruction-set path: the two loops of llama::forward_tokens that are not products.
//
// A block is up to 8 queries of one key/value head: the query heads of a group (grouped-query
// attention) and consecutive tokens of a prompt, ordered so that their lengths never decrease.
// Each key tile and value row is loaded once for the whole block instead of once per query,
// and the products, divisions and exps run 8 or 16 lanes wide. Each query's values are run.c's
// bit for bit: every score, softmax sum and output is summed in run.c's order, products are
// never fused into the adds, and exp is glibc's expf (vector_exp.hpp). The portable body is
// run.c's loops as written, so there the compiler's own contraction setting applies.
#pragma once

#include "../../cpu.hpp"
#include "../../detail/target.hpp"
#include "vector_exp.hpp"

#include <cmath>
#include <cstddef>

namespace onebit::llama::detail {

// The queries of one block and where their results go. keys: the key/value head's key tiles
// (state's layout: component i of position t at [(t / 16 · head_size + i) · 16 + t % 16]);
// values: its rows of head_size. att[j]: scratch of at least len rounded up to 16 floats, left
// holding query j's softmax weights. len[j] is query j's number of positions, non-decreasing
// in j.
struct attention_block {
  static constexpr std::size_t capacity = 8;
  const float* q[capacity];
  float* out[capacity];
  float* att[capacity];
  std::size_t len[capacity];
  std::size_t count = 0;
  const float* keys = nullptr;
  const float* values = nullptr;
  std::size_t head_size = 0;
  float scale = 1.0f;  // the scores are divided by it (run.c: sqrt(head_size))
};

struct attention_kernels {
  void (*attend)(const attention_block&) noexcept = nullptr;
  void (*silu_mul)(float* hb, const float* hb2, std::size_t n) noexcept = nullptr;
  std::size_t max_queries = 1;  // a block's queries on this path
  isa body_path = isa::portable;
};

// ---------------------------------------------------------------- portable: run.c's loops
namespace portable_attention {
struct ops {
  using vec = float;
  using mask = bool;
  static constexpr std::size_t width = 1;
  static constexpr std::size_t max_queries = 1;
  static constexpr std::size_t chains = 16;
  static constexpr std::size_t value_accumulators = 8;
  static vec load(const float* p) noexcept { return *p; }
  static void store(float* p, vec v) noexcept { *p = v; }
  static vec load_masked(mask m, const float* p) noexcept { return m ? *p : 0.0f; }
  static void store_masked(float* p, mask m, vec v) noexcept {
    if (m) *p = v;
  }
  static mask first(std::size_t rem) noexcept { return rem > 0; }
  static vec set1(float v) noexcept { return v; }
  static vec zero() noexcept { return 0.0f; }
  static vec add(vec a, vec b) noexcept { return a + b; }
  static vec sub(vec a, vec b) noexcept { return a - b; }
  static vec mul(vec a, vec b) noexcept { return a * b; }
  static vec div(vec a, vec b) noexcept { return a / b; }
  static vec max(vec a, vec b) noexcept { return b > a ? b : a; }
  static float hmax(vec a) noexcept { return a; }
  static vec exp(vec a) noexcept { return std::exp(a); }
  static vec add_product(vec acc, vec a, vec b) noexcept { return acc + a * b; }
};
#include "attention_simd.inl"
}  // namespace portable_attention

#if ONEBIT_X86

// The product goes through an empty asm so the compiler cannot fuse it into the add (g++
// contracts intrinsics too under -ffp-contract=fast, its default outside ISO mode).
#define ONEBIT_DETAIL_UNFUSED(p) __asm__("" : "+v"(p))

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX2)
namespace avx2_attention {
struct ops {
  using vec = __m256;
  using mask = __m256i;
  static constexpr std::size_t width = 8;
  static constexpr std::size_t max_queries = 4;  // 16 registers: 8 accumulators + operands
  static constexpr std::size_t chains = 8;
  static constexpr std::size_t value_accumulators = 8;
  static vec load(const float* p) noexcept { return _mm256_loadu_ps(p); }
  static void store(float* p, vec v) noexcept { _mm256_storeu_ps(p, v); }
  static vec load_masked(mask m, const float* p) noexcept { return _mm256_maskload_ps(p, m); }
  static void store_masked(float* p, mask m, vec v) noexcept { _mm256_maskstore_ps(p, m, v); }
  static mask first(std::size_t rem) noexcept {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rem)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static vec set1(float v) noexcept { return _mm256_set1_ps(v); }
  static vec zero() noexcept { return _mm256_setzero_ps(); }
  static vec add(vec a, vec b) noexcept { return _mm256_add_ps(a, b); }
  static vec sub(vec a, vec b) noexcept { return _mm256_sub_ps(a, b); }
  static vec mul(vec a, vec b) noexcept { return _mm256_mul_ps(a, b); }
  static vec div(vec a, vec b) noexcept { return _mm256_div_ps(a, b); }
  static vec max(vec a, vec b) noexcept { return _mm256_max_ps(a, b); }
  static float hmax(vec a) noexcept {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
  static vec exp(vec a) noexcept { return expf_avx2(a); }
  static vec add_product(vec acc, vec a, vec b) noexcept {
    vec p = _mm256_mul_ps(a, b);
    ONEBIT_DETAIL_UNFUSED(p);
    return _mm256_add_ps(acc, p);
  }
};
#include "attention_simd.inl"
}  // namespace avx2_attention
ONEBIT_TARGET_END

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)
namespace avx512_attention {
struct ops {
  using vec = __m512;
  using mask = __mmask16;
  static constexpr std::size_t width = 16;
  static constexpr std::size_t max_queries = 8;
  static constexpr std::size_t chains = 8;
  static constexpr std::size_t value_accumulators = 16;
  static vec load(const float* p) noexcept { return _mm512_loadu_ps(p); }
  static void store(float* p, vec v) noexcept { _mm512_storeu_ps(p, v); }
  static vec load_masked(mask m, const float* p) noexcept { return _mm512_maskz_loadu_ps(m, p); }
  static void store_masked(float* p, mask m, vec v) noexcept { _mm512_mask_storeu_ps(p, m, v); }
  static mask first(std::size_t rem) noexcept { return static_cast<mask>((1u << rem) - 1u); }
  static vec set1(float v) noexcept { return _mm512_set1_ps(v); }
  static vec zero() noexcept { return _mm512_setzero_ps(); }
  static vec add(vec a, vec b) noexcept { return _mm512_add_ps(a, b); }
  static vec sub(vec a, vec b) noexcept { return _mm512_sub_ps(a, b); }
  static vec mul(vec a, vec b) noexcept { return _mm512_mul_ps(a, b); }
  static vec div(vec a, vec b) noexcept { return _mm512_div_ps(a, b); }
  static vec max(vec a, vec b) noexcept { return _mm512_max_ps(a, b); }
  static float hmax(vec a) noexcept {
    const __m256 h = _mm256_max_ps(_mm512_castps512_ps256(a),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
  static vec exp(vec a) noexcept { return expf_avx512(a); }
  static vec add_product(vec acc, vec a, vec b) noexcept {
    vec p = _mm512_mul_ps(a, b);
    ONEBIT_DETAIL_UNFUSED(p);
    return _mm512_add_ps(acc, p);
  }
};
#include "attention_simd.inl"
}  // namespace avx512_attention
ONEBIT_TARGET_END

#undef ONEBIT_DETAIL_UNFUSED

#endif  // ONEBIT_X86

// The bodies per path (cpu.hpp, table_for): AVX-512 (avx512_icl takes it), AVX2 + FMA, and
// run.c's loops everywhere else (sse41, neon, portable).
struct attention_family {
  using table = attention_kernels;
  static constexpr bool has(isa path) noexcept {
    return path == isa::portable || (ONEBIT_X86 != 0 && (path == isa::avx2 || path == isa::avx512));
  }
  static table make(isa path) noexcept {
#if ONEBIT_X86
    if (path == isa::avx512)
      return {&avx512_attention::attend_simd, &avx512_attention::silu_mul_simd,
              avx512_attention::ops::max_queries, path};
    if (path == isa::avx2)
      return {&avx2_attention::attend_simd, &avx2_attention::silu_mul_simd,
              avx2_attention::ops::max_queries, path};
#endif
    (void)path;
    return {&portable_attention::attend_simd, &portable_attention::silu_mul_simd,
            portable_attention::ops::max_queries, isa::portable};
  }
};

// The kernels of `path` (or the nearest path with bodies of its own).
inline const attention_kernels& attention_kernels_for(isa path) noexcept {
  return onebit::detail::table_for<attention_family>(path);
}

}  // namespace onebit::llama::detail
