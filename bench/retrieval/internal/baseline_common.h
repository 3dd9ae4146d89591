// Helpers the baseline adapters share: fp32 copies of the keys for the libraries, and the
// exact group re-rank of the per-head candidates. Private to bench/retrieval.
#pragma once

#include <cstdint>
#include <vector>

#include "attention_workers/retrieval/key_index.h"

namespace attic::retrieval::eval::internal {

// keys [0, count) as fp32, [count, head_dim] row-major.
std::vector<float> KeysToFloat(const KeyRows& keys);

// Sorts and de-duplicates candidates, scores them with the group scorer and keeps the top_k
// in out->positions / out->scores (best first). out->stats is left as it is.
void RerankByGroup(const KeyRows& keys, const GroupScorer& scorer, std::vector<int32_t>* candidates,
                   int top_k, SearchResult* out);

}  // namespace attic::retrieval::eval::internal
