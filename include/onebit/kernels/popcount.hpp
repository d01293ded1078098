// popcount_int8 and popcount_binary: integer dot products of quantised activations
// (kernels/quantize.hpp, ALGORITHMS.md §4) with the packed signs, by AND/XOR and popcount on
// the standard layout. The integer sums are exact, so every path gives the same bits.
//
//  * popcount_int8 — bit-serial: q has 8 two's-complement bit-planes P_p; Σ_{W=−1} q_i =
//    Σ_p c_p·popcount(P_p AND w) (c_p = 2^p, c_7 = −128) and the dot is Σq − 2·that.
//  * popcount_binary — XNOR-Net: dot = n − 2·popcount((s XOR w) AND valid).
//
//  * vnni_int8 — on avx512_icl, the bits of 4 rows are expanded to 0/1 bytes once per 64
//    columns and multiplied with the int8 activations of 4 batch rows by vpdpbusd: the same
//    Σ_{W=−1} q_i, 64 multiply-adds per instruction. Faster than the planes at every batch on
//    the development machine (4096x4096: 108 against 81 Gweights/s at batch 1, 178 against 40
//    at batch 64); on paths without VNNI it runs the bit-serial body.
//
// Paths: avx512_icl counts 512 bits at a time with VPOPCNTDQ (and binary fuses XOR and AND in
// one vpternlogd); avx512 and avx2 count bytes with a 16-entry nibble table (vpshufb) and sum
// them with vpsadbw; sse41 runs 64-bit words through POPCNT; neon counts bytes with cnt;
// portable uses the compiler's popcount. These kernels read the standard layout, which is
// already the layout popcount wants: pack() keeps it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../detail/target.hpp"
#include "../half.hpp"
#include "detail/gemm_args.hpp"
#include "quantize.hpp"

namespace onebit::kernels::popcount::portable {
#include "detail/popcount_scalar.inl"
}  // namespace onebit::kernels::popcount::portable

#if ONEBIT_X86
ONEBIT_TARGET_BEGIN(ONEBIT_FEATURES_SSE41)
namespace onebit::kernels::popcount::sse41 {
#include "detail/popcount_scalar.inl"
}  // namespace onebit::kernels::popcount::sse41
ONEBIT_TARGET_END
#endif
