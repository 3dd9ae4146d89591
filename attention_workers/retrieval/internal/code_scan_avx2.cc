// Code-scan and dot kernels for AVX2 + FMA + F16C: code_scan_kernel.inc over the AVX2 vector layer. Compiled with
// -mavx2 -mfma -mf16c; only reached after the CPU reported these features.

#include <cstdint>

#include "attention_workers/internal/kernel_abi.h"
#include "attention_workers/retrieval/internal/code_scan_abi.h"
#include "common/x86_intrinsics.h"

namespace attic::retrieval::kernels {
namespace {

#include "attention_workers/internal/avx2_vec.inc"
#include "attention_workers/retrieval/internal/code_scan_kernel.inc"

}  // namespace

void CodeScanAvx2(const CodeScanArgs& args) { CodeScan(args); }
void DotAvx2(const DotArgs& args) { Dot(args); }
void DotPanelAvx2(const DotPanelArgs& args) { DotPanel(args); }

}  // namespace attic::retrieval::kernels
