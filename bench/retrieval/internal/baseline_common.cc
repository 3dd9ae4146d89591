#include "bench/retrieval/internal/baseline_common.h"

#include <algorithm>

namespace attic::retrieval::eval::internal {

std::vector<float> KeysToFloat(const KeyRows& keys) {
  std::vector<float> out(static_cast<size_t>(keys.count) * keys.head_dim);
  for (int64_t p = 0; p < keys.count; ++p) {
    ConvertToFloat(keys.dtype, keys.row(p), out.data() + static_cast<size_t>(p) * keys.head_dim,
                   static_cast<size_t>(keys.head_dim));
  }
  return out;
}

void RerankByGroup(const KeyRows& keys, const GroupScorer& scorer, std::vector<int32_t>* candidates,
                   int top_k, SearchResult* out) {
  std::sort(candidates->begin(), candidates->end());
  candidates->erase(std::unique(candidates->begin(), candidates->end()), candidates->end());
  std::vector<float> scores(candidates->size());
  scorer.ScorePositions(keys, *candidates, scores.data());
  const std::vector<int32_t> order = TopKPositions(scores, top_k);
  out->positions.clear();
  out->scores.clear();
  for (int32_t i : order) {
    out->positions.push_back((*candidates)[static_cast<size_t>(i)]);
    out->scores.push_back(scores[static_cast<size_t>(i)]);
  }
}

}  // namespace attic::retrieval::eval::internal
