// The parallel gemm over 1 to 4 threads and over a user's executor equals the one-thread call
// bit for bit, on every path, plain and packed.
#include <onebit/parallel.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support.hpp"

namespace test_parallel {

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

// Runs the rows in `parts` ranges of its own choosing (as another engine's pool might): the
// products' rows must not depend on where a range starts.
struct split_executor {
  std::size_t parts;
  template <class F>
  void parallel_for(std::size_t n, F&& f) {
    for (std::size_t i = 0; i < n; ++i) f(i);
  }
  std::size_t size() const { return parts; }
};

}  // namespace

TEST_CASE("parallel gemm is bit-identical across splits, every kernel and path, plain and packed") {
  // Odd sizes: 7 rows (fewer than the row blocks), 65 and 531 (blocks plus a tail).
  for (std::size_t out : {7u, 65u, 531u}) {
    const std::size_t in = 127;
    const auto layer = onebit_test::random_layer(out, in);
    for (std::size_t batch : {1u, 3u}) {
      const std::vector<float> x = onebit_test::gaussian(batch * in);
      for (onebit::isa path : onebit_test::runnable_paths())
        for (onebit::kernel k : onebit::all_kernels) {
          const onebit::gemm_options options{k, path};
          const auto packed = onebit::pack(layer, options);
          std::vector<float> plain1(batch * out), packed1(batch * out);
          onebit::gemm(layer, x.data(), batch, in, plain1.data(), out, options);
          onebit::gemm(packed, x.data(), batch, in, packed1.data(), out);
          for (std::size_t parts : {2u, 3u, 5u, 64u}) {
            split_executor executor{parts};
            std::vector<float> plain(batch * out), packed_y(batch * out);
            onebit::gemm(executor, layer, x.data(), batch, in, plain.data(), out, options);
            onebit::gemm(executor, packed, x.data(), batch, in, packed_y.data(), out);
            const std::string where = std::string(onebit::to_string(path)) + " " +
                                      onebit::to_string(k) + " out " + std::to_string(out) +
                                      " parts " + std::to_string(parts);
            CHECK_MESSAGE(plain == plain1, where);
            CHECK_MESSAGE(packed_y == packed1, where);
          }
        }
    }
  }
}

TEST_CASE("thread_pool: many calls in a row, n below, at and above the thread count") {
  for (std::size_t threads : {2u, 3u}) {
    onebit::thread_pool pool(threads);
    std::vector<std::atomic<int>> hits(257);
    long long expected = 0;
    for (int call = 0; call < 20000; ++call) {
      const std::size_t n = static_cast<std::size_t>(call % 257) + 1;
      pool.parallel_for(n, [&](std::size_t i) { hits[i].fetch_add(1, std::memory_order_relaxed); });
      expected += static_cast<long long>(n);
    }
    long long total = 0;
    int wrong = 0;
    for (std::size_t i = 0; i < hits.size(); ++i) {
      total += hits[i].load();
      // Index i runs in every call with n > i: calls with call % 257 >= i.
      const int calls_with_i = static_cast<int>(20000 / 257 * (257 - i) +
                                                (20000 % 257 > i ? 20000 % 257 - i : 0));
      wrong += hits[i].load() != calls_with_i;
    }
    CHECK(total == expected);
    CHECK(wrong == 0);
  }
}

TEST_CASE("thread_pool: each call sees the writes of the one before (no lost or stale task)") {
  onebit::thread_pool pool(2);
  std::vector<int> data(64, 0);
  for (int round = 1; round <= 5000; ++round)
    pool.parallel_for(data.size(), [&](std::size_t i) {
      // Plain ints: the pool's hand-off must order this round's writes after the last round's.
      data[i] = data[(i + 1) % data.size()] >= round - 1 ? round : -1000000;
    });
  int wrong = 0;
  for (int v : data) wrong += v != 5000;
  CHECK(wrong == 0);
}

TEST_CASE("thread_pool: workers that went to sleep wake up, and a slow worker is waited for") {
  onebit::thread_pool pool(2);
  for (int round = 0; round < 5; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // past the spin: workers sleep
    std::atomic<int> sum{0};
    pool.parallel_for(2, [&](std::size_t i) {
      // One index long enough that the caller stops spinning and sleeps until it ends.
      if (i == 1) std::this_thread::sleep_for(std::chrono::milliseconds(3));
      sum.fetch_add(static_cast<int>(i) + 1);
    });
    CHECK(sum.load() == 3);
  }
}

TEST_CASE("thread_pool: exceptions from any thread, every index still runs, pool reusable") {
  onebit::thread_pool pool(2);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::atomic<int>> hits(16);
    bool threw = false;
    try {
      pool.parallel_for(16, [&](std::size_t i) {
        hits[i].fetch_add(1);
        if (i % 5 == 3) throw std::runtime_error("index " + std::to_string(i));
      });
    } catch (const std::runtime_error& e) {
      threw = std::string(e.what()).rfind("index ", 0) == 0;
    }
    CHECK(threw);
    int wrong = 0;
    for (auto& h : hits) wrong += h.load() != 1;
    CHECK(wrong == 0);
  }
  CHECK_THROWS_AS(pool.parallel_for(1, [](std::size_t) { throw std::out_of_range("one"); }),
                  std::out_of_range);  // run on the caller alone
  std::atomic<int> after{0};
  pool.parallel_for(3, [&](std::size_t) { after.fetch_add(1); });
  CHECK(after.load() == 3);
}

TEST_CASE("thread_pool: a call from inside a call is refused, not deadlocked") {
  onebit::thread_pool pool(2);
  std::atomic<int> refused{0};
  pool.parallel_for(2, [&](std::size_t) {
    try {
      pool.parallel_for(2, [](std::size_t) {});
    } catch (const std::logic_error&) {
      refused.fetch_add(1);
    }
  });
  CHECK(refused.load() == 2);
  pool.parallel_for(2, [](std::size_t) {});  // and the pool still works
}

TEST_CASE("thread_pool: a pool destroyed right after use, and one never used") {
  for (int i = 0; i < 50; ++i) {
    onebit::thread_pool pool(3);
    std::atomic<int> n{0};
    pool.parallel_for(3, [&](std::size_t) { n.fetch_add(1); });
    CHECK(n.load() == 3);
  }
  onebit::thread_pool idle(4);
  CHECK(idle.size() == 4);
}

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

}  // namespace test_parallel
