#include "kvstore/kv_store.h"

#include <algorithm>
#include <string>
#include <unordered_set>
#include <utility>

#include "common/hash.h"
#include "kvstore/internal/append_checks.h"
#include "kvstore/internal/block_pool.h"
#include "kvstore/internal/prefix_cache.h"
#include "kvstore/internal/manifest.h"
#include "kvstore/internal/sequence.h"
#include "kvstore/internal/ssd_state.h"

namespace attic {

using kv_internal::BlockId;
using kv_internal::BlockPool;
using kv_internal::BlockRef;
using kv_internal::PrefixCache;
using kv_internal::Sequence;
using kv_internal::SequenceConfig;

namespace {


std::string Str(int64_t v) { return std::to_string(v); }

PoolStats PoolFigures(const BlockPool& pool) {
  PoolStats s;
  s.kind = pool.kind();
  s.capacity_blocks = pool.capacity_blocks();
  s.used_blocks = pool.used_blocks();
  s.free_blocks = pool.free_blocks();
  s.block_bytes = pool.block_bytes();
  s.capacity_bytes = static_cast<size_t>(s.capacity_blocks) * s.block_bytes;
  s.used_bytes = static_cast<size_t>(s.used_blocks) * s.block_bytes;
  return s;
}

std::string DescribePool(const PoolStats& p) {
  return std::string(PoolKindName(p.kind)) + " pool " + Str(p.used_blocks) + "/" +
         Str(p.capacity_blocks) + " blocks used (" + Str(static_cast<int64_t>(p.used_bytes)) + "/" +
         Str(static_cast<int64_t>(p.capacity_bytes)) + " bytes)";
}

StatusOr<SequenceConfig> MakeConfig(const SequenceOptions& o, size_t slot_bytes) {
  RETURN_IF_ERROR(o.spec.Validate());
  const std::string who = "OpenSequence(" + Str(static_cast<int64_t>(o.id)) + "): ";
  if (o.spec.block_bytes() > slot_bytes) {
    return InvalidArgumentError(
        who + "a block of " + o.spec.ToString() + " takes " +
        Str(static_cast<int64_t>(o.spec.block_bytes())) +
        " bytes, more than the store's block_bytes = " + Str(static_cast<int64_t>(slot_bytes)));
  }
  const int hkv = o.spec.num_kv_heads;
  const int end = o.kv_head_end == -1 ? hkv : o.kv_head_end;
  if (o.kv_head_begin < 0 || o.kv_head_begin >= end || end > hkv) {
    return InvalidArgumentError(who + "kv head range [" + Str(o.kv_head_begin) + ", " +
                                Str(o.kv_head_end) + ") is not a non-empty range within [0, " +
                                Str(hkv) + ")");
  }
  SequenceConfig c;
  c.id = o.id;
  c.tenant = o.tenant;
  c.spec = o.spec;
  c.model_fingerprint = o.model_fingerprint != 0 ? o.model_fingerprint : o.spec.Fingerprint();
  c.scope = ScopeFingerprint(o.tenant, c.model_fingerprint, o.spec);
  c.head_begin = o.kv_head_begin;
  c.head_end = end;
  return c;
}

Status CheckTierOptions(const KvStoreOptions& o) {
  const double hi = o.spill_high_watermark;
  const double lo = o.spill_low_watermark;
  if (!(hi > 0.0 && hi <= 1.0 && lo > 0.0 && lo < hi)) {
    return InvalidArgumentError("KV store: spill watermarks must satisfy 0 < low < high <= 1 (low " +
                                std::to_string(lo) + ", high " + std::to_string(hi) + ")");
  }
  if (!(o.ssd_reclaim_watermark > 0.0 && o.ssd_reclaim_watermark <= 1.0)) {
    return InvalidArgumentError("KV store: ssd_reclaim_watermark must be in (0, 1], got " +
                                std::to_string(o.ssd_reclaim_watermark));
  }
  if (o.value_dram_blocks < 0 || o.value_dram_blocks > o.v_pool_blocks) {
    return InvalidArgumentError("KV store: value_dram_blocks = " +
                                std::to_string(o.value_dram_blocks) + " is not in [0, " +
                                std::to_string(o.v_pool_blocks) + "] (the V pool's blocks)");
  }
  return OkStatus();
}

Status CheckHashes(uint64_t seq_id, std::span<const uint64_t> hashes) {
  const std::string who = "LookupPrefix(sequence " + Str(static_cast<int64_t>(seq_id)) + "): ";
  if (hashes.size() > static_cast<size_t>(KvStore::kMaxPrefixBlocks)) {
    return InvalidArgumentError(who + Str(static_cast<int64_t>(hashes.size())) +
                                " block hashes exceed the limit of " +
                                Str(KvStore::kMaxPrefixBlocks));
  }
  std::unordered_set<uint64_t> seen;
  seen.reserve(hashes.size());
  for (size_t i = 0; i < hashes.size(); ++i) {
    if (!seen.insert(hashes[i]).second) {
      return InvalidArgumentError(who + "block hash " + Str(static_cast<int64_t>(i)) +
                                  " repeats an earlier one; chained hashes must be distinct");
    }
  }
  return OkStatus();
}

}  // namespace

KvStore::KvStore(const KvStoreOptions& options) : options_(options) {}

KvStore::~KvStore() = default;

StatusOr<std::unique_ptr<KvStore>> KvStore::Open(const KvStoreOptions& options) {
  std::unique_ptr<KvStore> store(new KvStore(options));
  SlabAllocator* alloc = options.allocator;
  if (alloc == nullptr) {
    store->owned_allocator_ =
        std::make_unique<MmapSlabAllocator>(MmapSlabAllocatorOptions{.populate = options.populate});
    alloc = store->owned_allocator_.get();
  }
  const bool tiered = !options.ssd.path.empty();
  if (tiered) RETURN_IF_ERROR(CheckTierOptions(options));
  // The default allocator prefaults by itself; a custom one gets its pages touched.
  const bool touch = options.populate && options.allocator != nullptr;
  ASSIGN_OR_RETURN(store->k_pool_, BlockPool::Create(PoolKind::kKey, options.block_bytes,
                                                     options.k_pool_blocks, alloc, touch));
  // With an SSD tier the V slab is address space: only resident values take memory. It gets
  // no transparent huge pages: spilling releases one block's pages at a time, and a reload
  // faulting into a 2 MiB range whose blocks are all spilled would zero (and commit) a whole
  // huge page for one 16 KiB block: about half of a sparse step's fetch time on the VM.
  SlabAllocator* v_alloc = alloc;
  if (tiered && options.allocator == nullptr) {
    store->value_allocator_ =
        std::make_unique<MmapSlabAllocator>(MmapSlabAllocatorOptions{.huge_pages = false});
    v_alloc = store->value_allocator_.get();
  }
  ASSIGN_OR_RETURN(store->v_pool_,
                   BlockPool::Create(PoolKind::kValue, options.block_bytes, options.v_pool_blocks,
                                     v_alloc, touch && !tiered));
  store->prefix_ = std::make_unique<PrefixCache>(store->k_pool_.get(), store->v_pool_.get());
  if (tiered) {
    const int64_t budget =
        options.value_dram_blocks > 0 ? options.value_dram_blocks : options.v_pool_blocks;
    store->ssd_ = std::make_unique<kv_internal::SsdState>(
        store->v_pool_.get(), budget, options.spill_high_watermark, options.spill_low_watermark,
        options.ssd_capacity_bytes, options.ssd_reclaim_watermark);
    ASSIGN_OR_RETURN(store->tier_, SsdTier::Open(options.ssd));
    RETURN_IF_ERROR(store->Recover());
  }
  return store;
}

StatusOr<std::shared_ptr<Sequence>> KvStore::Find(uint64_t seq_id) const {
  ReaderLock l(&seqs_mu_);
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) {
    return NotFoundError("sequence " + std::to_string(seq_id) + " is not open");
  }
  return it->second;
}

