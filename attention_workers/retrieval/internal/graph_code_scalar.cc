// Kernel for 4-bit key codes, portable: graph_code_kernel.inc over the one-lane vector layer, for CPUs without AVX2.
// Compiled with the baseline flags.

#include <cstdint>
#include <cstring>

#include "attention_workers/internal/kernel_abi.h"
#include "attention_workers/retrieval/internal/graph_code_abi.h"
#include "common/dtype.h"

namespace attic::retrieval::kernels {
namespace {

#include "attention_workers/internal/scalar_vec.inc"
#include "attention_workers/retrieval/internal/graph_code_kernel.inc"

}  // namespace

void CodeScoreScalar(const CodeScoreArgs& args) { CodeScore(args); }

}  // namespace attic::retrieval::kernels
