// KvStore: the SSD tier's capacity — room for a write-through, and the reclaim of prefix
// entries that no open sequence pins, least recently used first. docs/kvstore-ssd.md,
// "Capacity and reclaim", gives the rules.
#include <string>
#include <vector>

#include "kvstore/internal/prefix_cache.h"
#include "kvstore/internal/ssd_state.h"
#include "kvstore/kv_store.h"

namespace attic {

using kv_internal::SsdEntryVictim;

namespace {

// Candidates looked at per pass of a reclaim: the LRU end of the list, a batch at a time.
constexpr size_t kReclaimBatch = 64;

// The deletions of reclaimed entries: every K and V block of each (one range per entry, in its
// scope's shard) and its record.
TierBatch DeletionsOf(const std::vector<SsdEntryVictim>& victims) {
  TierBatch batch;
  for (const SsdEntryVictim& v : victims) {
    batch.delete_block_prefixes.push_back(SharedBlockPrefix(v.key.scope, v.key.hash));
    batch.delete_records.push_back(PrefixEntryKey(v.key.scope, v.key.hash));
  }
  return batch;
}

}  // namespace

Status KvStore::MakeSsdRoom(uint64_t bytes, const std::string& what) {
  if (ssd_->Fits(bytes)) return OkStatus();
  const uint64_t target = ssd_->reclaim_to_bytes > bytes ? ssd_->reclaim_to_bytes - bytes : 0;
  ReclaimSsd(target);
  if (ssd_->Fits(bytes)) return OkStatus();
  ssd_->SetFull(true);
  ssd_->full_refusals.fetch_add(1, std::memory_order_relaxed);
  return ResourceExhaustedError(
      "SSD tier full: a " + what + " of " + std::to_string(bytes) + " bytes does not fit (" +
      std::to_string(ssd_->used_bytes()) + " of " + std::to_string(ssd_->capacity_bytes) +
      " bytes used: " + std::to_string(ssd_->private_bytes()) + " by open sequences, " +
      std::to_string(ssd_->prefix_bytes()) + " by prefix entries open sequences pin)");
}

uint64_t KvStore::ReclaimSsd(uint64_t target) {
  WriterLock reclaim(&ssd_->reclaim_mu);
  uint64_t freed = 0;
  size_t skip = 0;  // pinned entries passed over at the LRU end
  while (ssd_->used_bytes() > target) {
    const std::vector<SsdEntryVictim> candidates = ssd_->Oldest(skip, kReclaimBatch);
    if (candidates.empty()) break;
    std::vector<SsdEntryVictim> victims;
    uint64_t bytes = 0;
    for (const SsdEntryVictim& c : candidates) {
      if (ssd_->used_bytes() <= target + bytes) break;
      // A pinned entry belongs to an open sequence (which may read or write its blocks):
      // never reclaimed. An unpinned one leaves DRAM too, whose copy relies on the SSD one.
      if (!prefix_->DropIfUnpinned(c.key)) {
        ++skip;
        continue;
      }
      victims.push_back(c);
      bytes += c.bytes;
    }
    if (victims.empty()) continue;
    Status s = tier_->Write(DeletionsOf(victims));
    if (!s.ok()) {
      // The entries stay on SSD and known (only their DRAM copies went); a later reclaim
      // tries again.
      ssd_->RecordError(s.WithContext("reclaiming " + std::to_string(victims.size()) +
                                      " prefix entries from the SSD tier"));
      break;
    }
    ssd_->RemoveEntries(victims);
    freed += bytes;
  }
  return freed;
}

}  // namespace attic
