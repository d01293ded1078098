// The engine's attention and SwiGLU gate (models/detail/attention.hpp says what each computes),
// written once over a small operations struct and included inside each path's namespace (and
// target region), so that each instantiation is compiled for that path. No include guard:
// included on purpose.
//
// Ops provides: `vec`, `mask`, `width` W (lanes; divides the key tile of 16), `max_queries`
// (a block's queries: as many as keep every accumulator in a register), `chains` (independent
// add chains the score loop wants in flight); load, store, load_masked / store_masked (lanes
// outside the mask read 0 and are not written), first(rem) (lanes [0, rem)), set1, zero, add,
// sub, div, max, hmax, exp (glibc's expf, lane for lane: vector_exp.hpp), and
// add_product(acc, a, b) = acc + a·b with the product rounded on its own (never fused: run.c's
// arithmetic, whatever the compiler's contraction setting).
//
// Every value is summed in run.c's order: a score over i = 0, 1, ... of q[i]·k[i]; the softmax
// sum and each output over t = 0, 1, ...; only which values run side by side in lanes changes.

constexpr std::size_t key_tile = 16;

// Scores of the block's queries against key tiles [tile0, tile0 + T), into each att row.
template <class Ops, std::size_t Q, std::size_t T>
inline void scores_tiles(const attention_block& b, std::size_t tile0) noexcept {
  using vec = typename Ops::vec;
  constexpr std::size_t per_tile = key_tile / Ops::width;
  vec acc[Q][T][per_tile];
  ONEBIT_UNROLL
  for (std::size_t j = 0; j < Q; ++j)
    ONEBIT_UNROLL
    for (std::size_t u = 0; u < T; ++u)
      ONEBIT_UNROLL
      for (std::size_t v = 0; v < per_tile; ++v) acc[j][u][v] = Ops::zero();
  const std::size_t hs = b.head_size;
  const float* k = b.keys + tile0 * key_tile * hs;
  for (std::size_t i = 0; i < hs; ++i) {
    vec kv[T][per_tile];
    ONEBIT_UNROLL
    for (std::size_t u = 0; u < T; ++u)
      ONEBIT_UNROLL
      for (std::size_t v = 0; v < per_tile; ++v)
        kv[u][v] = Ops::load(k + (u * hs + i) * key_tile + v * Ops::width);
    ONEBIT_UNROLL
    for (std::size_t j = 0; j < Q; ++j) {
      const vec qi = Ops::set1(b.q[j][i]);
      ONEBIT_UNROLL
      for (std::size_t u = 0; u < T; ++u)
        ONEBIT_UNROLL
        for (std::size_t v = 0; v < per_tile; ++v)
          acc[j][u][v] = Ops::add_product(acc[j][u][v], qi, kv[u][v]);
    }
  }
  ONEBIT_UNROLL
  for (std::size_t j = 0; j < Q; ++j)
    ONEBIT_UNROLL
    for (std::size_t u = 0; u < T; ++u)
      ONEBIT_UNROLL
      for (std::size_t v = 0; v < per_tile; ++v)
        Ops::store(b.att[j] + (tile0 + u) * key_tile + v * Ops::width, acc[j][u][v]);
}

// Every tile up to the block's longest query (lanes past a query's length are summed too and
// never read).
template <class Ops, std::size_t Q>
inline void scores(const attention_block& b) noexcept {
  constexpr std::size_t per_tile = key_tile / Ops::width;
  constexpr std::size_t T = Ops::chains / (Q * per_tile) > 0 ? Ops::chains / (Q * per_tile) : 1;
  const std::size_t tiles = (b.len[Q - 1] + key_tile - 1) / key_tile;
  std::size_t tile = 0;
  for (; tile + T <= tiles; tile += T) scores_tiles<Ops, Q, T>(b, tile);
  for (; tile < tiles; ++tile) scores_tiles<Ops, Q, 1>(b, tile);
}

