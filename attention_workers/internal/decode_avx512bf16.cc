// Decode attention kernel for AVX-512 with AVX512_BF16: bf16 keys are multiplied with
// VDPBF16PS against q split into two bf16 halves (q = q_hi + q_lo, about 16 significant
// bits), which skips the widening of keys. Values still take the fp32 path. Only reached
// after the CPU reported avx512_bf16 (attention_workers/isa.cc).
// GCC 12's avx512fintrin.h builds "undefined" vectors by self-assignment, which trips
// -Wuninitialized once inlined here (GCC bug 105593); the kernel itself has no such reads.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "attention_workers/internal/kernel_abi.h"

namespace attic::kernels {
namespace {

constexpr bool kUseBf16Dot = true;
#include "attention_workers/internal/avx512_vec.inc"
#include "attention_workers/internal/decode_kernel.inc"

}  // namespace

void DecodeAvx512Bf16(const DecodeArgs& args) { Decode(args); }

}  // namespace attic::kernels
