// Decode attention kernel for AVX-512 (F, BW, VL, DQ). Compiled with -mavx512*; only reached
// after the CPU reported these features (attention_workers/isa.cc).

#include "attention_workers/internal/kernel_abi.h"
#include "common/x86_intrinsics.h"

namespace attic::kernels {
namespace {

constexpr bool kUseBf16Dot = false;
#include "attention_workers/internal/avx512_vec.inc"
#include "attention_workers/internal/decode_kernel.inc"

}  // namespace

void DecodeAvx512(const DecodeArgs& args) { Decode(args); }

}  // namespace attic::kernels
