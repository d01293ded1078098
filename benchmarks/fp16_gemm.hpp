// The FP16 baseline of the benchmarks: y = x · Wᵀ with W stored as IEEE binary16, x and y float.
//
// This is benchmark code, not library code: it exists so that every 1-bit kernel is measured
// against the strongest FP16 GEMM/GEMV we could write for this CPU, in the same binary and the
// same run. It is hand-written with intrinsics (F16C `vcvtph2ps` converts the weights, FMA
// accumulates), once for AVX-512 and once for AVX2, each in a target region so a plain `-O2`
// build (no -march) carries both and `fp16_best_path()` picks one at run time. A scalar twin is
// the fallback and the test's second opinion.
//
// Layout: W is `rows x cols` (out x in), row-major, every row padded with zeros to a multiple of
// 32 halves (64 bytes) and starting on a 64-byte boundary, so a kernel reads whole vectors of W
// past `cols` without a mask and without leaving the row. x is `batch x cols` with row stride
// `ldx` and y is `batch x rows` with row stride `ldy`, both unaligned and unpadded: the last
// vector of each x row is read with a mask, so nothing past `cols` is touched.
//
// Shape of the kernels (the dot-product form, because W is row-major out x in):
//
// * GEMV (batch 1): several rows of W per pass, each with U independent accumulators; one load
//   of x feeds every row of the pass. The chain of FMAs on an accumulator is latency bound
//   (4 cycles, 2 FMA ports), so R·U >= 8 accumulators keep both ports busy. Memory bound, so a
//   software prefetch runs a fixed distance ahead in each row (the hardware prefetcher alone
//   left 15% of the bandwidth unused at 11008x4096). The GEMM tiles prefetch the same way:
//   5-12% at batch 2-8 where W still streams, no change at batch 32-64 where FMAs bound.
// * GEMM (batch > 1): a register tile of R rows of W by B rows of x. Each 16-wide (8-wide for
//   AVX2) slice of the R rows is converted once and reused by the B rows of x, so each pass
//   does R conversions, R + B loads and R·B FMAs. The k dimension is blocked (kc) so the x
//   block (batch x kc floats) stays in L2 while the R rows of W (R x kc halves, in L1 or L2) are
//   reused across all batch rows; y accumulates across k blocks.
//
// Tuning: measured on the 2-vCPU Sapphire Rapids VM of this repository (g++ 12, -O2, one
// thread, best of 8-30 interleaved runs, thread CPU time); the tables sit above each path.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

#include <onebit/cpu.hpp>
#include <onebit/detail/target.hpp>

