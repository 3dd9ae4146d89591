// Decode attention kernel for AVX-512 with AVX512_BF16: bf16 keys are multiplied with
// VDPBF16PS against q split into two bf16 halves (q = q_hi + q_lo, about 16 significant
// bits), which skips the widening of keys. Values still take the fp32 path. Only reached
// after the CPU reported avx512_bf16 (attention_workers/isa.cc).

#include "attention_workers/internal/kernel_abi.h"
#include "common/x86_intrinsics.h"

namespace attic::kernels {
namespace {

constexpr bool kUseBf16Dot = true;
#include "attention_workers/internal/avx512_vec.inc"
#include "attention_workers/internal/decode_kernel.inc"

}  // namespace

void DecodeAvx512Bf16(const DecodeArgs& args) { Decode(args); }

}  // namespace attic::kernels
