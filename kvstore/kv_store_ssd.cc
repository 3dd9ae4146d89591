// KvStore and its SSD tier: write-through, value reloads, spilling and samples. Recovery and
// the prefix cache's SSD half are in kv_store_recovery.cc. docs/kvstore-ssd.md describes the
// rules these functions follow.
#include <algorithm>
#include <cstring>
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

// What a prefix entry is accounted for: K and V of every layer and held head of the sequence
// that first wrote it.
uint64_t EntryBlocks(const kv_internal::SequenceConfig& c) {
  return 2 * static_cast<uint64_t>(c.spec.num_layers) * static_cast<uint64_t>(c.num_heads());
}

// The record naming a prefix entry on SSD carries its key, so a scan needs no key parsing,
// and what the entry is accounted for: bytes and K and V blocks (kv_store_recovery.cc reads
// the 16-byte records of earlier releases as 0 and 0).
std::string EntryValue(uint64_t scope, uint64_t hash, const kv_internal::SequenceConfig& c) {
  const uint64_t blocks = EntryBlocks(c);
  const uint64_t bytes = blocks * c.block_bytes();
  std::string v(32, '\0');
  std::memcpy(v.data(), &scope, 8);
  std::memcpy(v.data() + 8, &hash, 8);
  std::memcpy(v.data() + 16, &bytes, 8);
  std::memcpy(v.data() + 24, &blocks, 8);
  return v;
}

// Adds the K and V of one block to a write-through batch, under its tier keys.
void AddBlockPair(const Sequence& seq, int layer, int head_index, size_t block, bool shared,
                  const void* k, const void* v, kv_internal::ThroughBatch* batch)
    REQUIRES(seq.mu) {
  const size_t bytes = seq.config().block_bytes();
  batch->tier.blocks.push_back({seq.TierKey(layer, head_index, block, shared, BlockKind::kKey),
                                Bytes(static_cast<const std::byte*>(k), bytes)});
  batch->tier.blocks.push_back({seq.TierKey(layer, head_index, block, shared, BlockKind::kValue),
                                Bytes(static_cast<const std::byte*>(v), bytes)});
  if (!shared) batch->privates.push_back({layer, head_index, block});
}

// The hashes in first-seen order, each once.
std::vector<uint64_t> Distinct(const std::vector<uint64_t>& hashes) {
  std::vector<uint64_t> out;
  std::vector<uint64_t> seen = hashes;
  std::sort(seen.begin(), seen.end());
  seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
  std::vector<bool> taken(seen.size(), false);
  for (uint64_t h : hashes) {
    const size_t i = static_cast<size_t>(std::lower_bound(seen.begin(), seen.end(), h) -
                                         seen.begin());
    if (!taken[i]) out.push_back(h);
    taken[i] = true;
  }
  return out;
}

}  // namespace

// The write-through helpers REQUIRE seq.mu (kv_store.h). The annotations are on these
// definitions: kv_store.h only declares Sequence, so its declarations cannot name seq.mu.
void KvStore::AddPendingBlocks(const Sequence& seq, kv_internal::ThroughBatch* batch,
                               Manifest* m) const REQUIRES(seq.mu) {
  const int bsize = seq.config().block_size();
  for (const Sequence::PendingBlock& p : seq.pending()) {
    const BlockRef& ref = seq.ref(p.layer, p.head_index, p.block);
    AddBlockPair(seq, p.layer, p.head_index, p.block, ref.shared, k_pool_->block(ref.k),
                 v_pool_->block(ref.v), batch);
    if (ref.shared) batch->shared_hashes.push_back(m->hashes[p.block]);
    int& durable = m->durable_lengths[static_cast<size_t>(p.layer)];
    durable = std::max(durable, static_cast<int>(p.block + 1) * bsize);
  }
}

void KvStore::AddEntryRecords(const kv_internal::SequenceConfig& c,
                              kv_internal::ThroughBatch* batch,
                              std::vector<uint64_t>* added) const {
  for (uint64_t hash : batch->shared_hashes) {
    if (ssd_->HasEntry({c.scope, hash})) continue;
    batch->tier.records.push_back(
        {PrefixEntryKey(c.scope, hash), EntryValue(c.scope, hash, c)});
    added->push_back(hash);
  }
}