namespace bench {

// ---------------------------------------------------------------------------------------------
// binary16 <-> float, scalar and exact (round to nearest even; subnormals, inf and NaN kept).
// Independent of onebit/half.hpp on purpose: the baseline must not share code with the thing
// it measures.

inline std::uint16_t float_to_half_bits(float f) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7fffffffu;
  if (u >= 0x7f800000u)  // inf or NaN (NaN stays a quiet NaN with its top payload bits)
    return static_cast<std::uint16_t>(sign | 0x7c00u |
                                      (u > 0x7f800000u ? 0x200u | ((u >> 13) & 0x3ffu) : 0u));
  if (u >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520: inf
  if (u < 0x38800000u) {  // below 2^-14: a half subnormal or zero
    // Adding 0.5 puts the half subnormal ulp (2^-24) at the float ulp of 0.5, so the FPU
    // rounds to nearest even for us.
    float a;
    std::memcpy(&a, &u, 4);
    a += 0.5f;
    std::uint32_t v;
    std::memcpy(&v, &a, 4);
    return static_cast<std::uint16_t>(sign | (v - 0x3f000000u));
  }
  const std::uint32_t odd = (u >> 13) & 1u;
  u += 0xc8000fffu + odd;  // rebias the exponent (-112 << 23) and round to nearest even
  return static_cast<std::uint16_t>(sign | (u >> 13));
}

inline float half_bits_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t em = h & 0x7fffu;
  std::uint32_t u;
  if (em >= 0x7c00u) {
    u = sign | 0x7f800000u | ((em & 0x3ffu) << 13);
  } else if (em >= 0x400u) {
    u = sign | ((em << 13) + 0x38000000u);
  } else {
    const float v = static_cast<float>(em) * 5.9604644775390625e-8f;  // em * 2^-24, exact
    std::memcpy(&u, &v, 4);
    u |= sign;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---------------------------------------------------------------------------------------------
// 64-byte aligned buffers.

struct aligned_deleter {
  void operator()(void* p) const noexcept { std::free(p); }
};
template <class T>
using aligned_buffer = std::unique_ptr<T[], aligned_deleter>;

template <class T>
aligned_buffer<T> make_aligned(std::size_t count) {
  std::size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
  if (bytes == 0) bytes = 64;
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  return aligned_buffer<T>(static_cast<T*>(p));
}

// ---------------------------------------------------------------------------------------------
// The FP16 weight matrix.

class fp16_matrix {
 public:
  static constexpr std::size_t row_align = 32;  // halves: 64 bytes

  fp16_matrix() = default;
  fp16_matrix(std::size_t rows, std::size_t cols)
      : rows_(rows),
        cols_(cols),
        stride_((cols + row_align - 1) / row_align * row_align),
        data_(make_aligned<std::uint16_t>(rows * stride_)) {}

  // W(r, c) = half(w[r * row_stride + c]).
  static fp16_matrix from_dense(const float* w, std::size_t rows, std::size_t cols,
                                std::size_t row_stride) {
    fp16_matrix m(rows, cols);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c)
        m.data_[r * m.stride_ + c] = float_to_half_bits(w[r * row_stride + c]);
    return m;
  }

  fp16_matrix(const fp16_matrix& other) : fp16_matrix(other.rows_, other.cols_) {
    if (bytes() != 0) std::memcpy(data_.get(), other.data_.get(), bytes());
  }
  fp16_matrix& operator=(const fp16_matrix& other) {
    if (this != &other) *this = fp16_matrix(other);
    return *this;
  }
  fp16_matrix(fp16_matrix&&) noexcept = default;
  fp16_matrix& operator=(fp16_matrix&&) noexcept = default;

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t stride() const noexcept { return stride_; }  // in halves, a multiple of 32
  std::size_t bytes() const noexcept { return rows_ * stride_ * 2; }  // incl. padding
  const std::uint16_t* row(std::size_t r) const noexcept { return data_.get() + r * stride_; }
  std::uint16_t* row(std::size_t r) noexcept { return data_.get() + r * stride_; }
  float at(std::size_t r, std::size_t c) const noexcept {
    return half_bits_to_float(data_[r * stride_ + c]);
  }

 private:
  std::size_t rows_ = 0, cols_ = 0, stride_ = 0;
  aligned_buffer<std::uint16_t> data_;
};

// ---------------------------------------------------------------------------------------------
// Paths.

enum class fp16_path { scalar, avx2, avx512 };

inline const char* to_string(fp16_path p) noexcept {
  switch (p) {
    case fp16_path::scalar: return "scalar";
    case fp16_path::avx2: return "avx2";
    case fp16_path::avx512: return "avx512";
  }
  return "unknown";
}

// onebit's avx2 path means AVX2+FMA+F16C(+BMI2), its avx512 path AVX-512 F/BW/DQ/VL plus all
// of those: exactly what these kernels use.
inline bool fp16_supported(fp16_path p) noexcept {
  switch (p) {
    case fp16_path::scalar: return true;
    case fp16_path::avx2: return onebit::supports(onebit::isa::avx2);
    case fp16_path::avx512: return onebit::supports(onebit::isa::avx512);
  }
  return false;
}

inline fp16_path fp16_best_path() noexcept {
  if (fp16_supported(fp16_path::avx512)) return fp16_path::avx512;
  if (fp16_supported(fp16_path::avx2)) return fp16_path::avx2;
  return fp16_path::scalar;
}

namespace detail {

// Enough independent FMA chains (R·B·U >= 8) to cover FMA latency on two ports.
constexpr int unroll_for(int rows, int batch) {
  return rows * batch >= 8 ? 1 : rows * batch >= 4 ? 2 : rows * batch >= 2 ? 4 : 8;
}

// The k block: keep x's block (batch x kc floats) within about half of a 2 MiB L2. A multiple
// of 128 so every unrolled main loop ends on a block boundary.
inline std::size_t default_kc(std::size_t batch, std::size_t cols) {
  const std::size_t budget = (std::size_t{1} << 20) / sizeof(float);  // 1 MiB of x
  std::size_t kc = budget / std::max<std::size_t>(batch, 1) / 128 * 128;
  kc = std::max<std::size_t>(kc, 1024);
  return kc >= cols ? cols : kc;
}

// The loops shared by every path. K supplies `tile<R, B, U>(w, ws, x, ldx, k0, k1, y, ldy, add)`,
// which computes y[b*ldy + r] (+)= sum_{k0 <= k < k1} x[b*ldx + k] * W(r, k) for r < R, b < B,
// and the tile sizes. Calls into the target region are not inlined (different targets), which
// costs one call per tile per k block: nothing beside the kc/16 iterations inside.
template <class K, int R, int N>
inline void tile_rows_batch(int nb, const std::uint16_t* w, std::size_t ws, const float* x,
                            std::size_t ldx, std::size_t k0, std::size_t k1, float* y,
                            std::size_t ldy, bool add) {
  if constexpr (N >= 1) {
    if (nb == N)
      K::template tile<R, N, unroll_for(R, N)>(w, ws, x, ldx, k0, k1, y, ldy, add);
    else
      tile_rows_batch<K, R, N - 1>(nb, w, ws, x, ldx, k0, k1, y, ldy, add);
  }
}

template <class K>
void drive(const fp16_matrix& w, const float* x, std::size_t batch, std::size_t ldx, float* y,
           std::size_t ldy, std::size_t row_begin, std::size_t row_end, std::size_t kc) {
  const std::size_t cols = w.cols(), ws = w.stride();
  if (batch == 0 || row_begin >= row_end) return;
  if (cols == 0) {
    for (std::size_t b = 0; b < batch; ++b)
      for (std::size_t j = row_begin; j < row_end; ++j) y[b * ldy + j] = 0.0f;
    return;
  }
  if (batch == 1) {
    constexpr int R = K::gemv_rows, U = K::gemv_unroll;
    const std::size_t tiled = row_begin + (row_end - row_begin) / R * R;
    for (std::size_t j = row_begin; j < tiled; j += R)
      K::template tile<R, 1, U>(w.row(j), ws, x, ldx, 0, cols, y + j, ldy, false);
    for (std::size_t j = tiled; j < row_end; ++j)
      K::template tile<1, 1, unroll_for(1, 1)>(w.row(j), ws, x, ldx, 0, cols, y + j, ldy,
                                               false);
    return;
  }
  constexpr int R = K::gemm_rows, B = K::gemm_batch;
  if (kc == 0) kc = default_kc(batch, cols);
  kc = (kc + 127) / 128 * 128;
  const std::size_t tiled = row_begin + (row_end - row_begin) / R * R;
  for (std::size_t k0 = 0; k0 < cols; k0 += kc) {
    const std::size_t k1 = std::min(cols, k0 + kc);
    const bool add = k0 != 0;
    for (std::size_t j = row_begin; j < tiled; j += R)
      for (std::size_t b = 0; b < batch; b += B)
        tile_rows_batch<K, R, B>(static_cast<int>(std::min<std::size_t>(B, batch - b)),
                                 w.row(j), ws, x + b * ldx, ldx, k0, k1, y + b * ldy + j, ldy,
                                 add);
    for (std::size_t j = tiled; j < row_end; ++j)
      for (std::size_t b = 0; b < batch; b += B)
        tile_rows_batch<K, 1, B>(static_cast<int>(std::min<std::size_t>(B, batch - b)),
                                 w.row(j), ws, x + b * ldx, ldx, k0, k1, y + b * ldy + j, ldy,
                                 add);
  }
}

// ---------------------------------------------------------------------------------------------
// Scalar twin: the same loops, one element at a time, accumulating in double.

struct scalar_kernel {
  static constexpr int gemv_rows = 1, gemv_unroll = 1, gemm_rows = 1, gemm_batch = 1;
  template <int R, int B, int U>
  static void tile(const std::uint16_t* w, std::size_t ws, const float* x, std::size_t ldx,
                   std::size_t k0, std::size_t k1, float* y, std::size_t ldy, bool add) {
    for (int b = 0; b < B; ++b)
      for (int r = 0; r < R; ++r) {
        double s = 0.0;
        for (std::size_t k = k0; k < k1; ++k)
          s += static_cast<double>(x[b * ldx + k]) *
               static_cast<double>(half_bits_to_float(w[r * ws + k]));
        float& out = y[b * ldy + static_cast<std::size_t>(r)];
        out = add ? out + static_cast<float>(s) : static_cast<float>(s);
      }
  }
};

}  // namespace detail

#if ONEBIT_X86

// ---------------------------------------------------------------------------------------------
// AVX-512: 16 floats per vector, 32 registers.
//
// GEMV, GB/s of weights. At 4096x4096 (32 MiB, resident in this VM's large L3) every variant
// reads 28.9-29.4 GB/s, one core's L3 bandwidth. At 11008x4096 (86 MiB, partly from DRAM),
// rows x accumulators per row: 2x4 17.1, 4x2 21.9, 8x1 23.1; with a software prefetch 512 halves
// (1 KiB) ahead in each row: 4x2 25.7, 16x1 25.8, 8x1 26.5, 8x2 27.2 (kept); 256 or 1024 ahead
// did no better.
// GEMM, tile R rows x B batch rows (R·B accumulators + R converted rows + 1 x, of 32
// registers), 4096x4096, GFLOP/s at batch 16 / 64: 6x4 127 / 130 (kept), 4x6 127 / 131,
// 5x4 127 / 127, 4x5 117 / 124, 8x3 95 / 74, 3x8 90 / 68, 2x12 69 / 52. k blocks: x kept to 1 MiB
// (the rule in default_kc) beats 2048 (114 / 117) and, at in = 11008, a whole row (87 at b 64).
// For scale: this core peaks at 214 GFLOP/s of zmm FMAs, and each vcvtph2ps takes two of the
// FMA ports' uops, so a 6x4 pass (24 FMAs, 6 conversions) is bounded by 24·32 FLOP in 18 cycles,
// 143 GFLOP/s. Tried and not kept: converting each W tile to a float buffer once per k block
// and reusing it over all batch rows (110-122: the saved conversions come back as loads and
// partial-sum traffic), and a BLIS-like form with lanes over the batch and W rows converted to
// float then broadcast, no horizontal sums (134 at 4096x4096 batch 64, but 75 at 4096x11008
// and 60-100 at batch 32 or 48: x transposed no longer fits L2, and converting W outside the
// FMA stream costs 3.4 ms per 32 MiB).

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX512)
namespace detail {

// g++ folds a load that feeds several FMAs into each of them (one load per FMA instead of
// one per x row: 24 loads instead of 8 in a 3x8 tile, measured 65 against 120 GFLOP/s). An
// empty asm that claims to change the value makes it live in a register first.
inline void keep_in_register(__m512& v) noexcept { __asm__("" : "+v"(v)); }

// The horizontal sum, written out: g++ 12's _mm512_reduce_add_ps and _mm512_extractf64x4_pd
// raise a false -Wuninitialized once inlined (they start from _mm256_undefined_pd); the
// zero-masked extract does not.
inline float hsum_avx512(__m512 v) noexcept {
  const __m256 lo = _mm512_castps512_ps256(v);
  const __m256 hi =
      _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xf, _mm512_castps_pd(v), 1));
  const __m256 s8 = _mm256_add_ps(lo, hi);
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
  return _mm_cvtss_f32(s4);
}

