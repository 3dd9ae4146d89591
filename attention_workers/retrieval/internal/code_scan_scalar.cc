// Portable code-scan and dot kernels: the reference the vector kernels are tested against.

#include <cstdint>
#include <limits>

#include "attention_workers/retrieval/internal/code_scan_abi.h"

namespace attic::retrieval::kernels {
namespace {

int Code(const uint8_t* block, int bits, int d, int i) {
  if (bits == 4) {
    const uint8_t byte = block[(d / 2) * kCodeBlock + i];
    return d % 2 == 0 ? byte & 15 : byte >> 4;
  }
  const int mask = block[2 * d] | (block[2 * d + 1] << 8);
  return (mask >> i) & 1;
}

}  // namespace

void CodeScanScalar(const CodeScanArgs& a) {
  const int block_bytes = a.head_dim * kCodeBlock * a.bits / 8;
  for (int b = 0; b < a.num_blocks; ++b) {
    const uint8_t* block = a.codes + static_cast<int64_t>(b) * block_bytes;
    for (int i = 0; i < kCodeBlock; ++i) {
      float best = -std::numeric_limits<float>::infinity();
      for (int g = 0; g < a.group_size; ++g) {
        const float* q = a.q + static_cast<int64_t>(g) * a.head_dim;
        float s = a.bias[g];
        for (int d = 0; d < a.head_dim; ++d) s += q[d] * static_cast<float>(Code(block, a.bits, d, i));
        best = s > best ? s : best;
      }
      a.out[b * kCodeBlock + i] = best;
    }
  }
}

void DotScalar(const DotArgs& a) {
  for (int i = 0; i < a.num_rows; ++i) {
    const float* x = a.x + static_cast<int64_t>(i) * a.head_dim;
    for (int c = 0; c < a.num_cols; ++c) {
      const float* y = a.y + static_cast<int64_t>(c) * a.head_dim;
      float s = 0.0f;
      for (int d = 0; d < a.head_dim; ++d) s += x[d] * y[d];
      a.out[static_cast<int64_t>(i) * a.num_cols + c] = s;
    }
  }
}

}  // namespace attic::retrieval::kernels