Status KvStore::WriteThrough(Sequence& seq, kv_internal::ThroughBatch batch, const Manifest& m)
    REQUIRES(seq.mu) {
  const kv_internal::SequenceConfig& c = seq.config();
  batch.shared_hashes = Distinct(batch.shared_hashes);
  // What the write adds to the store's bytes on SSD, as accounted below (an upper bound: a
  // private block written again counts once more here).
  uint64_t growth = batch.privates.size() * 2 * c.block_bytes();
  for (uint64_t hash : batch.shared_hashes) {
    if (!ssd_->HasEntry({c.scope, hash})) growth += EntryBlocks(c) * c.block_bytes();
  }
  if (Status room = MakeSsdRoom(growth, "write-through"); !room.ok()) {
    ssd_->RecordError(room);
    return room;
  }
  std::vector<uint64_t> added;
  Status s;
  {
    // Entries are checked, written and recorded with no reclaim in between (ssd_state.h).
    ReaderLock reclaim(&ssd_->reclaim_mu);
    AddEntryRecords(c, &batch, &added);
    batch.tier.records.push_back({ManifestKey(c.id), EncodeManifest(m)});
    s = tier_->Write(batch.tier);
    if (s.ok()) {
      // Last chain block first, so earlier ones end up more recently used.
      for (auto h = added.rbegin(); h != added.rend(); ++h) {
        ssd_->AddEntry({c.scope, *h}, EntryBlocks(c) * c.block_bytes(), EntryBlocks(c));
      }
    }
  }
  if (!s.ok()) {
    ssd_->RecordError(s);
    return s;
  }
  ssd_->SetFull(false);
  std::sort(batch.privates.begin(), batch.privates.end());
  uint64_t fresh = 0;
  for (const kv_internal::PairAt& p : batch.privates) {
    fresh += seq.NotePrivateOnSsd(p.layer, p.head_index, p.block) ? 1 : 0;
  }
  ssd_->AddPrivateBytes(fresh * 2 * c.block_bytes());
  // The pending blocks went with the batch: durable now, and their layers' lengths with them.
  for (const Sequence::PendingBlock& p : seq.pending()) {
    ssd_->residency.SetDurable(seq.ref(p.layer, p.head_index, p.block).v);
    seq.set_durable_length(p.layer, m.durable_lengths[static_cast<size_t>(p.layer)]);
  }
  ssd_->pending_blocks.fetch_sub(static_cast<int64_t>(seq.pending().size()),
                                 std::memory_order_relaxed);
  seq.pending().clear();
  return OkStatus();
}

Status KvStore::WritePrefillThrough(Sequence& seq, int layer, const TensorView& k,
                                    const TensorView& v, int num_tokens) REQUIRES(seq.mu) {
  const kv_internal::SequenceConfig& c = seq.config();
  const int bsize = c.block_size();
  const int old_length = seq.length(layer);
  const auto first = static_cast<size_t>(old_length / bsize);
  Manifest m = seq.ToManifest();
  kv_internal::ThroughBatch batch;
  for (int h = 0; h < c.num_heads(); ++h) {
    for (int64_t b = 0; b < k.dim(1); ++b) {
      const size_t index = first + static_cast<size_t>(b);
      const bool shared = (b + 1) * bsize <= num_tokens && seq.Shareable(index);
      AddBlockPair(seq, layer, h, index, shared, k.ElementPtr({h, b, 0, 0}),
                   v.ElementPtr({h, b, 0, 0}), &batch);
      if (shared) batch.shared_hashes.push_back(m.hashes[index]);
    }
  }
  // Blocks of earlier decode appends whose write failed go too: a durable length may only
  // advance over a gap-free run.
  AddPendingBlocks(seq, &batch, &m);
  m.durable_lengths[static_cast<size_t>(layer)] = old_length + num_tokens;
  return WriteThrough(seq, std::move(batch), m)
      .WithContext("AppendPrefill(sequence " + std::to_string(c.id) + ", layer " +
                   std::to_string(layer) + "): write-through to the SSD tier");
}

