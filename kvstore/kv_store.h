// KvStore: the DRAM tier of the KV cache — paged K/V blocks per sequence, layer and KV head,
// with prefix-hash dedupe and an LRU prefix cache. The data layout, prefix cache, eviction,
// locking and error codes are described in docs/kvstore.md.
//
//   ASSIGN_OR_RETURN(auto store, KvStore::Open(KvStoreOptions{}));
//   RETURN_IF_ERROR(store->OpenSequence({.id = 7, .tenant = "acme", .spec = spec}));
//   ASSIGN_OR_RETURN(PrefixMatch m, store->LookupPrefix(7, prompt_block_hashes));
//   // send only tokens [m.matched_tokens, prompt_len) of every layer:
//   RETURN_IF_ERROR(store->AppendPrefill(7, layer, k_chunk, v_chunk, num_tokens));
//   RETURN_IF_ERROR(store->AppendDecodeToken(7, layer, k_new, v_new));
//   std::vector<BlockView> blocks;
//   RETURN_IF_ERROR(store->ReadBlocks(7, layer, kv_head, &blocks));
//   RETURN_IF_ERROR(store->CloseSequence(7));   // prompt blocks stay cached for later requests
//
// Thread safety: every method may be called concurrently. Operations on different sequences
// proceed in parallel (each sequence has its own mutex and copies happen under it only);
// operations on one sequence are serialized. Views from ReadBlocks are read without locks, so
// the caller must not append to a (sequence, layer) while it reads views of it.
// Lock order: a sequence's mutex, then the prefix cache's, then a pool's free-list mutex. The
// sequence map's shared mutex is held only to find, insert or erase, never while acquiring
// another lock (it may be taken while a sequence's mutex is held, for error figures).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/model_spec.h"
#include "common/status.h"
#include "common/tensor_view.h"
#include "common/thread_annotations.h"
#include "kvstore/kv_store_options.h"
#include "kvstore/slab_allocator.h"

