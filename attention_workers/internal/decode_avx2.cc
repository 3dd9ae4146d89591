// Decode attention kernel for AVX2 + FMA + F16C. Compiled with -mavx2 -mfma -mf16c; only
// reached after the CPU reported these features (attention_workers/isa.cc).
#include <immintrin.h>

#include "attention_workers/internal/kernel_abi.h"

namespace attic::kernels {
namespace {

#include "attention_workers/internal/avx2_vec.inc"
#include "attention_workers/internal/decode_kernel.inc"

}  // namespace

void DecodeAvx2(const DecodeArgs& args) { Decode(args); }

}  // namespace attic::kernels
