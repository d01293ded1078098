// The parallel gemm with prepare's batch rows split over the threads (issue 14, item 1): the
// same bytes as the one-thread gemm for every kernel and path, plain and packed layers, float
// and half activations, post-norm on and off, batch 1 to 70 (below and above the split's
// threshold, one slice and two), pools of 1, 2, 3 and 5 threads, and an executor that runs its
// indices one after another (where a thread waiting for the prepared rows must not wait on an
// index that has not started). Each batch runs on one executor in turn, with the norm off or
// on, so that the test stays quick.
#include <onebit/parallel.hpp>

#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"

namespace test_split_prepare {

namespace {

using onebit::isa;
using onebit::kernel;

// Runs its indices backwards on the calling thread and says it has `threads` threads: the
// split then plans for several threads but every part is taken by the first index run.
struct serial_executor {
  std::size_t threads;
  template <class F>
  void parallel_for(std::size_t n, F&& f) {
    for (std::size_t i = n; i-- > 0;) f(i);
  }
  std::size_t size() const { return threads; }
};

// Counts its hand-offs; says it has 2 threads.
struct counting_executor {
  std::size_t calls = 0;
  template <class F>
  void parallel_for(std::size_t n, F&& f) {
    ++calls;
    for (std::size_t i = 0; i < n; ++i) f(i);
  }
  std::size_t size() const { return 2; }
};

// Bytes, not ==: the overflow case's outputs may be NaN.
bool same_bytes(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

constexpr std::size_t out = 37, in = 200;
// 200 inputs cross the threshold at batch 21.
static_assert(20 * in < onebit::detail::split_prepare_from &&
                  21 * in >= onebit::detail::split_prepare_from,
              "the batches below no longer cover both sides of the threshold");

template <class T>
void check_all(const std::vector<std::unique_ptr<onebit::thread_pool>>& pools) {
  // Post-norm off and on, each batch with one of them: (batch / 5) % 2 gives every executor
  // both.
  std::vector<onebit::linear<>> layers;
  for (bool norm : {false, true}) {
    layers.push_back(onebit_test::random_layer(out, in));
    layers.back().norm.enabled = norm;
    onebit_test::fill_padding_with_garbage(layers.back().W);
  }
  const std::size_t ldx = in + 3, ldy = out + 1;
  constexpr std::size_t max_batch = 70;
  onebit_test::offset_buffer<T> x(max_batch * ldx, 1);
  const std::vector<T> v = onebit_test::activations<T>(max_batch * ldx);
  std::copy(v.begin(), v.end(), x.data());
  for (isa path : onebit_test::runnable_paths())
    for (kernel k : onebit::all_kernels) {
      const onebit::gemm_options options{k, path};
      const onebit::packed_linear packs[] = {onebit::pack(layers[0], options),
                                             onebit::pack(layers[1], options)};
      std::size_t wrong = 0, runs = 0;
      for (std::size_t batch = 1; batch <= max_batch; ++batch) {
        const onebit::linear<>& layer = layers[batch / 5 % 2];
        const onebit::packed_linear& packed = packs[batch / 5 % 2];
        std::vector<float> plain1(batch * ldy, -5.0f), packed1(batch * ldy, -5.0f);
        onebit::gemm(layer, x.data(), batch, ldx, plain1.data(), ldy, options);
        onebit::gemm(packed, x.data(), batch, ldx, packed1.data(), ldy);
        auto check = [&](auto& executor) {
          std::vector<float> plain(batch * ldy, -5.0f), packed_y(batch * ldy, -5.0f);
          onebit::gemm(executor, layer, x.data(), batch, ldx, plain.data(), ldy, options);
          onebit::gemm(executor, packed, x.data(), batch, ldx, packed_y.data(), ldy);
          wrong += !same_bytes(plain, plain1) + !same_bytes(packed_y, packed1);
          runs += 2;
        };
        // Each batch on one executor in turn (all of them on every batch took 20 s): every
        // executor meets batches below and above the threshold, and both slice counts.
        serial_executor serial{3};
        if (batch % 5 == 4)
          check(serial);
        else
          check(*pools[batch % 5]);
      }
      CHECK_MESSAGE(wrong == 0, std::string(onebit::to_string(path)), " ",
                    std::string(onebit::to_string(k)), ": ", wrong, " of ", runs,
                    " products differ from the one-thread gemm");
    }
}

using pools_t = std::vector<std::unique_ptr<onebit::thread_pool>>;

pools_t make_pools() {
  pools_t pools;
  for (std::size_t t : {1u, 2u, 3u, 5u}) pools.push_back(std::make_unique<onebit::thread_pool>(t));
  return pools;
}

}  // namespace

TEST_CASE("split prepare: float activations, post-norm off and on") {
  check_all<float>(make_pools());
}

TEST_CASE("split prepare: half activations, post-norm off and on") {
  check_all<onebit::half>(make_pools());
}

// One batch row whose Σ|a| overflows makes the whole call run the signed body: a part that
// did not see it must still run that body (the last part's thread decides for everyone).
TEST_CASE("split prepare: one huge batch row switches every range to the signed body") {
  const auto layer = onebit_test::random_layer(out, in);
  const std::size_t batch = 40;
  for (std::size_t huge_row : {0u, 17u, 39u}) {
    std::vector<float> x = onebit_test::gaussian(batch * in);
    for (std::size_t i = 0; i < in; ++i) x[huge_row * in + i] *= 3e37f;
    for (isa path : onebit_test::runnable_paths())
      for (kernel k : onebit::all_kernels) {
        const onebit::gemm_options options{k, path};
        std::vector<float> y1(batch * out);
        onebit::gemm(layer, x.data(), batch, in, y1.data(), out, options);
        for (std::size_t threads : {2u, 3u}) {
          onebit::thread_pool pool(threads);
          std::vector<float> y(batch * out);
          onebit::gemm(pool, layer, x.data(), batch, in, y.data(), out, options);
          CHECK_MESSAGE(same_bytes(y, y1), std::string(onebit::to_string(path)), " ",
                        std::string(onebit::to_string(k)), " huge row ", huge_row, " threads ",
                        threads);
        }
      }
  }
}

// The split must not hide a bad call: the checks run before the hand-off, on the caller.
TEST_CASE("split prepare: bad arguments still throw from the caller") {
  const auto layer = onebit_test::random_layer(out, in);
  std::vector<float> x(30 * in), y(30 * out);
  onebit::thread_pool pool(2);
  CHECK_THROWS_WITH_AS(onebit::gemm(pool, layer, x.data(), 30, in, y.data(), out - 1),
                       doctest::Contains("ldy 36 < out 37"), std::invalid_argument);
  const auto packed = onebit::pack(layer, kernel::add_only);
  CHECK_THROWS_WITH_AS(onebit::gemm(pool, packed, x.data(), 30, in, y.data(), out,
                                    onebit::gemm_options{kernel::lut, std::nullopt}),
                       doctest::Contains("cannot run"), std::invalid_argument);
}

// The split adds no hand-off: one parallel_for per slice of 64 batch rows (and one more for
// the post-norm's finish), whether the prepare is split (batch x in >= the threshold) or not.
TEST_CASE("split prepare: one hand-off per slice") {
  auto layer = onebit_test::random_layer(out, in);
  for (bool norm : {false, true}) {
    layer.norm.enabled = norm;
    for (std::size_t batch : {1u, 2u, 30u, 64u, 65u, 130u}) {
      const std::vector<float> x = onebit_test::gaussian(batch * in);
      std::vector<float> y(batch * out), y1(batch * out);
      onebit::gemm(layer, x.data(), batch, in, y1.data(), out);
      counting_executor executor;
      onebit::gemm(executor, layer, x.data(), batch, in, y.data(), out);
      const std::size_t slices = (batch + 63) / 64;
      CHECK_MESSAGE(executor.calls == slices * (norm ? 2 : 1), "batch ", batch, " norm ", norm);
      CHECK(same_bytes(y, y1));
    }
  }
}

}  // namespace test_split_prepare
