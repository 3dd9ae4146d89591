// Scoring kernel, portable: score_kernel.inc over the one-lane vector layer, for CPUs without AVX2.
// Compiled with the baseline flags.

#include <cstdint>
#include <cstring>

#include "attention_workers/internal/kernel_abi.h"
#include "attention_workers/retrieval/internal/score_abi.h"
#include "common/dtype.h"

namespace attic::retrieval::kernels {
namespace {

#include "attention_workers/internal/scalar_vec.inc"
#include "attention_workers/retrieval/internal/score_kernel.inc"

}  // namespace

void ScoreScalar(const ScoreArgs& args) { Score(args); }

}  // namespace attic::retrieval::kernels