namespace attic {

namespace kv_internal {
class BlockPool;
class PrefixCache;
class Sequence;
class SsdState;
struct BlockRef;
struct Manifest;
struct PinResult;
struct SequenceConfig;
struct SpilledReads;
struct ThroughBatch;
}  // namespace kv_internal

// Prefix blocks are shared within a scope, ScopeFingerprint(tenant, model, spec)
// (common/model_spec.h). The store computes it itself, so equal hashes of two tenants never meet.

struct PrefixMatch {
  int matched_blocks = 0;  // leading prompt blocks the store already holds (all layers, heads)
  int matched_tokens = 0;  // matched_blocks * B: the caller sends tokens from here on
};

// One block of one (layer, KV head), as the attention kernels consume it.
struct BlockView {
  const std::byte* k;  // [B, D], row-major (token t at t * D), storage dtype
  const std::byte* v;  // [B, D], row-major, storage dtype; nullptr while spilled to SSD
  int num_tokens;      // valid leading rows: B for every block but possibly the last
};

// What a LoadValues or FetchValues call read from the SSD tier.
struct FetchStats {
  int64_t blocks_requested = 0;
  int64_t blocks_resident = 0;  // already in DRAM: no read
  int64_t blocks_read = 0;      // read from SSD
  uint64_t bytes_read = 0;      // block bytes read from SSD
};

// What one Maintain call did.
struct MaintainStats {
  int64_t spilled_blocks = 0;    // values whose DRAM copy was dropped
  int64_t durable_retries = 0;   // sealed blocks written after an earlier failure
  Status durability = OkStatus();  // the last write-through error, OK when none
};

struct SequenceInfo {
  uint64_t id = 0;
  std::string tenant;
  ModelSpec spec;
  uint64_t model_fingerprint = 0;  // as resolved (never 0)
  uint64_t scope = 0;              // ScopeFingerprint of the above
  int kv_head_begin = 0;           // held heads [kv_head_begin, kv_head_end)
  int kv_head_end = 0;
  std::vector<int> layer_lengths;  // [num_layers], tokens
  int prefix_hashes = 0;           // hashes given to LookupPrefix
  int matched_blocks = 0;          // what LookupPrefix matched
  // [num_layers], tokens on the SSD tier: what survives a crash. All zero without a tier.
  std::vector<int> durable_lengths;
  bool recovered = false;          // restored from the SSD tier at Open
};

struct PoolStats {
  PoolKind kind = PoolKind::kKey;
  int64_t capacity_blocks = 0;
  int64_t used_blocks = 0;
  int64_t free_blocks = 0;
  size_t block_bytes = 0;     // slot size
  size_t capacity_bytes = 0;  // capacity_blocks * block_bytes
  size_t used_bytes = 0;      // used_blocks * block_bytes
};

// The SSD tier's space as the store accounts it (all zero without a tier): block payload
// bytes, K and V, without RocksDB's overhead (docs/kvstore-ssd.md, "Capacity and reclaim").
struct SsdCapacityStats {
  uint64_t capacity_bytes = 0;     // KvStoreOptions::ssd_capacity_bytes; 0 = no limit
  uint64_t used_bytes = 0;         // private_bytes + prefix_bytes
  uint64_t private_bytes = 0;      // blocks of open sequences stored under their own keys
  uint64_t prefix_bytes = 0;       // prefix entries on SSD (each counted for every layer and
                                   // head of the sequence that first wrote it)
  uint64_t reclaimed_entries = 0;  // prefix entries reclaimed (deleted on SSD) since Open
  uint64_t reclaimed_blocks = 0;   // K and V blocks they held
  uint64_t reclaimed_bytes = 0;    // their bytes
  int64_t full_refusals = 0;       // write-throughs refused for want of space
  // No room: the last write that needed space could not get it, even after reclaiming every
  // prefix entry no open sequence pins (or the disk answered ENOSPC). Cleared when space is
  // freed (a sequence closed, an entry reclaimed) or a write succeeds. Admission should stop
  // taking sequences that would write through while it is set.
  bool full = false;
};

// Store-wide figures. Block counts below the pools are per pool: every K block has its V twin.
// They are gathered one lock at a time, so under concurrent changes they need not add up; at
// rest, k.used_blocks == private_blocks + prefix_blocks (and the same for v).
struct KvStoreStats {
  PoolStats k;
  PoolStats v;
  int64_t sequences = 0;
  int64_t private_blocks = 0;    // held by exactly one sequence (tails, decode, unshared prompt)
  int64_t prefix_entries = 0;    // (scope, hash) entries of the prefix index
  int64_t prefix_blocks = 0;     // content-addressed blocks owned by the prefix index
  int64_t cached_blocks = 0;     // prefix blocks no open sequence pins (evictable)
  int64_t shared_blocks = 0;     // prefix blocks pinned by two or more open sequences
  int64_t evictions = 0;         // prefix entries evicted under memory pressure
  int64_t evicted_blocks = 0;    // blocks those entries held
  int64_t dedupe_hits = 0;       // sealed blocks whose identical stored copy replaced them
  int64_t dedupe_conflicts = 0;  // sealed blocks whose hash matched different stored bytes
  int64_t prefix_hits = 0;       // prompt blocks (all layers and heads) matched by LookupPrefix
  // SSD tier (all zero without one).
  bool ssd = false;
  int64_t value_dram_blocks = 0;      // the values' DRAM budget
  int64_t v_resident_blocks = 0;      // V blocks in use whose bytes are in DRAM
  int64_t v_spilled_blocks = 0;       // V blocks in use whose bytes are only on SSD
  int64_t spilled_total = 0;          // values spilled since Open
  int64_t reloaded_total = 0;         // values made resident again (FetchValues)
  int64_t streamed_total = 0;         // values read into caller buffers (LoadValues)
  uint64_t ssd_bytes_read = 0;        // block bytes read from SSD by the store
  int64_t ssd_prefix_entries = 0;     // prefix entries known on SSD
  int64_t ssd_prefix_hits = 0;        // prompt blocks LookupPrefix found only on SSD
  int64_t durability_errors = 0;      // write-throughs that failed
  int64_t pending_durable_blocks = 0; // sealed blocks not yet written (retried by Maintain)
  int64_t recovered_sequences = 0;
  SsdCapacityStats ssd_capacity;
  SsdTierStats tier;
};

class KvStore {
 public:
  // Tokens one (sequence, layer) may hold; appends past it fail with OutOfRange.
  static constexpr int kMaxSequenceTokens = 1 << 28;
  // Hashes one LookupPrefix call may carry.
  static constexpr int kMaxPrefixBlocks = 1 << 20;

