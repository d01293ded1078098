// A fixed team of threads for the baselines' parallel rows (onebit brings its own pool).
//
// `run(task)` calls task(0) on the calling thread and task(i) on worker i for i < size(), and
// returns when all have finished. Workers spin briefly on a generation counter before they
// sleep, so back-to-back calls in a benchmark loop do not pay a futex wake-up each (tens of
// microseconds on this VM, against a 1 ms GEMV); between benchmarks they sleep.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BENCH_PAUSE() _mm_pause()
#else
#define BENCH_PAUSE() std::this_thread::yield()
#endif

namespace bench {

class thread_team {
 public:
  explicit thread_team(unsigned threads) : size_(std::max(1u, threads)) {
    for (unsigned i = 1; i < size_; ++i) workers_.emplace_back([this, i] { work(i); });
  }
  ~thread_team() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
  }
  thread_team(const thread_team&) = delete;
  thread_team& operator=(const thread_team&) = delete;

  unsigned size() const noexcept { return size_; }

  void run(const std::function<void(unsigned)>& task) {
    if (size_ == 1) {
      task(0);
      return;
    }
    task_ = &task;
    pending_.store(size_ - 1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    task(0);
    // On a loaded machine the worker may be off the CPU: let it have ours now and then.
    for (unsigned spin = 1; pending_.load(std::memory_order_acquire) != 0; ++spin) {
      if (spin % 256 == 0)
        std::this_thread::yield();
      else
        BENCH_PAUSE();
    }
  }

  // [begin, end) of part `i` of `n` rows split in size() parts, each a multiple of `align`
  // rows except the last.
  std::pair<std::size_t, std::size_t> part(unsigned i, std::size_t n,
                                           std::size_t align) const noexcept {
    const std::size_t units = (n + align - 1) / align;
    const std::size_t begin = std::min(n, units * i / size_ * align);
    const std::size_t end = std::min(n, units * (i + 1) / size_ * align);
    return {begin, end};
  }

 private:
  void work(unsigned index) {
    std::uint64_t seen = 0;
    for (;;) {
      std::uint64_t now = generation_.load(std::memory_order_acquire);
      for (int spin = 0; now == seen && spin < 4096; ++spin) {  // ~0.2 ms, then sleep
        BENCH_PAUSE();
        now = generation_.load(std::memory_order_acquire);
      }
      if (now == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        now = generation_.load(std::memory_order_acquire);
      }
      seen = now;
      if (stop_flag()) return;
      (*task_)(index);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
  bool stop_flag() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stop_;
  }

  unsigned size_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<unsigned> pending_{0};
  const std::function<void(unsigned)>* task_ = nullptr;
  bool stop_ = false;
};

}  // namespace bench