Status KvStore::OpenSequence(const SequenceOptions& options) {
  ASSIGN_OR_RETURN(SequenceConfig config, MakeConfig(options, options_.block_bytes));
  auto seq = std::make_shared<Sequence>(std::move(config));
  WriterLock l(&seqs_mu_);
  if (!seqs_.try_emplace(options.id, std::move(seq)).second) {
    return AlreadyExistsError("sequence " + std::to_string(options.id) + " is already open");
  }
  return OkStatus();
}

Status KvStore::CloseSequence(uint64_t seq_id) {
  std::shared_ptr<Sequence> seq;
  {
    WriterLock l(&seqs_mu_);
    auto it = seqs_.find(seq_id);
    if (it == seqs_.end()) {
      return NotFoundError("sequence " + std::to_string(seq_id) + " is not open");
    }
    seq = std::move(it->second);
    seqs_.erase(it);
  }
  MutexLock l(&seq->mu);
  if (ssd_ != nullptr) {
    ssd_->pending_blocks.fetch_sub(static_cast<int64_t>(seq->pending().size()),
                                   std::memory_order_relaxed);
    seq->pending().clear();
    ForgetOnSsd(*seq);
  }
  kv_internal::ReleasedBlocks released = seq->Close();
  k_pool_->Free(released.k);
  v_pool_->Free(released.v);
  private_blocks_.fetch_sub(static_cast<int64_t>(released.k.size()), std::memory_order_relaxed);
  prefix_->Unpin(released.entries);
  return OkStatus();
}