  // Takes both slabs. InvalidArgument for options out of range; the allocator's error when it
  // has no memory.
  static StatusOr<std::unique_ptr<KvStore>> Open(const KvStoreOptions& options);
  // REQUIRES: no other thread uses the store and no view is used afterwards.
  ~KvStore();
  KvStore(const KvStore&) = delete;
  KvStore& operator=(const KvStore&) = delete;

  // InvalidArgument if the spec is invalid, too large for a block slot, or the head range is
  // out of [0, Hkv); AlreadyExists if the id is open.
  Status OpenSequence(const SequenceOptions& options);

  // block_hashes: one chained hash per full B-token prompt block. Pins the longest prefix held
  // for every layer and KV head of the sequence, sets every layer's length to its token count,
  // and makes the sequence's blocks at those indexes content-addressed. Once per sequence,
  // before any append (else FailedPrecondition); InvalidArgument for repeated hashes.
  StatusOr<PrefixMatch> LookupPrefix(uint64_t seq_id, std::span<const uint64_t> block_hashes);

  // A block-major chunk in the storage dtype, as the wire carries it: k and v each
  // [Hkv_shard, blocks, B, D] with rows of a block contiguous (strides [*, *, D, 1]).
  // num_tokens in ((blocks-1)*B, blocks*B]: only the last block may be partial.
  // REQUIRES (else FailedPrecondition): the layer's length is a multiple of B.
  // All or nothing: on error the sequence is unchanged.
  Status AppendPrefill(uint64_t seq_id, int layer, const TensorView& k, const TensorView& v,
                       int num_tokens);

  // Token-major k and v [n, Hkv_shard, D] (rows contiguous, strides [*, *, 1]) in any dtype,
  // converted to the storage dtype; fills a partial tail block first. All or nothing.
  Status AppendTokens(uint64_t seq_id, int layer, const TensorView& k, const TensorView& v);

  // One token: k and v [Hkv_shard, D] (stride 1 along D) in any dtype.
  Status AppendDecodeToken(uint64_t seq_id, int layer, const TensorView& k, const TensorView& v);

  // The blocks of one (layer, absolute KV head), in token order. *out is refilled (its capacity
  // reused, so keep one vector per worker thread) only on success.
  // Views stay valid until the sequence is closed, provided the caller does not append to the
  // same (sequence, layer) while it holds them: an append may seal the tail block and swap it
  // for an identical shared copy, so read again after appending. With verify_reads, DataLoss
  // naming the block when a full block's checksum does not match.
  // With an SSD tier, spilled values come back as v == nullptr (keys are always in DRAM):
  // read them with LoadValues or FetchValues; a value pointer is good until the next
  // Maintain, which may spill it. touch_values marks the resident values as used
  // now (the spill order is least recently used first).
  Status ReadBlocks(uint64_t seq_id, int layer, int kv_head, std::vector<BlockView>* out,
                    bool touch_values = false) const;

  // Copies the values of the given blocks (indexes into ReadBlocks' order) into dst[i]
  // ([B, D] storage dtype each), from DRAM when resident, else streamed from SSD without
  // making them resident (dense passes over spilled sequences). DataLoss naming the block
  // when the stored checksum does not match; the tier's error when the disk fails.
  Status LoadValues(uint64_t seq_id, int layer, int kv_head, std::span<const int> blocks,
                    std::span<std::byte* const> dst, FetchStats* stats = nullptr) const;

