// KvStore's data path: appends and reads. Arguments are checked before any lock; the copy runs
// under the sequence's mutex only; pools and prefix cache are touched for short moments.
#include <atomic>
#include <vector>

#include "kvstore/internal/append_checks.h"
#include "kvstore/internal/block_pool.h"
#include "kvstore/internal/prefix_cache.h"
#include "kvstore/internal/sequence.h"
#include "kvstore/internal/ssd_state.h"
#include "kvstore/kv_store.h"

namespace attic {

using kv_internal::BlockPools;
using kv_internal::BlockRef;
using kv_internal::PublishItem;
using kv_internal::Sequence;

namespace {

// Checksums the blocks an append filled and content-addresses the prompt blocks among them.
void SealAndPublish(Sequence& seq, int layer, int old_length, BlockPools pools,
                    kv_internal::PrefixCache& prefix, std::atomic<int64_t>& private_blocks)
    REQUIRES(seq.mu) {
  std::vector<PublishItem> items = seq.Seal(layer, old_length, pools);
  if (items.empty()) return;
  prefix.Publish(items);
  const int64_t moved = seq.ApplyPublished(items);
  private_blocks.fetch_sub(moved, std::memory_order_relaxed);
}

}  // namespace

Status KvStore::AppendPrefill(uint64_t seq_id, int layer, const TensorView& k, const TensorView& v,
                              int num_tokens) {
  ASSIGN_OR_RETURN(std::shared_ptr<Sequence> seq, Find(seq_id));
  const kv_internal::SequenceConfig& c = seq->config();
  RETURN_IF_ERROR(kv_internal::CheckLayer(c, layer, "AppendPrefill"));
  ASSIGN_OR_RETURN(const int blocks, kv_internal::CheckPrefillChunk(c, layer, k, v, num_tokens));
  MutexLock l(&seq->mu);
  RETURN_IF_ERROR(seq->CheckOpen());
  if (num_tokens == 0) return OkStatus();
  const int old_length = seq->length(layer);
  if (old_length % c.block_size() != 0) {
    return FailedPreconditionError(
        "AppendPrefill(sequence " + std::to_string(c.id) + ", layer " + std::to_string(layer) +
        "): the layer holds " + std::to_string(old_length) +
        " tokens, not a multiple of the block size " + std::to_string(c.block_size()) +
        "; use AppendTokens after a partial block");
  }
  RETURN_IF_ERROR(kv_internal::CheckRoom(c, layer, old_length, num_tokens, "AppendPrefill"));
  std::vector<BlockRef> fresh;
  RETURN_IF_ERROR(AllocatePairs(static_cast<size_t>(blocks) * c.num_heads(), &fresh));
  // Written through before the sequence changes: on a disk error it is untouched.
  if (tier_ != nullptr) {
    Status written = WritePrefillThrough(*seq, layer, k, v, num_tokens);
    if (!written.ok()) {
      FreePairs(fresh);
      return written;
    }
  }
  const BlockPools pools{k_pool_.get(), v_pool_.get()};
  seq->WriteBlockMajor(layer, k, v, num_tokens, fresh, pools);
  SealAndPublish(*seq, layer, old_length, pools, *prefix_, private_blocks_);
  if (tier_ != nullptr) CommitPrefillDurable(*seq, layer, old_length);
  return OkStatus();
}

Status KvStore::AppendRows(Sequence& seq, int layer, const TensorView& k, const TensorView& v,
                           const char* op) {
  const kv_internal::SequenceConfig& c = seq.config();
  ASSIGN_OR_RETURN(const int n, kv_internal::CheckTokenRows(c, layer, k, v, op));
  MutexLock l(&seq.mu);
  RETURN_IF_ERROR(seq.CheckOpen());
  if (n == 0) return OkStatus();
  const int old_length = seq.length(layer);
  RETURN_IF_ERROR(kv_internal::CheckRoom(c, layer, old_length, n, op));
  std::vector<BlockRef> fresh;
  RETURN_IF_ERROR(AllocatePairs(seq.NewBlocksPerHead(layer, n) * c.num_heads(), &fresh));
  const BlockPools pools{k_pool_.get(), v_pool_.get()};
  seq.WriteTokenMajor(layer, k, v, fresh, pools);
  SealAndPublish(seq, layer, old_length, pools, *prefix_, private_blocks_);
  if (tier_ != nullptr) WriteSealedThrough(seq, layer, old_length);
  return OkStatus();
}

Status KvStore::AppendTokens(uint64_t seq_id, int layer, const TensorView& k, const TensorView& v) {
  ASSIGN_OR_RETURN(std::shared_ptr<Sequence> seq, Find(seq_id));
  RETURN_IF_ERROR(kv_internal::CheckLayer(seq->config(), layer, "AppendTokens"));
  return AppendRows(*seq, layer, k, v, "AppendTokens");
}

Status KvStore::AppendDecodeToken(uint64_t seq_id, int layer, const TensorView& k,
                                  const TensorView& v) {
  ASSIGN_OR_RETURN(std::shared_ptr<Sequence> seq, Find(seq_id));
  RETURN_IF_ERROR(kv_internal::CheckLayer(seq->config(), layer, "AppendDecodeToken"));
  RETURN_IF_ERROR(kv_internal::CheckDecodeRow(seq->config(), layer, k, v));
  return AppendRows(*seq, layer, kv_internal::AsOneTokenRows(k), kv_internal::AsOneTokenRows(v),
                    "AppendDecodeToken");
}

Status KvStore::ReadBlocks(uint64_t seq_id, int layer, int kv_head,
                           std::vector<BlockView>* out, bool touch_values) const {
  if (out == nullptr) return InvalidArgumentError("ReadBlocks: out is null");
  ASSIGN_OR_RETURN(std::shared_ptr<Sequence> seq, Find(seq_id));
  RETURN_IF_ERROR(kv_internal::CheckLayer(seq->config(), layer, "ReadBlocks"));
  RETURN_IF_ERROR(kv_internal::CheckKvHead(seq->config(), kv_head, "ReadBlocks"));
  MutexLock l(&seq->mu);
  RETURN_IF_ERROR(seq->CheckOpen());
  kv_internal::ValueResidency* touch =
      ssd_ != nullptr && touch_values ? &ssd_->residency : nullptr;
  return seq->Read(layer, kv_head, options_.verify_reads, BlockPools{k_pool_.get(), v_pool_.get()},
                   touch, out);
}

}  // namespace attic