StatusOr<PrefixMatch> KvStore::LookupPrefix(uint64_t seq_id,
                                            std::span<const uint64_t> block_hashes) {
  RETURN_IF_ERROR(CheckHashes(seq_id, block_hashes));
  ASSIGN_OR_RETURN(std::shared_ptr<Sequence> seq, Find(seq_id));
  const SequenceConfig& c = seq->config();
  MutexLock l(&seq->mu);
  RETURN_IF_ERROR(seq->CheckOpen());
  RETURN_IF_ERROR(seq->CheckLookupAllowed());
  kv_internal::PinResult pin = prefix_->PinChain({.scope = c.scope,
                                                  .num_layers = c.spec.num_layers,
                                                  .num_kv_heads = c.spec.num_kv_heads,
                                                  .head_begin = c.head_begin,
                                                  .head_end = c.head_end,
                                                  .block_bytes = c.block_bytes(),
                                                  .hashes = block_hashes});
  if (tier_ != nullptr) {
    ExtendPrefixFromSsd(c, block_hashes, &pin);
    ssd_->TouchEntries(c.scope, block_hashes);
  }
  const int matched = pin.matched_blocks;
  seq->InstallPrefix(block_hashes, std::move(pin));
  if (tier_ != nullptr && matched > 0) {
    // The matched blocks are on SSD already; the manifest makes them this sequence's.
    kv_internal::Manifest m = seq->ToManifest();
    std::fill(m.durable_lengths.begin(), m.durable_lengths.end(), matched * c.block_size());
    TierBatch batch;
    batch.records.push_back({ManifestKey(c.id), kv_internal::EncodeManifest(m)});
    Status s = tier_->Write(batch);
    if (s.ok()) {
      for (int layer = 0; layer < c.spec.num_layers; ++layer) {
        seq->set_durable_length(layer, matched * c.block_size());
      }
    } else {
      ssd_->RecordError(s);
    }
  }
  return PrefixMatch{matched, matched * c.block_size()};
}

