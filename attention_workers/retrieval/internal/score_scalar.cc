// Portable scoring kernel: the reference the vector kernels are tested against.

#include <cstdint>
#include <cstring>
#include <limits>

#include "attention_workers/internal/kernel_abi.h"
#include "attention_workers/retrieval/internal/score_abi.h"
#include "common/dtype.h"

namespace attic::retrieval::kernels {

void ScoreScalar(const ScoreArgs& a) {
  float row[kMaxScoreDim];
  for (int i = 0; i < a.num_rows; ++i) {
    const void* src = a.rows[i];
    if (a.dtype == attic::kernels::kDTypeF32) {
      std::memcpy(row, src, sizeof(float) * static_cast<size_t>(a.head_dim));
    } else {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int d = 0; d < a.head_dim; ++d) {
        row[d] = a.dtype == attic::kernels::kDTypeBF16 ? Bf16ToFloat(h[d]) : Fp16ToFloat(h[d]);
      }
    }
    float best = -std::numeric_limits<float>::infinity();
    for (int g = 0; g < a.group_size; ++g) {
      const float* q = a.q + static_cast<size_t>(g) * a.head_dim;
      float s = 0.0f;
      for (int d = 0; d < a.head_dim; ++d) s += q[d] * row[d];
      best = s > best ? s : best;
    }
    a.out[i] = best;
  }
}

}  // namespace attic::retrieval::kernels
