#include "client/internal/lse_merge.h"

#include <cmath>

namespace attic::client_internal {
namespace {

void MergeOne(float* o_acc, float* lse_acc, const float* o_part, float lse_part, int d) {
  if (lse_part == -INFINITY) return;  // an empty part changes nothing
  if (*lse_acc == -INFINITY) {        // an empty accumulator takes the part as is
    for (int i = 0; i < d; ++i) o_acc[i] = o_part[i];
    *lse_acc = lse_part;
    return;
  }
  // Weights relative to the larger lse never overflow.
  const float m = std::fmax(*lse_acc, lse_part);
  const float w_acc = std::exp(*lse_acc - m);
  const float w_part = std::exp(lse_part - m);
  const float inv = 1.0f / (w_acc + w_part);
  for (int i = 0; i < d; ++i) o_acc[i] = (w_acc * o_acc[i] + w_part * o_part[i]) * inv;
  *lse_acc = m + std::log(w_acc + w_part);
}

}  // namespace

void MergeStatesInto(float* o_acc, float* lse_acc, const float* o_part, const float* lse_part,
                     int num_heads, int d) {
  for (int h = 0; h < num_heads; ++h) {
    MergeOne(o_acc + static_cast<long>(h) * d, lse_acc + h, o_part + static_cast<long>(h) * d,
             lse_part[h], d);
  }
}

}  // namespace attic::client_internal
