// Decode attention kernel for AVX-512 (F, BW, VL, DQ). Compiled with -mavx512*; only reached
// after the CPU reported these features (attention_workers/isa.cc).
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

constexpr bool kUseBf16Dot = false;
#include "attention_workers/internal/avx512_vec.inc"
#include "attention_workers/internal/decode_kernel.inc"

}  // namespace

void DecodeAvx512(const DecodeArgs& args) { Decode(args); }

}  // namespace attic::kernels
