// The sequence-lifecycle methods of WorkerService: OpenSequence, LookupPrefix, AppendKv,
// CloseSequence and Stats, over calls the codec decoded and checked. Attend lives in
// attend_executor.cc, the SSD tier's side (recovery, resume, stored query samples, durable
// lengths) in tier_handlers.cc.
#include <string>

#include "services/worker/codec/worker_codec.h"
#include "services/worker/worker_service.h"

namespace attic {

using transport::OutgoingMessage;
using worker_codec::PayloadSlice;

namespace {

OutgoingMessage MakeReply(transport::Method method, std::string header) {
  OutgoingMessage reply;
  reply.method = method;
  reply.header = std::move(header);
  return reply;
}

std::string SeqName(uint64_t id) { return "sequence " + std::to_string(id); }

}  // namespace

StatusOr<OutgoingMessage> WorkerService::OpenSequence(const worker_codec::OpenSequenceCall& c) {
  if (!(c.spec == options_.spec)) {
    return FailedPreconditionError(SeqName(c.id) + ": model " + c.spec.ToString() +
                                   " differs from worker " + options_.name + "'s model " +
                                   options_.spec.ToString());
  }
  const SequenceOptions seq{.id = c.id,
                            .tenant = c.tenant,
                            .spec = c.spec,
                            .model_fingerprint = c.model_fingerprint,
                            .kv_head_begin = c.kv_head_begin,
                            .kv_head_end = c.kv_head_end};
  if (c.resume) {
    StatusOr<OutgoingMessage> resumed = Resume(seq);
    if (resumed.ok()) SetTokenBegin(seq.id, c.token_begin);
    return resumed;
  }
  RETURN_IF_ERROR(CheckNotRecovered(seq.id));
  RETURN_IF_ERROR(store_->OpenSequence(seq));
  SetTokenBegin(seq.id, c.token_begin);
  return MakeReply(transport::Method::kOpenSequence,
                   worker_codec::EncodeOpenSequenceReply(nullptr));
}

StatusOr<OutgoingMessage> WorkerService::LookupPrefix(const worker_codec::LookupPrefixCall& c) {
  ASSIGN_OR_RETURN(PrefixMatch match, store_->LookupPrefix(c.id, c.hashes));
  return MakeReply(transport::Method::kLookupPrefix,
                   worker_codec::EncodeLookupPrefixReply(match.matched_blocks,
                                                         match.matched_tokens));
}

StatusOr<OutgoingMessage> WorkerService::AppendKv(const worker_codec::AppendKvCall& c,
                                                  std::span<const std::byte> payload) {
  ASSIGN_OR_RETURN(SequenceInfo info, store_->GetSequence(c.id));
  const int64_t heads = info.kv_head_end - info.kv_head_begin;
  const int64_t d = options_.spec.head_dim;
  const int64_t b = options_.spec.block_size;
  const int64_t blocks = (c.num_tokens + b - 1) / b;
  const int64_t rows = c.block_major ? blocks * b : c.num_tokens;
  const uint64_t bytes = static_cast<uint64_t>(heads * rows * d) * DTypeSize(c.dtype);
  const std::string name = SeqName(c.id);
  ASSIGN_OR_RETURN(const std::byte* k, PayloadSlice(payload, c.k_offset, bytes, name + " k"));
  ASSIGN_OR_RETURN(const std::byte* v, PayloadSlice(payload, c.v_offset, bytes, name + " v"));
  // The query sample is checked before anything is appended, so a bad one changes nothing.
  const size_t sample_floats = c.sample_positions.size() *
                               static_cast<size_t>(options_.spec.group_size() * heads * d);
  const std::byte* sample = nullptr;
  if (!c.sample_positions.empty()) {
    ASSIGN_OR_RETURN(sample, PayloadSlice(payload, c.sample_offset,
                                          sample_floats * DTypeSize(c.sample_dtype),
                                          name + " query sample"));
  }
  if (c.num_tokens == 0) {
    // Nothing to append: the request carries only a query sample or a build request.
  } else if (c.block_major) {
    const TensorView kv_k(k, c.dtype, {heads, blocks, b, d});
    const TensorView kv_v(v, c.dtype, {heads, blocks, b, d});
    RETURN_IF_ERROR(store_->AppendPrefill(c.id, c.layer, kv_k, kv_v, c.num_tokens));
  } else {
    const TensorView kv_k(k, c.dtype, {c.num_tokens, heads, d});
    const TensorView kv_v(v, c.dtype, {c.num_tokens, heads, d});
    RETURN_IF_ERROR(store_->AppendTokens(c.id, c.layer, kv_k, kv_v));
  }
  ASSIGN_OR_RETURN(const int length, store_->Length(c.id, c.layer));
  if (!c.sample_positions.empty() || c.build_index) {
    AcceptSample(c.id, c.layer, static_cast<int>(heads), c.sample_dtype, sample,
                 c.sample_positions, c.build_index, c.index_kind);
  }
  ASSIGN_OR_RETURN(const int durable, store_->DurableLength(c.id, c.layer));
  return MakeReply(transport::Method::kAppendKv,
                   worker_codec::EncodeAppendKvReply(length, durable));
}

StatusOr<OutgoingMessage> WorkerService::CloseSequence(const worker_codec::CloseSequenceCall& c) {
  // Waits for an index build of this sequence in flight: it reads the blocks the store frees.
  retrieval_->Forget(c.id);
  RETURN_IF_ERROR(store_->CloseSequence(c.id));
  SetTokenBegin(c.id, 0);
  {
    MutexLock lock(&samples_mu_);
    std::erase_if(samples_, [id = c.id](const auto& entry) { return entry.first.first == id; });
  }
  return MakeReply(transport::Method::kCloseSequence, worker_codec::EncodeCloseSequenceReply());
}

void WorkerService::SetTokenBegin(uint64_t id, uint64_t token_begin) {
  MutexLock lock(&token_begins_mu_);
  if (token_begin == 0) {
    token_begins_.erase(id);
  } else {
    token_begins_[id] = token_begin;
  }
}

uint64_t WorkerService::TokenBegin(uint64_t id) const {
  MutexLock lock(&token_begins_mu_);
  auto it = token_begins_.find(id);
  return it == token_begins_.end() ? 0 : it->second;
}

StatusOr<OutgoingMessage> WorkerService::Stats() {
  const KvStoreStats s = store_->Stats();
  const auto u = [](int64_t v) { return static_cast<uint64_t>(std::max<int64_t>(0, v)); };
  const worker_codec::StatsFigures f{.worker_name = options_.name,
                                     .sequences = u(s.sequences),
                                     .k_blocks_used = u(s.k.used_blocks),
                                     .k_blocks_capacity = u(s.k.capacity_blocks),
                                     .v_blocks_used = u(s.v.used_blocks),
                                     .v_blocks_capacity = u(s.v.capacity_blocks),
                                     .block_bytes = s.k.block_bytes,
                                     .prefix_blocks = u(s.prefix_blocks),
                                     .cached_blocks = u(s.cached_blocks),
                                     .prefix_hits = u(s.prefix_hits),
                                     .ssd_tier = s.ssd,
                                     .value_dram_blocks = u(s.value_dram_blocks),
                                     .v_resident_blocks = u(s.v_resident_blocks),
                                     .v_spilled_blocks = u(s.v_spilled_blocks),
                                     .spilled_blocks_total = u(s.spilled_total),
                                     .ssd_bytes_read = s.ssd_bytes_read,
                                     .ssd_bytes_written = s.tier.block_bytes_written,
                                     .durability_errors = u(s.durability_errors),
                                     .pending_durable_blocks = u(s.pending_durable_blocks),
                                     .recovered_sequences = u(s.recovered_sequences)};
  return MakeReply(transport::Method::kStats, worker_codec::EncodeStatsReply(f));
}

}  // namespace attic