template <int GemvRows, int GemvUnroll, int GemmRows, int GemmBatch, int Prefetch>
struct avx512_kernel_t {
  static constexpr int gemv_rows = GemvRows, gemv_unroll = GemvUnroll;
  static constexpr int gemm_rows = GemmRows, gemm_batch = GemmBatch;
  static constexpr std::size_t prefetch = Prefetch;  // halves ahead in each row of W

  template <int R, int B, int U>
  static void tile(const std::uint16_t* w, std::size_t ws, const float* x, std::size_t ldx,
                   std::size_t k0, std::size_t k1, float* y, std::size_t ldy, bool add) {
    __m512 acc[B][R][U];
#pragma GCC unroll 64
    for (int b = 0; b < B; ++b)
#pragma GCC unroll 64
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 64
        for (int u = 0; u < U; ++u) acc[b][r][u] = _mm512_setzero_ps();

    std::size_t k = k0;
    const std::size_t kmain = k0 + (k1 - k0) / (16 * U) * (16 * U);
    for (; k < kmain; k += 16 * U) {
      if constexpr (prefetch > 0) {
#pragma GCC unroll 64
        for (int r = 0; r < R; ++r)
          _mm_prefetch(reinterpret_cast<const char*>(w + static_cast<std::size_t>(r) * ws + k +
                                                     prefetch),
                       _MM_HINT_T0);
      }
#pragma GCC unroll 64
      for (int u = 0; u < U; ++u) {
        if constexpr (B < R) {
          // Fewer x rows than W rows: hold the x vectors, use each converted row at once.
          __m512 xv[B];
#pragma GCC unroll 64
          for (int b = 0; b < B; ++b) {
            xv[b] = _mm512_loadu_ps(x + static_cast<std::size_t>(b) * ldx + k + 16 * u);
            keep_in_register(xv[b]);
          }
#pragma GCC unroll 64
          for (int r = 0; r < R; ++r) {
            const __m512 wv = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(
                w + static_cast<std::size_t>(r) * ws + k + 16 * u)));
#pragma GCC unroll 64
            for (int b = 0; b < B; ++b) acc[b][r][u] = _mm512_fmadd_ps(wv, xv[b], acc[b][r][u]);
          }
        } else {
          // Hold the converted rows, stream the x rows past them.
          __m512 wv[R];
#pragma GCC unroll 64
          for (int r = 0; r < R; ++r)
            wv[r] = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(
                w + static_cast<std::size_t>(r) * ws + k + 16 * u)));
#pragma GCC unroll 64
          for (int b = 0; b < B; ++b) {
            __m512 xv = _mm512_loadu_ps(x + static_cast<std::size_t>(b) * ldx + k + 16 * u);
            keep_in_register(xv);
#pragma GCC unroll 64
            for (int r = 0; r < R; ++r) acc[b][r][u] = _mm512_fmadd_ps(wv[r], xv, acc[b][r][u]);
          }
        }
      }
    }
    // Tail, 16 at a time; x masked past k1 (W is zero-padded and a whole row long).
    for (; k < k1; k += 16) {
      const std::size_t left = k1 - k;
      const __mmask16 m =
          left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
      __m512 wv[R];
#pragma GCC unroll 64
      for (int r = 0; r < R; ++r)
        wv[r] = _mm512_cvtph_ps(_mm256_load_si256(
            reinterpret_cast<const __m256i*>(w + static_cast<std::size_t>(r) * ws + k)));
#pragma GCC unroll 64
      for (int b = 0; b < B; ++b) {
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + static_cast<std::size_t>(b) * ldx + k);
#pragma GCC unroll 64
        for (int r = 0; r < R; ++r) acc[b][r][0] = _mm512_fmadd_ps(wv[r], xv, acc[b][r][0]);
      }
    }
