#include "kvstore/internal/prefix_cache.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/hash.h"

namespace attic::kv_internal {

// Fields are touched only by PrefixCache methods holding PrefixCache::mu_.
struct PrefixEntry {
  PrefixKey key;
  int chain_index = 0;  // index of the hash in the chain that created the entry (for messages)
  int num_layers = 0;
  int num_kv_heads = 0;
  size_t block_bytes = 0;
  int refs = 0;    // sequences pinning the entry
  int filled = 0;  // valid slots
  // [num_layers][num_kv_heads] once a block was published; empty before, so that entries a
  // lookup creates for a long prompt cost no more than a map node until written.
  std::vector<BlockRef> slots;
  bool in_lru = false;
  std::list<PrefixEntry*>::iterator lru_pos;

  size_t slot(int layer, int kv_head) const {
    return static_cast<size_t>(layer) * static_cast<size_t>(num_kv_heads) +
           static_cast<size_t>(kv_head);
  }
};

namespace {

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%016" PRIx64, v);
  return buf;
}

std::string EntryName(const PrefixEntry& e) {
  return "prefix entry (scope " + Hex(e.key.scope) + ", hash " + Hex(e.key.hash) +
         ", chain block " + std::to_string(e.chain_index) + ")";
}

bool CompleteFor(const PrefixEntry& e, int head_begin, int head_end) {
  if (e.slots.empty()) return false;
  for (int l = 0; l < e.num_layers; ++l) {
    for (int h = head_begin; h < head_end; ++h) {
      if (!e.slots[e.slot(l, h)].valid()) return false;
    }
  }
  return true;
}

}  // namespace

size_t PrefixKeyHasher::operator()(const PrefixKey& k) const {
  return static_cast<size_t>(HashCombine(k.scope, k.hash));
}

PrefixCache::PrefixCache(BlockPool* k_pool, BlockPool* v_pool) : k_pool_(k_pool), v_pool_(v_pool) {}

PrefixCache::~PrefixCache() {
  MutexLock l(&mu_);
  for (auto& [key, e] : entries_) {
    for (size_t s = 0; s < e->slots.size(); ++s) FreeSlot(e.get(), s);
  }
}

void PrefixCache::Account(const PrefixEntry& e, int sign) {
  const int64_t n = int64_t{sign} * e.filled;
  stats_.blocks += n;
  if (e.refs == 0) stats_.cached_blocks += n;
  if (e.refs >= 2) stats_.shared_blocks += n;
}

PrefixEntry* PrefixCache::FindOrCreate(const ChainRequest& r, int index) {
  const PrefixKey key{r.scope, r.hashes[static_cast<size_t>(index)]};
  auto [it, inserted] = entries_.try_emplace(key);
  if (!inserted) {
    PrefixEntry* e = it->second.get();
    const bool same_shape = e->num_layers == r.num_layers && e->num_kv_heads == r.num_kv_heads &&
                            e->block_bytes == r.block_bytes;
    return same_shape ? e : nullptr;
  }
  auto e = std::make_unique<PrefixEntry>();
  e->key = key;
  e->chain_index = index;
  e->num_layers = r.num_layers;
  e->num_kv_heads = r.num_kv_heads;
  e->block_bytes = r.block_bytes;
  it->second = std::move(e);
  ++stats_.entries;
  return it->second.get();
}

void PrefixCache::Pin(PrefixEntry* e) {
  Account(*e, -1);
  if (e->in_lru) {
    lru_.erase(e->lru_pos);
    e->in_lru = false;
  }
  ++e->refs;
  Account(*e, +1);
}

PinResult PrefixCache::PinChain(const ChainRequest& r) {
  PinResult result;
  result.entries.reserve(r.hashes.size());
  MutexLock l(&mu_);
  bool matching = true;
  for (size_t i = 0; i < r.hashes.size(); ++i) {
    PrefixEntry* e = FindOrCreate(r, static_cast<int>(i));
    result.entries.push_back(e);
    if (e == nullptr) {
      matching = false;
      continue;
    }
    Pin(e);
    matching = matching && CompleteFor(*e, r.head_begin, r.head_end);
    if (!matching) continue;
    for (int layer = 0; layer < r.num_layers; ++layer) {
      for (int h = r.head_begin; h < r.head_end; ++h) {
        result.matched.push_back(e->slots[e->slot(layer, h)]);
      }
    }
    ++result.matched_blocks;
  }
  stats_.prefix_hits += result.matched_blocks;
  return result;
}

void PrefixCache::FreeSlot(PrefixEntry* e, size_t slot) {
  BlockRef& ref = e->slots[slot];
  if (!ref.valid()) return;
  k_pool_->Free(ref.k);
  v_pool_->Free(ref.v);
  ref = BlockRef{};
  --e->filled;
}

void PrefixCache::DropIncompleteHeads(PrefixEntry* e) {
  if (e->slots.empty()) return;
  for (int h = 0; h < e->num_kv_heads; ++h) {
    int present = 0;
    for (int layer = 0; layer < e->num_layers; ++layer) {
      present += e->slots[e->slot(layer, h)].valid() ? 1 : 0;
    }
    if (present == 0 || present == e->num_layers) continue;
    for (int layer = 0; layer < e->num_layers; ++layer) FreeSlot(e, e->slot(layer, h));
  }
}