StatusOr<int> KvStore::Length(uint64_t seq_id, int layer) const {
  ASSIGN_OR_RETURN(std::shared_ptr<Sequence> seq, Find(seq_id));
  RETURN_IF_ERROR(kv_internal::CheckLayer(seq->config(), layer, "Length"));
  MutexLock l(&seq->mu);
  RETURN_IF_ERROR(seq->CheckOpen());
  return seq->length(layer);
}

StatusOr<int> KvStore::DurableLength(uint64_t seq_id, int layer) const {
  ASSIGN_OR_RETURN(std::shared_ptr<Sequence> seq, Find(seq_id));
  RETURN_IF_ERROR(kv_internal::CheckLayer(seq->config(), layer, "DurableLength"));
  MutexLock l(&seq->mu);
  RETURN_IF_ERROR(seq->CheckOpen());
  return seq->durable_length(layer);
}

StatusOr<SequenceInfo> KvStore::GetSequence(uint64_t seq_id) const {
  ASSIGN_OR_RETURN(std::shared_ptr<Sequence> seq, Find(seq_id));
  MutexLock l(&seq->mu);
  RETURN_IF_ERROR(seq->CheckOpen());
  return seq->Info();
}

Status KvStore::AllocatePairs(size_t n, std::vector<BlockRef>* out) {
  if (n == 0) return OkStatus();
  std::vector<BlockId> ks;
  std::vector<BlockId> vs;
  for (;;) {
    ks.clear();
    vs.clear();
    if (k_pool_->TryAllocate(n, &ks)) {
      if (v_pool_->TryAllocate(n, &vs)) break;
      k_pool_->Free(ks);
    }
    // Hopeless requests fail before flushing the cache for nothing.
    const int64_t cached = prefix_->Stats().cached_blocks;
    const auto need = static_cast<int64_t>(n);
    const bool could_fit =
        need <= k_pool_->free_blocks() + cached && need <= v_pool_->free_blocks() + cached;
    if (!could_fit || !prefix_->EvictOne()) return ExhaustedError(n);
  }
  out->reserve(out->size() + n);
  for (size_t i = 0; i < n; ++i) out->push_back(BlockRef{.k = ks[i], .v = vs[i]});
  private_blocks_.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
  return OkStatus();
}

void KvStore::FreePairs(std::span<const BlockRef> pairs) {
  std::vector<BlockId> ks, vs;
  ks.reserve(pairs.size());
  vs.reserve(pairs.size());
  for (const BlockRef& r : pairs) {
    ks.push_back(r.k);
    vs.push_back(r.v);
  }
  k_pool_->Free(ks);
  v_pool_->Free(vs);
  private_blocks_.fetch_sub(static_cast<int64_t>(pairs.size()), std::memory_order_relaxed);
}

Status KvStore::ExhaustedError(size_t needed) const {
  const KvStoreStats s = Stats();
  return ResourceExhaustedError(
      "KV store out of memory: need " + Str(static_cast<int64_t>(needed)) + " block pairs; " +
      DescribePool(s.k) + ", " + DescribePool(s.v) + "; " + Str(s.cached_blocks) +
      " cached (evictable) blocks, " + Str(s.private_blocks) + " private and " +
      Str(s.prefix_blocks) + " prefix blocks in use by " + Str(s.sequences) + " sequences");
}