// x[0..n) = f(x[t]) for vector f, the last lanes masked.
template <class Ops, class F>
inline void map_in_place(float* x, std::size_t n, F f) noexcept {
  std::size_t t = 0;
  for (; t + Ops::width <= n; t += Ops::width) Ops::store(x + t, f(Ops::load(x + t)));
  if (t < n) {
    const typename Ops::mask m = Ops::first(n - t);
    Ops::store_masked(x + t, m, f(Ops::load_masked(m, x + t)));
  }
}

// run.c's softmax of each query's scores / scale: max, exp(x − max), their sum in order, and
// the division. The block's sums run as Q independent chains over their common positions.
template <class Ops, std::size_t Q>
inline void softmax_rows(const attention_block& b) noexcept {
  using vec = typename Ops::vec;
  const vec scale = Ops::set1(b.scale);
  float sum[Q];
  ONEBIT_UNROLL
  for (std::size_t j = 0; j < Q; ++j) {
    float* a = b.att[j];
    const std::size_t n = b.len[j];
    map_in_place<Ops>(a, n, [&](vec x) { return Ops::div(x, scale); });
    vec mx = Ops::set1(a[0]);
    std::size_t t = 0;
    for (; t + Ops::width <= n; t += Ops::width) mx = Ops::max(mx, Ops::load(a + t));
    float top = Ops::hmax(mx);
    for (; t < n; ++t) top = a[t] > top ? a[t] : top;
    const vec m = Ops::set1(top);
    map_in_place<Ops>(a, n, [&](vec x) { return Ops::exp(Ops::sub(x, m)); });
    sum[j] = 0.0f;
  }
  const std::size_t common = b.len[0];
  for (std::size_t t = 0; t < common; ++t)
    ONEBIT_UNROLL
    for (std::size_t j = 0; j < Q; ++j) sum[j] += b.att[j][t];
  ONEBIT_UNROLL
  for (std::size_t j = 0; j < Q; ++j) {
    for (std::size_t t = common; t < b.len[j]; ++t) sum[j] += b.att[j][t];
    const vec s = Ops::set1(sum[j]);
    map_in_place<Ops>(b.att[j], b.len[j], [&](vec x) { return Ops::div(x, s); });
  }
}

// out_j[d0 .. d0 + C·W) (the last vector masked by `last`) = Σ_t att_j[t] · v_t, t in order.
template <class Ops, std::size_t Q, std::size_t C>
inline void weighted_values(const attention_block& b, std::size_t d0,
                            typename Ops::mask last) noexcept {
  using vec = typename Ops::vec;
  const std::size_t hs = b.head_size;
  auto load_v = [&](const float* row, std::size_t c) {
    return c + 1 < C ? Ops::load(row + d0 + c * Ops::width)
                     : Ops::load_masked(last, row + d0 + c * Ops::width);
  };
  vec acc[Q][C];
  ONEBIT_UNROLL
  for (std::size_t j = 0; j < Q; ++j)
    ONEBIT_UNROLL
    for (std::size_t c = 0; c < C; ++c) acc[j][c] = Ops::zero();
  const std::size_t common = b.len[0];
  for (std::size_t t = 0; t < common; ++t) {
    const float* row = b.values + t * hs;
    vec v[C];
    ONEBIT_UNROLL
    for (std::size_t c = 0; c < C; ++c) v[c] = load_v(row, c);
    ONEBIT_UNROLL
    for (std::size_t j = 0; j < Q; ++j) {
      const vec a = Ops::set1(b.att[j][t]);
      ONEBIT_UNROLL
      for (std::size_t c = 0; c < C; ++c) acc[j][c] = Ops::add_product(acc[j][c], a, v[c]);
    }
  }
  ONEBIT_UNROLL
  for (std::size_t j = 0; j < Q; ++j) {
    for (std::size_t t = common; t < b.len[j]; ++t) {
      const float* row = b.values + t * hs;
      const vec a = Ops::set1(b.att[j][t]);
      ONEBIT_UNROLL
      for (std::size_t c = 0; c < C; ++c) acc[j][c] = Ops::add_product(acc[j][c], a, load_v(row, c));
    }
    ONEBIT_UNROLL
    for (std::size_t c = 0; c < C; ++c) {
      float* o = b.out[j] + d0 + c * Ops::width;
      if (c + 1 < C)
        Ops::store(o, acc[j][c]);
      else
        Ops::store_masked(o, last, acc[j][c]);
    }
  }
}