  // Makes the values of the given blocks resident (reloading spilled ones into DRAM) and
  // marks them used; (*values)[i] is block blocks[i]'s V bytes. The sparse path's fetch:
  // selected blocks stay resident for the next steps until Maintain spills them.
  Status FetchValues(uint64_t seq_id, int layer, int kv_head, std::span<const int> blocks,
                     std::vector<const std::byte*>* values, FetchStats* stats = nullptr);

  StatusOr<int> Length(uint64_t seq_id, int layer) const;
  // Tokens of (sequence, layer) on the SSD tier (0 without one).
  StatusOr<int> DurableLength(uint64_t seq_id, int layer) const;
  StatusOr<SequenceInfo> GetSequence(uint64_t seq_id) const;

  // Frees the sequence's private blocks; its full prompt blocks stay in the prefix cache.
  // Views of the sequence become invalid.
  Status CloseSequence(uint64_t seq_id);

  KvStoreStats Stats() const;
  // The SSD tier's space (cheap: atomics only; any thread). SsdCapacityStats says what each
  // figure counts.
  SsdCapacityStats SsdCapacity() const;
  // Whether the SSD tier is full (SsdCapacityStats::full). False without a tier.
  bool ssd_full() const;

  // Ids of the open sequences (recovered ones included), in no particular order.
  std::vector<uint64_t> SequenceIds() const;

  // Calls visit(scope, hash) for every prefix-cache entry that holds blocks in DRAM, under the
  // prefix cache's mutex, then for every entry known on the SSD tier under the tier state's
  // (an entry in both is visited twice). visit must not call the store. The scheduler agent
  // builds the worker's prefix summary from it.
  void VisitPrefixEntries(const std::function<void(uint64_t scope, uint64_t hash)>& visit) const;

  // SSD tier upkeep, called between requests: spills values above the high watermark down to
  // the low one (least recently used first; only sealed, durable blocks) and retries failed
  // write-throughs. REQUIRES: no thread holds value views (v pointers from ReadBlocks or
  // FetchValues) while it runs. Without a tier it does nothing.
  MaintainStats Maintain();
  // Whether Maintain has work: resident values above the high watermark, sealed blocks not yet
  // durable, or a write-through error to report. Cheap (atomics and one lock); any thread.
  bool MaintenanceDue() const;
  // Advances the clock the spill order reads (one tick per request served). Any thread.
  void TickValueClock();

  // The prefill query sample of (sequence, layer), stored with the sequence's manifest so a
  // restarted store can rebuild its retrieval index. Opaque bytes (the worker's encoding).
  // Without a tier StoreSample does nothing and LoadSamples returns nothing.
  Status StoreSample(uint64_t seq_id, int layer, std::string bytes);
  StatusOr<std::vector<std::pair<int, std::string>>> LoadSamples(uint64_t seq_id) const;

  // Sequences recovered from the SSD tier at Open, in id order.
  std::vector<uint64_t> RecoveredSequences() const;
  bool has_ssd_tier() const { return tier_ != nullptr; }

  // Recomputes every sealed block's checksums (sequences one at a time, then the prefix cache)
  // and checks the pools' bookkeeping. DataLoss naming sequence or prefix entry, layer, head,
  // block and pool on the first mismatch; Internal if a pool saw a double free.
  Status Verify() const;

  // The two slabs, for the transport to register. Stable for the store's lifetime.
  std::vector<MemoryRegion> memory_regions() const;

 private:
  explicit KvStore(const KvStoreOptions& options);

  StatusOr<std::shared_ptr<kv_internal::Sequence>> Find(uint64_t seq_id) const;
  Status AllocatePairs(size_t n, std::vector<kv_internal::BlockRef>* out);
  // Gives back private pairs AllocatePairs handed out (never used by a sequence).
  void FreePairs(std::span<const kv_internal::BlockRef> pairs);
  Status ExhaustedError(size_t needed) const;
  // The token-major append behind AppendTokens and AppendDecodeToken; k, v: [n, Hkv_shard, D].
  Status AppendRows(kv_internal::Sequence& seq, int layer, const TensorView& k, const TensorView& v,
                    const char* op);

