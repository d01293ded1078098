// add_only on every instruction-set path this CPU runs, forced one by one, on the plain layout
// and packed, against the exact formula within the bound of kernels/add_only.hpp.
#include <onebit/gemm.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_add_only {

namespace {

using onebit::isa;
using onebit::kernel;

// The bound of kernels/add_only.hpp, in units of u·S: n + 2, or 3n + 4 for the two-sum form
// of AVX-512 on the plain layout.
double bound_terms(isa path, bool plain, std::size_t n) {
  return path == isa::avx512 && plain ? 3.0 * static_cast<double>(n) + 4
                                       : static_cast<double>(n) + 2;
}
inline isa path_of(const onebit::packed_linear& p, const onebit::gemm_options*) { return p.path(); }
template <class L>
isa path_of(const L&, const onebit::gemm_options* options) { return *options->path; }

struct case_result {
  std::size_t outside_bound = 0;
  std::size_t gaps_touched = 0;
  double worst_ratio = 0;  // error / bound
};

// y of one path against the exact values; x and y strided (ldx = in + 3, ldy = out + 5) and
// unaligned (1 and 3 elements past a 64-byte boundary).
template <class T, class Layer>
case_result run_case(const Layer& layer, std::size_t out, std::size_t in, const T* x,
                     std::size_t batch, std::size_t ldx, const onebit_test::exact_result& exact,
                     const onebit::gemm_options* options) {
  const std::size_t ldy = out + 5;
  onebit_test::offset_buffer<float> y(batch * ldy, 3, -777.0f);
  if constexpr (std::is_same_v<Layer, onebit::packed_linear>) {
    (void)options;
    onebit::gemm(layer, x, batch, ldx, y.data(), ldy);
  } else {
    onebit::gemm(layer, x, batch, ldx, y.data(), ldy, *options);
  }
  case_result r;
  for (std::size_t b = 0; b < batch; ++b) {
    for (std::size_t j = 0; j < out; ++j) {
      const double got = y.data()[b * ldy + j], want = exact.y[b * out + j];
      const double bound = bound_terms(path_of(layer, options), !std::is_same_v<Layer, onebit::packed_linear>, in) *
                           std::ldexp(1.0, -24) * exact.scale[b * out + j];
      const double err = std::fabs(got - want);
      if (!(err <= bound)) ++r.outside_bound;
      if (bound > 0) r.worst_ratio = std::max(r.worst_ratio, err / bound);
    }
    for (std::size_t j = out; j < ldy && b + 1 < batch; ++j)
      r.gaps_touched += y.data()[b * ldy + j] != -777.0f;
  }
  return r;
}

template <class Word, class T>
void check_all_paths(std::size_t out, std::size_t in, std::initializer_list<std::size_t> batches) {
  auto layer = onebit_test::random_layer<Word>(out, in);
  onebit_test::fill_padding_with_garbage(layer.W);
  const std::size_t max_batch = *std::max_element(batches.begin(), batches.end());
  const std::size_t ldx = in + 3;
  onebit_test::offset_buffer<T> x(max_batch * ldx, 1);
  const std::vector<T> values = onebit_test::activations<T>(max_batch * ldx);
  std::copy(values.begin(), values.end(), x.data());
  const auto exact = onebit_test::exact_gemm(layer, x.data(), max_batch, ldx);

  for (isa path : onebit_test::runnable_paths()) {
    const onebit::gemm_options options{kernel::add_only, path};
    const onebit::packed_linear packed = onebit::pack(layer, options);
    for (std::size_t batch : batches) {
      for (bool use_packed : {false, true}) {
        const case_result r =
            use_packed ? run_case<T>(packed, out, in, x.data(), batch, ldx, exact, nullptr)
                       : run_case<T>(layer, out, in, x.data(), batch, ldx, exact, &options);
        CHECK_MESSAGE(r.outside_bound == 0, std::string(onebit::to_string(path)),
                      use_packed ? " packed " : " plain ", out, "x", in, " batch ", batch,
                      " word bits ", 8 * sizeof(Word), ": ", r.outside_bound,
                      " outputs outside the bound, worst error/bound ", r.worst_ratio);
        CHECK(r.gaps_touched == 0);
      }
    }
  }
}

constexpr std::size_t odd_sizes[] = {1, 7, 63, 64, 65, 127};

}  // namespace

