// Code-scan and dot kernels for AVX-512 (F, BW, VL, DQ): code_scan_kernel.inc over the AVX-512 vector layer.
// Compiled with -mavx512*; only reached after the CPU reported these features.

#include <cstdint>

#include "attention_workers/internal/kernel_abi.h"
#include "attention_workers/retrieval/internal/code_scan_abi.h"
#include "common/x86_intrinsics.h"

namespace attic::retrieval::kernels {
namespace {

constexpr bool kUseBf16Dot = false;
#include "attention_workers/internal/avx512_vec.inc"
#include "attention_workers/retrieval/internal/code_scan_kernel.inc"

}  // namespace

void CodeScanAvx512(const CodeScanArgs& args) { CodeScan(args); }
void DotAvx512(const DotArgs& args) { Dot(args); }
void DotPanelAvx512(const DotPanelArgs& args) { DotPanel(args); }

}  // namespace attic::retrieval::kernels
