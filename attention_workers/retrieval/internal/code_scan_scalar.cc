// Code-scan and dot kernels, portable: code_scan_kernel.inc over the one-lane vector layer, for CPUs without AVX2.
// Compiled with the baseline flags.

#include <cstdint>
#include <cstring>

#include "attention_workers/internal/kernel_abi.h"
#include "attention_workers/retrieval/internal/code_scan_abi.h"
#include "common/dtype.h"

namespace attic::retrieval::kernels {
namespace {

#include "attention_workers/internal/scalar_vec.inc"
#include "attention_workers/retrieval/internal/code_scan_kernel.inc"

}  // namespace

void CodeScanScalar(const CodeScanArgs& args) { CodeScan(args); }
void DotScalar(const DotArgs& args) { Dot(args); }
void DotPanelScalar(const DotPanelArgs& args) { DotPanel(args); }

}  // namespace attic::retrieval::kernels
