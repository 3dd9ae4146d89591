// KvStore and its SSD tier: write-through, value reloads, spilling and samples. Recovery and
// the prefix cache's SSD half are in kv_store_recovery.cc. docs/kvstore-ssd.md describes the
// rules these functions follow.
#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/hash.h"
#include "kvstore/internal/append_checks.h"
#include "kvstore/internal/block_pool.h"
#include "kvstore/internal/manifest.h"
#include "kvstore/internal/sequence.h"
#include "kvstore/internal/ssd_state.h"
#include "kvstore/kv_store.h"

namespace attic {

using kv_internal::BlockId;
using kv_internal::BlockPools;
using kv_internal::BlockRef;
using kv_internal::Manifest;
using kv_internal::Sequence;

namespace {

std::span<const std::byte> Bytes(const std::byte* p, size_t n) { return {p, n}; }

// The record naming a prefix entry on SSD carries its key, so a scan needs no key parsing.
std::string EntryValue(uint64_t scope, uint64_t hash) {
  std::string v(16, '\0');
  std::memcpy(v.data(), &scope, 8);
  std::memcpy(v.data() + 8, &hash, 8);
  return v;
}

}  // namespace

Status KvStore::WritePrefillThrough(Sequence& seq, int layer, const TensorView& k,
                                    const TensorView& v, int num_tokens) {
  const kv_internal::SequenceConfig& c = seq.config();
  const int bsize = c.block_size();
  const size_t bytes = c.block_bytes();
  const int old_length = seq.length(layer);
  const auto first = static_cast<size_t>(old_length / bsize);
  const int64_t blocks = k.dim(1);
  TierBatch batch;
  std::set<uint64_t> entry_hashes;
  for (int h = 0; h < c.num_heads(); ++h) {
    for (int64_t b = 0; b < blocks; ++b) {
      const size_t index = first + static_cast<size_t>(b);
      const bool full = (b + 1) * bsize <= num_tokens;
      const bool shared = full && seq.Shareable(index);
      batch.blocks.push_back({seq.TierKey(layer, h, index, shared, BlockKind::kKey),
                              Bytes(static_cast<const std::byte*>(k.ElementPtr({h, b, 0, 0})),
                                    bytes)});
      batch.blocks.push_back({seq.TierKey(layer, h, index, shared, BlockKind::kValue),
                              Bytes(static_cast<const std::byte*>(v.ElementPtr({h, b, 0, 0})),
                                    bytes)});
      if (shared) entry_hashes.insert(index);
    }
  }
  const std::vector<uint64_t>& hashes = seq.ToManifest().hashes;
  for (uint64_t index : entry_hashes) {
    const uint64_t hash = hashes[static_cast<size_t>(index)];
    if (ssd_->HasEntry({c.scope, hash})) continue;
    batch.records.push_back({PrefixEntryKey(c.scope, hash), EntryValue(c.scope, hash)});
  }
  // Blocks of earlier decode appends whose write failed go first: the durable length may only
  // advance over a gap-free run.
  const BlockPools pools{k_pool_.get(), v_pool_.get()};
  for (const Sequence::PendingBlock& p : seq.pending()) {
    const BlockRef& ref = seq.ref(p.layer, p.head_index, p.block);
    batch.blocks.push_back({seq.TierKey(p.layer, p.head_index, p.block, ref.shared,
                                        BlockKind::kKey),
                            Bytes(pools.k->block(ref.k), bytes)});
    batch.blocks.push_back({seq.TierKey(p.layer, p.head_index, p.block, ref.shared,
                                        BlockKind::kValue),
                            Bytes(pools.v->block(ref.v), bytes)});
  }
  Manifest m = seq.ToManifest();
  for (const Sequence::PendingBlock& p : seq.pending()) {
    const auto l = static_cast<size_t>(p.layer);
    m.durable_lengths[l] = std::max(
        m.durable_lengths[l], std::min(seq.length(p.layer), static_cast<int>(p.block + 1) * bsize));
  }
  m.durable_lengths[static_cast<size_t>(layer)] = old_length + num_tokens;
  batch.records.push_back({ManifestKey(c.id), EncodeManifest(m)});
  Status s = tier_->Write(batch);
  if (!s.ok()) {
    ssd_->RecordError(s);
    return s.WithContext("AppendPrefill(sequence " + std::to_string(c.id) + ", layer " +
                         std::to_string(layer) + "): write-through to the SSD tier");
  }
  for (uint64_t index : entry_hashes) {
    ssd_->AddEntry({c.scope, hashes[static_cast<size_t>(index)]});
  }
  for (const Sequence::PendingBlock& p : seq.pending()) {
    ssd_->residency.SetDurable(seq.ref(p.layer, p.head_index, p.block).v);
    seq.set_durable_length(p.layer, m.durable_lengths[static_cast<size_t>(p.layer)]);
  }
  ssd_->pending_blocks.fetch_sub(static_cast<int64_t>(seq.pending().size()),
                                 std::memory_order_relaxed);
  seq.pending().clear();
  return OkStatus();
}

void KvStore::CommitPrefillDurable(Sequence& seq, int layer, int old_length) {
  const int bsize = seq.config().block_size();
  const int length = seq.length(layer);
  const auto first = static_cast<size_t>(old_length / bsize);
  const auto full_end = static_cast<size_t>(length / bsize);
  for (int h = 0; h < seq.config().num_heads(); ++h) {
    for (size_t b = first; b < full_end; ++b) {
      const BlockRef& ref = seq.ref(layer, h, b);
      // A prompt block whose hash matched different bytes stays private: its SSD copy is under
      // the shared key, so it is never spilled (a reload would find the other bytes).
      if (seq.Shareable(b) && !ref.shared) continue;
      ssd_->residency.SetDurable(ref.v);
    }
  }
  seq.set_durable_length(layer, length);
}

void KvStore::WriteSealedThrough(Sequence& seq, int layer, int old_length) {
  const int bsize = seq.config().block_size();
  const auto first = static_cast<size_t>(old_length / bsize);
  const auto end = static_cast<size_t>(seq.length(layer) / bsize);
  if (first == end && seq.pending().empty()) return;
  const int64_t added = static_cast<int64_t>(end - first) * seq.config().num_heads();
  for (int h = 0; h < seq.config().num_heads(); ++h) {
    for (size_t b = first; b < end; ++b) seq.pending().push_back({layer, h, b});
  }
  ssd_->pending_blocks.fetch_add(added, std::memory_order_relaxed);
  const size_t bytes = seq.config().block_bytes();
  TierBatch batch;
  Manifest m = seq.ToManifest();
  std::set<uint64_t> entry_hashes;
  for (const Sequence::PendingBlock& p : seq.pending()) {
    const BlockRef& ref = seq.ref(p.layer, p.head_index, p.block);
    batch.blocks.push_back({seq.TierKey(p.layer, p.head_index, p.block, ref.shared,
                                        BlockKind::kKey),
                            Bytes(k_pool_->block(ref.k), bytes)});
    batch.blocks.push_back({seq.TierKey(p.layer, p.head_index, p.block, ref.shared,
                                        BlockKind::kValue),
                            Bytes(v_pool_->block(ref.v), bytes)});
    if (ref.shared) entry_hashes.insert(m.hashes[p.block]);
    const auto l = static_cast<size_t>(p.layer);
    m.durable_lengths[l] =
        std::max(m.durable_lengths[l], static_cast<int>(p.block + 1) * bsize);
  }
  const uint64_t scope = seq.config().scope;
  for (uint64_t hash : entry_hashes) {
    if (!ssd_->HasEntry({scope, hash})) {
      batch.records.push_back({PrefixEntryKey(scope, hash), EntryValue(scope, hash)});
    }
  }
  batch.records.push_back({ManifestKey(seq.config().id), EncodeManifest(m)});
  Status s = tier_->Write(batch);
  if (!s.ok()) {
    ssd_->RecordError(s.WithContext("sequence " + std::to_string(seq.config().id) +
                                    ": write-through of sealed blocks"));
    return;
  }
  for (uint64_t hash : entry_hashes) ssd_->AddEntry({scope, hash});
  for (const Sequence::PendingBlock& p : seq.pending()) {
    ssd_->residency.SetDurable(seq.ref(p.layer, p.head_index, p.block).v);
  }
  for (int l = 0; l < seq.config().spec.num_layers; ++l) {
    seq.set_durable_length(l, m.durable_lengths[static_cast<size_t>(l)]);
  }
  ssd_->pending_blocks.fetch_sub(static_cast<int64_t>(seq.pending().size()),
                                 std::memory_order_relaxed);
  seq.pending().clear();
}

Status KvStore::ReadSpilled(const Sequence& seq, int layer, int head_index,
                            std::span<const size_t> blocks, std::span<std::byte* const> dst,
                            std::span<const uint32_t> crcs) const {
  if (blocks.empty()) return OkStatus();
  const size_t bytes = seq.config().block_bytes();
  std::vector<std::string> keys;
  std::vector<std::span<std::byte>> spans;
  keys.reserve(blocks.size());
  spans.reserve(blocks.size());
  {
    // Keys need the table's shared flags and the hashes: read them under the mutex.
    MutexLock l(&seq.mu);
    RETURN_IF_ERROR(seq.CheckOpen());
    for (size_t i = 0; i < blocks.size(); ++i) {
      const BlockRef& ref = seq.ref(layer, head_index, blocks[i]);
      keys.push_back(seq.TierKey(layer, head_index, blocks[i], ref.shared, BlockKind::kValue));
      spans.emplace_back(dst[i], bytes);
    }
  }
  std::vector<Status> statuses;
  Status s = tier_->ReadBlocks(keys, spans, &statuses);
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (!statuses[i].ok()) {
      return statuses[i].WithContext(seq.Name(layer, head_index, blocks[i]) + " value");
    }
    const uint32_t got = Crc32c(dst[i], bytes);
    if (crcs[i] != got) {
      return DataLossError(seq.Name(layer, head_index, blocks[i]) +
                           ": value reloaded from SSD does not match the block's checksum "
                           "(stored " + std::to_string(crcs[i]) + ", read " +
                           std::to_string(got) + ")");
    }
  }
  RETURN_IF_ERROR(s);
  ssd_->bytes_read.fetch_add(bytes * blocks.size(), std::memory_order_relaxed);
  return OkStatus();
}

