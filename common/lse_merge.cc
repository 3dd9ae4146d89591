#include "common/lse_merge.h"

#include <cmath>

namespace attic {

void MergeStateInto(float* o_acc, float* lse_acc, const float* o_part, float lse_part, int d) {
  const float lse_a = *lse_acc;
  if (lse_part == -INFINITY) return;  // the empty part is the identity
  if (lse_a == -INFINITY) {
    for (int i = 0; i < d; ++i) o_acc[i] = o_part[i];
    *lse_acc = lse_part;
    return;
  }
  const float m = std::fmax(lse_a, lse_part);
  const float wa = std::exp(lse_a - m), wb = std::exp(lse_part - m);  // one of them is 1
  const float inv = 1.0f / (wa + wb);
  for (int i = 0; i < d; ++i) o_acc[i] = (wa * o_acc[i] + wb * o_part[i]) * inv;
  *lse_acc = m + std::log1p(std::fmin(wa, wb));  // the larger weight is exactly 1
}

void MergeStatesInto(float* o_acc, float* lse_acc, const float* o_part, const float* lse_part,
                     int num_heads, int d) {
  for (int h = 0; h < num_heads; ++h) {
    MergeStateInto(o_acc + h * d, lse_acc + h, o_part + h * d, lse_part[h], d);
  }
}

}  // namespace attic
