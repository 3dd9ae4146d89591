// KvStore's restart recovery from the SSD tier, and the prefix cache's SSD half (LookupPrefix
// finding entries that DRAM evicted or never held). docs/kvstore-ssd.md, "Recovery".
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/hash.h"
#include "common/log.h"
#include "kvstore/internal/block_pool.h"
#include "kvstore/internal/manifest.h"
#include "kvstore/internal/prefix_cache.h"
#include "kvstore/internal/sequence.h"
#include "kvstore/internal/ssd_state.h"
#include "kvstore/kv_store.h"

namespace attic {

using kv_internal::BlockId;
using kv_internal::BlockPools;
using kv_internal::BlockRef;
using kv_internal::Manifest;
using kv_internal::PinResult;
using kv_internal::PrefixEntry;
using kv_internal::PublishItem;
using kv_internal::PublishOutcome;
using kv_internal::Sequence;
using kv_internal::SequenceConfig;

namespace {

// One block to read back: where its K and V go and under which keys they are stored.
struct Load {
  int layer = 0;
  int head_index = 0;
  size_t block = 0;
  bool full = false;
  std::string k_key;
  std::string v_key;
  BlockRef ref;
};

// A recovered sequence's block tables, one per (layer, head of its range): [layer * heads + head].
using Tables = std::vector<std::vector<BlockRef>>;

std::vector<BlockRef>& TableOf(const SequenceConfig& c, Tables& tables, int layer, int head_index) {
  return tables[static_cast<size_t>(layer * c.num_heads() + head_index)];
}

// Blocks of a layer's first `len` tokens, the last one possibly partial.
size_t BlocksFor(const SequenceConfig& c, int len) {
  return static_cast<size_t>((len + c.block_size() - 1) / c.block_size());
}

SequenceOptions RecoveredSequenceOptions(const Manifest& m) {
  return {.id = m.id,
          .tenant = m.tenant,
          .spec = m.spec,
          .model_fingerprint = m.model_fingerprint,
          .kv_head_begin = m.head_begin,
          .kv_head_end = m.head_end};
}

kv_internal::ChainRequest ChainOf(const SequenceConfig& c, const Manifest& m) {
  return {.scope = c.scope,
          .num_layers = c.spec.num_layers,
          .num_kv_heads = c.spec.num_kv_heads,
          .head_begin = c.head_begin,
          .head_end = c.head_end,
          .block_bytes = c.block_bytes(),
          .hashes = m.hashes};
}

// Tables holding the prompt blocks the prefix cache matched, each layer's cut at its durable
// length. Matched blocks come first in pin.matched, block-major, then layer, then head.
Tables MatchedTables(const SequenceConfig& c, const PinResult& pin, const Manifest& m) {
  const int heads = c.num_heads();
  Tables tables(static_cast<size_t>(c.spec.num_layers) * static_cast<size_t>(heads));
  size_t matched_i = 0;
  for (int b = 0; b < pin.matched_blocks; ++b) {
    for (int layer = 0; layer < c.spec.num_layers; ++layer) {
      for (int h = 0; h < heads; ++h) {
        BlockRef ref = pin.matched[matched_i++];
        const int len = m.durable_lengths[static_cast<size_t>(layer)];
        if ((b + 1) * c.block_size() > len) continue;  // beyond this layer's durable length
        TableOf(c, tables, layer, h).push_back(ref);
      }
    }
  }
  return tables;
}

// Block b of (layer, head h) as stored: under the prompt hash when a prefix entry covers it,
// else under the sequence's own id.
Load LoadOf(const SequenceConfig& c, const Manifest& m, int layer, int h, size_t b, bool full,
            bool shared) {
  const int head = c.head_begin + h;
  Load load{.layer = layer, .head_index = h, .block = b, .full = full};
  if (shared) {
    load.k_key = SharedBlockKey(c.scope, m.hashes[b], layer, head, BlockKind::kKey);
    load.v_key = SharedBlockKey(c.scope, m.hashes[b], layer, head, BlockKind::kValue);
  } else {
    load.k_key = PrivateBlockKey(c.id, layer, head, static_cast<int>(b), BlockKind::kKey);
    load.v_key = PrivateBlockKey(c.id, layer, head, static_cast<int>(b), BlockKind::kValue);
  }
  return load;
}

// Completes every table up to its layer's durable length: a full block whose prefix entry holds
// it in DRAM is taken from there; every other becomes a Load, its table slot left invalid.
std::vector<Load> PlanLoads(const SequenceConfig& c, const PinResult& pin, const Manifest& m,
                            const kv_internal::PrefixCache& prefix, Tables* tables) {
  std::vector<Load> loads;
  for (int layer = 0; layer < c.spec.num_layers; ++layer) {
    const int len = m.durable_lengths[static_cast<size_t>(layer)];
    const size_t nblocks = BlocksFor(c, len);
    for (int h = 0; h < c.num_heads(); ++h) {
      std::vector<BlockRef>& t = TableOf(c, *tables, layer, h);
      for (size_t b = t.size(); b < nblocks; ++b) {
        const bool full = static_cast<int>(b + 1) * c.block_size() <= len;
        const bool shared = full && b < pin.entries.size() && pin.entries[b] != nullptr;
        if (shared) {
          BlockRef held = prefix.SlotRef(pin.entries[b], layer, c.head_begin + h);
          if (held.valid()) {
            t.push_back(held);
            continue;
          }
        }
        loads.push_back(LoadOf(c, m, layer, h, b, full, shared));
        t.push_back(BlockRef{});  // filled by InstallLoads
      }
    }
  }
  return loads;
}

// Reads every load's K and V into the pair fresh[i] (which becomes its ref); one status per
// block, K then V.
std::vector<Status> ReadLoads(SsdTier& tier, BlockPools pools, size_t bytes,
                              const std::vector<BlockRef>& fresh, std::vector<Load>* loads) {
  std::vector<std::string> keys;
  std::vector<std::span<std::byte>> dsts;
  for (size_t i = 0; i < loads->size(); ++i) {
    Load& load = (*loads)[i];
    load.ref = fresh[i];
    keys.push_back(load.k_key);
    dsts.emplace_back(pools.k->block(fresh[i].k), bytes);
    keys.push_back(load.v_key);
    dsts.emplace_back(pools.v->block(fresh[i].v), bytes);
  }
  std::vector<Status> statuses;
  if (!keys.empty()) (void)tier.ReadBlocks(keys, dsts, &statuses);
  return statuses;
}

// A block that cannot be read truncates its layer there: what follows is unreachable.
void TruncateAtUnreadable(const Sequence& seq, const std::vector<Load>& loads,
                          const std::vector<Status>& statuses, Manifest* m) {
  const int bsize = seq.config().block_size();
  for (size_t i = 0; i < loads.size(); ++i) {
    const Status& sk = statuses[2 * i];
    const Status& sv = statuses[2 * i + 1];
    if (sk.ok() && sv.ok()) continue;
    const Status& bad = sk.ok() ? sv : sk;
    int& len = m->durable_lengths[static_cast<size_t>(loads[i].layer)];
    const int cut = static_cast<int>(loads[i].block) * bsize;
    if (cut < len) {
      ATTIC_LOG(kWarn, "kvstore") << "SSD tier: "
                                  << seq.Name(loads[i].layer, loads[i].head_index, loads[i].block)
                                  << " unreadable (" << bad.message() << "); layer truncated to "
                                  << cut << " tokens";
      len = cut;
    }
  }
}

// What InstallLoads leaves to the store: pairs truncation cut off, to free, and full blocks a
// prefix entry should hold, to publish.
struct Installed {
  std::vector<BlockRef> dropped;
  std::vector<PublishItem> items;
};

// Puts every read block in its table slot (a full one with its checksums, durable), drops what
// truncation cut off and lists the full blocks a prefix entry covers.
Installed InstallLoads(const SequenceConfig& c, const PinResult& pin, const Manifest& m,
                       BlockPools pools, kv_internal::ValueResidency& residency,
                       std::vector<Load>& loads, Tables* tables) {
  const size_t bytes = c.block_bytes();
  Installed out;
  size_t li = 0;
  for (int layer = 0; layer < c.spec.num_layers; ++layer) {
    const size_t nblocks = BlocksFor(c, m.durable_lengths[static_cast<size_t>(layer)]);
    for (int h = 0; h < c.num_heads(); ++h) {
      std::vector<BlockRef>& t = TableOf(c, *tables, layer, h);
      for (size_t b = 0; b < t.size(); ++b) {
        if (t[b].valid() && t[b].shared) continue;  // held by a prefix entry already
        Load& load = loads[li++];
        if (b >= nblocks) {
          out.dropped.push_back(load.ref);
          continue;
        }
        BlockRef ref = load.ref;
        if (load.full) {
          ref.k_crc = Crc32c(pools.k->block(ref.k), bytes);
          ref.v_crc = Crc32c(pools.v->block(ref.v), bytes);
          residency.SetDurable(ref.v);
        }
        t[b] = ref;
        if (load.full && b < pin.entries.size() && pin.entries[b] != nullptr) {
          out.items.push_back(PublishItem{.entry = pin.entries[b],
                                          .layer = layer,
                                          .kv_head = c.head_begin + h,
                                          .block_index = static_cast<int>(b),
                                          .ref = ref});
        }
      }
      t.resize(std::min(t.size(), nblocks));
    }
  }
  return out;
}

// Points the tables at the blocks the prefix cache took (its copy when it deduped); returns how
// many stopped being private.
int64_t AdoptPublished(const SequenceConfig& c, std::span<const PublishItem> items,
                       Tables* tables) {
  int64_t moved = 0;
  for (const PublishItem& item : items) {
    if (item.outcome == PublishOutcome::kConflict) continue;
    std::vector<BlockRef>& t = TableOf(c, *tables, item.layer, item.kv_head - c.head_begin);
    t[static_cast<size_t>(item.block_index)] = item.ref;
    ++moved;
  }
  return moved;
}

}  // namespace

namespace {

// A prefix entry's record (kv_store_ssd.cc, EntryValue): scope, hash, then bytes and blocks
// (absent in the 16-byte records of earlier releases: accounted as 0). False when damaged.
bool ParseEntryRecord(std::string_view value, kv_internal::PrefixKey* key, uint64_t* bytes,
                      uint64_t* blocks) {
  if (value.size() != 16 && value.size() != 32) return false;
  std::memcpy(&key->scope, value.data(), 8);
  std::memcpy(&key->hash, value.data() + 8, 8);
  *bytes = *blocks = 0;
  if (value.size() == 32) {
    std::memcpy(bytes, value.data() + 16, 8);
    std::memcpy(blocks, value.data() + 24, 8);
  }
  return true;
}

}  // namespace

Status KvStore::Recover() {
  std::vector<std::string> manifests;
  RETURN_IF_ERROR(tier_->ScanRecords(PrefixEntryKeyPrefix(),
                                     [&](std::string_view, std::string_view value) -> Status {
                                       kv_internal::PrefixKey key;
                                       uint64_t bytes = 0, blocks = 0;
                                       if (ParseEntryRecord(value, &key, &bytes, &blocks)) {
                                         ssd_->AddEntry(key, bytes, blocks);
                                       }
                                       return OkStatus();
                                     }));
  RETURN_IF_ERROR(tier_->ScanRecords(ManifestKeyPrefix(),
                                     [&](std::string_view, std::string_view value) -> Status {
                                       manifests.emplace_back(value);
                                       return OkStatus();
                                     }));
  for (const std::string& bytes : manifests) {
    StatusOr<Manifest> m = kv_internal::DecodeManifest(bytes);
    if (!m.ok()) {
      ATTIC_LOG(kWarn, "kvstore") << "SSD tier " << tier_->path()
                                     << ": skipping a damaged manifest: " << m.status().message();
      continue;
    }
    Status s = RecoverSequence(*m);
    if (!s.ok()) {
      ATTIC_LOG(kWarn, "kvstore") << "SSD tier " << tier_->path() << ": sequence " << m->id
                                     << " not recovered: " << s.message();
      continue;
    }
    ssd_->recovered.push_back(m->id);
    // Values beyond the budget go back to SSD as recovery proceeds.
    const int64_t resident = ssd_->residency.resident_blocks();
    if (resident > ssd_->high_blocks) ssd_->residency.SpillOldest(resident - ssd_->low_blocks);
  }
  std::sort(ssd_->recovered.begin(), ssd_->recovered.end());
  return OkStatus();
}

Status KvStore::RecoverSequence(const Manifest& manifest) {
  RETURN_IF_ERROR(OpenSequence(RecoveredSequenceOptions(manifest)));
  ASSIGN_OR_RETURN(std::shared_ptr<Sequence> seq, Find(manifest.id));
  const SequenceConfig& c = seq->config();
  MutexLock l(&seq->mu);
  PinResult pin = prefix_->PinChain(ChainOf(c, manifest));
  Manifest m = manifest;
  Tables tables = MatchedTables(c, pin, m);
  std::vector<Load> loads = PlanLoads(c, pin, m, *prefix_, &tables);
  // Keys and values are both read: the values' checksums are needed, and the ones over budget
  // are spilled again right after.
  std::vector<BlockRef> fresh;
  RETURN_IF_ERROR(AllocatePairs(loads.size(), &fresh));
  const BlockPools pools{.k = k_pool_.get(), .v = v_pool_.get()};
  const std::vector<Status> statuses = ReadLoads(*tier_, pools, c.block_bytes(), fresh, &loads);
  TruncateAtUnreadable(*seq, loads, statuses, &m);
  Installed installed = InstallLoads(c, pin, m, pools, ssd_->residency, loads, &tables);
  FreePairs(installed.dropped);
  prefix_->Publish(installed.items);
  const int64_t moved = AdoptPublished(c, installed.items, &tables);
  private_blocks_.fetch_sub(moved, std::memory_order_relaxed);
  seq->Restore(m, std::move(pin.entries), pin.matched_blocks, std::move(tables));
  seq->CountRestoredPrivateOnSsd();
  ssd_->AddPrivateBytes(static_cast<uint64_t>(seq->private_pairs_on_ssd()) * 2 * c.block_bytes());
  return OkStatus();
}

void KvStore::ExtendPrefixFromSsd(const SequenceConfig& c, std::span<const uint64_t> hashes,
                                  PinResult* pin) {
  // No entry is reclaimed between finding it on SSD and holding its blocks (ssd_state.h).
  ReaderLock reclaim(&ssd_->reclaim_mu);
  const size_t bytes = c.block_bytes();
  for (size_t i = static_cast<size_t>(pin->matched_blocks); i < hashes.size(); ++i) {
    PrefixEntry* e = pin->entries[i];
    if (e == nullptr || !ssd_->HasEntry({c.scope, hashes[i]})) return;
    // Slots the entry holds in DRAM are used as they are; the others are read from SSD.
    std::vector<BlockRef> refs;
    std::vector<PublishItem> items;
    for (int layer = 0; layer < c.spec.num_layers; ++layer) {
      for (int h = c.head_begin; h < c.head_end; ++h) {
        refs.push_back(prefix_->SlotRef(e, layer, h));
        if (!refs.back().valid()) {
          items.push_back(PublishItem{.entry = e, .layer = layer, .kv_head = h,
                                      .block_index = static_cast<int>(refs.size() - 1)});
        }
      }
    }
    std::vector<BlockRef> fresh;
    if (!AllocatePairs(items.size(), &fresh).ok()) return;
    std::vector<std::string> keys;
    std::vector<std::span<std::byte>> dsts;
    for (size_t j = 0; j < items.size(); ++j) {
      items[j].ref = fresh[j];
      keys.push_back(SharedBlockKey(c.scope, hashes[i], items[j].layer, items[j].kv_head,
                                    BlockKind::kKey));
      dsts.emplace_back(k_pool_->block(fresh[j].k), bytes);
      keys.push_back(SharedBlockKey(c.scope, hashes[i], items[j].layer, items[j].kv_head,
                                    BlockKind::kValue));
      dsts.emplace_back(v_pool_->block(fresh[j].v), bytes);
    }
    std::vector<Status> statuses;
    if (!keys.empty() && !tier_->ReadBlocks(keys, dsts, &statuses).ok()) {
      FreePairs(fresh);
      return;  // incomplete on SSD (a layer never written) or unreadable: the match ends here
    }
    for (PublishItem& item : items) {
      item.ref.k_crc = Crc32c(k_pool_->block(item.ref.k), bytes);
      item.ref.v_crc = Crc32c(v_pool_->block(item.ref.v), bytes);
      ssd_->residency.SetDurable(item.ref.v);
    }
    prefix_->Publish(items);
    private_blocks_.fetch_sub(static_cast<int64_t>(items.size()), std::memory_order_relaxed);
    bool conflict = false;
    for (PublishItem& item : items) {
      if (item.outcome == PublishOutcome::kConflict) {
        // Different bytes under the same key in DRAM: keep DRAM's, give ours back.
        k_pool_->Free(item.ref.k);
        v_pool_->Free(item.ref.v);
        conflict = true;
        continue;
      }
      refs[static_cast<size_t>(item.block_index)] = item.ref;
    }
    if (conflict) return;
    for (BlockRef& r : refs) {
      r.shared = true;
      pin->matched.push_back(r);
    }
    ++pin->matched_blocks;
    ssd_->ssd_prefix_hits.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace attic
