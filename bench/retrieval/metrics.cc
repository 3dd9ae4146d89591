#include "bench/retrieval/metrics.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace attic::retrieval::eval {

double RecallAt(std::span<const int32_t> retrieved, std::span<const int32_t> truth) {
  if (truth.empty()) return 1.0;
  const std::unordered_set<int32_t> want(truth.begin(), truth.end());
  int64_t hits = 0;
  for (int32_t p : retrieved) hits += want.count(p);
  return static_cast<double>(hits) / static_cast<double>(truth.size());
}

double MassRecall(std::span<const float> lse_selected, std::span<const float> lse_full) {
  if (lse_full.empty()) return 1.0;
  double sum = 0.0;
  for (size_t g = 0; g < lse_full.size(); ++g) {
    sum += std::exp(static_cast<double>(lse_selected[g]) - static_cast<double>(lse_full[g]));
  }
  return sum / static_cast<double>(lse_full.size());
}

double OutputRelErr(const float* o_selected, const float* o_full, int group, int head_dim) {
  if (group < 1) return 0.0;
  double total = 0.0;
  for (int g = 0; g < group; ++g) {
    double diff = 0.0, norm = 0.0;
    for (int d = 0; d < head_dim; ++d) {
      const size_t i = static_cast<size_t>(g) * head_dim + d;
      const double e = static_cast<double>(o_selected[i]) - static_cast<double>(o_full[i]);
      diff += e * e;
      norm += static_cast<double>(o_full[i]) * o_full[i];
    }
    total += norm > 0.0 ? std::sqrt(diff / norm) : (diff > 0.0 ? 1.0 : 0.0);
  }
  return total / group;
}

int64_t StepBytesRead(const SearchStats& search, int64_t selection_size, int64_t selection_scored,
                      int head_dim) {
  const int64_t row = static_cast<int64_t>(head_dim) * kBytesPerElement;
  const int64_t unscored = std::max<int64_t>(0, selection_size - selection_scored);
  return search.bytes_read + selection_size * row + unscored * row;
}

double DenseBytes(int64_t context, int head_dim) {
  return static_cast<double>(context) * 2.0 * head_dim * kBytesPerElement;
}

}  // namespace attic::retrieval::eval
