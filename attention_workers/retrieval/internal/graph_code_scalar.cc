// Portable kernel for 4-bit key codes (graph_code_abi.h).

#include "attention_workers/retrieval/internal/graph_code_abi.h"

namespace attic::retrieval::kernels {

void CodeScoreScalar(const CodeScoreArgs& a) {
  const int half = a.head_dim / 2;
  for (int i = 0; i < a.num_ids; ++i) {
    const uint8_t* c = a.codes + static_cast<int64_t>(a.ids[i]) * half;
    float best = 0.0f;
    for (int g = 0; g < a.group_size; ++g) {
      const float* q = a.qs + static_cast<int64_t>(g) * a.head_dim;
      float s = a.bias[g];
      for (int j = 0; j < half; ++j) {
        s += q[j] * static_cast<float>(c[j] & 15) + q[j + half] * static_cast<float>(c[j] >> 4);
      }
      best = g == 0 || s > best ? s : best;
    }
    a.out[i] = best;
  }
}

}  // namespace attic::retrieval::kernels