Status KvStore::LoadValues(uint64_t seq_id, int layer, int kv_head, std::span<const int> blocks,
                           std::span<std::byte* const> dst, FetchStats* stats) const {
  if (dst.size() != blocks.size()) {
    return InvalidArgumentError("LoadValues: " + std::to_string(blocks.size()) + " blocks but " +
                                std::to_string(dst.size()) + " destinations");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Sequence> seq, Find(seq_id));
  const kv_internal::SequenceConfig& c = seq->config();
  RETURN_IF_ERROR(kv_internal::CheckLayer(c, layer, "LoadValues"));
  RETURN_IF_ERROR(kv_internal::CheckKvHead(c, kv_head, "LoadValues"));
  const int h = kv_head - c.head_begin;
  const size_t bytes = c.block_bytes();
  std::vector<size_t> spilled;
  std::vector<std::byte*> spilled_dst;
  std::vector<uint32_t> crcs;
  {
    MutexLock l(&seq->mu);
    RETURN_IF_ERROR(seq->CheckOpen());
    const size_t n = seq->num_blocks(layer, h);
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (blocks[i] < 0 || static_cast<size_t>(blocks[i]) >= n) {
        return OutOfRangeError("LoadValues: " + seq->Name(layer, h, static_cast<size_t>(blocks[i])) +
                               " does not exist (" + std::to_string(n) + " blocks)");
      }
      const BlockRef& ref = seq->ref(layer, h, static_cast<size_t>(blocks[i]));
      if (v_pool_->resident(ref.v)) {
        std::memcpy(dst[i], v_pool_->block(ref.v), bytes);
      } else {
        spilled.push_back(static_cast<size_t>(blocks[i]));
        spilled_dst.push_back(dst[i]);
        crcs.push_back(ref.v_crc);
      }
    }
  }
  RETURN_IF_ERROR(ReadSpilled(*seq, layer, h, spilled, spilled_dst, crcs));
  if (ssd_ != nullptr) {
    ssd_->streamed.fetch_add(static_cast<int64_t>(spilled.size()), std::memory_order_relaxed);
  }
  if (stats != nullptr) {
    stats->blocks_requested += static_cast<int64_t>(blocks.size());
    stats->blocks_resident += static_cast<int64_t>(blocks.size() - spilled.size());
    stats->blocks_read += static_cast<int64_t>(spilled.size());
    stats->bytes_read += spilled.size() * bytes;
  }
  return OkStatus();
}

