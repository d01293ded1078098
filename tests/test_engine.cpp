// One engine concept for every layer: prepare once, run row ranges split on the product's own
// row block, on any executor. The parallel gemm of a low-bit layer equals its one-thread gemm
// bit for bit; a packed layer's ranges start on its block; a packed layer refuses options that
// ask for another kernel or path.
#include <onebit/lowbit_linear.hpp>
#include <onebit/parallel.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_engine {

namespace {

// Records the ranges a parallel gemm asks for (through parallel_for) by running them itself.
struct recording_executor {
  std::size_t threads = 3;
  std::size_t size() const { return threads; }
  template <class F>
  void parallel_for(std::size_t n, F&& f) {
    for (std::size_t i = 0; i < n; ++i) f(i);
    tasks += n;
  }
  std::size_t tasks = 0;
};

// A k-bit matrix of random codes, per-group scales and zeros: 100 rows x 96 columns, group 32.
onebit::lowbit_matrix random_lowbit(int bits) {
  const std::size_t rows = 100, cols = 96, group = 32, groups = cols / group;
  std::vector<std::uint8_t> q(rows * cols);
  std::uint32_t state = 12345;
  for (auto& v : q) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<std::uint8_t>((state >> 24) % (1u << bits));
  }
  std::vector<float> scales = onebit_test::gaussian(rows * groups), zeros(rows * groups);
  for (std::size_t i = 0; i < zeros.size(); ++i) zeros[i] = static_cast<float>(i % (1u << bits));
  return onebit::lowbit_matrix::from_codes(q.data(), rows, cols, cols, bits, group, scales.data(),
                                           zeros.data());
}

}  // namespace

TEST_CASE("gemm(pool, lowbit_linear, ...) equals the one-thread gemm bit for bit") {
  for (int bits : {2, 4}) {
    for (bool packed : {false, true}) {
      const onebit::lowbit_linear layer(random_lowbit(bits),
                                        {onebit::kernel::automatic, std::nullopt, packed});
      for (std::size_t batch : {1u, 3u}) {
        const std::vector<float> x = onebit_test::gaussian(batch * 96);
        std::vector<float> one(batch * 100), many(batch * 100), custom(batch * 100);
        onebit::gemm(layer, x.data(), batch, 96, one.data(), 100);
        for (std::size_t threads : {2u, 3u}) {
          onebit::thread_pool pool(threads);
          onebit::gemm(pool, layer, x.data(), batch, 96, many.data(), 100);
          CHECK_MESSAGE(many == one, "bits ", bits, " packed ", packed, " threads ", threads);
        }
        recording_executor executor;
        onebit::gemm(executor, layer, x.data(), batch, 96, custom.data(), 100);
        CHECK(custom == one);
        CHECK(executor.tasks >= 1);
      }
    }
  }
}

TEST_CASE("a prepared product reports its row block; ranges on its multiples cover every row") {
  const auto layer = onebit_test::random_layer(133, 70);
  const std::vector<float> x = onebit_test::gaussian(2 * 70);
  for (onebit::isa path : onebit_test::runnable_paths()) {
    for (onebit::kernel k : {onebit::kernel::add_only, onebit::kernel::lut,
                             onebit::kernel::popcount_int8, onebit::kernel::vnni_int8}) {
      const onebit::packed_linear packed = onebit::pack(layer, onebit::gemm_options{k, path});
      std::vector<float> y(2 * 133), split(2 * 133, -1.0f);
      const onebit::prepared_gemm p = onebit::prepare(packed, x.data(), 2, 70, y.data(), 133);
      const std::size_t block = p.row_block();
      const std::string where = std::string(onebit::to_string(k)) + " on " + onebit::to_string(path);
      CHECK_MESSAGE(block >= 1, where);
      CHECK_MESSAGE((block & (block - 1)) == 0, where, ": row block ", block, " is a power of two");
      p.run();
      const onebit::prepared_gemm q = onebit::prepare(packed, x.data(), 2, 70, split.data(), 133);
      for (std::size_t r = 0; r < 133; r += block) q.run_rows(r, r + block);
      CHECK_MESSAGE(split == y, where);
    }
  }
}

TEST_CASE("a packed layer refuses options for another kernel or path, naming both") {
  const auto layer = onebit_test::random_layer(8, 16);
  const onebit::packed_linear packed =
      onebit::pack(layer, onebit::gemm_options{onebit::kernel::popcount_int8, onebit::isa::portable});
  std::vector<float> x(16, 1.0f), y(8);
  onebit::gemm(packed, x.data(), 1, 16, y.data(), 8,
               onebit::gemm_options{onebit::kernel::popcount_int8, onebit::isa::portable});
  try {
    onebit::gemm(packed, x.data(), 1, 16, y.data(), 8, onebit::kernel::lut);
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    CHECK(what.find("packed for popcount_int8 on portable") != std::string::npos);
    CHECK(what.find("lut") != std::string::npos);
  }
  CHECK_THROWS_AS(onebit::gemm(packed, x.data(), 1, 16, y.data(), 8,
                               onebit::gemm_options{onebit::kernel::automatic, onebit::isa::avx2}),
                  std::invalid_argument);
}

}  // namespace test_engine