#pragma GCC unroll 64
    for (int b = 0; b < B; ++b)
#pragma GCC unroll 64
      for (int r = 0; r < R; ++r) {
        __m512 s = acc[b][r][0];
#pragma GCC unroll 64
        for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, acc[b][r][u]);
        float& out = y[static_cast<std::size_t>(b) * ldy + static_cast<std::size_t>(r)];
        const float v = hsum_avx512(s);
        out = add ? out + v : v;
      }
  }
};

}  // namespace detail
ONEBIT_TARGET_END

// ---------------------------------------------------------------------------------------------
// AVX2: 8 floats per vector, 16 registers.
//
// GEMV at 11008x4096, GB/s of weights: 8x1 with no prefetch 23.0; prefetching 256 halves
// ahead: 8x1 25.3 (kept); 512 ahead: 4x2 24.6, 8x1 25.1, 8x2 25.1. At 4096x4096 all 28.4-29.4.
// GEMM tiles (R·B accumulators + R converted rows + 1 x, of 16 registers), 4096x4096, GFLOP/s
// at batch 16 / 64: 3x4 86 / 87 (kept), 2x5 78 / 82, 3x3 76 / 79, 4x2 69 / 71; 4x3 needs 17
// registers and spills (47 at batch 64). AVX2 FMA peak here is 113 GFLOP/s.

ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_AVX2)
namespace detail {

inline void keep_in_register(__m256& v) noexcept { __asm__("" : "+x"(v)); }

inline float hsum_avx2(__m256 v) noexcept {
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
  return _mm_cvtss_f32(s4);
}

template <int GemvRows, int GemvUnroll, int GemmRows, int GemmBatch, int Prefetch>
struct avx2_kernel_t {
  static constexpr int gemv_rows = GemvRows, gemv_unroll = GemvUnroll;
  static constexpr int gemm_rows = GemmRows, gemm_batch = GemmBatch;
  static constexpr std::size_t prefetch = Prefetch;  // halves ahead in each row of W