Status KvStore::FetchValues(uint64_t seq_id, int layer, int kv_head, std::span<const int> blocks,
                            std::vector<const std::byte*>* values, FetchStats* stats) {
  if (values == nullptr) return InvalidArgumentError("FetchValues: values is null");
  ASSIGN_OR_RETURN(std::shared_ptr<Sequence> seq, Find(seq_id));
  const kv_internal::SequenceConfig& c = seq->config();
  RETURN_IF_ERROR(kv_internal::CheckLayer(c, layer, "FetchValues"));
  RETURN_IF_ERROR(kv_internal::CheckKvHead(c, kv_head, "FetchValues"));
  const int h = kv_head - c.head_begin;
  std::vector<BlockId> ids(blocks.size());
  std::vector<uint32_t> all_crcs(blocks.size());
  {
    MutexLock l(&seq->mu);
    RETURN_IF_ERROR(seq->CheckOpen());
    const size_t n = seq->num_blocks(layer, h);
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (blocks[i] < 0 || static_cast<size_t>(blocks[i]) >= n) {
        return OutOfRangeError("FetchValues: " +
                               seq->Name(layer, h, static_cast<size_t>(blocks[i])) +
                               " does not exist (" + std::to_string(n) + " blocks)");
      }
      const BlockRef& ref = seq->ref(layer, h, static_cast<size_t>(blocks[i]));
      ids[i] = ref.v;
      all_crcs[i] = ref.v_crc;
    }
  }
  values->resize(blocks.size());
  int64_t read = 0;
  if (ssd_ != nullptr) {
    kv_internal::ValueResidency& res = ssd_->residency;
    std::vector<size_t> mine;  // indexes into blocks this call loads
    std::vector<size_t> waiting;
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (res.resident(ids[i])) continue;
      (res.Claim(ids[i]) ? mine : waiting).push_back(i);
    }
    std::vector<size_t> which;
    std::vector<std::byte*> dst;
    std::vector<uint32_t> crcs;
    for (size_t i : mine) {
      which.push_back(static_cast<size_t>(blocks[i]));
      dst.push_back(v_pool_->block(ids[i]));
      crcs.push_back(all_crcs[i]);
    }
    Status s = ReadSpilled(*seq, layer, h, which, dst, crcs);
    for (size_t i : mine) res.FinishLoad(ids[i], s.ok());
    RETURN_IF_ERROR(s);
    read = static_cast<int64_t>(mine.size());
    for (size_t i : waiting) {
      if (!res.WaitLoaded(ids[i])) {
        return UnavailableError("FetchValues: " +
                                seq->Name(layer, h, static_cast<size_t>(blocks[i])) +
                                ": a concurrent reload of the value failed");
      }
    }
    for (BlockId id : ids) res.Touch(id);
    ssd_->reloaded.fetch_add(read, std::memory_order_relaxed);
  }
  for (size_t i = 0; i < blocks.size(); ++i) (*values)[i] = v_pool_->block(ids[i]);
  if (stats != nullptr) {
    stats->blocks_requested += static_cast<int64_t>(blocks.size());
    stats->blocks_resident += static_cast<int64_t>(blocks.size()) - read;
    stats->blocks_read += read;
    stats->bytes_read += static_cast<uint64_t>(read) * c.block_bytes();
  }
  return OkStatus();
}