TEST_CASE_TEMPLATE("add_only on every path equals the exact formula, odd shapes, float", Word,
                   std::uint8_t, std::uint16_t, std::uint32_t, std::uint64_t) {
  for (std::size_t out : odd_sizes)
    for (std::size_t in : odd_sizes) check_all_paths<Word, float>(out, in, {1, 2, 3, 5});
}

TEST_CASE("add_only on every path, batch 1 to 70, float and half") {
  for (std::size_t batch = 1; batch <= 70; batch += 1) {
    check_all_paths<std::uint64_t, float>(65, 127, {batch});
    if (batch % 7 == 1) check_all_paths<std::uint64_t, onebit::half>(33, 95, {batch});
  }
}

TEST_CASE("add_only on every path, wide and tall shapes") {
  for (std::size_t out : {1u, 7u, 64u, 65u})
    check_all_paths<std::uint64_t, onebit::half>(out, 4095, {1, 4});
  check_all_paths<std::uint32_t, float>(4095, 7, {1, 9});
  check_all_paths<std::uint64_t, float>(4097, 4097, {1});
}

TEST_CASE("padding garbage changes nothing on any path, plain or packed") {
  for (std::size_t in : {1u, 7u, 63u, 65u, 127u, 4095u}) {
    const auto clean = onebit_test::random_layer<std::uint16_t>(37, in);
    auto dirty = clean;
    onebit_test::fill_padding_with_garbage(dirty.W);
    const std::vector<float> x = onebit_test::gaussian(5 * in);
    for (isa path : onebit_test::runnable_paths()) {
      const onebit::gemm_options options{kernel::add_only, path};
      std::vector<float> y1(5 * 37), y2(5 * 37), y3(5 * 37), y4(5 * 37);
      onebit::gemm(clean, x.data(), 5, in, y1.data(), 37, options);
      onebit::gemm(dirty, x.data(), 5, in, y2.data(), 37, options);
      onebit::gemm(onebit::pack(clean, options), x.data(), 5, in, y3.data(), 37);
      onebit::gemm(onebit::pack(dirty, options), x.data(), 5, in, y4.data(), 37);
      CHECK_MESSAGE(y1 == y2, std::string(onebit::to_string(path)), " plain, in ", in);
      CHECK_MESSAGE(y3 == y4, std::string(onebit::to_string(path)), " packed, in ", in);
    }
  }
}

TEST_CASE("row ranges over random splits equal the whole call, plain and packed") {
  std::mt19937_64& rng = onebit_test::rng();
  for (std::size_t out : {1u, 17u, 100u, 301u}) {
    const auto layer = onebit_test::random_layer(out, 200);
    for (std::size_t batch : {1u, 3u, 6u}) {
      const std::vector<float> x = onebit_test::gaussian(batch * 200);
      for (isa path : onebit_test::runnable_paths()) {
        const onebit::gemm_options options{kernel::add_only, path};
        const onebit::packed_linear packed = onebit::pack(layer, options);
        for (bool use_packed : {false, true}) {
          std::vector<float> whole(batch * out), parts(batch * out, -1.0f);
          auto run_whole = use_packed
                               ? onebit::prepare(packed, x.data(), batch, 200, whole.data(), out)
                               : onebit::prepare(layer, x.data(), batch, 200, whole.data(), out,
                                                 options);
          run_whole.run();
          auto split = use_packed
                           ? onebit::prepare(packed, x.data(), batch, 200, parts.data(), out)
                           : onebit::prepare(layer, x.data(), batch, 200, parts.data(), out,
                                             options);
          CHECK(split.path() == path);
          // Random cut points, ranges run in random order.
          std::vector<std::size_t> cuts{0, out};
          std::uniform_int_distribution<std::size_t> cut(0, out);
          for (int i = 0; i < 5; ++i) cuts.push_back(cut(rng));
          std::sort(cuts.begin(), cuts.end());
          std::vector<std::size_t> order(cuts.size() - 1);
          std::iota(order.begin(), order.end(), 0);
          std::shuffle(order.begin(), order.end(), rng);
          for (std::size_t i : order) split.run_rows(cuts[i], cuts[i + 1]);
          split.run_rows(out, out + 10);  // past the end: clamped, nothing written
          CHECK_MESSAGE(whole == parts, std::string(onebit::to_string(path)), use_packed ? " packed" : " plain",
                        " out ", out, " batch ", batch);
        }
      }
    }
  }
}

