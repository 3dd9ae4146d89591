// Sequence: one open sequence's block tables and lengths, per layer and held KV head.
//
// The store finds a sequence, validates the input without locks (the configuration is
// immutable), then takes the sequence's mutex for the copy and the bookkeeping:
//
//   MutexLock l(&seq->mu);
//   RETURN_IF_ERROR(seq->CheckOpen());
//   size_t per_head = seq->NewBlocksPerHead(layer, n);
//   ... allocate per_head * num_heads block pairs ...
//   seq->WriteTokenMajor(layer, k, v, fresh, pools);
//   std::vector<PublishItem> sealed = seq->Seal(layer, old_length, pools);
//
// Thread safety: config() is immutable; everything else REQUIRES mu. The bytes of private
// blocks are written only under mu; shared blocks are immutable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/model_spec.h"
#include "common/status.h"
#include "common/tensor_view.h"
#include "common/thread_annotations.h"
#include "kvstore/internal/block_pool.h"
#include "kvstore/internal/manifest.h"
#include "kvstore/internal/prefix_cache.h"
#include "kvstore/internal/value_residency.h"
#include "kvstore/kv_store.h"
#include "kvstore/ssd/ssd_tier.h"

namespace attic::kv_internal {

struct SequenceConfig {
  uint64_t id = 0;
  std::string tenant;
  ModelSpec spec;
  uint64_t model_fingerprint = 0;  // resolved, never 0
  uint64_t scope = 0;
  int head_begin = 0;  // held KV heads [head_begin, head_end)
  int head_end = 0;

  int num_heads() const { return head_end - head_begin; }
  int block_size() const { return spec.block_size; }
  size_t block_bytes() const { return spec.block_bytes(); }
  // Bytes of one token's row of one head: D * sizeof(dtype).
  size_t row_bytes() const { return static_cast<size_t>(spec.head_dim) * DTypeSize(spec.dtype); }
};

struct BlockPools {
  BlockPool* k;
  BlockPool* v;
};

// What a closed sequence leaves for the store to release.
struct ReleasedBlocks {
  std::vector<BlockId> k;  // private blocks
  std::vector<BlockId> v;
  std::vector<PrefixEntry*> entries;  // pinned prefix entries, in chain order
};

class Sequence {
 public:
  explicit Sequence(SequenceConfig config);
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  const SequenceConfig& config() const { return config_; }

  mutable Mutex mu;

  // NotFound naming the id once the sequence is closed (a racing CloseSequence won).
  Status CheckOpen() const REQUIRES(mu);
  // FailedPrecondition after an append or a previous lookup.
  Status CheckLookupAllowed() const REQUIRES(mu);
  int length(int layer) const REQUIRES(mu) { return lengths_[static_cast<size_t>(layer)]; }

  // Records the hashes and pinned entries and installs the matched blocks in every table.
  void InstallPrefix(std::span<const uint64_t> hashes, PinResult pin) REQUIRES(mu);

  // New blocks each held head needs to take num_tokens more tokens at `layer`.
  size_t NewBlocksPerHead(int layer, int num_tokens) const REQUIRES(mu);

  // k, v: [num_heads, blocks, B, D] storage dtype, validated. fresh: [num_heads][blocks].
  // One memcpy per block. REQUIRES: length(layer) % B == 0.
  void WriteBlockMajor(int layer, const TensorView& k, const TensorView& v, int num_tokens,
                       std::span<const BlockRef> fresh, BlockPools pools) REQUIRES(mu);
  // k, v: [n, num_heads, D] any dtype, validated. fresh: [num_heads][NewBlocksPerHead(n)].
  void WriteTokenMajor(int layer, const TensorView& k, const TensorView& v,
                       std::span<const BlockRef> fresh, BlockPools pools) REQUIRES(mu);

  // Checksums the blocks of `layer` that became full since old_length and returns those that
  // are prompt blocks (index < hashes given to LookupPrefix), to offer to the prefix cache.
  std::vector<PublishItem> Seal(int layer, int old_length, BlockPools pools) REQUIRES(mu);
  // Takes the prefix cache's answer. Returns how many blocks stopped being private.
  int64_t ApplyPublished(std::span<const PublishItem> items) REQUIRES(mu);

  // kv_head is absolute and validated. Refills *out with views of the layer's blocks; with
  // `verify`, DataLoss naming the first full block whose checksum does not match (*out
  // untouched).
  // Spilled values come back as v == nullptr; `touch` (may be null) marks resident ones used.
  Status Read(int layer, int kv_head, bool verify, BlockPools pools, ValueResidency* touch,
              std::vector<BlockView>* out) const REQUIRES(mu);
  // Checks every sealed private block (shared ones are the prefix cache's to check).
  Status Verify(BlockPools pools) const REQUIRES(mu);