MaintainStats KvStore::Maintain() {
  MaintainStats out;
  if (ssd_ == nullptr) return out;
  ssd_->residency.Tick();
  if (ssd_->pending_blocks.load(std::memory_order_relaxed) > 0) {
    std::vector<std::shared_ptr<Sequence>> seqs;
    {
      ReaderLock l(&seqs_mu_);
      for (const auto& [id, seq] : seqs_) seqs.push_back(seq);
    }
    for (const std::shared_ptr<Sequence>& seq : seqs) {
      MutexLock l(&seq->mu);
      if (seq->pending().empty() || !seq->CheckOpen().ok()) continue;
      const auto before = static_cast<int64_t>(seq->pending().size());
      WriteSealedThrough(*seq, 0, seq->length(0));
      if (seq->pending().empty()) out.durable_retries += before;
    }
  }
  const int64_t resident = ssd_->residency.resident_blocks();
  if (resident > ssd_->high_blocks) {
    out.spilled_blocks = ssd_->residency.SpillOldest(resident - ssd_->low_blocks);
  }
  out.durability = ssd_->TakeLastError();
  return out;
}

void KvStore::ForgetOnSsd(const Sequence& seq) {
  TierBatch batch;
  const uint64_t id = seq.config().id;
  batch.delete_block_prefixes.push_back(PrivateBlockPrefix(id));
  batch.delete_records.push_back(ManifestKey(id));
  for (int l = 0; l < seq.config().spec.num_layers; ++l) {
    batch.delete_records.push_back(SampleKey(id, l));
  }
  Status s = tier_->Write(batch);
  if (!s.ok()) {
    // The manifest stays: a restart would recover the sequence, which a client can close again.
    ssd_->RecordError(s.WithContext("CloseSequence(" + std::to_string(id) +
                                    "): deleting its blocks from the SSD tier"));
  }
}

