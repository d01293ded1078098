// The SIMD row kernels of rank1 and svid (quant/detail/rank1_kernels.hpp says what each
// computes), written once over a small operations struct and included inside each path's
// namespace and target region (AVX2 + FMA and AVX-512), so that each instantiation is
// compiled for that path. No include guard: included on purpose.
//
// Ops provides: `vec` (floats), `ivec` (int32), `mask`, `width` (lanes); load, load_masked
// (masked-off lanes read 0 and are not touched), store_masked, set1, zero, izero, add, mul,
// fmadd (a·b + c), fnmadd (c − a·b), abs (clears the sign bit), abs_bits (the same as int32),
// max_i32, min, min_masked(mn, m, a, x0) (min over the live lanes only), first(rem) (lanes
// [0, rem), rem <= width), sign_bits(a) and sign_bits_masked(m, a) (bit t set where lane t
// is below 0), spill / ispill (to width floats / uint32), hsum.

template <class Ops>
inline row_scan scan_simd(const float* x, std::size_t n, float scale,
                          unsigned char* signs) noexcept {
  using vec = typename Ops::vec;
  using ivec = typename Ops::ivec;
  constexpr std::size_t W = Ops::width;
  const vec vs = Ops::set1(scale);
  ivec mx = Ops::izero();
  vec mn = Ops::set1(n != 0 ? x[0] : 0.0f), sq0 = Ops::zero(), sq1 = Ops::zero();
  std::size_t c = 0;
  for (; c + 2 * W <= n; c += 2 * W) {
    const vec a = Ops::load(x + c), b = Ops::load(x + c + W);
    mx = Ops::max_i32(mx, Ops::abs_bits(a));
    mx = Ops::max_i32(mx, Ops::abs_bits(b));
    mn = Ops::min(mn, Ops::min(a, b));
    const vec as = Ops::mul(a, vs), bs = Ops::mul(b, vs);
    sq0 = Ops::fmadd(as, as, sq0);
    sq1 = Ops::fmadd(bs, bs, sq1);
    if (signs != nullptr) {
      // 2·W bits, little-endian: element c + t at bit t of the bytes from c / 8 on.
      const std::uint32_t bits = Ops::sign_bits(a) | (Ops::sign_bits(b) << W);
      std::memcpy(signs + c / 8, &bits, 2 * W / 8);
    }
  }
  for (; c < n; c += W) {
    const std::size_t rem = n - c < W ? n - c : W;
    const typename Ops::mask m = Ops::first(rem);
    // Lanes past n load 0: |0| and 0² change nothing, and min skips them.
    const vec a = Ops::load_masked(m, x + c);
    mx = Ops::max_i32(mx, Ops::abs_bits(a));
    mn = Ops::min_masked(mn, m, a, x[0]);
    const vec as = Ops::mul(a, vs);
    sq0 = Ops::fmadd(as, as, sq0);
    if (signs != nullptr) {
      const std::uint32_t bits = Ops::sign_bits_masked(m, a);
      for (std::size_t byte = 0; byte < (rem + 7) / 8; ++byte)
        signs[c / 8 + byte] = static_cast<unsigned char>(bits >> (8 * byte));
    }
  }
  std::uint32_t mxs[W];
  float mns[W];
  Ops::ispill(mxs, mx);
  Ops::spill(mns, mn);
  row_scan r;
  r.min = mns[0];
  for (std::size_t t = 0; t < W; ++t) {
    r.max_abs_bits = mxs[t] > r.max_abs_bits ? mxs[t] : r.max_abs_bits;
    r.min = mns[t] < r.min ? mns[t] : r.min;
  }
  r.sum_squares = Ops::hsum(Ops::add(sq0, sq1));
  return r;
}

template <class Ops, bool Scaled>
inline float fused_simd(const float* x, std::size_t n, const float* v, float* acc, float coef,
                        float scale) noexcept {
  using vec = typename Ops::vec;
  constexpr std::size_t W = Ops::width;
  const vec vs = Ops::set1(scale);
  vec s0 = Ops::zero(), s1 = s0, s2 = s0, s3 = s0;
  auto load_abs = [&](const float* p) {
    vec a = Ops::abs(Ops::load(p));
    if constexpr (Scaled) a = Ops::mul(a, vs);
    return a;
  };
  std::size_t c = 0;
  for (; c + 4 * W <= n; c += 4 * W) {
    s0 = Ops::fmadd(load_abs(x + c), Ops::load(v + c), s0);
    s1 = Ops::fmadd(load_abs(x + c + W), Ops::load(v + c + W), s1);
    s2 = Ops::fmadd(load_abs(x + c + 2 * W), Ops::load(v + c + 2 * W), s2);
    s3 = Ops::fmadd(load_abs(x + c + 3 * W), Ops::load(v + c + 3 * W), s3);
  }
  for (; c + W <= n; c += W) s0 = Ops::fmadd(load_abs(x + c), Ops::load(v + c), s0);
  const std::size_t tail = n - c;
  const typename Ops::mask m = Ops::first(tail);
  if (tail != 0) {
    vec a = Ops::abs(Ops::load_masked(m, x + c));
    if constexpr (Scaled) a = Ops::mul(a, vs);
    s1 = Ops::fmadd(a, Ops::load_masked(m, v + c), s1);
  }
  const float t_row = Ops::hsum(Ops::add(Ops::add(s0, s1), Ops::add(s2, s3))) * coef;
  const vec k = Ops::set1(Scaled ? t_row * scale : t_row);
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const vec a = Ops::abs(Ops::load(x + i)), b = Ops::abs(Ops::load(x + i + W));
    Ops::store(acc + i, Ops::fmadd(k, a, Ops::load(acc + i)));
    Ops::store(acc + i + W, Ops::fmadd(k, b, Ops::load(acc + i + W)));
  }
  for (; i + W <= n; i += W)
    Ops::store(acc + i, Ops::fmadd(k, Ops::abs(Ops::load(x + i)), Ops::load(acc + i)));
  if (tail != 0) {
    const vec a = Ops::abs(Ops::load_masked(m, x + i));
    Ops::store_masked(acc + i, m, Ops::fmadd(k, a, Ops::load_masked(m, acc + i)));
  }
  return t_row;
}

template <class Ops>
inline float residual_simd(const float* x, std::size_t n, const float* g, float h) noexcept {
  using vec = typename Ops::vec;
  constexpr std::size_t W = Ops::width;
  const vec vh = Ops::set1(h);
  vec s0 = Ops::zero(), s1 = s0;
  std::size_t c = 0;
  for (; c + 2 * W <= n; c += 2 * W) {
    const vec d0 = Ops::fnmadd(vh, Ops::load(g + c), Ops::abs(Ops::load(x + c)));
    const vec d1 = Ops::fnmadd(vh, Ops::load(g + c + W), Ops::abs(Ops::load(x + c + W)));
    s0 = Ops::fmadd(d0, d0, s0);
    s1 = Ops::fmadd(d1, d1, s1);
  }
  for (; c < n; c += W) {
    const typename Ops::mask m = Ops::first(n - c < W ? n - c : W);
    const vec d = Ops::fnmadd(vh, Ops::load_masked(m, g + c), Ops::abs(Ops::load_masked(m, x + c)));
    s0 = Ops::fmadd(d, d, s0);
  }
  return Ops::hsum(Ops::add(s0, s1));
}
