// The dispatcher: one list of paths, tables chosen once, forced paths obeyed by every
// dispatched family, and a prepared product that reports the body that ran.
#include <onebit/gemm.hpp>
#include <onebit/lowbit_linear.hpp>
#include <onebit/quant/detail/rank1_kernels.hpp>
#include <onebit/quant/rtn.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <set>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_dispatch {

namespace {

using onebit::isa;
using onebit::kernel;
namespace d = onebit::detail;

}  // namespace

TEST_CASE("one list of paths: names, speed order and fallbacks derive from it") {
  std::set<isa> seen;
  for (isa path : onebit::all_isas) {
    CHECK(seen.insert(path).second);
    CHECK(onebit::parse_isa(onebit::to_string(path)) == path);
    // A fallback runs wherever its path runs, so a body chosen through it needs nothing more.
    const isa fallback = d::entry_of(path).fallback;
    if (onebit::supports(path)) CHECK(onebit::supports(fallback));
  }
  CHECK(seen.size() == d::isa_count);
  CHECK(!onebit::parse_isa("avx1024"));
  const std::vector<isa> supported = onebit::supported_isas();
  REQUIRE(!supported.empty());
  CHECK(supported.front() == onebit::best_isa());
  CHECK(supported.back() == isa::portable);
}

TEST_CASE("a product reports the body that ran; vnni_int8 without VNNI runs popcount_int8") {
  const auto layer = onebit_test::random_layer<std::uint64_t>(37, 200);
  const std::vector<float> x = onebit_test::gaussian(2 * 200);
  std::vector<float> y_vnni(2 * 37), y_popcount(2 * 37);
  for (isa path : onebit_test::runnable_paths()) {
    CAPTURE(onebit::to_string(path));
    auto p = onebit::prepare(layer, x.data(), 2, 200, y_vnni.data(), 37, {kernel::vnni_int8, path});
    p.run();
    const bool vnni = path == isa::avx512_icl;
    CHECK(p.chosen_kernel() == (vnni ? kernel::vnni_int8 : kernel::popcount_int8));
    CHECK(p.path() == path);
    const std::string name = p.body_name();
    MESSAGE("vnni_int8 on ", std::string(onebit::to_string(path)), " runs ", name);
    CHECK(name == (vnni ? "popcount::avx512_icl::vnni_rows"
                        : "popcount::" + std::string(onebit::to_string(path)) + "::int8_rows"));
    onebit::gemm(layer, x.data(), 2, 200, y_popcount.data(), 37, {kernel::popcount_int8, path});
    CHECK(std::memcmp(y_vnni.data(), y_popcount.data(), y_vnni.size() * sizeof(float)) == 0);
    // A packed layer reports the same.
    const onebit::packed_linear packed = onebit::pack(layer, onebit::gemm_options{kernel::vnni_int8, path});
    CHECK(onebit::prepare(packed, x.data(), 2, 200, y_vnni.data(), 37).chosen_kernel() ==
          p.chosen_kernel());
  }
}

