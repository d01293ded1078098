// The layouts a packed layer's signs can have: the standard one of sign_matrix.hpp, or one
// re-laid out for a table-lookup kernel (kernels/add_only.hpp and kernels/lut.hpp describe
// each).
#pragma once

namespace onebit::kernels {

enum class packed_format {
  standard,       // the plain layout, read as is
  index3_rows8,   // add_only on avx2: 8-row blocks, 3-sign groups in 32-bit words
  index5_rows16,  // add_only on avx512: 16-row blocks, 5-sign groups in 32-bit words
  lut5_rows32,    // lut on avx512: 32-row blocks, 5-sign groups in 16-bit words
};

inline const char* to_string(packed_format f) noexcept {
  switch (f) {
    case packed_format::standard: return "standard";
    case packed_format::index3_rows8: return "index3_rows8";
    case packed_format::index5_rows16: return "index5_rows16";
    case packed_format::lut5_rows32: return "lut5_rows32";
  }
  return "unknown";
}

}  // namespace onebit::kernels
