// The SIMD body of the low-bit combine (detail/lowbit_combine.hpp), written once over a small
// operations struct and included inside each path's namespace and target region, so that each
// instantiation is compiled for that path. No include guard: included on purpose.
//
// Ops provides: `vec`, `mask`, `width` (floats per vector), load, store, set1, fmsub (a·b − c),
// fmadd (a·b + c), zero; and `masked_tail`: when true, first(rem), load_masked and
// store_masked run the last n % width outputs through the same loop (masked-off lanes are not
// touched); when false the portable body computes them.
template <class Ops>
inline void combine_simd(float* y, std::size_t n, std::size_t groups, const float* s,
                         const float* c, const float* p, std::size_t ld,
                         const float* sums) noexcept {
  using vec = typename Ops::vec;
  constexpr std::size_t width = Ops::width;
  std::size_t j = 0;
  for (; j + width <= n; j += width) {
    vec acc = Ops::zero();
    for (std::size_t g = 0; g < groups; ++g) {
      const std::size_t o = g * ld + j;
      const vec t = Ops::fmsub(Ops::load(c + o), Ops::set1(sums[g]), Ops::load(p + o));
      acc = Ops::fmadd(Ops::load(s + o), t, acc);
    }
    Ops::store(y + j, acc);
  }
  if (j == n) return;
  if constexpr (Ops::masked_tail) {
    const typename Ops::mask m = Ops::first(n - j);
    vec acc = Ops::zero();
    for (std::size_t g = 0; g < groups; ++g) {
      const std::size_t o = g * ld + j;
      const vec t =
          Ops::fmsub(Ops::load_masked(m, c + o), Ops::set1(sums[g]), Ops::load_masked(m, p + o));
      acc = Ops::fmadd(Ops::load_masked(m, s + o), t, acc);
    }
    Ops::store_masked(y + j, m, acc);
  } else {
    combine_portable(y + j, n - j, groups, s + j, c + j, p + j, ld, sums);
  }
}
