// Kernel for 4-bit key codes for AVX-512 (F, BW, VL, DQ): graph_code_kernel.inc over the AVX-512 vector layer.
// Compiled with -mavx512*; only reached after the CPU reported these features.

#include <cstdint>

#include "attention_workers/internal/kernel_abi.h"
#include "attention_workers/retrieval/internal/graph_code_abi.h"
#include "common/x86_intrinsics.h"

namespace attic::retrieval::kernels {
namespace {

constexpr bool kUseBf16Dot = false;
#include "attention_workers/internal/avx512_vec.inc"
#include "attention_workers/retrieval/internal/graph_code_kernel.inc"

}  // namespace

void CodeScoreAvx512(const CodeScoreArgs& args) { CodeScore(args); }

}  // namespace attic::retrieval::kernels
