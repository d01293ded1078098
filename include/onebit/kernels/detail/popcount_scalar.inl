// The 64-bit-word popcount bodies, included once per path inside that path's namespace and
// target region (portable: the compiler's popcount; sse41: the POPCNT instruction), the way
// simdjson compiles one source for several targets. No include guard: included on purpose.

// Σ_i q_i W_ji by bit planes (quantize::int8_dot). Plane bits past cols are 0, so padding
// bits of W never count.
inline void int8_rows(const detail::gemm_args& g, std::size_t row_begin,
                      std::size_t row_end) noexcept {
  const std::size_t words = (g.cols + 63) / 64;
  for (std::size_t b = 0; b < g.batch; ++b) {
    const unsigned char* planes = g.planes + b * g.ldp;
    for (std::size_t j = row_begin; j < row_end; ++j) {
      const unsigned char* row = g.w + j * g.w_stride;
      std::uint64_t count[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (std::size_t w = 0; w < words; ++w) {
        std::uint64_t wv;
        std::memcpy(&wv, row + 8 * w, 8);
        ONEBIT_UNROLL
        for (int p = 0; p < 8; ++p) {
          std::uint64_t pv;
          std::memcpy(&pv, planes + p * g.plane_stride + 8 * w, 8);
          count[p] += static_cast<std::uint64_t>(__builtin_popcountll(pv & wv));
        }
      }
      g.y[b * g.ldy + j] = quantize::scale_dot(quantize::int8_dot(g.q_sum[b], count),
                                               g.row_scale[b], to_float(g.h[j]));
    }
  }
}

// n − 2·popcount((s XOR w) AND valid): the valid plane clears the padding bits of W.
inline void binary_rows(const detail::gemm_args& g, std::size_t row_begin,
                        std::size_t row_end) noexcept {
  const std::size_t words = (g.cols + 63) / 64;
  for (std::size_t b = 0; b < g.batch; ++b) {
    const unsigned char* signs = g.planes + b * g.ldp;
    for (std::size_t j = row_begin; j < row_end; ++j) {
      const unsigned char* row = g.w + j * g.w_stride;
      std::uint64_t count = 0;
      for (std::size_t w = 0; w < words; ++w) {
        std::uint64_t wv, sv, vv;
        std::memcpy(&wv, row + 8 * w, 8);
        std::memcpy(&sv, signs + 8 * w, 8);
        std::memcpy(&vv, g.valid + 8 * w, 8);
        count += static_cast<std::uint64_t>(__builtin_popcountll((sv ^ wv) & vv));
      }
      const auto dot = static_cast<std::int64_t>(g.cols) - 2 * static_cast<std::int64_t>(count);
      g.y[b * g.ldy + j] = quantize::scale_dot(dot, g.row_scale[b], to_float(g.h[j]));
    }
  }
}