// The outputs in chunks of C vectors (as many as keep Q·C accumulators in registers, at most 4:
// a 64-wide head in one pass over the value rows at 16 lanes), then one vector at a time.
template <class Ops, std::size_t Q>
inline void values(const attention_block& b) noexcept {
  constexpr std::size_t W = Ops::width;
  constexpr std::size_t fit = Ops::value_accumulators / Q > 0 ? Ops::value_accumulators / Q : 1;
  constexpr std::size_t C = fit < 4 ? fit : 4;
  const std::size_t hs = b.head_size;
  std::size_t d0 = 0;
  for (; d0 + C * W <= hs; d0 += C * W) weighted_values<Ops, Q, C>(b, d0, Ops::first(W));
  for (; d0 < hs; d0 += W) weighted_values<Ops, Q, 1>(b, d0, Ops::first(hs - d0 < W ? hs - d0 : W));
}

template <class Ops, std::size_t Q>
inline void attend_q(const attention_block& b) noexcept {
  scores<Ops, Q>(b);
  softmax_rows<Ops, Q>(b);
  values<Ops, Q>(b);
}

// Blocks of 1, 2, 4 or 8 queries only: another count runs as such blocks (7 = 4 + 2 + 1). Each
// query's values do not depend on its block, and four sizes instead of eight halve what every
// file that includes the engine compiles.
inline void attend_simd(const attention_block& b) noexcept {
  static_assert(ops::max_queries <= attention_block::capacity, "a block holds at most 8 queries");
  std::size_t done = 0;
  while (done < b.count) {
    attention_block part;
    const std::size_t left = b.count - done;
    part.count = left >= 8 && ops::max_queries >= 8 ? 8 : left >= 4 && ops::max_queries >= 4 ? 4
                 : left >= 2 && ops::max_queries >= 2 ? 2 : 1;
    part.keys = b.keys;
    part.values = b.values;
    part.head_size = b.head_size;
    part.scale = b.scale;
    for (std::size_t j = 0; j < part.count; ++j) {
      part.q[j] = b.q[done + j];
      part.out[j] = b.out[done + j];
      part.att[j] = b.att[done + j];
      part.len[j] = b.len[done + j];
    }
    switch (part.count) {
      case 8:
        if constexpr (ops::max_queries >= 8) attend_q<ops, 8>(part);
        break;
      case 4:
        if constexpr (ops::max_queries >= 4) attend_q<ops, 4>(part);
        break;
      case 2:
        if constexpr (ops::max_queries >= 2) attend_q<ops, 2>(part);
        break;
      default:
        attend_q<ops, 1>(part);
    }
    done += part.count;
  }
}

// hb[i] = silu(hb[i]) · hb2[i] as run.c: v · (1 / (1 + exp(−v))), then · hb2[i].
inline void silu_mul_simd(float* hb, const float* hb2, std::size_t n) noexcept {
  using vec = typename ops::vec;
  const vec one = ops::set1(1.0f), zero = ops::zero();
  auto gate = [&](vec v, vec w) {
    const vec g = ops::div(one, ops::add(one, ops::exp(ops::sub(zero, v))));
    return ops::mul(ops::mul(v, g), w);
  };
  std::size_t i = 0;
  for (; i + ops::width <= n; i += ops::width)
    ops::store(hb + i, gate(ops::load(hb + i), ops::load(hb2 + i)));
  if (i < n) {
    const typename ops::mask m = ops::first(n - i);
    ops::store_masked(hb + i, m, gate(ops::load_masked(m, hb + i), ops::load_masked(m, hb2 + i)));
  }
}