void PrefixCache::Erase(PrefixEntry* e) {
  if (e->in_lru) lru_.erase(e->lru_pos);
  --stats_.entries;
  const PrefixKey key = e->key;  // e dies inside erase
  entries_.erase(key);
}

void PrefixCache::Unpin(std::span<PrefixEntry* const> entries) {
  MutexLock l(&mu_);
  // Last chain block first: it lands nearest the LRU front and is evicted before the earlier
  // blocks that every lookup of this chain needs.
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    PrefixEntry* e = *it;
    if (e == nullptr || e->refs <= 0) continue;
    Account(*e, -1);
    --e->refs;
    if (e->refs == 0) {
      DropIncompleteHeads(e);
      if (e->filled == 0) {
        Erase(e);
        continue;
      }
      e->lru_pos = lru_.insert(lru_.end(), e);
      e->in_lru = true;
    }
    Account(*e, +1);
  }
}

bool PrefixCache::SameBytes(const BlockRef& a, const BlockRef& b, size_t bytes) const {
  return a.k_crc == b.k_crc && a.v_crc == b.v_crc &&
         std::memcmp(k_pool_->block(a.k), k_pool_->block(b.k), bytes) == 0 &&
         std::memcmp(v_pool_->block(a.v), v_pool_->block(b.v), bytes) == 0;
}

void PrefixCache::Publish(std::span<PublishItem> items) {
  MutexLock l(&mu_);
  for (PublishItem& item : items) {
    PrefixEntry* e = item.entry;
    if (e == nullptr) {
      item.outcome = PublishOutcome::kConflict;
      continue;
    }
    if (e->slots.empty()) {
      e->slots.resize(static_cast<size_t>(e->num_layers) * static_cast<size_t>(e->num_kv_heads));
    }
    BlockRef& slot = e->slots[e->slot(item.layer, item.kv_head)];
    Account(*e, -1);
    if (!slot.valid()) {
      slot = item.ref;
      slot.shared = true;
      ++e->filled;
      item.ref.shared = true;
      item.outcome = PublishOutcome::kStored;
    } else if (SameBytes(slot, item.ref, e->block_bytes)) {
      k_pool_->Free(item.ref.k);
      v_pool_->Free(item.ref.v);
      item.ref = slot;
      item.outcome = PublishOutcome::kDeduped;
      ++stats_.dedupe_hits;
    } else {
      item.outcome = PublishOutcome::kConflict;
      ++stats_.dedupe_conflicts;
    }
    Account(*e, +1);
  }
}

BlockRef PrefixCache::SlotRef(const PrefixEntry* entry, int layer, int kv_head) const {
  MutexLock l(&mu_);
  if (entry->slots.empty()) return BlockRef{};
  return entry->slots[entry->slot(layer, kv_head)];
}

bool PrefixCache::EvictOne() {
  MutexLock l(&mu_);
  if (lru_.empty()) return false;
  PrefixEntry* e = lru_.front();
  Account(*e, -1);
  const int64_t freed = e->filled;
  for (size_t s = 0; s < e->slots.size(); ++s) FreeSlot(e, s);
  ++stats_.evicted_entries;
  stats_.evicted_blocks += freed;
  Erase(e);
  return true;
}

bool PrefixCache::DropIfUnpinned(const PrefixKey& key) {
  MutexLock l(&mu_);
  const auto it = entries_.find(key);
  if (it == entries_.end()) return true;
  PrefixEntry* e = it->second.get();
  if (e->refs > 0) return false;
  Account(*e, -1);
  for (size_t s = 0; s < e->slots.size(); ++s) FreeSlot(e, s);
  Erase(e);
  return true;
}

PrefixCacheStats PrefixCache::Stats() const {
  MutexLock l(&mu_);
  return stats_;
}

void PrefixCache::ForEachFilled(const std::function<void(const PrefixKey&)>& visit) const {
  MutexLock l(&mu_);
  for (const auto& [key, e] : entries_) {
    if (e->filled > 0) visit(key);
  }
}

Status PrefixCache::Verify() const {
  MutexLock l(&mu_);
  for (const auto& [key, e] : entries_) {
    if (e->slots.empty()) continue;
    for (int layer = 0; layer < e->num_layers; ++layer) {
      for (int h = 0; h < e->num_kv_heads; ++h) {
        const BlockRef& ref = e->slots[e->slot(layer, h)];
        if (!ref.valid()) continue;
        const std::string bad = CheckBlockPair(*k_pool_, *v_pool_, ref, e->block_bytes);
        if (bad.empty()) continue;
        return DataLossError(EntryName(*e) + " layer " + std::to_string(layer) + " kv head " +
                             std::to_string(h) + ": " + bad);
      }
    }
  }
  return OkStatus();
}

}  // namespace attic::kv_internal
