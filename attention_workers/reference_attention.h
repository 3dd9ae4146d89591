// fp64 reference attention, for tests, the demo and accuracy tools: the ground truth the
// kernels are measured against. Reads K/V in their storage dtype, widens exactly, and
// accumulates in double. Slow by design (no vectorization).
//
//   std::vector<double> o(g * d), lse(g);
//   ReferenceAttention(q, g, d, scale, DType::kBFloat16, runs, o.data(), lse.data());
//
// Thread safety: stateless.
#pragma once

#include <span>

#include "attention_workers/decode_attention.h"

namespace attic {

// q [G, D] fp32; runs as in DecodeAttention; out [G, D] and lse [G] in double.
// With no tokens: out zero, lse -inf.
void ReferenceAttention(const float* q, int group_size, int head_dim, float scale, DType dtype,
                        std::span<const KvRun> runs, double* out, double* lse);

// Norm-wise relative error ||a - b|| / ||b|| of n values.
double RelativeError(const float* a, const double* b, int n);

}  // namespace attic