TEST_CASE("a prepared product can be prepared again and reuses its memory") {
  const auto layer = onebit_test::random_layer(50, 90);
  onebit::prepared_gemm p;
  for (std::size_t batch : {4u, 1u, 3u}) {
    const std::vector<float> x = onebit_test::gaussian(batch * 90);
    std::vector<float> y1(batch * 50), y2(batch * 50);
    p.prepare(layer, x.data(), batch, 90, y1.data(), 50);
    p.run();
    onebit::gemm(layer, x.data(), batch, 90, y2.data(), 50);
    CHECK(y1 == y2);
    CHECK(p.batch() == batch);
    CHECK(p.chosen_kernel() == kernel::add_only);
  }
}

TEST_CASE("automatic is add_only on the best path; infinities pass through exactly") {
  auto layer = onebit_test::random_layer(40, 70);
  for (auto& g : layer.g) g = onebit::to_half(1.0f);
  for (auto& h : layer.h) h = onebit::to_half(1.0f);
  std::vector<float> x(70, 0.5f), y(40);
  x[13] = std::numeric_limits<float>::infinity();
  const auto p = onebit::prepare(layer, x.data(), 1, 70, y.data(), 40);
  CHECK(p.path() == onebit::resolve_isa());
  // This test is built without any -march flag: the path it ran is the best the CPU has.
  MESSAGE("automatic ran add_only on the ", std::string(onebit::to_string(p.path())),
          " path; best on this CPU: ", std::string(onebit::to_string(onebit::best_isa())));
  if (std::getenv("ONEBIT_ISA") == nullptr) CHECK(p.path() == onebit::best_isa());
  CHECK(p.chosen_kernel() == kernel::add_only);
  for (isa path : onebit_test::runnable_paths()) {
    for (bool use_packed : {false, true}) {
      const onebit::gemm_options options{kernel::add_only, path};
      if (use_packed)
        onebit::gemv(onebit::pack(layer, options), x.data(), y.data());
      else
        onebit::gemv(layer, x.data(), y.data(), options);
      for (std::size_t j = 0; j < 40; ++j)
        CHECK_MESSAGE(y[j] == layer.W(j, 13) * x[13], std::string(onebit::to_string(path)), " row ", j);
    }
  }
}

TEST_CASE("activations near the float range stay finite where the exact sum is") {
  auto layer = onebit_test::random_layer(20, 33);
  for (auto& g : layer.g) g = onebit::to_half(1.0f);
  for (auto& h : layer.h) h = onebit::to_half(1.0f);
  std::vector<float> x(33, 0.0f), y(20);
  x[4] = 2e38f;  // Σ|a| passes 2^125: 2·Σ_{−1} a may overflow; every exact y is finite
  x[9] = -1e38f;
  for (isa path : onebit_test::runnable_paths()) {
    onebit::gemv(layer, x.data(), y.data(), onebit::gemm_options{kernel::add_only, path});
    for (std::size_t j = 0; j < 20; ++j) {
      const double want = layer.W(j, 4) * 2e38 + layer.W(j, 9) * -1e38;
      CHECK_MESSAGE(std::fabs(y[j] - want) <= 1e32, std::string(onebit::to_string(path)), " row ", j);
    }
  }
}

TEST_CASE("forcing a path this CPU lacks names the path and what is missing") {
  const auto layer = onebit_test::random_layer(3, 5);
  std::vector<float> x(5), y(3);
  for (isa path : onebit::all_isas) {
    const std::string missing = onebit::detail::missing_features(path, onebit::cpu());
    const onebit::gemm_options options{kernel::add_only, path};
    if (missing.empty()) {
      CHECK_NOTHROW(onebit::gemm(layer, x.data(), 1, 5, y.data(), 3, options));
    } else {
      const std::string expected = std::string(onebit::to_string(path)) +
                                   " path, but this CPU or build lacks " + missing;
      CHECK_THROWS_WITH_AS(onebit::gemm(layer, x.data(), 1, 5, y.data(), 3, options),
                           doctest::Contains(expected.c_str()), std::invalid_argument);
      CHECK_THROWS_AS(onebit::pack(layer, options), std::invalid_argument);
    }
  }
}

