// bench_prepare: the time of prepare() alone, one thread (thread CPU time, best of 5 runs of
// 2000 calls), for packed layers of 64 rows at batch x in sizes around parallel.hpp's
// detail::split_prepare_from (4096 activations): below it the parallel gemm prepares on the
// calling thread, from it on it splits the batch rows over the threads, which saves about
// half of this time and costs about one round trip of the pool (bench_gemm's
// parallel/round_trip rows).
#include <onebit/gemm.hpp>
#include <onebit/parallel.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <random>
#include <utility>
#include <vector>

namespace {

double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

}  // namespace

int main() {
  const std::size_t out = 64;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::printf("split_prepare_from = %zu activations; path %s\n",
              onebit::detail::split_prepare_from, onebit::to_string(onebit::resolve_isa({})));
  const std::pair<std::size_t, std::size_t> sizes[] = {{512, 2},  {1024, 2}, {2048, 2}, {4096, 1},
                                                       {4096, 2}, {256, 16}, {128, 32}};
  for (onebit::kernel k : {onebit::kernel::add_only, onebit::kernel::lut, onebit::kernel::vnni_int8})
    for (const auto& [in, batch] : sizes) {
      onebit::sign_matrix<std::uint64_t> W(out, in);
      const std::vector<onebit::half> g(in, onebit::to_half(0.5f)), h(out, onebit::to_half(0.5f));
      const onebit::linear_view<std::uint64_t> layer{W.view(), g.data(), h.data()};
      const onebit::packed_linear packed = onebit::pack(layer, k);
      std::vector<float> x(batch * in), y(batch * out);
      for (float& v : x) v = normal(rng);
      onebit::prepared_gemm p;
      double best = 1e9;
      for (int run = 0; run < 5; ++run) {
        const double start = thread_seconds();
        for (int i = 0; i < 2000; ++i) p.prepare(packed, x.data(), batch, in, y.data(), out);
        best = std::min(best, (thread_seconds() - start) / 2000);
      }
      std::printf("%-10s in %5zu batch %2zu (%5zu activations): prepare %.2f us\n",
                  onebit::to_string(k), in, batch, in * batch, best * 1e6);
    }
}
