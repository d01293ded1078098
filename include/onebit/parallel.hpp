// Running products on several threads: a small thread pool the user owns, and a parallel gemm
// that splits the rows of one prepared product over it (or over any executor an engine already
// has). There is no hidden global pool.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
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

namespace detail {

// One step of a spin-wait: the CPU's pause hint, which lets a sibling hyper-thread run and
// saves power while a flag is polled.
inline void cpu_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#else
  std::this_thread::yield();
#endif
}

}  // namespace detail

// `threads` workers in all, the calling thread being one of them: parallel_for(n, f) runs
// f(0) .. f(n-1) across them and returns when all are done (rethrowing the first exception
// any f threw; the other indices still run). One parallel_for at a time per pool: a call from
// inside f, or from a second thread while one runs, throws std::logic_error.
//
// Built for hot loops of 10-100 µs (one layer's product): one hand-off per call, no lock on
// the way unless a thread sleeps. The caller publishes the call (function, n) and bumps a
// generation counter; workers that spin on it (pause, for about spin_time after their last
// task) see it within ~100 ns, sleeping ones are woken through a condition variable. Indices
// are claimed one at a time from a word that holds the generation beside the next index, so a
// worker that wakes after its call has ended claims nothing. The caller, after its own
// indices, spins on the count of finished ones and sleeps only if they take long.
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
    stopping_.store(true);
    generation_.fetch_add(1);
    {
      std::lock_guard<std::mutex> lock(mutex_);  // a worker between its check and its wait
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

  std::size_t size() const noexcept { return workers_.size() + 1; }

  template <class F>
  void parallel_for(std::size_t n, F&& f) {
    if (n == 0) return;
    if (busy_.exchange(true, std::memory_order_acquire))
      throw std::logic_error("onebit::thread_pool::parallel_for: called while a call runs");
    struct release {
      std::atomic<bool>& busy;
      ~release() { busy.store(false, std::memory_order_release); }
    } guard{busy_};
    if (workers_.empty() || n == 1) {
      for (std::size_t i = 0; i < n; ++i) f(i);
      return;
    }
    using Fn = std::remove_reference_t<F>;
    run(n, const_cast<void*>(static_cast<const volatile void*>(std::addressof(f))),
        [](void* fn, std::size_t i) { (*static_cast<Fn*>(fn))(i); });
  }

 private:
  using call_fn = void (*)(void*, std::size_t);
  static constexpr std::uint64_t index_bits = 32, index_mask = (std::uint64_t{1} << index_bits) - 1;
  // How long an idle thread spins before it sleeps: long enough to cover the gap between two
  // layers' products in a forward pass, short enough not to hold a core when the work stops.
  static constexpr std::chrono::microseconds spin_time{200};

  static void pause() noexcept { detail::cpu_pause(); }

  void run(std::size_t n, void* fn, call_fn call) {
    if (static_cast<std::uint64_t>(n) > index_mask)
      throw std::invalid_argument("onebit::thread_pool::parallel_for: n " + std::to_string(n) +
                                  " > 2^32 - 1");
    // Every index of the previous call was claimed and finished, but a worker that woke late
    // for it may still be about to claim: the claim word takes the new tag first, and the new
    // count is released after it, so a late worker that reads the new count (acquire) can no
    // longer claim with the old tag (a claim of index n_old of the old call, counted into this
    // one, was a bug the stress test found).
    const std::uint64_t generation = generation_.load(std::memory_order_relaxed) + 1;
    claim_.store((generation & generation_mask) << index_bits, std::memory_order_seq_cst);
    fn_.store(fn, std::memory_order_relaxed);
    call_.store(call, std::memory_order_relaxed);
    finished_.store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    error_ = nullptr;
    count_.store(n, std::memory_order_release);
    // seq_cst, with the sleepers' count read after it: a worker that counted itself asleep
    // before this store is woken; one that counts itself after it sees the new generation.
    generation_.store(generation, std::memory_order_seq_cst);
    // The fence (here and before the caller sleeps) keeps the store ahead of the load that
    // follows, which seq_cst alone promises too; but qemu-user's aarch64 emulation on x86-64
    // let the load pass the store (STLR then LDAR, no barrier between on the host), and a
    // caller slept through the last worker's wake-up: test_llama_engine hung in 2 of 20 runs
    // under qemu, none in 40 with the fences. A fence costs tens of cycles per call.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) != 0) {
      { std::lock_guard<std::mutex> lock(mutex_); }
      wake_.notify_all();
    }
    run_indices(generation, fn, call, n);
    // Wait for the indices the workers claimed.
    const auto start = std::chrono::steady_clock::now();
    for (unsigned spin = 0; finished_.load(std::memory_order_acquire) != n; ++spin) {
      pause();
      if (spin % 64 == 63 && std::chrono::steady_clock::now() - start > spin_time) {
        std::unique_lock<std::mutex> lock(mutex_);
        caller_waits_.store(true, std::memory_order_seq_cst);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        done_.wait(lock, [&] { return finished_.load(std::memory_order_seq_cst) == n; });
        caller_waits_.store(false, std::memory_order_relaxed);
        break;
      }
    }
    if (failed_.load(std::memory_order_relaxed)) std::rethrow_exception(error_);
  }

  // Claims and runs indices of call `generation` until none is left (or the call is over).
  void run_indices(std::uint64_t generation, void* fn, call_fn call, std::size_t n) {
    const std::uint64_t tag = (generation & generation_mask) << index_bits;
    std::size_t ran = 0;
    std::uint64_t word = claim_.load(std::memory_order_relaxed);
    for (;;) {
      if ((word & ~index_mask) != tag || (word & index_mask) >= n) break;
      if (!claim_.compare_exchange_weak(word, word + 1, std::memory_order_acquire,
                                        std::memory_order_relaxed))
        continue;
      try {
        call(fn, static_cast<std::size_t>(word & index_mask));
      } catch (...) {
        if (!failed_.exchange(true, std::memory_order_relaxed)) error_ = std::current_exception();
      }
      ++ran;
      word = claim_.load(std::memory_order_relaxed);
    }
    if (ran == 0) return;
    // The release orders f's writes (and error_) before the caller's acquire of the count.
    const std::size_t total = finished_.fetch_add(ran, std::memory_order_seq_cst) + ran;
    if (total == n && caller_waits_.load(std::memory_order_seq_cst)) {
      { std::lock_guard<std::mutex> lock(mutex_); }
      done_.notify_one();
    }
  }

  void work() {
    std::uint64_t seen = 0;
    for (;;) {
      std::uint64_t now = generation_.load(std::memory_order_acquire);
      if (now == seen) {
        const auto start = std::chrono::steady_clock::now();
        for (unsigned spin = 0; now == seen; ++spin) {
          pause();
          now = generation_.load(std::memory_order_acquire);
          if (now == seen && spin % 64 == 63 &&
              std::chrono::steady_clock::now() - start > spin_time) {
            std::unique_lock<std::mutex> lock(mutex_);
            sleepers_.fetch_add(1, std::memory_order_seq_cst);
            wake_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
            sleepers_.fetch_sub(1, std::memory_order_relaxed);
            now = generation_.load(std::memory_order_acquire);
          }
        }
      }
      seen = now;
      if (stopping_.load()) return;
      // Read after the generation: the values of call `now` or of a later one, whose claims
      // carry another tag, so a late worker claims nothing with them.
      run_indices(now, fn_.load(std::memory_order_relaxed), call_.load(std::memory_order_relaxed),
                  count_.load(std::memory_order_acquire));
    }
  }

  static constexpr std::uint64_t generation_mask = (std::uint64_t{1} << (64 - index_bits)) - 1;

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<bool> busy_{false}, stopping_{false}, failed_{false}, caller_waits_{false};
  // Apart, on lines of their own: workers spin on the generation while indices are claimed.
  alignas(64) std::atomic<std::uint64_t> generation_{0};
  alignas(64) std::atomic<std::uint64_t> claim_{0};  // generation (low 32 bits) << 32 | next index
  std::atomic<void*> fn_{nullptr};
  std::atomic<call_fn> call_{nullptr};
  std::atomic<std::size_t> count_{0};
  alignas(64) std::atomic<std::size_t> finished_{0};
  std::atomic<unsigned> sleepers_{0};
  std::exception_ptr error_;
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