TEST_CASE("packed layers keep shape, kernel, path and value vectors") {
  const auto layer = onebit_test::random_layer(33, 65);
  for (isa path : onebit_test::runnable_paths()) {
    const auto p = onebit::pack(layer, onebit::gemm_options{kernel::automatic, path});
    CHECK(p.out_features() == 33);
    CHECK(p.in_features() == 65);
    CHECK(p.packed_kernel() == kernel::add_only);
    CHECK(p.path() == path);
    CHECK(p.g() == layer.g);
    CHECK(p.h() == layer.h);
    CHECK(reinterpret_cast<std::uintptr_t>(p.data()) % 64 == 0);
  }
  const auto ref = onebit::pack(layer, kernel::reference);
  std::vector<float> x = onebit_test::gaussian(65), y1(33), y2(33);
  onebit::gemv(ref, x.data(), y1.data());
  onebit::gemv(layer, x.data(), y2.data(), kernel::reference);
  CHECK(y1 == y2);
  const onebit::linear<> empty{onebit::sign_matrix<>(0, 4), std::vector<onebit::half>(4), {}};
  CHECK_THROWS_WITH_AS(onebit::pack(empty), "onebit::pack: zero-size layer 0x4 (out x in)",
                       std::invalid_argument);
}

TEST_CASE("each batch row gives the bits it gives alone, on every path, plain or packed") {
  const auto layer = onebit_test::random_layer(70, 700);
  const std::size_t batch = 11;
  const std::vector<float> x = onebit_test::gaussian(batch * 700);
  for (isa path : onebit_test::runnable_paths()) {
    const onebit::gemm_options options{kernel::add_only, path};
    const auto packed = onebit::pack(layer, options);
    std::vector<float> plain_batch(batch * 70), packed_batch(batch * 70), row(70);
    onebit::gemm(layer, x.data(), batch, 700, plain_batch.data(), 70, options);
    onebit::gemm(packed, x.data(), batch, 700, packed_batch.data(), 70);
    for (std::size_t b = 0; b < batch; ++b) {
      onebit::gemv(layer, x.data() + b * 700, row.data(), options);
      CHECK_MESSAGE(std::equal(row.begin(), row.end(), plain_batch.begin() + b * 70),
                    std::string(onebit::to_string(path)), " plain, batch row ", b);
      onebit::gemv(packed, x.data() + b * 700, row.data());
      CHECK_MESSAGE(std::equal(row.begin(), row.end(), packed_batch.begin() + b * 70),
                    std::string(onebit::to_string(path)), " packed, batch row ", b);
    }
  }
}

// ONEBIT_ISA is read once per process, so tests/CMakeLists.txt runs this case in processes of
// their own with the variable set (to portable, and to a name that is no path).
TEST_CASE("ONEBIT_ISA forces the path of the whole process") {
  const char* value = std::getenv("ONEBIT_ISA");
  if (value == nullptr) {
    MESSAGE("ONEBIT_ISA is unset in this process: see the test_add_only_env_* runs");
    return;
  }
  const auto layer = onebit_test::random_layer(10, 20);
  std::vector<float> x(20, 1.0f), y(10);
  const std::optional<isa> named = onebit::parse_isa(value);
  if (!named) {
    CHECK_THROWS_WITH_AS(onebit::gemm(layer, x.data(), 1, 20, y.data(), 10),
                         doctest::Contains("names no path"), std::invalid_argument);
    // A path forced per call still wins over the environment.
    CHECK_NOTHROW(onebit::gemm(layer, x.data(), 1, 20, y.data(), 10,
                               onebit::gemm_options{kernel::add_only, isa::portable}));
    return;
  }
  CHECK(onebit::resolve_isa() == *named);
  CHECK(onebit::prepare(layer, x.data(), 1, 20, y.data(), 10).path() == *named);
  CHECK(onebit::pack(layer).path() == *named);
}

}  // namespace test_add_only
