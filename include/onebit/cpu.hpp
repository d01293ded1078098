// What the CPU has, which instruction-set path a kernel will take, and how to force one.
//
// The CPU is asked once (cpuid and xgetbv on x86-64; NEON is part of the aarch64 base) and the
// answer never changes, so there is no mutable global state: `cpu()` is a constant computed on
// first use. The path a call takes is, in order: the one forced for that call, else the one
// named by the environment variable ONEBIT_ISA (read once per process; for benchmarks and for
// chasing a bug), else the best this CPU runs.
#pragma once

#include <array>
#include <cstddef>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "detail/target.hpp"

#if ONEBIT_X86 && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

namespace onebit {

// Instruction-set paths, a superset of what one build can run: the x86 paths exist in x86-64
// builds, neon in aarch64 builds, portable everywhere.
enum class isa {
  portable,    // plain C++, vectorised by the compiler at the build's own architecture
  sse41,       // SSE4.1 + POPCNT
  avx2,        // AVX2 + FMA + F16C + BMI2
  avx512,      // AVX-512 F/BW/DQ/VL (Skylake-X and later)
  avx512_icl,  // AVX-512 plus VPOPCNTDQ, VNNI, VBMI, BITALG (Ice Lake, Zen 4 and later)
  neon,        // aarch64 Advanced SIMD
};

namespace detail {

// THE list of paths: every other list (names, the speed order, the fallback a kernel family
// takes where it has no body of its own) is derived from it, so a new path is one line here
// plus its features in missing_features. Fastest first; `fallback` is the path whose bodies
// run a path's code where a kernel family has none written for it (each fallback runs on
// every CPU its path runs on, so a body chosen this way never needs a feature the path lacks).
struct isa_entry {
  isa path;
  const char* name;
  isa fallback;
};

inline constexpr isa_entry isa_list[] = {
    {isa::avx512_icl, "avx512_icl", isa::avx512}, {isa::avx512, "avx512", isa::avx2},
    {isa::avx2, "avx2", isa::sse41},               {isa::sse41, "sse41", isa::portable},
    {isa::neon, "neon", isa::portable},            {isa::portable, "portable", isa::portable},
};

inline constexpr std::size_t isa_count = sizeof isa_list / sizeof isa_list[0];

constexpr const isa_entry& entry_of(isa path) noexcept {
  for (const isa_entry& e : isa_list)
    if (e.path == path) return e;
  return isa_list[isa_count - 1];  // unreachable for a value of the enum
}

constexpr std::size_t index_of(isa path) noexcept { return static_cast<std::size_t>(path); }

constexpr std::array<isa, isa_count> paths_in_list_order() noexcept {
  std::array<isa, isa_count> paths{};
  for (std::size_t i = 0; i < isa_count; ++i) paths[i] = isa_list[i].path;
  return paths;
}

// The nearest path on `path`'s fallback chain (itself first) for which `has(p)` holds; the
// chain ends at portable, which every family must have.
template <class Has>
constexpr isa nearest_with(isa path, Has has) noexcept {
  while (!has(path) && path != isa::portable) path = entry_of(path).fallback;
  return path;
}

}  // namespace detail

// Every path, fastest first.
inline constexpr std::array<isa, detail::isa_count> all_isas = detail::paths_in_list_order();

inline const char* to_string(isa path) noexcept { return detail::entry_of(path).name; }

inline std::optional<isa> parse_isa(std::string_view name) noexcept {
  for (isa path : all_isas)
    if (name == to_string(path)) return path;
  return std::nullopt;
}

struct cpu_features {
  bool sse41 = false, popcnt = false, avx = false, avx2 = false, fma = false, f16c = false,
       bmi2 = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512_vpopcntdq = false, avx512_vnni = false, avx512_vbmi = false,
       avx512_bitalg = false;
  bool neon = false;
};

namespace detail {

#if ONEBIT_X86 && (defined(__GNUC__) || defined(__clang__))
inline cpu_features query_cpu() noexcept {
  cpu_features f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
  const unsigned max_leaf = a;
  __get_cpuid(1, &a, &b, &c, &d);
  f.sse41 = (c >> 19) & 1;
  f.popcnt = (c >> 23) & 1;
  f.fma = (c >> 12) & 1;
  f.f16c = (c >> 29) & 1;
  const bool osxsave = (c >> 27) & 1;
  const bool avx_cpu = (c >> 28) & 1;
  // The OS must save the wide registers on a context switch, or using them corrupts state.
  unsigned long long xcr0 = 0;
  if (osxsave) {
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
  }
  const bool os_ymm = (xcr0 & 0x6) == 0x6;     // SSE and AVX state
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;   // plus opmask and both halves of ZMM
  f.avx = avx_cpu && os_ymm;
  f.fma = f.fma && f.avx;
  f.f16c = f.f16c && f.avx;
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = f.avx && ((b >> 5) & 1);
    f.bmi2 = (b >> 8) & 1;
    if (os_zmm) {
      f.avx512f = (b >> 16) & 1;
      f.avx512dq = (b >> 17) & 1;
      f.avx512bw = (b >> 30) & 1;
      f.avx512vl = (b >> 31) & 1;
      f.avx512_vbmi = (c >> 1) & 1;
      f.avx512_vnni = (c >> 11) & 1;
      f.avx512_bitalg = (c >> 12) & 1;
      f.avx512_vpopcntdq = (c >> 14) & 1;
    }
  }
  return f;
}
#else
inline cpu_features query_cpu() noexcept {
  cpu_features f;
  f.neon = ONEBIT_ARM64 != 0;
  return f;
}
#endif

// What a path needs that this CPU lacks, as a comma-separated list; empty if it runs.
inline std::string missing_features(isa path, const cpu_features& f) {
  std::string missing;
  auto need = [&missing](bool have, const char* name) {
    if (have) return;
    if (!missing.empty()) missing += ", ";
    missing += name;
  };
  switch (path) {
    case isa::portable: break;
    case isa::sse41:
      need(ONEBIT_X86 != 0, "an x86-64 build");
      need(f.sse41, "SSE4.1");
      need(f.popcnt, "POPCNT");
      break;
    case isa::avx2:
      need(ONEBIT_X86 != 0, "an x86-64 build");
      need(f.avx2, "AVX2");
      need(f.fma, "FMA");
      need(f.f16c, "F16C");
      need(f.bmi2, "BMI2");
      need(f.popcnt, "POPCNT");
      break;
    case isa::avx512:
      need(ONEBIT_X86 != 0, "an x86-64 build");
      need(f.avx512f, "AVX512F");
      need(f.avx512bw, "AVX512BW");
      need(f.avx512dq, "AVX512DQ");
      need(f.avx512vl, "AVX512VL");
      need(f.avx2 && f.fma && f.f16c && f.bmi2 && f.popcnt, "AVX2/FMA/F16C/BMI2/POPCNT");
      break;
    case isa::avx512_icl:
      missing = missing_features(isa::avx512, f);
      need(f.avx512_vpopcntdq, "AVX512_VPOPCNTDQ");
      need(f.avx512_vnni, "AVX512_VNNI");
      need(f.avx512_vbmi, "AVX512_VBMI");
      need(f.avx512_bitalg, "AVX512_BITALG");
      break;
    case isa::neon:
      need(ONEBIT_ARM64 != 0, "an aarch64 build");
      need(f.neon, "NEON");
      break;
  }
  return missing;
}

}  // namespace detail

