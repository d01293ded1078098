// half.hpp: the storage type, the scalar conversions against independent references (ldexp
// decoding, double arithmetic, and the F16C instructions where the CPU has them), and every
// bulk path this CPU runs against the scalar conversions, bit for bit.
#include <onebit/half.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define ONEBIT_TEST_GUARD_PAGES 1
#else
#define ONEBIT_TEST_GUARD_PAGES 0
#endif

namespace test_half {

namespace {

using onebit::half;

std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float float_of(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

std::string hex(std::uint32_t v, int digits) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%0*x", digits, static_cast<unsigned>(v));
  return text;
}

std::uint64_t splitmix(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The NaN rule of half.hpp, written out as the specification the hardware is checked against.
std::uint32_t expected_nan_float_bits(std::uint16_t h) {
  return (static_cast<std::uint32_t>(h & 0x8000u) << 16) | 0x7fc00000u |
         (static_cast<std::uint32_t>(h & 0x3ffu) << 13);
}
std::uint16_t expected_nan_half_bits(std::uint32_t f) {
  return static_cast<std::uint16_t>(((f >> 16) & 0x8000u) | 0x7e00u | ((f >> 13) & 0x3ffu));
}

// The value of a non-NaN half from its fields, with no bit tricks: (-1)^s * 2^(e-15) * 1.m for
// normals, (-1)^s * 2^-14 * 0.m for subnormals.
double decoded(std::uint16_t h) {
  const double sign = (h & 0x8000u) ? -1.0 : 1.0;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  if (exponent == 0x1f) return sign * std::numeric_limits<double>::infinity();
  if (exponent == 0) return sign * std::ldexp(static_cast<double>(mantissa), -24);
  return sign * std::ldexp(static_cast<double>(1024 + mantissa), exponent - 25);
}

// float -> half by value in double arithmetic: find the spacing of halves at |f|, count the
// spacings, round that count to nearest even by comparing with the midpoint, then encode.
std::uint16_t reference_half_bits(float f) {
  if (std::isnan(f)) return expected_nan_half_bits(bits_of(f));
  const std::uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(f));
  if (a >= 65520.0) return sign | 0x7c00;
  int e = 0;
  std::frexp(a, &e);  // a in [2^(e-1), 2^e): halves there are 2^(e-11) apart, but never < 2^-24
  int q = e - 11;
  if (q < -24) q = -24;
  const double count = std::ldexp(a, -q);  // exact: a power-of-two scaling of a float
  double units = std::floor(count);
  const double fraction = count - units;
  if (fraction > 0.5 || (fraction == 0.5 && std::fmod(units, 2.0) != 0.0)) units += 1.0;
  if (units == 0.0) return sign;
  if (units == 2048.0) {  // rounded up into the next binade
    units = 1024.0;
    ++q;
  }
  if (units < 1024.0) return static_cast<std::uint16_t>(sign | static_cast<unsigned>(units));
  const int biased = q + 25;  // units in [1024, 2048): value = 1.m * 2^(q + 10)
  if (biased >= 31) return sign | 0x7c00;
  return static_cast<std::uint16_t>(sign | (biased << 10) | (static_cast<int>(units) - 1024));
}

// The instructions themselves, one value at a time, as an oracle independent of the library's
// bulk bodies.
#if ONEBIT_X86
ONEBIT_TARGET_BEGIN("avx,f16c")
std::uint16_t f16c_half_bits(float f) noexcept {
  const __m128i h = _mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return static_cast<std::uint16_t>(_mm_extract_epi16(h, 0));
}
std::uint32_t f16c_float_bits(std::uint16_t h) noexcept {
  return static_cast<std::uint32_t>(
      _mm_cvtsi128_si32(_mm_castps_si128(_mm_cvtph_ps(_mm_cvtsi32_si128(h)))));
}
ONEBIT_TARGET_END
bool have_f16c() { return onebit::cpu().f16c; }
#else
std::uint16_t f16c_half_bits(float) noexcept { return 0; }
std::uint32_t f16c_float_bits(std::uint16_t) noexcept { return 0; }
bool have_f16c() { return false; }
#endif

void note_missing_f16c() {
  if (!have_f16c()) MESSAGE("no F16C on this CPU or build: the comparison with it is skipped");
}

// One bulk implementation: the public dispatching functions (path unset) or the public
// ones forced onto one path.
struct bulk_path {
  std::string name;
  std::optional<onebit::isa> path;
  void to_float(const half* src, float* dst, std::size_t n) const {
    if (path)
      onebit::to_float(src, dst, n, *path);
    else
      onebit::to_float(src, dst, n);
  }
  void to_half(const float* src, half* dst, std::size_t n) const {
    if (path)
      onebit::to_half(src, dst, n, *path);
    else
      onebit::to_half(src, dst, n);
  }
};

// The dispatching functions, and every path this CPU runs forced on its own (which covers
// every body: each path runs its own or its fallback's).
std::vector<bulk_path> bulk_paths() {
  namespace d = onebit::detail;
  std::vector<bulk_path> paths;
  paths.push_back({"dispatch", std::nullopt});
  for (onebit::isa path : onebit::all_isas) {
    if (!onebit::supports(path)) {
      MESSAGE("skipped path ", std::string(onebit::to_string(path)), ": this CPU or build lacks ",
              d::missing_features(path, onebit::cpu()));
      continue;
    }
    const onebit::isa body = d::table_for<d::half_family>(path).body_path;
    paths.push_back({std::string(onebit::to_string(path)) + " (" + onebit::to_string(body) +
                         " body)",
                     path});
  }
  return paths;
}

TEST_CASE("bulk conversions obey a forced path and refuse one the CPU lacks") {
  std::vector<half> h(3, onebit::to_half(1.5f));
  std::vector<float> f(3);
  for (onebit::isa path : onebit::all_isas) {
    CAPTURE(onebit::to_string(path));
    if (onebit::supports(path)) {
      onebit::to_float(h.data(), f.data(), f.size(), path);
      CHECK(f[2] == 1.5f);
    } else {
      CHECK_THROWS_AS(onebit::to_float(h.data(), f.data(), f.size(), path), std::invalid_argument);
      CHECK_THROWS_AS(onebit::to_half(f.data(), h.data(), f.size(), path), std::invalid_argument);
    }
  }
}

// A pointer `offset` elements past a 64-byte boundary inside `storage`.
template <class T>
T* at_offset(std::vector<T>& storage, std::size_t offset) {
  auto address = reinterpret_cast<std::uintptr_t>(storage.data());
  address = (address + 63) & ~std::uintptr_t{63};
  return reinterpret_cast<T*>(address) + offset;
}

// Bulk and scalar agree on every element of src; reports the first difference.
void check_bulk_to_half(const bulk_path& path, const std::vector<float>& src) {
  std::vector<half> got(src.size());
  path.to_half(src.data(), got.data(), src.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    const half want = onebit::to_half(src[i]);
    if (got[i] != want) {
      FAIL_CHECK(path.name << " to_half(" << hex(bits_of(src[i]), 8)
                           << ") = " << hex(got[i].bits, 4) << ", scalar " << hex(want.bits, 4));
      return;
    }
  }
}

// -- the type ------------------------------------------------------------------------------

TEST_CASE("half is two bytes of plain storage with bitwise equality") {
  static_assert(sizeof(half) == 2);
  static_assert(std::is_trivially_copyable_v<half>);
  static_assert(std::is_standard_layout_v<half>);
  static_assert(half::from_bits(0x3c00).bits == 0x3c00);
  static_assert(half{}.bits == 0, "a value-initialised half is +0");
  static_assert(onebit::detail::half_bits_from_float_bits(0x3f800000u) == 0x3c00, "1.0");
  static_assert(onebit::detail::float_bits_from_half_bits(0x0001) == 0x33800000u, "2^-24");

  const half nan = half::from_bits(0x7e00);
  CHECK(nan == half::from_bits(0x7e00));  // same bits: equal, though IEEE says unordered
  CHECK(nan != half::from_bits(0x7e01));  // a different NaN
  CHECK(half::from_bits(0x0000) != half::from_bits(0x8000));  // +0 and -0 differ as bits
  CHECK(to_float(half::from_bits(0x0000)) == to_float(half::from_bits(0x8000)));
  std::vector<half> zeros(3);
  for (half h : zeros) CHECK(h.bits == 0);
}

// -- half -> float -------------------------------------------------------------------------

TEST_CASE("to_float is exact for all 65536 half bit patterns") {
  int nans = 0;
  for (std::uint32_t i = 0; i < 0x10000; ++i) {
    const auto h = static_cast<std::uint16_t>(i);
    const std::uint32_t got = bits_of(onebit::to_float(half::from_bits(h)));
    const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    // decoded() is exact in double and every half is a float, so the cast is exact too; bits
    // compare the sign of zero as well.
    const std::uint32_t want =
        is_nan ? expected_nan_float_bits(h) : bits_of(static_cast<float>(decoded(h)));
    if (got != want) {
      FAIL_CHECK("to_float(" << hex(h, 4) << ") = " << hex(got, 8) << ", want " << hex(want, 8));
      break;
    }
    nans += is_nan;
  }
  CHECK(nans == 2 * 1023);
}

TEST_CASE("to_half(to_float(h)) gives h back for every half; a NaN comes back quiet") {
  for (std::uint32_t i = 0; i < 0x10000; ++i) {
    const auto h = static_cast<std::uint16_t>(i);
    const std::uint16_t back = onebit::to_half(onebit::to_float(half::from_bits(h))).bits;
    const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    const std::uint16_t want = is_nan ? static_cast<std::uint16_t>(h | 0x0200) : h;
    if (back != want) {
      FAIL_CHECK(hex(h, 4) << " came back as " << hex(back, 4));
      break;
    }
  }
}

TEST_CASE("half NaNs: sign and payload kept, signalling ones quieted") {
  struct row {
    std::uint16_t h;
    std::uint32_t f;
  };
  // Observed from vcvtph2ps on a Skylake-X-class CPU; the rule in half.hpp.
  const row rows[] = {{0x7e00, 0x7fc00000u}, {0xfe00, 0xffc00000u}, {0x7c01, 0x7fc02000u},
                      {0x7d00, 0x7fe00000u}, {0xfc01, 0xffc02000u}, {0x7fff, 0x7fffe000u},
                      {0xfdff, 0xffffe000u}};
  for (const row& r : rows) {
    CAPTURE(hex(r.h, 4));
    CHECK(bits_of(onebit::to_float(half::from_bits(r.h))) == r.f);
  }
}

TEST_CASE("to_float equals vcvtph2ps for all 65536 half bit patterns") {
  note_missing_f16c();
  if (!have_f16c()) return;
  for (std::uint32_t i = 0; i < 0x10000; ++i) {
    const auto h = static_cast<std::uint16_t>(i);
    const std::uint32_t got = bits_of(onebit::to_float(half::from_bits(h)));
    if (got != f16c_float_bits(h)) {
      FAIL_CHECK(hex(h, 4) << ": " << hex(got, 8) << ", F16C " << hex(f16c_float_bits(h), 8));
      break;
    }
  }
}

TEST_CASE("bulk half -> float equals the scalar conversion for all 65536 patterns") {
  std::vector<half> all(0x10000);
  for (std::uint32_t i = 0; i < 0x10000; ++i)
    all[i] = half::from_bits(static_cast<std::uint16_t>(i));
  for (const bulk_path& path : bulk_paths()) {
    CAPTURE(path.name);
    std::vector<float> got(all.size());
    path.to_float(all.data(), got.data(), all.size());
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (bits_of(got[i]) != bits_of(onebit::to_float(all[i]))) {
        FAIL_CHECK(hex(all[i].bits, 4) << " -> " << hex(bits_of(got[i]), 8));
        break;
      }
    }
  }
}

// -- float -> half: named cases ------------------------------------------------------------

TEST_CASE("to_half at every named boundary and tie") {
  struct row {
    float f;
    std::uint16_t h;
    const char* what;
  };
  const float inf = std::numeric_limits<float>::infinity();
  const auto below = [](float f) { return std::nextafter(f, 0.0f); };
  const auto above = [](float f) { return std::nextafter(f, 2.0f * f); };
  const row rows[] = {
      {0.0f, 0x0000, "+0"},
      {-0.0f, 0x8000, "-0 keeps its sign"},
      {1.0f, 0x3c00, "1"},
      {-1.0f, 0xbc00, "-1"},
      {1.0f / 3.0f, 0x3555, "1/3"},
      {0.1f, 0x2e66, "0.1"},
      // Ties between neighbours in [1, 2), spacing 2^-10.
      {1.0f + std::ldexp(1.0f, -11), 0x3c00, "1 + 2^-11: tie, to even 0x3c00 (down)"},
      {1.0f + std::ldexp(3.0f, -11), 0x3c02, "1 + 3*2^-11: tie, to even 0x3c02 (up)"},
      {above(1.0f + std::ldexp(1.0f, -11)), 0x3c01, "just above the tie after 1"},
      {below(1.0f + std::ldexp(1.0f, -11)), 0x3c00, "just below the tie after 1"},
      {-(1.0f + std::ldexp(3.0f, -11)), 0xbc02, "negative tie, to even"},
      {2.0f - std::ldexp(1.0f, -11), 0x4000, "2 - 2^-11: tie, to even 2.0 in the next binade"},
      {2049.0f, 0x6800, "2049: tie between 2048 and 2050, to 2048"},
      {2051.0f, 0x6802, "2051: tie between 2050 and 2052, to 2052"},
      // The top of the range.
      {65504.0f, 0x7bff, "65504, the largest finite half"},
      {65519.0f, 0x7bff, "65519 rounds down"},
      {below(65520.0f), 0x7bff, "the largest float below 65520 rounds down"},
      {65520.0f, 0x7c00, "65520: tie between 65504 (odd) and 2^16 (even): infinity"},
      {-65520.0f, 0xfc00, "-65520: -infinity"},
      {65536.0f, 0x7c00, "2^16 overflows"},
      {std::numeric_limits<float>::max(), 0x7c00, "FLT_MAX overflows"},
      {inf, 0x7c00, "+inf"},
      {-inf, 0xfc00, "-inf"},
      // The bottom: subnormal halves are multiples of 2^-24.
      {std::ldexp(1.0f, -14), 0x0400, "2^-14, the smallest normal half"},
      {below(std::ldexp(1.0f, -14)), 0x0400, "just below 2^-14 rounds up to it"},
      {std::ldexp(1023.0f, -24), 0x03ff, "the largest subnormal half"},
      {std::ldexp(2047.0f, -25), 0x0400, "tie between 0x03ff and 0x0400, to even 0x0400"},
      {std::ldexp(2045.0f, -25), 0x03fe, "tie between 0x03fe and 0x03ff, to even 0x03fe"},
      {std::ldexp(1.0f, -24), 0x0001, "2^-24, the smallest subnormal half"},
      {std::ldexp(3.0f, -25), 0x0002, "3*2^-25: tie between 1 and 2 units, to 2"},
      {std::ldexp(5.0f, -25), 0x0002, "5*2^-25: tie between 2 and 3 units, to 2"},
      {std::ldexp(1.0f, -25), 0x0000, "2^-25: tie between 0 and 2^-24, to 0"},
      {-std::ldexp(1.0f, -25), 0x8000, "-2^-25: to -0"},
      {above(std::ldexp(1.0f, -25)), 0x0001, "just above 2^-25 rounds to 2^-24"},
      {below(std::ldexp(1.0f, -25)), 0x0000, "just below 2^-25 rounds to 0"},
      {std::ldexp(1.0f, -60), 0x0000, "far below: 0"},
      {std::numeric_limits<float>::min(), 0x0000, "FLT_MIN: 0"},
      {float_of(0x007fffffu), 0x0000, "the largest float subnormal: 0"},
      {std::numeric_limits<float>::denorm_min(), 0x0000, "the smallest float subnormal: 0"},
      {-std::numeric_limits<float>::denorm_min(), 0x8000, "a negative float subnormal: -0"},
  };
  for (const row& r : rows) {
    CAPTURE(r.what);
    CAPTURE(hex(bits_of(r.f), 8));
    CHECK(onebit::to_half(r.f).bits == r.h);
    CHECK(reference_half_bits(r.f) == r.h);
    if (have_f16c()) CHECK(f16c_half_bits(r.f) == r.h);
  }
  note_missing_f16c();
}

TEST_CASE("to_half at every midpoint between consecutive halves, and one float either side") {
  // Midpoints of neighbours lo, hi are floats (12 significant bits), and the one just above
  // (below) a midpoint is the nearest float to it, so this covers every rounding decision at
  // its sharpest. The last pair is 65504 and 2^16, which is infinity.
  int checked = 0;
  for (std::uint16_t sign : {std::uint16_t{0}, std::uint16_t{0x8000}}) {
    for (std::uint16_t m = 0; m <= 0x7bff; ++m) {
      const auto lo = static_cast<std::uint16_t>(sign | m);
      const auto hi = static_cast<std::uint16_t>(lo + 1);  // 0x7c00 after 0x7bff: infinity
      const double lo_value = decoded(lo);
      const double hi_value = m == 0x7bff ? (sign ? -65536.0 : 65536.0) : decoded(hi);
      const auto mid = static_cast<float>((lo_value + hi_value) / 2.0);
      REQUIRE(static_cast<double>(mid) == (lo_value + hi_value) / 2.0);
      const std::uint16_t even = (lo & 1) ? hi : lo;
      const float toward_hi = std::nextafter(mid, static_cast<float>(hi_value));
      const float toward_lo = std::nextafter(mid, static_cast<float>(lo_value));
      const std::uint16_t got_mid = onebit::to_half(mid).bits;
      const std::uint16_t got_hi = onebit::to_half(toward_hi).bits;
      const std::uint16_t got_lo = onebit::to_half(toward_lo).bits;
      if (got_mid != even || got_hi != hi || got_lo != lo) {
        FAIL_CHECK("between " << hex(lo, 4) << " and " << hex(hi, 4) << ": tie -> "
                              << hex(got_mid, 4) << ", above -> " << hex(got_hi, 4) << ", below -> "
                              << hex(got_lo, 4));
        return;
      }
      if (have_f16c() && (f16c_half_bits(mid) != even || f16c_half_bits(toward_hi) != hi ||
                          f16c_half_bits(toward_lo) != lo)) {
        FAIL_CHECK("F16C disagrees between " << hex(lo, 4) << " and " << hex(hi, 4));
        return;
      }
      ++checked;
    }
  }
  CHECK(checked == 2 * 0x7c00);
}

TEST_CASE("to_half of NaNs: sign and top payload bits kept, always quiet, never infinity") {
  struct row {
    std::uint32_t f;
    std::uint16_t h;
    const char* what;
  };
  // Observed from vcvtps2ph (imm 8) on a Skylake-X-class CPU; the rule in half.hpp.
  const row rows[] = {
      {0x7fc00000u, 0x7e00, "the default quiet NaN"},
      {0xffc00000u, 0xfe00, "a negative quiet NaN"},
      {0x7fffffffu, 0x7fff, "all payload bits"},
      {0x7f800001u, 0x7e00, "signalling, payload only in the low 13 bits: quiet, not inf"},
      {0xff800001u, 0xfe00, "negative signalling, low payload"},
      {0x7f801fffu, 0x7e00, "signalling, low 13 payload bits all set: dropped"},
      {0x7f802000u, 0x7e01, "signalling, payload bit 13 kept as half bit 0"},
      {0x7fa00000u, 0x7f00, "signalling, payload bit 21 kept, quiet bit added"},
      {0xffbfffffu, 0xffff, "negative signalling, full payload"},
  };
  for (const row& r : rows) {
    CAPTURE(r.what);
    CHECK(onebit::to_half(float_of(r.f)).bits == r.h);
    if (have_f16c()) CHECK(f16c_half_bits(float_of(r.f)) == r.h);
  }
  // Every top-10 payload with both signs, both quiet states and several low parts.
  for (std::uint32_t sign : {0u, 0x80000000u})
    for (std::uint32_t top = 0; top < 0x400; ++top)
      for (std::uint32_t low : {0u, 1u, 0x1000u, 0x1fffu}) {
        const std::uint32_t f = sign | 0x7f800000u | (top << 13) | low;
        if ((f & 0x7fffffu) == 0) continue;  // infinity
        const std::uint16_t h = onebit::to_half(float_of(f)).bits;
        if (h != expected_nan_half_bits(f) || (have_f16c() && f16c_half_bits(float_of(f)) != h)) {
          FAIL_CHECK(hex(f, 8) << " -> " << hex(h, 4));
          return;
        }
      }
  note_missing_f16c();
}

// -- float -> half: sweeps -----------------------------------------------------------------

// Checks a batch of floats: scalar against the double reference and F16C, and every bulk
// path against the scalar conversion. Returns the number of disagreements (reports the first).
std::size_t sweep(const std::vector<float>& batch, const std::vector<bulk_path>& paths) {
  std::size_t wrong = 0;
  const bool f16c = have_f16c();
  for (float f : batch) {
    const std::uint16_t got = onebit::to_half(f).bits;
    const std::uint16_t want = reference_half_bits(f);
    if (got != want || (f16c && f16c_half_bits(f) != got)) {
      if (wrong++ == 0)
        FAIL_CHECK("to_half(" << hex(bits_of(f), 8) << ") = " << hex(got, 4) << ", reference "
                              << hex(want, 4) << ", F16C "
                              << (f16c ? hex(f16c_half_bits(f), 4) : std::string("-")));
    }
  }
  for (const bulk_path& path : paths) check_bulk_to_half(path, batch);
  return wrong;
}

TEST_CASE("to_half on 16.7 million floats strided through all 2^32 bit patterns") {
  // Stride 257 (odd, so every residue class of the low bits is visited) from 0 and from an
  // offset: about 16.7 million patterns over every sign, exponent and NaN class.
  const std::vector<bulk_path> paths = bulk_paths();
  note_missing_f16c();
  std::vector<float> batch;
  batch.reserve(1 << 16);
  std::size_t wrong = 0, count = 0;
  for (std::uint64_t u = 12345; u < (std::uint64_t{1} << 32); u += 257) {
    batch.push_back(float_of(static_cast<std::uint32_t>(u)));
    if (batch.size() == batch.capacity()) {
      wrong += sweep(batch, paths);
      count += batch.size();
      batch.clear();
    }
  }
  wrong += sweep(batch, paths);
  count += batch.size();
  CHECK(count > 16000000);
  CHECK(wrong == 0);
}

TEST_CASE("to_half on every low-14-bit pattern at every exponent that rounds") {
  // The rounding of a float depends on the 13 (more for subnormal halves) bits it drops and the
  // lowest one it keeps: all 2^14 of those, under several upper mantissas, at every exponent
  // from below 2^-25 to above 2^16, plus the float subnormal and NaN/inf exponents.
  const std::vector<bulk_path> paths = bulk_paths();
  std::vector<std::uint32_t> exponents;
  for (std::uint32_t e = 100; e <= 144; ++e) exponents.push_back(e);
  for (std::uint32_t e : {0u, 1u, 254u, 255u}) exponents.push_back(e);
  std::size_t wrong = 0;
  std::vector<float> batch;
  for (std::uint32_t sign : {0u, 0x80000000u})
    for (std::uint32_t e : exponents)
      for (std::uint32_t upper : {0x000u, 0x1ffu, 0x0aau, 0x155u}) {
        batch.clear();
        for (std::uint32_t low = 0; low < (1u << 14); ++low)
          batch.push_back(float_of(sign | (e << 23) | (upper << 14) | low));
        wrong += sweep(batch, paths);
      }
  CHECK(wrong == 0);
}

// -- bulk: lengths, alignment, bounds ------------------------------------------------------

std::vector<float> interesting_floats(std::size_t n, std::uint64_t seed) {
  std::vector<float> v(n);
  std::uint64_t state = seed;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t r = splitmix(state);
    const auto bits = static_cast<std::uint32_t>(r);
    switch ((r >> 32) % 4) {
      case 0:  // anything, NaNs included
        v[i] = float_of(bits);
        break;
      case 1:  // around and below the half range
        v[i] = float_of((bits & 0x8fffffffu) | 0x30000000u);
        break;
      case 2:  // ties (dropped bits exactly half) at exponents from 2^-25 to 2^15
        v[i] = float_of((bits & 0x807fe000u) |
                        static_cast<std::uint32_t>(102 + (r >> 40) % 41) << 23 | 0x1000u);
        break;
      default:  // infinities and NaNs
        v[i] = float_of((bits & 0x807fffffu) | 0x7f800000u);
        break;
    }
  }
  return v;
}

