// One synthetic row of K, V or Q values (the generator behind SyntheticKv), exposed so that
// tests can check that the vectorized and the portable paths write the same bytes. Not for use
// outside services/replay.
//
// Thread safety: a stateless function.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace attic::replay::internal {

// d values (a multiple of 8) of the stream `state` in `dtype` at out (d * DTypeSize bytes, any
// alignment): keys uniform in [-2, 2), otherwise [-1, 1). `portable` forces the scalar path;
// otherwise SSE2 is used where the target has it. Both paths write identical bytes.
void SyntheticRow(DType dtype, uint64_t state, int d, bool key, bool portable, std::byte* out);

// d fp32 values (a multiple of 8) to `dtype` at out, rounded toward zero as SyntheticRow rounds
// (fp16 flushes magnitudes below 2^-14 to zero; |x| must stay below 65504). Both paths write
// identical bytes.
void TruncateRow(DType dtype, const float* in, int d, bool portable, std::byte* out);

}  // namespace attic::replay::internal