  template <int R, int B, int U>
  static void tile(const std::uint16_t* w, std::size_t ws, const float* x, std::size_t ldx,
                   std::size_t k0, std::size_t k1, float* y, std::size_t ldy, bool add) {
    __m256 acc[B][R][U];
#pragma GCC unroll 64
    for (int b = 0; b < B; ++b)
#pragma GCC unroll 64
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 64
        for (int u = 0; u < U; ++u) acc[b][r][u] = _mm256_setzero_ps();

    std::size_t k = k0;
    const std::size_t kmain = k0 + (k1 - k0) / (8 * U) * (8 * U);
    for (; k < kmain; k += 8 * U) {
      if constexpr (prefetch > 0) {
#pragma GCC unroll 64
        for (int r = 0; r < R; ++r)
          _mm_prefetch(reinterpret_cast<const char*>(w + static_cast<std::size_t>(r) * ws + k +
                                                     prefetch),
                       _MM_HINT_T0);
      }
#pragma GCC unroll 64
      for (int u = 0; u < U; ++u) {
        if constexpr (B < R) {
          // Fewer x rows than W rows: hold the x vectors, use each converted row at once.
          __m256 xv[B];
#pragma GCC unroll 64
          for (int b = 0; b < B; ++b) {
            xv[b] = _mm256_loadu_ps(x + static_cast<std::size_t>(b) * ldx + k + 8 * u);
            keep_in_register(xv[b]);
          }
#pragma GCC unroll 64
          for (int r = 0; r < R; ++r) {
            const __m256 wv = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(
                w + static_cast<std::size_t>(r) * ws + k + 8 * u)));
#pragma GCC unroll 64
            for (int b = 0; b < B; ++b) acc[b][r][u] = _mm256_fmadd_ps(wv, xv[b], acc[b][r][u]);
          }
        } else {
          // Hold the converted rows, stream the x rows past them.
          __m256 wv[R];
#pragma GCC unroll 64
          for (int r = 0; r < R; ++r)
            wv[r] = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(
                w + static_cast<std::size_t>(r) * ws + k + 8 * u)));
#pragma GCC unroll 64
          for (int b = 0; b < B; ++b) {
            __m256 xv = _mm256_loadu_ps(x + static_cast<std::size_t>(b) * ldx + k + 8 * u);
            keep_in_register(xv);
#pragma GCC unroll 64
            for (int r = 0; r < R; ++r) acc[b][r][u] = _mm256_fmadd_ps(wv[r], xv, acc[b][r][u]);
          }
        }
      }
    }
    for (; k < k1; k += 8) {
      const std::size_t left = k1 - k;
      const __m256i m = _mm256_cmpgt_epi32(
          _mm256_set1_epi32(static_cast<int>(std::min<std::size_t>(left, 8))),
          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      __m256 wv[R];
#pragma GCC unroll 64
      for (int r = 0; r < R; ++r)
        wv[r] = _mm256_cvtph_ps(_mm_load_si128(
            reinterpret_cast<const __m128i*>(w + static_cast<std::size_t>(r) * ws + k)));
#pragma GCC unroll 64
      for (int b = 0; b < B; ++b) {
        const __m256 xv = _mm256_maskload_ps(x + static_cast<std::size_t>(b) * ldx + k, m);
#pragma GCC unroll 64
        for (int r = 0; r < R; ++r) acc[b][r][0] = _mm256_fmadd_ps(wv[r], xv, acc[b][r][0]);
      }
    }
#pragma GCC unroll 64
    for (int b = 0; b < B; ++b)
#pragma GCC unroll 64
      for (int r = 0; r < R; ++r) {
        __m256 s = acc[b][r][0];
#pragma GCC unroll 64
        for (int u = 1; u < U; ++u) s = _mm256_add_ps(s, acc[b][r][u]);
        float& out = y[static_cast<std::size_t>(b) * ldy + static_cast<std::size_t>(r)];
        const float v = hsum_avx2(s);
        out = add ? out + v : v;
      }
  }
};

}  // namespace detail
ONEBIT_TARGET_END