// The CPU's features, asked once.
inline const cpu_features& cpu() noexcept {
  static const cpu_features features = detail::query_cpu();
  return features;
}

inline bool supports(isa path) noexcept {
  // missing_features allocates only when something is missing; it cannot throw for a
  // path that runs, and for one that does not the answer is false either way.
  try {
    return detail::missing_features(path, cpu()).empty();
  } catch (...) {
    return false;
  }
}

// Every path this CPU runs, fastest first.
inline std::vector<isa> supported_isas() {
  std::vector<isa> paths;
  for (isa path : all_isas)
    if (supports(path)) paths.push_back(path);
  return paths;
}

// The fastest path this CPU runs, asked once.
inline isa best_isa() noexcept {
  static const isa best = [] {
    for (isa path : all_isas)
      if (supports(path)) return path;
    return isa::portable;
  }();
  return best;
}

namespace detail {

// ONEBIT_ISA as read once: unset, a path name, or a name we keep to report.
struct environment_isa {
  std::optional<isa> path;
  std::string invalid;  // the raw value when it names no path
};

inline const environment_isa& isa_from_environment() {
  static const environment_isa env = [] {
    environment_isa e;
    const char* value = std::getenv("ONEBIT_ISA");
    if (value == nullptr || *value == '\0') return e;
    e.path = parse_isa(value);
    if (!e.path) e.invalid = value;
    return e;
  }();
  return env;
}

inline void require_supported(isa path, const char* source) {
  const std::string missing = missing_features(path, cpu());
  if (!missing.empty())
    throw std::invalid_argument(std::string("onebit: ") + source + " asks for the " +
                                to_string(path) + " path, but this CPU or build lacks " +
                                missing);
}

}  // namespace detail

// The path a call takes: `forced` if given, else ONEBIT_ISA, else the best. Throws
// std::invalid_argument when the chosen path cannot run here, naming what is missing.
inline isa resolve_isa(std::optional<isa> forced = std::nullopt) {
  if (forced) {
    detail::require_supported(*forced, "the call");
    return *forced;
  }
  const detail::environment_isa& env = detail::isa_from_environment();
  if (!env.invalid.empty()) {
    std::string known;
    for (isa path : all_isas) known += std::string(known.empty() ? "" : ", ") + to_string(path);
    throw std::invalid_argument("onebit: ONEBIT_ISA=\"" + env.invalid +
                                "\" names no path (known: " + known + ")");
  }
  if (env.path) {
    detail::require_supported(*env.path, "ONEBIT_ISA");
    return *env.path;
  }
  return best_isa();
}

namespace detail {

// The path of a call that cannot throw (the bulk half conversions): ONEBIT_ISA where it names
// a path this CPU runs, else the best. A bad ONEBIT_ISA makes every throwing entry point
// throw; these, which cannot, run on the best path instead (every path gives the same bits).
inline isa default_isa() noexcept {
  static const isa path = [] {
    try {
      return resolve_isa();
    } catch (...) {
      return best_isa();
    }
  }();
  return path;
}

// A kernel family's implementation table for a path, chosen once per (family, path) and
// cached in a function-local static, so a call only indexes an array. Family provides
//   struct table;                              // what a call needs: function pointers, sizes
//   static constexpr bool has(isa) noexcept;   // the paths it writes bodies for
//   static table make(isa) noexcept;           // the table of one of those paths
// and a path without bodies of its own gets those of the nearest path on its fallback chain.
template <class Family>
const typename Family::table& table_for(isa path) noexcept {
  using table = typename Family::table;
  static const std::array<table, isa_count> tables = [] {
    std::array<table, isa_count> t{};
    for (isa p : all_isas) t[index_of(p)] = Family::make(nearest_with(p, &Family::has));
    return t;
  }();
  return tables[index_of(path)];
}

}  // namespace detail

}  // namespace onebit