KvStoreStats KvStore::Stats() const {
  KvStoreStats s;
  s.k = PoolFigures(*k_pool_);
  s.v = PoolFigures(*v_pool_);
  {
    ReaderLock l(&seqs_mu_);
    s.sequences = static_cast<int64_t>(seqs_.size());
  }
  s.private_blocks = private_blocks_.load(std::memory_order_relaxed);
  const kv_internal::PrefixCacheStats p = prefix_->Stats();
  s.prefix_entries = p.entries;
  s.prefix_blocks = p.blocks;
  s.cached_blocks = p.cached_blocks;
  s.shared_blocks = p.shared_blocks;
  s.evictions = p.evicted_entries;
  s.evicted_blocks = p.evicted_blocks;
  s.dedupe_hits = p.dedupe_hits;
  s.dedupe_conflicts = p.dedupe_conflicts;
  s.prefix_hits = p.prefix_hits;
  if (ssd_ != nullptr) {
    s.ssd = true;
    s.value_dram_blocks = ssd_->value_dram_blocks;
    s.v_spilled_blocks = ssd_->residency.spilled_blocks();
    s.v_resident_blocks = s.v.used_blocks - s.v_spilled_blocks;
    s.spilled_total = ssd_->residency.spilled_total();
    s.reloaded_total = ssd_->reloaded.load(std::memory_order_relaxed);
    s.streamed_total = ssd_->streamed.load(std::memory_order_relaxed);
    s.ssd_bytes_read = ssd_->bytes_read.load(std::memory_order_relaxed);
    s.ssd_prefix_entries = ssd_->entries();
    s.ssd_prefix_hits = ssd_->ssd_prefix_hits.load(std::memory_order_relaxed);
    s.durability_errors = ssd_->durability_errors.load(std::memory_order_relaxed);
    s.pending_durable_blocks = ssd_->pending_blocks.load(std::memory_order_relaxed);
    s.recovered_sequences = static_cast<int64_t>(ssd_->recovered.size());
    s.ssd_capacity = SsdCapacity();
    s.tier = tier_->Stats();
  }
  return s;
}

SsdCapacityStats KvStore::SsdCapacity() const {
  SsdCapacityStats c;
  if (ssd_ == nullptr) return c;
  c.capacity_bytes = ssd_->capacity_bytes;
  c.private_bytes = ssd_->private_bytes();
  c.prefix_bytes = ssd_->prefix_bytes();
  c.used_bytes = c.private_bytes + c.prefix_bytes;
  c.reclaimed_entries = ssd_->reclaimed_entries();
  c.reclaimed_blocks = ssd_->reclaimed_blocks();
  c.reclaimed_bytes = ssd_->reclaimed_bytes();
  c.full_refusals = ssd_->full_refusals.load(std::memory_order_relaxed);
  c.full = ssd_->full();
  return c;
}

bool KvStore::ssd_full() const { return ssd_ != nullptr && ssd_->full(); }

std::vector<uint64_t> KvStore::SequenceIds() const {
  std::vector<uint64_t> ids;
  ReaderLock l(&seqs_mu_);
  ids.reserve(seqs_.size());
  for (const auto& [id, seq] : seqs_) ids.push_back(id);
  return ids;
}

void KvStore::VisitPrefixEntries(
    const std::function<void(uint64_t scope, uint64_t hash)>& visit) const {
  const auto each = [&visit](const kv_internal::PrefixKey& key) { visit(key.scope, key.hash); };
  prefix_->ForEachFilled(each);
  if (ssd_ != nullptr) ssd_->ForEachEntry(each);
}

Status KvStore::Verify() const {
  std::vector<std::shared_ptr<Sequence>> seqs;
  {
    ReaderLock l(&seqs_mu_);
    seqs.reserve(seqs_.size());
    for (const auto& [id, seq] : seqs_) seqs.push_back(seq);
  }
  const kv_internal::BlockPools pools{k_pool_.get(), v_pool_.get()};
  for (const std::shared_ptr<Sequence>& seq : seqs) {
    MutexLock l(&seq->mu);
    RETURN_IF_ERROR(seq->Verify(pools));
  }
  RETURN_IF_ERROR(prefix_->Verify());
  for (const BlockPool* pool : {k_pool_.get(), v_pool_.get()}) {
    if (pool->bad_frees() != 0) {
      return InternalError(std::string(PoolKindName(pool->kind())) + " pool saw " +
                           Str(pool->bad_frees()) + " frees of blocks that were not in use");
    }
  }
  return OkStatus();
}

std::vector<MemoryRegion> KvStore::memory_regions() const {
  return {k_pool_->region(), v_pool_->region()};
}

}  // namespace attic
