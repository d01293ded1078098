// Running products on several threads: a small thread pool the user owns, and a parallel gemm
// that splits the rows of one prepared product over it (or over any executor an engine already
// has). There is no hidden global pool.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "gemm.hpp"
#include "lowbit_linear.hpp"

namespace onebit {

// `threads` workers in all, the calling thread being one of them: parallel_for(n, f) runs
// f(0) .. f(n-1) across them and returns when all are done (rethrowing the first exception
// any f threw). One parallel_for at a time per pool; the pool is not reentrant.
class thread_pool {
 public:
  explicit thread_pool(std::size_t threads = std::max(1u, std::thread::hardware_concurrency())) {
    if (threads == 0) throw std::invalid_argument("onebit::thread_pool: 0 threads");
    workers_.reserve(threads - 1);
    for (std::size_t i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  ~thread_pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

  std::size_t size() const noexcept { return workers_.size() + 1; }

  template <class F>
  void parallel_for(std::size_t n, F&& f) {
    if (n == 0) return;
    if (workers_.empty() || n == 1) {
      for (std::size_t i = 0; i < n; ++i) f(i);
      return;
    }
    std::function<void(std::size_t)> task(std::ref(f));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      count_ = n;
      next_.store(0);
      unfinished_ = n;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    run_tasks();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return unfinished_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work() {
    std::size_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      run_tasks();
    }
  }

  void run_tasks() {
    std::size_t finished = 0;
    for (std::size_t i; (i = next_.fetch_add(1)) < count_;) {
      try {
        (*task_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      ++finished;
    }
    if (finished == 0) return;
    std::lock_guard<std::mutex> lock(mutex_);
    unfinished_ -= finished;
    if (unfinished_ == 0) done_.notify_all();
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(std::size_t)>* task_ = nullptr;
  std::size_t count_ = 0, unfinished_ = 0, generation_ = 0;
  std::atomic<std::size_t> next_{0};
  std::exception_ptr error_;
  bool stopping_ = false;
};

namespace detail {

template <class E, class = void>
struct has_size : std::false_type {};
template <class E>
struct has_size<E, std::void_t<decltype(std::declval<const E&>().size())>> : std::true_type {};

template <class P, class = void>
struct has_finish : std::false_type {};
template <class P>
struct has_finish<P, std::void_t<decltype(std::declval<const P&>().finish_rows(0, 0))>>
    : std::true_type {};

// Splits the rows of a prepared product (anything with rows(), row_block() and a const,
// noexcept run_rows(begin, end): prepared_gemm, prepared_lowbit_gemm) into about 4 ranges per
// thread (so a slow thread does not hold the others back), each starting on a multiple of the
// product's row block so that no block is computed twice. A product with a finishing step
// (prepared_gemm of a layer with post_norm) then finishes its batch rows, split over the
// threads too, once every range is done: each batch row's finish is the same code on the same
// pre-norm bits wherever it runs, so the result is the one-thread gemm's.
template <class Executor, class Prepared>
void run_parallel(Executor& executor, const Prepared& p) {
  std::size_t threads = 0;
  if constexpr (has_size<Executor>::value) threads = static_cast<std::size_t>(executor.size());
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t rows = p.rows();
  const std::size_t block = std::max<std::size_t>(1, p.row_block());
  const std::size_t blocks = (rows + block - 1) / block;
  const std::size_t ranges = std::min(blocks, threads == 1 ? 1 : 4 * threads);
  executor.parallel_for(ranges, [&p, block, blocks, ranges](std::size_t i) {
    p.run_rows(block * (blocks * i / ranges), block * (blocks * (i + 1) / ranges));
  });
  if constexpr (has_finish<Prepared>::value) {
    if (!p.needs_finish()) return;
    const std::size_t batch = p.batch();
    const std::size_t parts = std::min(batch, threads);
    executor.parallel_for(parts, [&p, batch, parts](std::size_t i) {
      p.finish_rows(batch * i / parts, batch * (i + 1) / parts);
    });
  }
}

}  // namespace detail

// gemm with the rows split over `executor`: onebit::thread_pool, or any object with
// parallel_for(n, f) that calls f(0) .. f(n-1) and returns when all are done (and, if it has
// one, size(): how many threads it runs). Any layer prepare() takes (1-bit layers with
// optional gemm_options, low-bit layers); the result is bit-identical to the one-thread gemm.
template <class Executor, class Layer, class T, class... Options>
void gemm(Executor& executor, const Layer& layer, const T* x, std::size_t batch, std::size_t ldx,
          float* y, std::size_t ldy, const Options&... options) {
  static_assert(sizeof...(Options) <= 1, "onebit::gemm: at most one options argument");
  detail::run_parallel(executor, prepare(layer, x, batch, ldx, y, ldy, options...));
}

}  // namespace onebit