std::vector<half> interesting_halves(std::size_t n, std::uint64_t seed) {
  std::vector<half> v(n);
  std::uint64_t state = seed;
  for (half& h : v) h = half::from_bits(static_cast<std::uint16_t>(splitmix(state)));
  return v;
}

TEST_CASE("bulk conversions: every length 0..70 and some large, misaligned, within bounds") {
  constexpr std::size_t guard = 20;               // more than a 16-wide step on each side
  const std::uint32_t float_guard = 0x7fbadbadu;  // a signalling NaN no conversion produces
  const std::uint16_t half_guard = 0x7dad;        // likewise
  std::vector<std::size_t> lengths;
  for (std::size_t n = 0; n <= 70; ++n) lengths.push_back(n);
  for (std::size_t n : {127u, 128u, 129u, 1000u, 4099u}) lengths.push_back(n);

  const std::vector<bulk_path> paths = bulk_paths();
  for (const bulk_path& path : paths) {
    CAPTURE(path.name);
    for (std::size_t n : lengths) {
      CAPTURE(n);
      const std::vector<float> floats = interesting_floats(n, 1000 + n);
      const std::vector<half> halves = interesting_halves(n, 2000 + n);
      for (std::size_t src_offset = 0; src_offset < 4; ++src_offset)
        for (std::size_t dst_offset = 0; dst_offset < 4; ++dst_offset) {
          CAPTURE(src_offset);
          CAPTURE(dst_offset);
          const std::size_t room = n + 2 * guard + 64;
          {  // float -> half
            std::vector<float> src_store(room);
            std::vector<half> dst_store(room);
            float* src = at_offset(src_store, src_offset);
            half* fenced = at_offset(dst_store, dst_offset);  // guard, n results, guard
            half* dst = fenced + guard;
            std::copy(floats.begin(), floats.end(), src);
            for (std::size_t i = 0; i < n + 2 * guard; ++i) fenced[i] = half::from_bits(half_guard);
            path.to_half(src, dst, n);
            bool ok = true;
            for (std::size_t i = 0; i < guard; ++i)
              ok = ok && fenced[i].bits == half_guard && dst[n + i].bits == half_guard;
            for (std::size_t i = 0; i < n; ++i) ok = ok && dst[i] == onebit::to_half(floats[i]);
            CHECK(ok);
          }
          {  // half -> float
            std::vector<half> src_store(room);
            std::vector<float> dst_store(room);
            half* src = at_offset(src_store, src_offset);
            float* fenced = at_offset(dst_store, dst_offset);
            float* dst = fenced + guard;
            std::copy(halves.begin(), halves.end(), src);
            for (std::size_t i = 0; i < n + 2 * guard; ++i) fenced[i] = float_of(float_guard);
            path.to_float(src, dst, n);
            bool ok = true;
            for (std::size_t i = 0; i < guard; ++i)
              ok = ok && bits_of(fenced[i]) == float_guard && bits_of(dst[n + i]) == float_guard;
            for (std::size_t i = 0; i < n; ++i)
              ok = ok && bits_of(dst[i]) == bits_of(onebit::to_float(halves[i]));
            CHECK(ok);
          }
        }
    }
  }
}

