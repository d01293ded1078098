// The nibble-table popcount bodies, written once over a small operations struct and included
// inside each path's namespace and target region (avx512 and avx2 in popcount_x86.hpp), so
// that every instantiation is compiled for that path's instructions. Bytes are counted by
// looking up each nibble in a 16-entry table (vpshufb) and the byte counts summed into 64-bit
// lanes by vpsadbw against zero. No include guard: included on purpose.
//
// Ops provides: `vec`; `bytes` (per vector); load (aligned), and_, xor_, byte_counts (the
// nibble lookup and add), sad (byte sums into 64-bit lanes), add64, zero, table, low_nibbles
// and reduce (the sum of the 64-bit lanes).

// Σ_i q_i W_ji by bit planes (quantize::int8_dot). Plane bits past cols are 0, so padding
// bits of W never count.
template <class Ops>
inline void nibble_int8_rows(const detail::gemm_args& g, std::size_t row_begin,
                             std::size_t row_end) noexcept {
  using vec = typename Ops::vec;
  constexpr std::size_t bytes = Ops::bytes;
  const std::size_t chunks = (g.cols + 8 * bytes - 1) / (8 * bytes);
  const vec table = Ops::table(), low = Ops::low_nibbles(), zero = Ops::zero();
  for (std::size_t b = 0; b < g.batch; ++b) {
    const unsigned char* planes = g.planes + b * g.ldp;
    for (std::size_t j = row_begin; j < row_end; ++j) {
      const unsigned char* row = g.w + j * g.w_stride;
      vec count[8];
      ONEBIT_UNROLL
      for (int p = 0; p < 8; ++p) count[p] = zero;
      for (std::size_t c = 0; c < chunks; ++c) {
        const vec w = Ops::load(row + bytes * c);
        ONEBIT_UNROLL
        for (int p = 0; p < 8; ++p) {
          const vec plane = Ops::load(planes + p * g.plane_stride + bytes * c);
          count[p] = Ops::add64(count[p],
                                Ops::sad(Ops::byte_counts(Ops::and_(plane, w), table, low), zero));
        }
      }
      std::uint64_t counts[8];
      for (int p = 0; p < 8; ++p) counts[p] = Ops::reduce(count[p]);
      g.y[b * g.ldy + j] = quantize::scale_dot(quantize::int8_dot(g.q_sum[b], counts),
                                               g.row_scale[b], to_float(g.h[j]));
    }
  }
}

// n − 2·popcount((s XOR w) AND valid): the valid plane clears the padding bits of W.
template <class Ops>
inline void nibble_binary_rows(const detail::gemm_args& g, std::size_t row_begin,
                               std::size_t row_end) noexcept {
  using vec = typename Ops::vec;
  constexpr std::size_t bytes = Ops::bytes;
  const std::size_t chunks = (g.cols + 8 * bytes - 1) / (8 * bytes);
  const vec table = Ops::table(), low = Ops::low_nibbles(), zero = Ops::zero();
  for (std::size_t b = 0; b < g.batch; ++b) {
    const unsigned char* signs = g.planes + b * g.ldp;
    for (std::size_t j = row_begin; j < row_end; ++j) {
      const unsigned char* row = g.w + j * g.w_stride;
      vec count = zero;
      for (std::size_t c = 0; c < chunks; ++c) {
        const vec x = Ops::and_(Ops::xor_(Ops::load(signs + bytes * c), Ops::load(row + bytes * c)),
                                Ops::load(g.valid + bytes * c));
        count = Ops::add64(count, Ops::sad(Ops::byte_counts(x, table, low), zero));
      }
      const auto dot =
          static_cast<std::int64_t>(g.cols) - 2 * static_cast<std::int64_t>(Ops::reduce(count));
      g.y[b * g.ldy + j] = quantize::scale_dot(dot, g.row_scale[b], to_float(g.h[j]));
    }
  }
}

inline void int8_rows(const detail::gemm_args& g, std::size_t row_begin,
                      std::size_t row_end) noexcept {
  nibble_int8_rows<ops>(g, row_begin, row_end);
}

inline void binary_rows(const detail::gemm_args& g, std::size_t row_begin,
                        std::size_t row_end) noexcept {
  nibble_binary_rows<ops>(g, row_begin, row_end);
}
