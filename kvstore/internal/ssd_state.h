// SsdState: the KV store's bookkeeping of its SSD tier — value residency and the spill
// budget, the prefix entries known on SSD in least-recently-used order, the bytes the store
// keeps there against its capacity, counters, and the last write-through error.
//
// Thread safety: the atomics and the mutex-guarded members may be used from any thread;
// residency as ValueResidency says.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "kvstore/internal/block_pool.h"
#include "kvstore/internal/prefix_cache.h"
#include "kvstore/internal/value_residency.h"
#include "kvstore/ssd/ssd_tier.h"

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

// One block pair (K and V) of a sequence: layer, index of the held head, block index.
struct PairAt {
  int layer = 0;
  int head_index = 0;
  size_t block = 0;
  friend bool operator<(const PairAt& a, const PairAt& b) {
    return std::tie(a.layer, a.head_index, a.block) < std::tie(b.layer, b.head_index, b.block);
  }
};

// A write-through as the store builds it: the tier's batch, the prompt hashes of the shared
// blocks in it (chain order, maybe repeated) and the private pairs it writes.
struct ThroughBatch {
  TierBatch tier;
  std::vector<uint64_t> shared_hashes;
  std::vector<PairAt> privates;
};

// What one reclaim of SSD prefix entries found (SsdState::Oldest).
struct SsdEntryVictim {
  PrefixKey key;
  uint64_t bytes = 0;
  uint64_t blocks = 0;  // K and V blocks
};

class SsdState {
 public:
  SsdState(BlockPool* v_pool, int64_t budget_blocks, double high, double low,
           uint64_t capacity, double reclaim_watermark)
      : residency(v_pool),
        value_dram_blocks(budget_blocks),
        high_blocks(static_cast<int64_t>(high * static_cast<double>(budget_blocks))),
        low_blocks(static_cast<int64_t>(low * static_cast<double>(budget_blocks))),
        capacity_bytes(capacity),
        reclaim_to_bytes(
            static_cast<uint64_t>(reclaim_watermark * static_cast<double>(capacity))) {}

  ValueResidency residency;
  const int64_t value_dram_blocks;
  const int64_t high_blocks;  // Maintain spills when more are resident ...
  const int64_t low_blocks;   // ... down to this many
  // KvStoreOptions::ssd_capacity_bytes (0: no limit) and the level a reclaim frees down to.
  const uint64_t capacity_bytes;
  const uint64_t reclaim_to_bytes;

  std::atomic<int64_t> reloaded{0};
  std::atomic<int64_t> streamed{0};
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<int64_t> ssd_prefix_hits{0};
  std::atomic<int64_t> durability_errors{0};
  std::atomic<int64_t> pending_blocks{0};
  std::vector<uint64_t> recovered;  // set once at Open, read-only afterwards

  // Held exclusively while prefix entries are reclaimed (chosen, dropped from DRAM, deleted
  // on SSD, forgotten); shared by every write of shared blocks or prefix records and by every
  // read of a prefix entry from SSD, so none of them meets an entry half reclaimed. Taken
  // after a sequence's mutex, before the prefix cache's and mu_.
  mutable SharedMutex reclaim_mu;

  // --- prefix entries on SSD, least recently used first ---
  bool HasEntry(const PrefixKey& key) const EXCLUDES(mu_);
  // A new entry is the most recently used and adds `bytes` to prefix_bytes(); a known one is
  // left as it is. blocks: the K and V blocks the bytes are.
  void AddEntry(const PrefixKey& key, uint64_t bytes, uint64_t blocks) EXCLUDES(mu_);
  // Marks the known ones among keys used now, the last key first, so that earlier chain
  // blocks (which every lookup of the chain needs) are reclaimed after later ones.
  void TouchEntries(uint64_t scope, std::span<const uint64_t> hashes) EXCLUDES(mu_);
  // Up to `count` entries from the least recently used end, skipping `skip` of them.
  std::vector<SsdEntryVictim> Oldest(size_t skip, size_t count) const EXCLUDES(mu_);
  // Forgets reclaimed entries and counts them.
  void RemoveEntries(std::span<const SsdEntryVictim> victims) EXCLUDES(mu_);
  void ForEachEntry(const std::function<void(const PrefixKey&)>& visit) const EXCLUDES(mu_);
  int64_t entries() const EXCLUDES(mu_);

  // --- bytes on SSD (block payload, K and V) ---
  void AddPrivateBytes(uint64_t n) { private_bytes_.fetch_add(n, std::memory_order_relaxed); }
  void SubPrivateBytes(uint64_t n);
  uint64_t private_bytes() const { return private_bytes_.load(std::memory_order_relaxed); }
  uint64_t prefix_bytes() const { return prefix_bytes_.load(std::memory_order_relaxed); }
  uint64_t used_bytes() const { return private_bytes() + prefix_bytes(); }
  // Whether `more` bytes fit under the capacity (always, without one).
  bool Fits(uint64_t more) const {
    return capacity_bytes == 0 || used_bytes() + more <= capacity_bytes;
  }
  // Full: a write was refused for want of space (nothing left to reclaim) or the disk said
  // ENOSPC; cleared by the next write that fits and succeeds, or when bytes are freed.
  void SetFull(bool full) { full_.store(full, std::memory_order_relaxed); }
  bool full() const { return full_.load(std::memory_order_relaxed); }
  std::atomic<int64_t> full_refusals{0};
  uint64_t reclaimed_entries() const { return reclaimed_entries_.load(std::memory_order_relaxed); }
  uint64_t reclaimed_blocks() const { return reclaimed_blocks_.load(std::memory_order_relaxed); }
  uint64_t reclaimed_bytes() const { return reclaimed_bytes_.load(std::memory_order_relaxed); }

  void RecordError(const Status& s) EXCLUDES(mu_);
  bool HasError() const EXCLUDES(mu_);
  Status TakeLastError() EXCLUDES(mu_);

 private:
  struct EntryInfo {
    uint64_t bytes = 0;
    uint64_t blocks = 0;
    std::list<PrefixKey>::iterator lru;
  };

  mutable Mutex mu_;
  std::unordered_map<PrefixKey, EntryInfo, PrefixKeyHasher> entries_ GUARDED_BY(mu_);
  std::list<PrefixKey> lru_ GUARDED_BY(mu_);  // front: least recently used
  Status last_error_ GUARDED_BY(mu_);
  std::atomic<uint64_t> private_bytes_{0};
  std::atomic<uint64_t> prefix_bytes_{0};
  std::atomic<bool> full_{false};
  std::atomic<uint64_t> reclaimed_entries_{0};
  std::atomic<uint64_t> reclaimed_blocks_{0};
  std::atomic<uint64_t> reclaimed_bytes_{0};
};

}  // namespace attic::kv_internal
