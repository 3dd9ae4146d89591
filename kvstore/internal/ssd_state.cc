#include "kvstore/internal/ssd_state.h"

#include <algorithm>

namespace attic::kv_internal {

bool SsdState::HasEntry(const PrefixKey& key) const {
  MutexLock l(&mu_);
  return entries_.count(key) != 0;
}

void SsdState::AddEntry(const PrefixKey& key, uint64_t bytes, uint64_t blocks) {
  MutexLock l(&mu_);
  auto [it, inserted] = entries_.try_emplace(key);
  if (!inserted) return;
  it->second.bytes = bytes;
  it->second.blocks = blocks;
  it->second.lru = lru_.insert(lru_.end(), key);
  prefix_bytes_.fetch_add(bytes, std::memory_order_relaxed);
}

void SsdState::TouchEntries(uint64_t scope, std::span<const uint64_t> hashes) {
  MutexLock l(&mu_);
  for (auto h = hashes.rbegin(); h != hashes.rend(); ++h) {
    const auto it = entries_.find({scope, *h});
    if (it == entries_.end()) continue;
    lru_.splice(lru_.end(), lru_, it->second.lru);
  }
}

std::vector<SsdEntryVictim> SsdState::Oldest(size_t skip, size_t count) const {
  MutexLock l(&mu_);
  std::vector<SsdEntryVictim> out;
  auto it = lru_.begin();
  for (size_t i = 0; i < skip && it != lru_.end(); ++i) ++it;
  for (; it != lru_.end() && out.size() < count; ++it) {
    const EntryInfo& e = entries_.at(*it);
    out.push_back({*it, e.bytes, e.blocks});
  }
  return out;
}

void SsdState::RemoveEntries(std::span<const SsdEntryVictim> victims) {
  uint64_t bytes = 0;
  uint64_t blocks = 0;
  uint64_t entries = 0;
  {
    MutexLock l(&mu_);
    for (const SsdEntryVictim& v : victims) {
      const auto it = entries_.find(v.key);
      if (it == entries_.end()) continue;
      bytes += it->second.bytes;
      blocks += it->second.blocks;
      ++entries;
      lru_.erase(it->second.lru);
      entries_.erase(it);
    }
  }
  prefix_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
  reclaimed_entries_.fetch_add(entries, std::memory_order_relaxed);
  reclaimed_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  reclaimed_blocks_.fetch_add(blocks, std::memory_order_relaxed);
  if (bytes > 0) SetFull(false);
}

void SsdState::ForEachEntry(const std::function<void(const PrefixKey&)>& visit) const {
  MutexLock l(&mu_);
  for (const PrefixKey& key : lru_) visit(key);
}

int64_t SsdState::entries() const {
  MutexLock l(&mu_);
  return static_cast<int64_t>(entries_.size());
}

void SsdState::SubPrivateBytes(uint64_t n) {
  uint64_t cur = private_bytes_.load(std::memory_order_relaxed);
  while (!private_bytes_.compare_exchange_weak(cur, cur - std::min(cur, n),
                                               std::memory_order_relaxed)) {
  }
  if (n > 0) SetFull(false);
}

void SsdState::RecordError(const Status& s) {
  durability_errors.fetch_add(1, std::memory_order_relaxed);
  if (s.code() == StatusCode::kResourceExhausted) SetFull(true);
  MutexLock l(&mu_);
  last_error_ = s;
}

bool SsdState::HasError() const {
  MutexLock l(&mu_);
  return !last_error_.ok();
}

Status SsdState::TakeLastError() {
  MutexLock l(&mu_);
  Status s = last_error_;
  last_error_ = OkStatus();
  return s;
}

}  // namespace attic::kv_internal
