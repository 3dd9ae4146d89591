// SsdState: the KV store's bookkeeping of its SSD tier — value residency and the spill
// budget, the prefix entries known on SSD, counters, and the last write-through error.
//
// Thread safety: the atomics and the mutex-guarded members may be used from any thread;
// residency as ValueResidency says.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "kvstore/internal/block_pool.h"
#include "kvstore/internal/prefix_cache.h"
#include "kvstore/internal/value_residency.h"

namespace attic::kv_internal {

// Spilled values one call reads from the tier: block indexes of one (layer, head), their
// value keys, where each goes ([B, D] bytes) and the checksum each must match. Filled under
// the sequence's mutex, read without it.
struct SpilledReads {
  std::vector<size_t> blocks;
  std::vector<BlockId> ids;  // V block ids
  std::vector<std::string> keys;
  std::vector<std::byte*> dst;
  std::vector<uint32_t> crcs;

  void Add(size_t block, const BlockRef& ref, std::string key, std::byte* to) {
    blocks.push_back(block);
    ids.push_back(ref.v);
    keys.push_back(std::move(key));
    dst.push_back(to);
    crcs.push_back(ref.v_crc);
  }
};

class SsdState {
 public:
  SsdState(BlockPool* v_pool, int64_t budget_blocks, double high, double low)
      : residency(v_pool),
        value_dram_blocks(budget_blocks),
        high_blocks(static_cast<int64_t>(high * static_cast<double>(budget_blocks))),
        low_blocks(static_cast<int64_t>(low * static_cast<double>(budget_blocks))) {}

  ValueResidency residency;
  const int64_t value_dram_blocks;
  const int64_t high_blocks;  // Maintain spills when more are resident ...
  const int64_t low_blocks;   // ... down to this many

  std::atomic<int64_t> reloaded{0};
  std::atomic<int64_t> streamed{0};
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<int64_t> ssd_prefix_hits{0};
  std::atomic<int64_t> durability_errors{0};
  std::atomic<int64_t> pending_blocks{0};
  std::vector<uint64_t> recovered;  // set once at Open, read-only afterwards

  bool HasEntry(const PrefixKey& key) const EXCLUDES(mu_) {
    MutexLock l(&mu_);
    return entries_.count(key) != 0;
  }
  void AddEntry(const PrefixKey& key) EXCLUDES(mu_) {
    MutexLock l(&mu_);
    entries_.insert(key);
  }
  void ForEachEntry(const std::function<void(const PrefixKey&)>& visit) const EXCLUDES(mu_) {
    MutexLock l(&mu_);
    for (const PrefixKey& key : entries_) visit(key);
  }
  int64_t entries() const EXCLUDES(mu_) {
    MutexLock l(&mu_);
    return static_cast<int64_t>(entries_.size());
  }
  void RecordError(const Status& s) EXCLUDES(mu_) {
    durability_errors.fetch_add(1, std::memory_order_relaxed);
    MutexLock l(&mu_);
    last_error_ = s;
  }
  bool HasError() const EXCLUDES(mu_) {
    MutexLock l(&mu_);
    return !last_error_.ok();
  }
  Status TakeLastError() EXCLUDES(mu_) {
    MutexLock l(&mu_);
    Status s = last_error_;
    last_error_ = OkStatus();
    return s;
  }

 private:
  mutable Mutex mu_;
  std::unordered_set<PrefixKey, PrefixKeyHasher> entries_ GUARDED_BY(mu_);
  Status last_error_ GUARDED_BY(mu_);
};

}  // namespace attic::kv_internal