template <class Executor>
std::size_t thread_count(Executor& executor) {
  std::size_t threads = 0;
  if constexpr (has_size<Executor>::value) threads = static_cast<std::size_t>(executor.size());
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  return threads;
}

template <class Executor, class Prepared>
void finish_parallel(Executor& executor, std::size_t threads, const Prepared& p);

// Splits the rows of a prepared product (anything with rows(), row_block() and a const,
// noexcept run_rows(begin, end): prepared_gemm, prepared_lowbit_gemm) into one contiguous range
// per thread, each starting on a multiple of the product's row block so that no block is
// computed twice. One range each: a product of 30-200 µs has no room for more hand-offs, and
// thread_pool's claiming lets the caller take a range a late worker has not started. A product
// with a finishing step (prepared_gemm of a layer with post_norm) then finishes its batch rows,
// split over the threads too, once every range is done: each batch row's finish is the same
// code on the same pre-norm bits wherever it runs, so the result is the one-thread gemm's.
template <class Executor, class Prepared>
void run_parallel(Executor& executor, const Prepared& p) {
  const std::size_t threads = thread_count(executor);
  const std::size_t rows = p.rows();
  const std::size_t block = std::max<std::size_t>(1, p.row_block());
  const std::size_t blocks = (rows + block - 1) / block;
  const std::size_t ranges = std::min(blocks, threads);
  executor.parallel_for(ranges, [&p, block, blocks, ranges](std::size_t i) {
    p.run_rows(block * (blocks * i / ranges), block * (blocks * (i + 1) / ranges));
  });
  if constexpr (has_finish<Prepared>::value) finish_parallel(executor, threads, p);
}

