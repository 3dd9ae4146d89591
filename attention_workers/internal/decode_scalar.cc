// Portable decode attention kernel: the same algorithm as the vector kernels with a
// one-lane "vector", for CPUs without AVX2. Compiled with the baseline flags, so it may use
// common/ headers freely.
#include <cstring>

#include "attention_workers/internal/kernel_abi.h"
#include "common/dtype.h"

namespace attic::kernels {
namespace {

#include "attention_workers/internal/scalar_vec.inc"
#include "attention_workers/internal/decode_kernel.inc"

}  // namespace

void DecodeScalar(const DecodeArgs& args) { Decode(args); }

}  // namespace attic::kernels
