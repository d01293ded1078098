// The parallel gemm over 1 to 4 threads and over a user's executor equals the one-thread call
// bit for bit, on every path, plain and packed.
#include <onebit/parallel.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "support.hpp"

namespace {

// An engine's own pool, as the executor hook sees it: only parallel_for, no size().
struct serial_executor {
  std::size_t calls = 0;
  template <class F>
  void parallel_for(std::size_t n, F&& f) {
    ++calls;
    for (std::size_t i = n; i-- > 0;) f(i);  // backwards: order must not matter
  }
};

}  // namespace

TEST_CASE("parallel gemm over 1 to 4 threads equals the one-thread gemm, every path") {
  const auto layer = onebit_test::random_layer(531, 300);
  for (std::size_t batch : {1u, 5u}) {
    const std::vector<float> x = onebit_test::gaussian(batch * 300);
    for (onebit::isa path : onebit::supported_isas()) {
      const onebit::gemm_options options{onebit::kernel::add_only, path};
      const auto packed = onebit::pack(layer, options);
      std::vector<float> plain1(batch * 531), packed1(batch * 531);
      onebit::gemm(layer, x.data(), batch, 300, plain1.data(), 531, options);
      onebit::gemm(packed, x.data(), batch, 300, packed1.data(), 531);
      for (std::size_t threads = 1; threads <= 4; ++threads) {
        onebit::thread_pool pool(threads);
        CHECK(pool.size() == threads);
        std::vector<float> plain(batch * 531), packed_y(batch * 531);
        onebit::gemm(pool, layer, x.data(), batch, 300, plain.data(), 531, options);
        onebit::gemm(pool, packed, x.data(), batch, 300, packed_y.data(), 531);
        CHECK_MESSAGE(plain == plain1, std::string(onebit::to_string(path)), " threads ", threads);
        CHECK_MESSAGE(packed_y == packed1, std::string(onebit::to_string(path)), " threads ", threads);
      }
    }
  }
}

TEST_CASE("any executor with parallel_for runs the rows") {
  const auto layer = onebit_test::random_layer(100, 64);
  const std::vector<float> x = onebit_test::gaussian(2 * 64);
  std::vector<float> y1(2 * 100), y2(2 * 100);
  onebit::gemm(layer, x.data(), 2, 64, y1.data(), 100);
  serial_executor executor;
  onebit::gemm(executor, layer, x.data(), 2, 64, y2.data(), 100);
  CHECK(executor.calls == 1);
  CHECK(y1 == y2);
}

TEST_CASE("thread_pool runs every index once and passes exceptions to the caller") {
  onebit::thread_pool pool(3);
  for (std::size_t n : {0u, 1u, 2u, 7u, 1000u}) {
    std::vector<std::atomic<int>> hits(n);
    pool.parallel_for(n, [&](std::size_t i) { hits[i].fetch_add(1); });
    int wrong = 0;
    for (auto& h : hits) wrong += h.load() != 1;
    CHECK(wrong == 0);
  }
  CHECK_THROWS_WITH_AS(pool.parallel_for(10,
                                         [](std::size_t i) {
                                           if (i == 7) throw std::runtime_error("task 7");
                                         }),
                       "task 7", std::runtime_error);
  std::atomic<int> after{0};
  pool.parallel_for(5, [&](std::size_t) { after.fetch_add(1); });  // still usable
  CHECK(after.load() == 5);
  CHECK_THROWS_AS(onebit::thread_pool(0), std::invalid_argument);
}

TEST_CASE("parallel gemm checks its arguments like gemm") {
  const auto layer = onebit_test::random_layer(3, 7);
  std::vector<float> x(7), y(3);
  onebit::thread_pool pool(2);
  CHECK_THROWS_WITH_AS(onebit::gemm(pool, layer, x.data(), 1, 6, y.data(), 3),
                       doctest::Contains("ldx 6 < in 7"), std::invalid_argument);
}