Status KvStore::StoreSample(uint64_t seq_id, int layer, std::string bytes) {
  ASSIGN_OR_RETURN(std::shared_ptr<Sequence> seq, Find(seq_id));
  RETURN_IF_ERROR(kv_internal::CheckLayer(seq->config(), layer, "StoreSample"));
  if (tier_ == nullptr) return OkStatus();
  TierBatch batch;
  batch.records.push_back({SampleKey(seq_id, layer), std::move(bytes)});
  Status s = tier_->Write(batch);
  if (!s.ok()) ssd_->RecordError(s);
  return s.WithContext("StoreSample(sequence " + std::to_string(seq_id) + ", layer " +
                       std::to_string(layer) + ")");
}

StatusOr<std::vector<std::pair<int, std::string>>> KvStore::LoadSamples(uint64_t seq_id) const {
  ASSIGN_OR_RETURN(std::shared_ptr<Sequence> seq, Find(seq_id));
  std::vector<std::pair<int, std::string>> out;
  if (tier_ == nullptr) return out;
  for (int l = 0; l < seq->config().spec.num_layers; ++l) {
    StatusOr<std::string> r = tier_->GetRecord(SampleKey(seq_id, l));
    if (r.ok()) {
      out.emplace_back(l, std::move(r).value());
    } else if (r.status().code() != StatusCode::kNotFound) {
      return r.status();
    }
  }
  return out;
}

std::vector<uint64_t> KvStore::RecoveredSequences() const {
  return ssd_ != nullptr ? ssd_->recovered : std::vector<uint64_t>{};
}

}  // namespace attic
