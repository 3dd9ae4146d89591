#include "kvstore/internal/sequence.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/hash.h"

namespace attic::kv_internal {
namespace {

size_t CeilDiv(int a, int b) { return static_cast<size_t>((a + b - 1) / b); }

}  // namespace

Sequence::Sequence(SequenceConfig config) : config_(std::move(config)) {
  MutexLock l(&mu);
  const auto layers = static_cast<size_t>(config_.spec.num_layers);
  lengths_.assign(layers, 0);
  durable_lengths_.assign(layers, 0);
  tables_.resize(layers * static_cast<size_t>(config_.num_heads()));
  ssd_private_end_.assign(tables_.size(), 0);
}

bool Sequence::NotePrivateOnSsd(int layer, int head_index, size_t block) {
  size_t& end = ssd_private_end_[static_cast<size_t>(layer) *
                                     static_cast<size_t>(config_.num_heads()) +
                                 static_cast<size_t>(head_index)];
  // Writes of one (layer, head) go in block order; only the last one may be written again.
  if (block < end) return false;
  end = block + 1;
  ++ssd_private_pairs_;
  return true;
}

void Sequence::CountRestoredPrivateOnSsd() {
  ssd_private_pairs_ = 0;
  for (size_t t = 0; t < tables_.size(); ++t) {
    ssd_private_end_[t] = tables_[t].size();
    for (const BlockRef& ref : tables_[t]) ssd_private_pairs_ += ref.shared ? 0 : 1;
  }
}

std::vector<BlockRef>& Sequence::table(int layer, int head_index) {
  return tables_[static_cast<size_t>(layer) * static_cast<size_t>(config_.num_heads()) +
                 static_cast<size_t>(head_index)];
}

const std::vector<BlockRef>& Sequence::table(int layer, int head_index) const {
  return tables_[static_cast<size_t>(layer) * static_cast<size_t>(config_.num_heads()) +
                 static_cast<size_t>(head_index)];
}

std::string Sequence::BlockName(int layer, int head_index, size_t block) const {
  return "sequence " + std::to_string(config_.id) + " layer " + std::to_string(layer) +
         " kv head " + std::to_string(config_.head_begin + head_index) + " block " +
         std::to_string(block);
}

Status Sequence::CheckOpen() const {
  if (closed_) return NotFoundError("sequence " + std::to_string(config_.id) + " is not open");
  return OkStatus();
}

Status Sequence::CheckLookupAllowed() const {
  const std::string who = "LookupPrefix(sequence " + std::to_string(config_.id) + "): ";
  if (looked_up_) return FailedPreconditionError(who + "the prefix was already looked up");
  if (appended_) {
    return FailedPreconditionError(who + "K/V were already appended; look up before appending");
  }
  return OkStatus();
}

void Sequence::InstallPrefix(std::span<const uint64_t> hashes, PinResult pin) {
  looked_up_ = true;
  hashes_.assign(hashes.begin(), hashes.end());
  entries_ = std::move(pin.entries);
  matched_blocks_ = pin.matched_blocks;
  const int heads = config_.num_heads();
  const int layers = config_.spec.num_layers;
  size_t i = 0;
  for (int b = 0; b < pin.matched_blocks; ++b) {
    for (int layer = 0; layer < layers; ++layer) {
      for (int h = 0; h < heads; ++h) table(layer, h).push_back(pin.matched[i++]);
    }
  }
  std::fill(lengths_.begin(), lengths_.end(), pin.matched_blocks * config_.block_size());
}

size_t Sequence::NewBlocksPerHead(int layer, int num_tokens) const {
  const int len = length(layer);
  const int b = config_.block_size();
  return CeilDiv(len + num_tokens, b) - CeilDiv(len, b);
}

void Sequence::WriteBlockMajor(int layer, const TensorView& k, const TensorView& v, int num_tokens,
                               std::span<const BlockRef> fresh, BlockPools pools) {
  appended_ = true;
  const size_t bytes = config_.block_bytes();
  const int64_t blocks = k.dim(1);
  size_t i = 0;
  for (int h = 0; h < config_.num_heads(); ++h) {
    std::vector<BlockRef>& t = table(layer, h);
    for (int64_t b = 0; b < blocks; ++b, ++i) {
      const BlockRef& ref = fresh[i];
      std::memcpy(pools.k->block(ref.k), k.ElementPtr({h, b, 0, 0}), bytes);
      std::memcpy(pools.v->block(ref.v), v.ElementPtr({h, b, 0, 0}), bytes);
      t.push_back(ref);
    }
  }
  lengths_[static_cast<size_t>(layer)] += num_tokens;
}

void Sequence::WriteTokenMajor(int layer, const TensorView& k, const TensorView& v,
                               std::span<const BlockRef> fresh, BlockPools pools) {
  appended_ = true;
  const int n = static_cast<int>(k.dim(0));
  const int len = length(layer);
  const int bsize = config_.block_size();
  const size_t per_head = NewBlocksPerHead(layer, n);
  const size_t row_bytes = config_.row_bytes();
  const auto d = static_cast<size_t>(config_.spec.head_dim);
  const DType to = config_.spec.dtype;
  for (int h = 0; h < config_.num_heads(); ++h) {
    std::vector<BlockRef>& t = table(layer, h);
    size_t next = static_cast<size_t>(h) * per_head;
    for (int i = 0; i < n; ++i) {
      const int pos = len + i;
      const auto b = static_cast<size_t>(pos / bsize);
      if (b == t.size()) t.push_back(fresh[next++]);
      const size_t off = static_cast<size_t>(pos % bsize) * row_bytes;
      ConvertDType(k.dtype(), k.ElementPtr({i, h, 0}), to, pools.k->block(t[b].k) + off, d);
      ConvertDType(v.dtype(), v.ElementPtr({i, h, 0}), to, pools.v->block(t[b].v) + off, d);
    }
  }
  lengths_[static_cast<size_t>(layer)] += n;
}

std::vector<PublishItem> Sequence::Seal(int layer, int old_length, BlockPools pools) {
  std::vector<PublishItem> items;
  const int bsize = config_.block_size();
  const size_t first = static_cast<size_t>(old_length / bsize);
  const size_t end = static_cast<size_t>(length(layer) / bsize);
  const size_t bytes = config_.block_bytes();
  for (int h = 0; h < config_.num_heads(); ++h) {
    std::vector<BlockRef>& t = table(layer, h);
    for (size_t b = first; b < end; ++b) {
      BlockRef& ref = t[b];
      ref.k_crc = Crc32c(pools.k->block(ref.k), bytes);
      ref.v_crc = Crc32c(pools.v->block(ref.v), bytes);
      if (b >= entries_.size() || entries_[b] == nullptr) continue;
      items.push_back(PublishItem{.entry = entries_[b],
                                  .layer = layer,
                                  .kv_head = config_.head_begin + h,
                                  .block_index = static_cast<int>(b),
                                  .ref = ref});
    }
  }
  return items;
}

int64_t Sequence::ApplyPublished(std::span<const PublishItem> items) {
  int64_t no_longer_private = 0;
  for (const PublishItem& item : items) {
    if (item.outcome == PublishOutcome::kConflict) continue;
    table(item.layer, item.kv_head - config_.head_begin)[static_cast<size_t>(item.block_index)] =
        item.ref;
    ++no_longer_private;
  }
  return no_longer_private;
}

Status Sequence::Read(int layer, int kv_head, bool verify, BlockPools pools,
                      ValueResidency* touch, std::vector<BlockView>* out) const {
  const int h = kv_head - config_.head_begin;
  const std::vector<BlockRef>& t = table(layer, h);
  const int len = length(layer);
  const int bsize = config_.block_size();
  if (verify) {
    for (size_t b = 0; b < static_cast<size_t>(len / bsize); ++b) {
      const std::string bad = CheckBlockPair(*pools.k, *pools.v, t[b], config_.block_bytes());
      if (bad.empty()) continue;
      return DataLossError(BlockName(layer, h, b) +
                           (t[b].shared ? " (shared prefix block): " : ": ") + bad);
    }
  }
  // Refilled in place so that a caller reusing its vector does not allocate per step.
  out->clear();
  out->reserve(t.size());
  for (size_t b = 0; b < t.size(); ++b) {
    const int n = std::min(bsize, len - static_cast<int>(b) * bsize);
    const bool resident = pools.v->resident(t[b].v);
    if (resident && touch != nullptr) touch->Touch(t[b].v);
    out->push_back(BlockView{pools.k->block(t[b].k), resident ? pools.v->block(t[b].v) : nullptr, n});
  }
  return OkStatus();
}

Status Sequence::Verify(BlockPools pools) const {
  const int bsize = config_.block_size();
  for (int layer = 0; layer < config_.spec.num_layers; ++layer) {
    const auto full = static_cast<size_t>(length(layer) / bsize);
    for (int h = 0; h < config_.num_heads(); ++h) {
      const std::vector<BlockRef>& t = table(layer, h);
      for (size_t b = 0; b < full; ++b) {
        if (t[b].shared) continue;
        const std::string bad = CheckBlockPair(*pools.k, *pools.v, t[b], config_.block_bytes());
        if (!bad.empty()) return DataLossError(BlockName(layer, h, b) + ": " + bad);
      }
    }
  }
  return OkStatus();
}

ReleasedBlocks Sequence::Close() {
  closed_ = true;
  ReleasedBlocks r;
  for (std::vector<BlockRef>& t : tables_) {
    for (const BlockRef& ref : t) {
      if (ref.shared) continue;
      r.k.push_back(ref.k);
      r.v.push_back(ref.v);
    }
    t.clear();
  }
  r.entries = std::move(entries_);
  entries_.clear();
  std::fill(lengths_.begin(), lengths_.end(), 0);
  return r;
}

SequenceInfo Sequence::Info() const {
  SequenceInfo info;
  info.id = config_.id;
  info.tenant = config_.tenant;
  info.spec = config_.spec;
  info.model_fingerprint = config_.model_fingerprint;
  info.scope = config_.scope;
  info.kv_head_begin = config_.head_begin;
  info.kv_head_end = config_.head_end;
  info.layer_lengths = lengths_;
  info.prefix_hashes = static_cast<int>(hashes_.size());
  info.matched_blocks = matched_blocks_;
  info.durable_lengths = durable_lengths_;
  info.recovered = recovered_;
  return info;
}

std::string Sequence::TierKey(int layer, int head_index, size_t b, bool shared,
                              BlockKind kind) const {
  const int head = config_.head_begin + head_index;
  if (shared) return SharedBlockKey(config_.scope, hashes_[b], layer, head, kind);
  return PrivateBlockKey(config_.id, layer, head, static_cast<int>(b), kind);
}

Manifest Sequence::ToManifest() const {
  Manifest m;
  m.id = config_.id;
  m.tenant = config_.tenant;
  m.spec = config_.spec;
  m.model_fingerprint = config_.model_fingerprint;
  m.head_begin = config_.head_begin;
  m.head_end = config_.head_end;
  m.hashes = hashes_;
  m.durable_lengths = durable_lengths_;
  return m;
}

void Sequence::Restore(const Manifest& m, std::vector<PrefixEntry*> entries, int matched_blocks,
                       std::vector<std::vector<BlockRef>> tables) {
  recovered_ = true;
  looked_up_ = !m.hashes.empty();
  hashes_ = m.hashes;
  entries_ = std::move(entries);
  matched_blocks_ = matched_blocks;
  tables_ = std::move(tables);
  lengths_ = m.durable_lengths;
  durable_lengths_ = m.durable_lengths;
  appended_ = std::any_of(lengths_.begin(), lengths_.end(), [](int n) { return n > 0; });
}

}  // namespace attic::kv_internal
