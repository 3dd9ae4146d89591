#include "services/scheduler/recent_placements.h"

#include <algorithm>

#include "common/hash.h"

namespace attic::scheduler {

RecentPlacements::RecentPlacements(std::chrono::milliseconds ttl, size_t max_entries)
    : ttl_(ttl), max_entries_(std::max<size_t>(max_entries, 1)) {}

void RecentPlacements::Record(uint64_t scope, std::span<const uint64_t> hashes,
                              const std::string& worker, TimePoint now) {
  Expire(now);
  const TimePoint expires = now + ttl_;
  for (const uint64_t h : hashes) {
    const uint64_t key = HashCombine(scope, h);
    entries_[key] = Entry{.worker = worker, .expires = expires};
    order_.emplace_back(expires, key);
  }
  // Over the cap: the oldest records go first (a refreshed key keeps its newer entry). The
  // order list also holds the stale records of refreshed keys; it is kept within twice the cap.
  while ((entries_.size() > max_entries_ || order_.size() > 2 * max_entries_) && !order_.empty()) {
    const auto [when, key] = order_.front();
    order_.pop_front();
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.expires == when) entries_.erase(it);
  }
}

RecentPlacements::Run RecentPlacements::Lookup(uint64_t scope, std::span<const uint64_t> hashes,
                                               TimePoint now) const {
  Run run;
  for (const uint64_t h : hashes) {
    auto it = entries_.find(HashCombine(scope, h));
    if (it == entries_.end() || it->second.expires <= now) break;
    if (run.blocks == 0) {
      run.worker = it->second.worker;
    } else if (it->second.worker != run.worker) {
      break;
    }
    ++run.blocks;
  }
  return run;
}

void RecentPlacements::Forget(const std::string& worker) {
  std::erase_if(entries_, [&worker](const auto& e) { return e.second.worker == worker; });
}

void RecentPlacements::Expire(TimePoint now) {
  while (!order_.empty() && order_.front().first <= now) {
    const auto [when, key] = order_.front();
    order_.pop_front();
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.expires == when) entries_.erase(it);
  }
}

}  // namespace attic::scheduler
