#include "attention_workers/retrieval/recall_guard.h"

#include <algorithm>

namespace attic::retrieval {

RecallGuard::Action RecallGuard::Report(int64_t exact, int64_t hits) {
  if (exact <= 0 || dense()) return Action::kNone;
  MutexLock lock(&mu_);
  ++pending_;
  exact_ += exact;
  hits_ += std::clamp<int64_t>(hits, 0, exact);
  if (pending_ < std::max(1, options_.checks)) return Action::kNone;
  const double recall = static_cast<double>(hits_) / static_cast<double>(exact_);
  pending_ = 0;
  exact_ = 0;
  hits_ = 0;
  if (recall >= options_.target) return Action::kNone;
  const int now = effort() > 0 ? effort() : options_.base_effort;
  if (options_.base_effort <= 0 || now >= options_.max_effort) {
    dense_.store(true, std::memory_order_relaxed);
    return Action::kDense;
  }
  effort_.store(std::min(options_.max_effort, std::max(now + 1, now + now / 2)),
                std::memory_order_relaxed);
  return Action::kRaised;
}

}  // namespace attic::retrieval
