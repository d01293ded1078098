// The 8-sign table bodies of the group-scaled layer on the plain layout (kernels/
// group_scaled.hpp), included once per path inside that path's namespace and target region.
// No include guard: included on purpose. G is a multiple of 8, so a group is whole bytes.

// Float: per group, 4 partial sums of table entries (add_only's 8-sign tables), then one fused
// multiply-add with the group's scale.
inline void float_rows(const args& g, std::size_t row_begin, std::size_t row_end) noexcept {
  const std::size_t gbytes = g.group / 8, bytes = (g.cols + 7) / 8;
  for (std::size_t b = 0; b < g.batch; ++b) {
    const float* tables = g.tables + b * g.ldt;
    for (std::size_t j = row_begin; j < row_end; ++j) {
      const unsigned char* row = g.w + j * g.w_stride;
      const half* d = g.d + j * g.groups;
      float acc = 0.0f;
      for (std::size_t grp = 0; grp < g.groups; ++grp) {
        const std::size_t i0 = grp * gbytes, i1 = i0 + gbytes < bytes ? i0 + gbytes : bytes;
        const float* t = tables + i0 * 256;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        std::size_t i = i0;
        for (; i + 4 <= i1; i += 4, t += 4 * 256) {
          s0 += t[row[i]];
          s1 += t[256 + row[i + 1]];
          s2 += t[512 + row[i + 2]];
          s3 += t[768 + row[i + 3]];
        }
        for (; i < i1; ++i, t += 256) s0 += t[row[i]];
        acc = std::fma(to_float(d[grp]), (s0 + s1) + (s2 + s3), acc);
      }
      g.y[b * g.ldy + j] = acc;
    }
  }
}

// int8: per group, an exact int32 sum of int16 table entries, then the fused multiply-add
// every path does in the same order.
inline void int8_rows(const args& g, std::size_t row_begin, std::size_t row_end) noexcept {
  const std::size_t gbytes = g.group / 8, bytes = (g.cols + 7) / 8;
  for (std::size_t b = 0; b < g.batch; ++b) {
    const auto* tables = static_cast<const std::int16_t*>(g.itables) + b * (g.ldit / 2);
    for (std::size_t j = row_begin; j < row_end; ++j) {
      const unsigned char* row = g.w + j * g.w_stride;
      const half* d = g.d + j * g.groups;
      float acc = 0.0f;
      for (std::size_t grp = 0; grp < g.groups; ++grp) {
        const std::size_t i0 = grp * gbytes, i1 = i0 + gbytes < bytes ? i0 + gbytes : bytes;
        const std::int16_t* t = tables + i0 * 256;
        std::int32_t s0 = 0, s1 = 0;
        std::size_t i = i0;
        for (; i + 2 <= i1; i += 2, t += 512) {
          s0 += t[row[i]];
          s1 += t[256 + row[i + 1]];
        }
        if (i < i1) s0 += t[row[i]];
        acc = std::fma(to_float(d[grp]), static_cast<float>(s0 + s1), acc);
      }
      g.y[b * g.ldy + j] = acc * g.row_scale[b];
    }
  }
}