TEST_CASE("lut on the standard layout runs popcount_int8's body on SIMD paths, its tables on portable") {
  const auto layer = onebit_test::random_layer<std::uint64_t>(37, 200);
  const std::vector<float> x = onebit_test::gaussian(3 * 200);
  std::vector<float> y_lut(3 * 37), y_popcount(3 * 37);
  for (isa path : onebit_test::runnable_paths()) {
    CAPTURE(onebit::to_string(path));
    auto p = onebit::prepare(layer, x.data(), 3, 200, y_lut.data(), 37, {kernel::lut, path});
    p.run();
    const std::string name = p.body_name();
    MESSAGE("lut on the standard layout on ", std::string(onebit::to_string(path)), " runs ", name);
    if (path == isa::portable) {
      CHECK(p.chosen_kernel() == kernel::lut);
      CHECK(name == "lut::portable::byte_table_rows");
    } else if (path == isa::avx512_icl) {
      // From batch 2 the VNNI tiles run instead (dispatch.hpp): the same bits; batch 1 keeps
      // the bit-serial body.
      CHECK(p.chosen_kernel() == kernel::vnni_int8);
      CHECK(name == "popcount::avx512_icl::vnni_rows");
      const auto one = onebit::prepare(layer, x.data(), 1, 200, y_lut.data(), 37, {kernel::lut, path});
      CHECK(one.chosen_kernel() == kernel::popcount_int8);
      CHECK(std::string(one.body_name()) == "popcount::avx512_icl::int8_rows");
      one.run();
    } else {
      CHECK(p.chosen_kernel() == kernel::popcount_int8);
      CHECK(name == "popcount::" + std::string(onebit::to_string(path)) + "::int8_rows");
    }
    p.run();
    onebit::gemm(layer, x.data(), 3, 200, y_popcount.data(), 37, {kernel::popcount_int8, path});
    CHECK(std::memcmp(y_lut.data(), y_popcount.data(), y_lut.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("every kernel on every path names its body; the table is built once") {
  const auto layer = onebit_test::random_layer<std::uint64_t>(40, 96);
  const std::vector<float> x = onebit_test::gaussian(96);
  std::vector<float> y(40);
  for (isa path : onebit_test::runnable_paths())
    for (kernel k : onebit::all_kernels) {
      CAPTURE(onebit::to_string(path));
      CAPTURE(onebit::to_string(k));
      const auto plain = onebit::prepare(layer, x.data(), 1, 96, y.data(), 40, {k, path});
      CHECK(std::string(plain.body_name()).size() > 0);
      const onebit::packed_linear packed = onebit::pack(layer, onebit::gemm_options{k, path});
      const auto fast = onebit::prepare(packed, x.data(), 1, 96, y.data(), 40);
      CHECK(std::string(fast.body_name()).size() > 0);
      CHECK(fast.row_block() >= 1);
      const kernel c = d::concrete(k);
      const d::kernel_body& first = d::select_body(c, path, packed.format());
      CHECK(&first == &d::select_body(c, path, packed.format()));  // cached, not rebuilt
      CHECK(onebit::supports(first.body_path));
    }
}

TEST_CASE("every family takes its fallback's bodies where it has none of its own") {
  // avx512_icl has no half, rank-1 or combine bodies of its own: it runs avx512's.
  const bool same_half = d::table_for<d::half_family>(isa::avx512_icl).to_floats ==
                         d::table_for<d::half_family>(isa::avx512).to_floats;
  const bool same_rank1 = d::quant::rank1_kernels_for(isa::avx512_icl).fused ==
                          d::quant::rank1_kernels_for(isa::avx512).fused;
  const bool same_combine =
      d::quant::combine_for(isa::avx512_icl) == d::quant::combine_for(isa::avx512);
  CHECK(same_half);
  CHECK(same_rank1);
  CHECK(same_combine);
  // sse41 converts halves with the scalar loop, as portable does.
  const bool scalar = d::table_for<d::half_family>(isa::portable).to_floats ==
                      &d::halves_to_floats_scalar;
  CHECK(scalar);
  CHECK(d::table_for<d::half_family>(isa::sse41).body_path == isa::portable);
}

TEST_CASE("RTN obeys a forced path: the same codes on each, a missing one throws") {
  const std::vector<float> w = onebit_test::gaussian(9 * 70);
  onebit::rtn_options o;
  o.bits = 3;
  o.group = 32;
  o.path = onebit::best_isa();  // explicit, so that a bad ONEBIT_ISA cannot make this throw
  const onebit::lowbit_matrix want = onebit::rtn(w.data(), 9, 70, 70, o);
  for (isa path : onebit::all_isas) {
    CAPTURE(onebit::to_string(path));
    o.path = path;
    if (!onebit::supports(path)) {
      CHECK_THROWS_AS(onebit::rtn(w.data(), 9, 70, 70, o), std::invalid_argument);
      continue;
    }
    const onebit::lowbit_matrix got = onebit::rtn(w.data(), 9, 70, 70, o);
    std::size_t differ = 0;
    for (std::size_t r = 0; r < 9; ++r) {
      for (std::size_t c = 0; c < 70; ++c) differ += got.code(r, c) != want.code(r, c);
      for (std::size_t g = 0; g < got.groups_per_row(); ++g)
        differ += got.scale(r, g) != want.scale(r, g) || got.zero(r, g) != want.zero(r, g);
    }
    CHECK(differ == 0);
  }
}

TEST_CASE("a gemm on a path the CPU lacks throws, naming it") {
  const auto layer = onebit_test::random_layer<std::uint64_t>(4, 8);
  const std::vector<float> x(8, 1.0f);
  std::vector<float> y(4);
  for (isa path : onebit::all_isas)
    if (!onebit::supports(path))
      CHECK_THROWS_WITH_AS(onebit::gemm(layer, x.data(), 1, 8, y.data(), 4, {kernel::add_only, path}),
                           doctest::Contains(onebit::to_string(path)), std::invalid_argument);
}

TEST_CASE("ONEBIT_ISA is the path of the calls that take none, conversions included") {
  // Run with ONEBIT_ISA set (scripts or by hand) to see it obeyed; unset, the best path.
  const char* named = std::getenv("ONEBIT_ISA");
  if (named == nullptr || *named == '\0') {
    CHECK(d::default_isa() == onebit::best_isa());
    return;
  }
  const std::optional<isa> path = onebit::parse_isa(named);
  if (!path || !onebit::supports(*path)) {
    CHECK_THROWS_AS(onebit::resolve_isa(), std::invalid_argument);
    CHECK(d::default_isa() == onebit::best_isa());  // what the noexcept conversions fall to
    return;
  }
  MESSAGE("ONEBIT_ISA=", std::string(named), ": conversions run the ",
          std::string(onebit::to_string(d::table_for<d::half_family>(*path).body_path)), " body");
  CHECK(d::default_isa() == *path);
  CHECK(onebit::resolve_isa() == *path);
  const std::vector<float> w = onebit_test::gaussian(4 * 40);
  CHECK(onebit::rtn(w.data(), 4, 40, 40).rows() == 4);  // runs on *path; throws on none
}

}  // namespace test_dispatch