void KvStore::CommitPrefillDurable(Sequence& seq, int layer, int old_length) REQUIRES(seq.mu) {
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

void KvStore::WriteSealedThrough(Sequence& seq, int layer, int old_length) REQUIRES(seq.mu) {
  const int bsize = seq.config().block_size();
  const auto first = static_cast<size_t>(old_length / bsize);
  const auto end = static_cast<size_t>(seq.length(layer) / bsize);
  for (int h = 0; h < seq.config().num_heads(); ++h) {
    for (size_t b = first; b < end; ++b) seq.pending().push_back({layer, h, b});
  }
  ssd_->pending_blocks.fetch_add(static_cast<int64_t>(end - first) * seq.config().num_heads(),
                                 std::memory_order_relaxed);
  WritePending(seq);
}

bool KvStore::WritePending(Sequence& seq) REQUIRES(seq.mu) {
  if (seq.pending().empty()) return true;
  Manifest m = seq.ToManifest();
  kv_internal::ThroughBatch batch;
  AddPendingBlocks(seq, &batch, &m);
  // A failure leaves the blocks pending (recorded for Maintain's report); the append stands.
  return WriteThrough(seq, std::move(batch), m).ok();
}

// Reads the listed spilled values into their destinations and checks each against the
// block's seal-time checksum.
Status KvStore::ReadSpilled(const Sequence& seq, int layer, int head_index,
                            const kv_internal::SpilledReads& reads) const {
  if (reads.blocks.empty()) return OkStatus();
  const size_t bytes = seq.config().block_bytes();
  std::vector<std::span<std::byte>> spans;
  spans.reserve(reads.dst.size());
  for (std::byte* d : reads.dst) spans.emplace_back(d, bytes);
  std::vector<Status> statuses;
  Status s = tier_->ReadBlocks(reads.keys, spans, &statuses);
  for (size_t i = 0; i < reads.blocks.size(); ++i) {
    const std::string name = "value of " + seq.Name(layer, head_index, reads.blocks[i]);
    if (!statuses[i].ok()) return statuses[i].WithContext(name);
    const uint32_t got = Crc32c(reads.dst[i], bytes);
    if (reads.crcs[i] != got) {
      return DataLossError(name + ": reloaded from SSD, it does not match the block's checksum "
                           "(stored " + std::to_string(reads.crcs[i]) + ", read " +
                           std::to_string(got) + ")");
    }
  }
  RETURN_IF_ERROR(s);
  ssd_->bytes_read.fetch_add(bytes * reads.blocks.size(), std::memory_order_relaxed);
  return OkStatus();
}

namespace {

// The tier key of a block's value.
std::string ValueKey(const Sequence& seq, int layer, int head_index, size_t block)
    REQUIRES(seq.mu) {
  return seq.TierKey(layer, head_index, block, seq.ref(layer, head_index, block).shared,
                     BlockKind::kValue);
}

// OUT_OF_RANGE naming the first index that is not a block of (layer, head).
Status CheckBlockIndexes(const Sequence& seq, int layer, int head_index,
                         std::span<const int> blocks, const char* op) REQUIRES(seq.mu) {
  const size_t n = seq.num_blocks(layer, head_index);
  for (int b : blocks) {
    if (b < 0 || static_cast<size_t>(b) >= n) {
      return OutOfRangeError(std::string(op) + ": " +
                             seq.Name(layer, head_index, static_cast<size_t>(b)) +
                             " does not exist (" + std::to_string(n) + " blocks)");
    }
  }
  return OkStatus();
}

}  // namespace

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
  kv_internal::SpilledReads spilled;
  {
    MutexLock l(&seq->mu);
    RETURN_IF_ERROR(seq->CheckOpen());
    RETURN_IF_ERROR(CheckBlockIndexes(*seq, layer, h, blocks, "LoadValues"));
    for (size_t i = 0; i < blocks.size(); ++i) {
      const auto b = static_cast<size_t>(blocks[i]);
      const BlockId v = seq->ref(layer, h, b).v;
      if (v_pool_->resident(v)) {
        std::memcpy(dst[i], v_pool_->block(v), bytes);
      } else {
        spilled.Add(b, seq->ref(layer, h, b), ValueKey(*seq, layer, h, b), dst[i]);
      }
    }
  }
  RETURN_IF_ERROR(ReadSpilled(*seq, layer, h, spilled));
  const auto read = static_cast<int64_t>(spilled.blocks.size());
  if (ssd_ != nullptr) ssd_->streamed.fetch_add(read, std::memory_order_relaxed);
  if (stats != nullptr) {
    stats->blocks_requested += static_cast<int64_t>(blocks.size());
    stats->blocks_resident += static_cast<int64_t>(blocks.size()) - read;
    stats->blocks_read += read;
    stats->bytes_read += static_cast<uint64_t>(read) * bytes;
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
  std::vector<size_t> waiting;  // indexes into blocks another call is loading
  kv_internal::SpilledReads mine;  // the spilled blocks this call loads into their slots
  kv_internal::ValueResidency* res = ssd_ != nullptr ? &ssd_->residency : nullptr;
  {
    MutexLock l(&seq->mu);
    RETURN_IF_ERROR(seq->CheckOpen());
    RETURN_IF_ERROR(CheckBlockIndexes(*seq, layer, h, blocks, "FetchValues"));
    for (size_t i = 0; i < blocks.size(); ++i) {
      const auto b = static_cast<size_t>(blocks[i]);
      ids[i] = seq->ref(layer, h, b).v;
      if (res == nullptr || res->resident(ids[i])) continue;
      if (res->Claim(ids[i])) {
        mine.Add(b, seq->ref(layer, h, b), ValueKey(*seq, layer, h, b), v_pool_->block(ids[i]));
      } else {
        waiting.push_back(i);
      }
    }
  }
  const auto read = static_cast<int64_t>(mine.blocks.size());
  if (res != nullptr) {
    Status s = ReadSpilled(*seq, layer, h, mine);
    for (BlockId id : mine.ids) res->FinishLoad(id, s.ok());
    RETURN_IF_ERROR(s);
    for (size_t i : waiting) {
      if (!res->WaitLoaded(ids[i])) {
        return UnavailableError("FetchValues: " +
                                seq->Name(layer, h, static_cast<size_t>(blocks[i])) +
                                ": a concurrent reload of the value failed");
      }
    }
    for (BlockId id : ids) res->Touch(id);
    ssd_->reloaded.fetch_add(read, std::memory_order_relaxed);
  }
  values->resize(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) (*values)[i] = v_pool_->block(ids[i]);
  if (stats != nullptr) {
    stats->blocks_requested += static_cast<int64_t>(blocks.size());
    stats->blocks_resident += static_cast<int64_t>(blocks.size()) - read;
    stats->blocks_read += read;
    stats->bytes_read += static_cast<uint64_t>(read) * c.block_bytes();
  }
  return OkStatus();
}

bool KvStore::MaintenanceDue() const {
  if (ssd_ == nullptr) return false;
  return ssd_->pending_blocks.load(std::memory_order_relaxed) > 0 ||
         ssd_->residency.resident_blocks() > ssd_->high_blocks || ssd_->HasError();
}

void KvStore::TickValueClock() {
  if (ssd_ != nullptr) ssd_->residency.Tick();
}

MaintainStats KvStore::Maintain() {
  MaintainStats out;
  if (ssd_ == nullptr) return out;
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
      if (WritePending(*seq)) out.durable_retries += before;
    }
  }
  const int64_t resident = ssd_->residency.resident_blocks();
  if (resident > ssd_->high_blocks) {
    out.spilled_blocks = ssd_->residency.SpillOldest(resident - ssd_->low_blocks);
  }
  if (ssd_->capacity_bytes > 0 && ssd_->used_bytes() > ssd_->capacity_bytes) {
    ReclaimSsd(ssd_->reclaim_to_bytes);
  }
  out.durability = ssd_->TakeLastError();
  return out;
}

void KvStore::ForgetOnSsd(const Sequence& seq) REQUIRES(seq.mu) {
  TierBatch batch;
  const uint64_t id = seq.config().id;
  batch.delete_block_prefixes.push_back(PrivateBlockPrefix(id));
  batch.delete_records.push_back(ManifestKey(id));
  for (int l = 0; l < seq.config().spec.num_layers; ++l) {
    batch.delete_records.push_back(SampleKey(id, l));
  }
  Status s = tier_->Write(batch);
  if (s.ok()) {
    ssd_->SubPrivateBytes(static_cast<uint64_t>(seq.private_pairs_on_ssd()) * 2 *
                          seq.config().block_bytes());
  }
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