#if ONEBIT_TEST_GUARD_PAGES
// One read-write page between two inaccessible ones: an array placed against either edge
// faults on the first access past that edge.
class fenced_page {
 public:
  fenced_page() : size_(static_cast<std::size_t>(sysconf(_SC_PAGESIZE))) {
    void* p = mmap(nullptr, 3 * size_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    base_ = static_cast<unsigned char*>(p);
    REQUIRE(mprotect(base_ + size_, size_, PROT_READ | PROT_WRITE) == 0);
  }
  ~fenced_page() { munmap(base_, 3 * size_); }
  fenced_page(const fenced_page&) = delete;
  fenced_page& operator=(const fenced_page&) = delete;

  std::size_t bytes() const { return size_; }
  template <class T>
  T* at_start() const {
    return reinterpret_cast<T*>(base_ + size_);
  }
  template <class T>
  T* at_end(std::size_t n) const {
    return reinterpret_cast<T*>(base_ + 2 * size_) - n;
  }

 private:
  std::size_t size_;
  unsigned char* base_ = nullptr;
};
#endif

TEST_CASE("bulk conversions touch nothing past either end (guard pages)") {
#if ONEBIT_TEST_GUARD_PAGES
  fenced_page src_page, dst_page;
  const std::size_t max_n = src_page.bytes() / sizeof(float);
  std::vector<std::size_t> lengths;
  for (std::size_t n = 0; n <= 40; ++n) lengths.push_back(n);
  for (std::size_t n : {max_n - 1, max_n}) lengths.push_back(n);
  for (const bulk_path& path : bulk_paths()) {
    CAPTURE(path.name);
    for (std::size_t n : lengths) {
      CAPTURE(n);
      const std::vector<float> floats = interesting_floats(n, 3000 + n);
      const std::vector<half> halves = interesting_halves(n, 4000 + n);
      for (bool at_end : {false, true}) {
        CAPTURE(at_end);
        float* fsrc = at_end ? src_page.at_end<float>(n) : src_page.at_start<float>();
        half* hdst = at_end ? dst_page.at_end<half>(n) : dst_page.at_start<half>();
        std::copy(floats.begin(), floats.end(), fsrc);
        path.to_half(fsrc, hdst, n);
        bool ok = true;
        for (std::size_t i = 0; i < n; ++i) ok = ok && hdst[i] == onebit::to_half(floats[i]);
        CHECK(ok);

        half* hsrc = at_end ? src_page.at_end<half>(n) : src_page.at_start<half>();
        float* fdst = at_end ? dst_page.at_end<float>(n) : dst_page.at_start<float>();
        std::copy(halves.begin(), halves.end(), hsrc);
        path.to_float(hsrc, fdst, n);
        ok = true;
        for (std::size_t i = 0; i < n; ++i)
          ok = ok && bits_of(fdst[i]) == bits_of(onebit::to_float(halves[i]));
        CHECK(ok);
      }
    }
  }
#else
  MESSAGE("no mmap on this platform: the guard-page check is skipped");
#endif
}

TEST_CASE("bulk conversions on x86-64 give the same bits whatever MXCSR holds") {
#if defined(__x86_64__) || defined(_M_X64)
  // FTZ, DAZ and each rounding mode: vcvtps2ph takes its rounding from the immediate and
  // neither flag changes a result, so the SIMD paths must still match the scalar rule.
  const std::vector<bulk_path> paths = bulk_paths();
  const std::vector<float> floats = interesting_floats(4099, 77);
  std::vector<float> tricky;
  for (std::uint32_t m = 0; m <= 0x7bff; m += 7) {  // midpoints and their neighbours
    const float mid = static_cast<float>(
        (decoded(static_cast<std::uint16_t>(m)) + decoded(static_cast<std::uint16_t>(m + 1))) /
        2.0);
    for (float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)})
      for (float s : {f, -f}) tricky.push_back(s);
  }
  for (std::uint32_t u : {0x00000001u, 0x807fffffu, 0x33000000u, 0x33000001u, 0x477ff000u})
    tricky.push_back(float_of(u));
  std::vector<float> all_inputs = floats;
  all_inputs.insert(all_inputs.end(), tricky.begin(), tricky.end());
  std::vector<half> all_halves(0x10000);
  for (std::uint32_t i = 0; i < 0x10000; ++i)
    all_halves[i] = half::from_bits(static_cast<std::uint16_t>(i));

  const unsigned saved = _mm_getcsr();
  const unsigned ftz_daz = 0x8040u;
  for (unsigned rounding : {0x0000u, 0x2000u, 0x4000u, 0x6000u}) {
    const unsigned csr = (saved & ~0x6000u) | rounding | ftz_daz;
    CAPTURE(hex(csr, 4));
    for (const bulk_path& path : paths) {
      CAPTURE(path.name);
      std::vector<half> got_halves(all_inputs.size());
      std::vector<float> got_floats(all_halves.size());
      _mm_setcsr(csr);
      path.to_half(all_inputs.data(), got_halves.data(), all_inputs.size());
      path.to_float(all_halves.data(), got_floats.data(), all_halves.size());
      _mm_setcsr(saved);
      bool ok = true;
      for (std::size_t i = 0; i < all_inputs.size(); ++i)
        ok = ok && got_halves[i] == onebit::to_half(all_inputs[i]);
      for (std::size_t i = 0; i < all_halves.size(); ++i)
        ok = ok && bits_of(got_floats[i]) == bits_of(onebit::to_float(all_halves[i]));
      CHECK(ok);
    }
  }
#else
  MESSAGE("not x86-64: MXCSR does not exist here");
#endif
}

// All 2^32 floats through the scalar conversion, the reference and every bulk path: about two
// minutes, so only on request (run with --no-skip, or -tc="*all 2^32*" --no-skip).
TEST_CASE("to_half on all 2^32 float bit patterns" * doctest::skip()) {
  const std::vector<bulk_path> paths = bulk_paths();
  std::vector<float> batch(1 << 20);
  std::size_t wrong = 0;
  for (std::uint64_t base = 0; base < (std::uint64_t{1} << 32); base += batch.size()) {
    for (std::size_t i = 0; i < batch.size(); ++i)
      batch[i] = float_of(static_cast<std::uint32_t>(base + i));
    wrong += sweep(batch, paths);
    if (wrong != 0) break;
  }
  CHECK(wrong == 0);
}

}  // namespace

}  // namespace test_half
