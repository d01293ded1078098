// Target regions: code between ONEBIT_TARGET_*_BEGIN and ONEBIT_TARGET_END is compiled for
// that instruction set whatever -march the consumer used, so a plain -O2 build still carries
// the AVX-512 bodies and cpu.hpp picks one at run time (the simdjson scheme). Intrinsics
// headers are included outside the regions: g++ and clang declare every intrinsic whatever the
// flags, and a function may only use one from inside a region that enables it.
#pragma once

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define ONEBIT_X86 1
#include <immintrin.h>
#else
#define ONEBIT_X86 0
#endif

#if defined(__aarch64__) || defined(_M_ARM64)
#define ONEBIT_ARM64 1
#include <arm_neon.h>
#else
#define ONEBIT_ARM64 0
#endif

#if defined(__clang__)
#define ONEBIT_DETAIL_PRAGMA(x) _Pragma(#x)
#define ONEBIT_TARGET_BEGIN(features) \
  ONEBIT_DETAIL_PRAGMA(clang attribute push(__attribute__((target(features))), apply_to = function))
#define ONEBIT_TARGET_END _Pragma("clang attribute pop")
#elif defined(__GNUC__)
// g++ 12 reports the _mm512_undefined_* operands inside its own intrinsics, once inlined into
// a target region, as uninitialised (a false positive): silenced for the region only.
#define ONEBIT_DETAIL_PRAGMA(x) _Pragma(#x)
#define ONEBIT_TARGET_BEGIN(features)                                               \
  _Pragma("GCC push_options") ONEBIT_DETAIL_PRAGMA(GCC target(features))            \
      _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"") \
          _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define ONEBIT_TARGET_END _Pragma("GCC diagnostic pop") _Pragma("GCC pop_options")
#else
#error "onebit needs g++ or clang (target regions select instruction sets per function)"
#endif

// Full unrolling of the short constant loops over rows, batch rows and table groups in the hot
// kernels: without it g++ keeps the accumulator arrays in memory instead of registers.
#define ONEBIT_UNROLL _Pragma("GCC unroll 16")

// The feature strings of each path, kept here so cpu.hpp and the kernels agree on them.
#define ONEBIT_FEATURES_SSE41 "sse4.1,popcnt"
#define ONEBIT_FEATURES_AVX2 "avx2,fma,f16c,bmi2,popcnt"
#define ONEBIT_FEATURES_AVX512 "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,bmi2,popcnt"
#define ONEBIT_FEATURES_AVX512_ICL \
  ONEBIT_FEATURES_AVX512 ",avx512vpopcntdq,avx512vnni,avx512vbmi,avx512bitalg"