namespace detail {
using avx512_kernel = avx512_kernel_t<8, 2, 6, 4, 512>;
using avx2_kernel = avx2_kernel_t<8, 1, 3, 4, 256>;
}  // namespace detail

#endif  // ONEBIT_X86

// ---------------------------------------------------------------------------------------------
// The entry point. Computes rows [row_begin, row_end) of y for all batch rows: threads split
// the rows and share nothing but x. kc = 0 picks the k block; tests pass small ones to exercise
// the accumulation across blocks. Throws std::invalid_argument for a path this CPU lacks.

inline void fp16_gemm(const fp16_matrix& w, const float* x, std::size_t batch, std::size_t ldx,
                      float* y, std::size_t ldy, std::size_t row_begin, std::size_t row_end,
                      fp16_path path, std::size_t kc = 0) {
  if (!fp16_supported(path))
    throw std::invalid_argument(std::string("fp16_gemm: this CPU cannot run the ") +
                                to_string(path) + " path");
  switch (path) {
#if ONEBIT_X86
    case fp16_path::avx512:
      detail::drive<detail::avx512_kernel>(w, x, batch, ldx, y, ldy, row_begin, row_end, kc);
      return;
    case fp16_path::avx2:
      detail::drive<detail::avx2_kernel>(w, x, batch, ldx, y, ldy, row_begin, row_end, kc);
      return;
#else
    case fp16_path::avx512:
    case fp16_path::avx2:
#endif
    case fp16_path::scalar:
      detail::drive<detail::scalar_kernel>(w, x, batch, ldx, y, ldy, row_begin, row_end, kc);
      return;
  }
}

inline void fp16_gemm(const fp16_matrix& w, const float* x, std::size_t batch, std::size_t ldx,
                      float* y, std::size_t ldy, fp16_path path = fp16_best_path()) {
  fp16_gemm(w, x, batch, ldx, y, ldy, 0, w.rows(), path);
}

}  // namespace bench
