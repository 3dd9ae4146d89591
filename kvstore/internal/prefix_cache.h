// PrefixCache: content-addressed, reference-counted prompt blocks, kept as an LRU cache.
//
// An entry per (scope, chain hash) holds a (K, V) block pair for every (layer, KV head) slot
// of the model, filled by whichever sequence seals that block first, and counts the sequences
// that pin it. Entries that no sequence pins form an LRU list the store evicts from when a pool
// runs dry. See docs/kvstore.md for the whole picture.
//
//   PrefixCache cache(&k_pool, &v_pool);
//   PinResult pin = cache.PinChain({.scope = s, .num_layers = L, .num_kv_heads = H,
//                                   .head_begin = 0, .head_end = H, .block_bytes = bb,
//                                   .hashes = hashes});
//   ... seal blocks, cache.Publish(items) ...
//   cache.Unpin(pin.entries);        // the entries stay cached until evicted
//   while (pool_is_full && cache.EvictOne()) {}
//
// Thread safety: every method may be called from any thread; one mutex guards all entries.
// It is taken after a sequence's mutex and before a pool's (see docs/kvstore.md, "Locking").
// PrefixEntry is opaque outside prefix_cache.cc: callers only hold pointers to entries they
// pinned, which stay valid until they unpin them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "kvstore/internal/block_pool.h"

namespace attic::kv_internal {

struct PrefixEntry;

struct PrefixKey {
  uint64_t scope = 0;  // ScopeFingerprint(tenant, model, spec)
  uint64_t hash = 0;   // the engine's chained block hash
  friend bool operator==(const PrefixKey&, const PrefixKey&) = default;
};

struct PrefixKeyHasher {
  size_t operator()(const PrefixKey& k) const;
};

// What PinChain needs to know about the asking sequence.
struct ChainRequest {
  uint64_t scope = 0;
  int num_layers = 0;
  int num_kv_heads = 0;  // the model's Hkv: entries have a slot for every head
  int head_begin = 0;    // the sequence's head range [head_begin, head_end)
  int head_end = 0;
  size_t block_bytes = 0;  // bytes a checksum covers: spec.block_bytes()
  std::span<const uint64_t> hashes;
};

struct PinResult {
  // One per hash; nullptr where an entry of the same key has another shape (a fingerprint
  // collision): that block is then never content-addressed.
  std::vector<PrefixEntry*> entries;
  int matched_blocks = 0;
  // [matched_blocks][num_layers][head_end - head_begin], all marked shared.
  std::vector<BlockRef> matched;
};

enum class PublishOutcome {
  kStored,    // the entry now owns the offered blocks
  kDeduped,   // an identical copy was stored: the offered blocks were freed, ref is the copy
  kConflict,  // the slot holds different bytes under the same hash: keep the blocks private
};

// A sealed block offered to the cache.
struct PublishItem {
  PrefixEntry* entry = nullptr;
  int layer = 0;
  int kv_head = 0;      // absolute head index
  int block_index = 0;  // index in the chain (for the caller's bookkeeping)
  BlockRef ref;         // in: the sequence's sealed private blocks; out: the blocks to use
  PublishOutcome outcome = PublishOutcome::kConflict;
};

struct PrefixCacheStats {
  int64_t entries = 0;
  int64_t blocks = 0;         // blocks (per pool) owned by entries
  int64_t cached_blocks = 0;  // ... of entries no sequence pins (evictable)
  int64_t shared_blocks = 0;  // ... of entries pinned by two or more sequences
  int64_t evicted_entries = 0;
  int64_t evicted_blocks = 0;
  int64_t dedupe_hits = 0;
  int64_t dedupe_conflicts = 0;
  int64_t prefix_hits = 0;  // chain blocks matched by PinChain
};

class PrefixCache {
 public:
  // The pools must outlive the cache.
  PrefixCache(BlockPool* k_pool, BlockPool* v_pool);
  // Returns every entry's blocks to the pools.
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // Pins one entry per hash (creating empty ones) so that blocks sealed later at those indexes
  // become content-addressed, and reports the longest prefix whose entries hold every layer of
  // every head in the request's range.
  PinResult PinChain(const ChainRequest& request) EXCLUDES(mu_);

  // Drops pins taken by PinChain (nullptr entries are skipped). An entry no sequence pins any
  // more frees the heads some layer of which was never written (a lookup could not use them),
  // and joins the LRU list with later chain blocks ahead of earlier ones, so that the blocks a
  // lookup needs first are evicted last. An entry left without blocks is deleted.
  void Unpin(std::span<PrefixEntry* const> entries) EXCLUDES(mu_);

  // Offers sealed blocks; each item's outcome and ref say what the caller must reference.
  // REQUIRES: the caller pins every item's entry.
  void Publish(std::span<PublishItem> items) EXCLUDES(mu_);

  // The block an entry holds for (layer, absolute KV head); invalid when it holds none.
  // REQUIRES: the caller pins the entry.
  BlockRef SlotRef(const PrefixEntry* entry, int layer, int kv_head) const EXCLUDES(mu_);

  // Frees the least recently used entry that no sequence pins. False when there is none.
  bool EvictOne() EXCLUDES(mu_);

  // For the SSD tier's reclaim: true when no sequence pins the entry of `key` — it is then
  // freed (its blocks go back to the pools), or there is none; false (nothing changed) while
  // a sequence pins it. After true, a later PinChain of the key starts a fresh entry.
  bool DropIfUnpinned(const PrefixKey& key) EXCLUDES(mu_);

  PrefixCacheStats Stats() const EXCLUDES(mu_);

  // Calls visit(key) for every entry holding at least one block, under the cache's mutex.
  void ForEachFilled(const std::function<void(const PrefixKey&)>& visit) const EXCLUDES(mu_);

  // Recomputes the checksum of every block the entries hold. DataLoss naming the entry, layer,
  // head and pool on the first mismatch. Holds the cache's mutex throughout.
  Status Verify() const EXCLUDES(mu_);

 private:
  PrefixEntry* FindOrCreate(const ChainRequest& request, int index) REQUIRES(mu_);
  void Pin(PrefixEntry* e) REQUIRES(mu_);
  void Account(const PrefixEntry& e, int sign) REQUIRES(mu_);
  void FreeSlot(PrefixEntry* e, size_t slot) REQUIRES(mu_);
  void DropIncompleteHeads(PrefixEntry* e) REQUIRES(mu_);
  void Erase(PrefixEntry* e) REQUIRES(mu_);
  bool SameBytes(const BlockRef& a, const BlockRef& b, size_t bytes) const;

  BlockPool* const k_pool_;
  BlockPool* const v_pool_;

  mutable Mutex mu_;
  std::unordered_map<PrefixKey, std::unique_ptr<PrefixEntry>, PrefixKeyHasher> entries_
      GUARDED_BY(mu_);
  std::list<PrefixEntry*> lru_ GUARDED_BY(mu_);  // front = evicted first; only unpinned entries
  PrefixCacheStats stats_ GUARDED_BY(mu_);
};

}  // namespace attic::kv_internal