  // Marks the sequence closed and hands over what it held.
  ReleasedBlocks Close() REQUIRES(mu);
  SequenceInfo Info() const REQUIRES(mu);

  // --- SSD tier bookkeeping (docs/kvstore-ssd.md) ---
  // A sealed block whose write-through failed, retried by the store's Maintain.
  struct PendingBlock {
    int layer = 0;
    int head_index = 0;
    size_t block = 0;
  };
  int durable_length(int layer) const REQUIRES(mu) {
    return durable_lengths_[static_cast<size_t>(layer)];
  }
  void set_durable_length(int layer, int n) REQUIRES(mu) {
    durable_lengths_[static_cast<size_t>(layer)] = n;
  }
  std::vector<PendingBlock>& pending() REQUIRES(mu) { return pending_; }
  const std::vector<PendingBlock>& pending() const REQUIRES(mu) { return pending_; }
  size_t num_blocks(int layer, int head_index) const REQUIRES(mu) {
    return table(layer, head_index).size();
  }
  const BlockRef& ref(int layer, int head_index, size_t block) const REQUIRES(mu) {
    return table(layer, head_index)[block];
  }
  // Whether block index b is a prompt block with a prefix entry: full, it is stored shared.
  bool Shareable(size_t b) const REQUIRES(mu) {
    return b < entries_.size() && entries_[b] != nullptr;
  }
  // The tier key of block b of (layer, head_index): shared blocks under the prefix scope and
  // hashes[b], the rest under the sequence. `shared` says which.
  std::string TierKey(int layer, int head_index, size_t b, bool shared, BlockKind kind) const
      REQUIRES(mu);
  Manifest ToManifest() const REQUIRES(mu);
  std::string Name(int layer, int head_index, size_t block) const {
    return BlockName(layer, head_index, block);
  }
  // Private block pairs (K and V) the sequence has on SSD, for the tier's capacity: a
  // write-through that landed the pair (layer, head_index, block) counts it once; the tail
  // block a prefill chunk wrote partial and a later seal writes again is not counted twice.
  // Returns whether the pair was new.
  bool NotePrivateOnSsd(int layer, int head_index, size_t block) REQUIRES(mu);
  int64_t private_pairs_on_ssd() const REQUIRES(mu) { return ssd_private_pairs_; }
  // After Restore: every private block of the restored tables is on SSD.
  void CountRestoredPrivateOnSsd() REQUIRES(mu);
  // Installs what recovery rebuilt from the manifest: pinned entries (one per hash), the
  // tables ([num_layers][num_heads] blocks) and the durable lengths as lengths.
  void Restore(const Manifest& m, std::vector<PrefixEntry*> entries, int matched_blocks,
               std::vector<std::vector<BlockRef>> tables) REQUIRES(mu);

 private:
  std::vector<BlockRef>& table(int layer, int head_index) REQUIRES(mu);
  const std::vector<BlockRef>& table(int layer, int head_index) const REQUIRES(mu);
  std::string BlockName(int layer, int head_index, size_t block) const;

  const SequenceConfig config_;
  bool closed_ GUARDED_BY(mu) = false;
  bool looked_up_ GUARDED_BY(mu) = false;
  bool appended_ GUARDED_BY(mu) = false;
  int matched_blocks_ GUARDED_BY(mu) = 0;
  std::vector<uint64_t> hashes_ GUARDED_BY(mu);
  std::vector<PrefixEntry*> entries_ GUARDED_BY(mu);  // [hashes_.size()], pinned
  std::vector<int> lengths_ GUARDED_BY(mu);           // [num_layers], tokens
  std::vector<int> durable_lengths_ GUARDED_BY(mu);   // [num_layers], tokens on SSD
  std::vector<PendingBlock> pending_ GUARDED_BY(mu);
  bool recovered_ GUARDED_BY(mu) = false;
  // [num_layers * num_heads]: one past the last private block index written to SSD.
  std::vector<size_t> ssd_private_end_ GUARDED_BY(mu);
  int64_t ssd_private_pairs_ GUARDED_BY(mu) = 0;
  // [num_layers][num_heads]: block b holds tokens [b*B, (b+1)*B); size ceil(length / B).
  std::vector<std::vector<BlockRef>> tables_ GUARDED_BY(mu);
};

}  // namespace attic::kv_internal
