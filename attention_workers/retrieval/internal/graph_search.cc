#include "attention_workers/retrieval/internal/graph_search.h"

namespace attic::retrieval::internal {

void SearchScratch::Begin(int64_t n) {
  if (static_cast<int64_t>(stamp_.size()) < n) stamp_.resize(static_cast<size_t>(n), 0);
  if (++epoch_ == 0) {
    // Wrapped around: old stamps could collide with new epochs.
    std::fill(stamp_.begin(), stamp_.end(), 0);
    epoch_ = 1;
  }
  frontier.clear();
  best.clear();
  batch.clear();
}

SearchScratch& ThreadSearchScratch() {
  thread_local SearchScratch scratch;
  return scratch;
}

}  // namespace attic::retrieval::internal