  // SSD tier (kv_store_ssd.cc, kv_store_recovery.cc). REQUIRES for those taking a
  // sequence, unless said otherwise: seq.mu.
  // A prefill chunk's blocks, the sequence's pending blocks and the new manifest, written
  // before the chunk is committed.
  Status WritePrefillThrough(kv_internal::Sequence& seq, int layer, const TensorView& k,
                             const TensorView& v, int num_tokens);
  // After the commit: marks the chunk's sealed values durable and advances the durable length.
  void CommitPrefillDurable(kv_internal::Sequence& seq, int layer, int old_length);
  // Blocks sealed by a token-major append join the pending ones, which are then written.
  void WriteSealedThrough(kv_internal::Sequence& seq, int layer, int old_length);
  // Writes the pending blocks; false (they stay pending, the error recorded) on failure.
  bool WritePending(kv_internal::Sequence& seq);
  // Adds the pending blocks to batch and advances m's durable lengths over them.
  void AddPendingBlocks(const kv_internal::Sequence& seq, kv_internal::ThroughBatch* batch,
                        kv_internal::Manifest* m) const;
  // Writes batch with the prefix-entry records its shared blocks need and manifest m, after
  // making room for it on SSD; on success the pending blocks are durable, their layers'
  // durable lengths taken from m, and the bytes on SSD accounted.
  Status WriteThrough(kv_internal::Sequence& seq, kv_internal::ThroughBatch batch,
                      const kv_internal::Manifest& m);
  // The records of the batch's new prefix entries; their keys go to *added.
  void AddEntryRecords(const kv_internal::SequenceConfig& c, kv_internal::ThroughBatch* batch,
                       std::vector<uint64_t>* added) const;
  // Reads spilled values into their destinations and checks them. Does not lock seq.
  Status ReadSpilled(const kv_internal::Sequence& seq, int layer, int head_index,
                     const kv_internal::SpilledReads& reads) const;
  void ForgetOnSsd(const kv_internal::Sequence& seq);
  // Room for `bytes` more on SSD: reclaims prefix entries if the capacity needs it
  // (kv_store_reclaim.cc). ResourceExhausted (the store marked full) when it cannot.
  Status MakeSsdRoom(uint64_t bytes, const std::string& what);
  // Reclaims least recently used prefix entries no open sequence pins until the store's
  // bytes on SSD are at most `target`. Returns the bytes reclaimed.
  uint64_t ReclaimSsd(uint64_t target);
  Status Recover();
  Status RecoverSequence(const kv_internal::Manifest& manifest);
  // Extends a LookupPrefix match with the entries found on SSD after the DRAM ones.
  void ExtendPrefixFromSsd(const kv_internal::SequenceConfig& c,
                           std::span<const uint64_t> hashes, kv_internal::PinResult* pin);

  const KvStoreOptions options_;
  // Declaration order is destruction order reversed: sequences go first, then the prefix
  // cache (which returns its blocks to the pools), then the pools, then the allocator.
  std::unique_ptr<SlabAllocator> owned_allocator_;
  std::unique_ptr<SlabAllocator> value_allocator_;  // non-prefaulting V slab with a tier
  std::unique_ptr<kv_internal::BlockPool> k_pool_;
  std::unique_ptr<kv_internal::BlockPool> v_pool_;
  std::unique_ptr<kv_internal::PrefixCache> prefix_;
  std::atomic<int64_t> private_blocks_{0};
  // The SSD tier and the store's bookkeeping of it (value residency, spill order, the prefix
  // entries on SSD); both null without a tier. Destroyed after the sequences.
  std::unique_ptr<SsdTier> tier_;
  std::unique_ptr<kv_internal::SsdState> ssd_;

  // Held only to find, insert or erase a sequence (readers for lookups), never while taking
  // another lock, so appends to different sequences only share it in read mode.
  mutable SharedMutex seqs_mu_;
  std::unordered_map<uint64_t, std::shared_ptr<kv_internal::Sequence>> seqs_ GUARDED_BY(seqs_mu_);
};

}  // namespace attic