// The post-norm of a prepared_gemm's batch rows, split over the threads, once all its row
// ranges have run.
template <class Executor, class Prepared>
void finish_parallel(Executor& executor, std::size_t threads, const Prepared& p) {
  if (!p.needs_finish()) return;
  const std::size_t batch = p.batch();
  const std::size_t parts = std::min(batch, threads);
  executor.parallel_for(parts, [&p, batch, parts](std::size_t i) {
    p.finish_rows(batch * i / parts, batch * (i + 1) / parts);
  });
}

// A product of few activations (a single token) on `count` threads, each preparing its own
// copy: index 0 into p, index i into others[i - 1], each with prepare(q), then running its
// range of rows from that copy; then the finish. Prepare takes 1-3 µs there, but sharing one
// copy cost more than the second thread saved: the caller's next prepare has to take every
// line of the tables back from the other core's cache. Measured at 4096x4096, batch 1, two
// threads on a 2-vCPU Zen 5: 79-91 µs per product with shared tables against 51-63 with
// private ones (add_only), 36-38 against 26 (lut). Every copy is the same computation on the
// same input, so the bits do not change. Used by gemm below and by the Llama engine.
template <class Executor, class Prepare>
void run_private_copies(Executor& executor, std::size_t count, prepared_gemm& p,
                        prepared_gemm* others, const Prepare& prepare) {
  executor.parallel_for(count, [&](std::size_t i) {
    prepared_gemm& q = i == 0 ? p : others[i - 1];
    prepare(q);
    const prepared_gemm& r = q;
    const std::size_t block = std::max<std::size_t>(1, r.row_block());
    const std::size_t blocks = (r.rows() + block - 1) / block;
    r.run_rows(block * (blocks * i / count), block * (blocks * (i + 1) / count));
  });
  finish_parallel(executor, count, p);
}

// Below this many activations (batch rows x in features) prepare's batch rows run on the
// calling thread before the hand-off. At 4096 prepare takes 0.6-1.6 µs on one thread
// (bench_prepare: vnni_int8, add_only, lut), so two threads save 0.3-0.8 µs, up to twice the
// 0.2-0.4 µs the pool's round trip (and the split's one wait) costs; below it the saving is
// no more than that cost.
inline constexpr std::size_t split_prepare_from = 4096;

// prepared_gemm's prepare in two parts (gemm.hpp): start (checks, layout, g) on the calling
// thread, then the batch rows' part split over the threads in the same hand-off as the
// output rows.
struct prepare_split {
  template <class Layer, class T>
  static void start(prepared_gemm& p, const Layer& layer, const T* x, std::size_t batch,
                    std::size_t ldx, float* y, std::size_t ldy, const gemm_options& options) {
    if constexpr (std::is_same_v<Layer, packed_linear>) {
      check_packed_options(layer, options);
      p.start(layer, x, batch, ldx, y, ldy);
    } else {
      p.start(view_of(layer), x, batch, ldx, y, ldy, options);
    }
  }

  // Every index first takes parts of the batch rows to prepare, from a shared counter, until
  // none is left; then waits until every part is done; then runs its range of output rows.
  // Parts are claimed, not tied to an index, so a thread waits only for parts that a running
  // thread has taken: an executor that runs the indices one after another (or a pool whose
  // workers come late) never waits on an index that has not started. The thread that
  // completes the last part picks the body (commit_rows: the or of the rows' overflow
  // flags) and publishes it. Each row's part gives the same bytes wherever it runs, so the
  // product's bits are the one-thread gemm's.
  //
  // Below split_prepare_from (a single token, say) each thread instead prepares a private copy
  // (run_private_copies; start(q) starts a prepared_gemm like p, which is started).
  template <class Executor, class Start>
  static void run(Executor& executor, prepared_gemm& p, const Start& start) {
    const std::size_t threads = thread_count(executor);
    const std::size_t batch = p.batch();
    const std::size_t rows = p.rows();
    const std::size_t block = std::max<std::size_t>(1, p.row_block());
    const std::size_t blocks = (rows + block - 1) / block;
    const std::size_t ranges = std::min(blocks, threads);
    if (threads < 2 || batch < 2 || batch * p.args_.cols < split_prepare_from) {
      if (ranges < 2 || batch == 0) {
        p.commit_rows(p.prepare_rows(0, batch));
        run_parallel(executor, p);
        return;
      }
      std::vector<prepared_gemm> copies(ranges - 1);
      run_private_copies(executor, ranges, p, copies.data(), [&p, &start, batch](prepared_gemm& q) {
        if (&q != &p) start(q);
        q.commit_rows(q.prepare_rows(0, batch));
      });
      return;
    }
    const std::size_t parts = std::min(batch, ranges);
    std::atomic<std::size_t> next{0}, done{0};
    std::atomic<bool> overflow{false}, ready{false};
    executor.parallel_for(ranges, [&, block, blocks, ranges, parts, batch](std::size_t i) {
      for (std::size_t part; (part = next.fetch_add(1, std::memory_order_relaxed)) < parts;) {
        if (p.prepare_rows(batch * part / parts, batch * (part + 1) / parts))
          overflow.store(true, std::memory_order_relaxed);
        // acq_rel: the last part's thread sees every part's writes and flag.
        if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == parts) {
          p.commit_rows(overflow.load(std::memory_order_relaxed));
          ready.store(true, std::memory_order_release);
        }
      }
      for (unsigned spin = 0; !ready.load(std::memory_order_acquire); ++spin) {
        if (spin < 4096)
          cpu_pause();
        else
          std::this_thread::yield();  // the part's thread was descheduled
      }
      const prepared_gemm& q = p;
      q.run_rows(block * (blocks * i / ranges), block * (blocks * (i + 1) / ranges));
    });
    finish_parallel(executor, threads, p);
  }
};

}  // namespace detail

// gemm with the rows split over `executor`: onebit::thread_pool, or any object with
// parallel_for(n, f) that calls f(0) .. f(n-1) and returns when all are done (and, if it has
// one, size(): how many threads it runs). Any layer prepare() takes (1-bit layers with
// optional gemm_options, low-bit layers); the result is bit-identical to the one-thread gemm.
template <class Executor, class Layer, class T, class... Options>
void gemm(Executor& executor, const Layer& layer, const T* x, std::size_t batch, std::size_t ldx,
          float* y, std::size_t ldy, const Options&... options) {
  static_assert(sizeof...(Options) <= 1, "onebit::gemm: at most one options argument");
  if constexpr (detail::is_onebit_layer<Layer>::value) {
    // 1-bit layers: in slices of batch rows, as the one-thread gemm (gemm.hpp says why).
    // Batch rows' prepare split over the threads too (detail::prepare_split).
    prepared_gemm p;
    const gemm_options o(options...);
    detail::for_batch_slices(batch, [&](std::size_t b0, std::size_t rows) {
      const auto start = [&, b0, rows](prepared_gemm& q) {
        detail::prepare_split::start(q, layer, x + b0 * ldx, rows, ldx, y + b0 * ldy, ldy, o);
      };
      start(p);
      detail::prepare_split::run(executor, p, start);
    });
  } else {
    detail::run_parallel(executor, prepare(layer, x, batch, ldx, y, ldy, options...));
  }
}

}  // namespace onebit
