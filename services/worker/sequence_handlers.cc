// The sequence-lifecycle methods of WorkerService: OpenSequence, LookupPrefix, AppendKv,
// CloseSequence and Stats. Attend lives in attend_executor.cc, the SSD tier's side (recovery,
// resume, stored query samples, durable lengths) in tier_handlers.cc.
#include <limits>
#include <string>

#include "services/worker/payload.h"
#include "services/worker/worker_service.h"
#include "transport/capnp_codec.h"
#include "transport/proto/attic.capnp.h"
#include "transport/wire_types.h"

namespace attic {

using transport::CapnpMessage;
using transport::CatchKj;
using transport::IncomingMessage;
using transport::OutgoingMessage;
using worker_internal::PayloadSlice;

namespace {

OutgoingMessage MakeReply(transport::Method method, capnp::MessageBuilder& builder) {
  OutgoingMessage reply;
  reply.method = method;
  reply.header = transport::EncodeCapnp(builder);
  return reply;
}

std::string SeqName(uint64_t id) { return "sequence " + std::to_string(id); }

}  // namespace

StatusOr<OutgoingMessage> WorkerService::OpenSequence(const IncomingMessage& req) {
  ASSIGN_OR_RETURN(CapnpMessage msg, CapnpMessage::Parse(req.header()));
  SequenceOptions seq;
  bool resume = false;
  uint64_t token_begin = 0;
  Status parsed = CatchKj("OpenSequenceRequest", [&]() -> Status {
    auto r = msg.Root<wire::OpenSequenceRequest>();
    seq.id = r.getSequenceId();
    resume = r.getResume();
    token_begin = r.getTokenBegin();
    seq.tenant = r.getTenant().cStr();
    ASSIGN_OR_RETURN(seq.spec, transport::SpecFromWire(r.getSpec()));
    seq.model_fingerprint = r.getModelFingerprint();
    const uint32_t begin = r.getKvHeadBegin();
    const uint32_t end = r.getKvHeadEnd();
    if (end > static_cast<uint32_t>(std::numeric_limits<int>::max()) || begin >= end) {
      return InvalidArgumentError("KV head range [" + std::to_string(begin) + ", " +
                                  std::to_string(end) + ") is empty or out of range");
    }
    seq.kv_head_begin = static_cast<int>(begin);
    seq.kv_head_end = static_cast<int>(end);
    return OkStatus();
  });
  RETURN_IF_ERROR(parsed.WithContext(SeqName(seq.id)));
  if (!(seq.spec == options_.spec)) {
    return FailedPreconditionError(SeqName(seq.id) + ": model " + seq.spec.ToString() +
                                   " differs from worker " + options_.name + "'s model " +
                                   options_.spec.ToString());
  }
  if (resume) {
    StatusOr<OutgoingMessage> resumed = Resume(seq);
    if (resumed.ok()) SetTokenBegin(seq.id, token_begin);
    return resumed;
  }
  RETURN_IF_ERROR(CheckNotRecovered(seq.id));
  RETURN_IF_ERROR(store_->OpenSequence(seq));
  SetTokenBegin(seq.id, token_begin);
  capnp::MallocMessageBuilder builder;
  builder.initRoot<wire::OpenSequenceReply>();
  return MakeReply(req.method(), builder);
}

StatusOr<OutgoingMessage> WorkerService::LookupPrefix(const IncomingMessage& req) {
  ASSIGN_OR_RETURN(CapnpMessage msg, CapnpMessage::Parse(req.header()));
  uint64_t id = 0;
  std::vector<uint64_t> hashes;
  RETURN_IF_ERROR(CatchKj("LookupPrefixRequest", [&] {
    auto r = msg.Root<wire::LookupPrefixRequest>();
    id = r.getSequenceId();
    auto list = r.getBlockHashes();
    hashes.reserve(list.size());
    for (uint64_t h : list) hashes.push_back(h);
  }));
  ASSIGN_OR_RETURN(PrefixMatch match, store_->LookupPrefix(id, hashes));
  capnp::MallocMessageBuilder builder;
  auto reply = builder.initRoot<wire::LookupPrefixReply>();
  reply.setMatchedBlocks(static_cast<uint32_t>(match.matched_blocks));
  reply.setMatchedTokens(static_cast<uint32_t>(match.matched_tokens));
  return MakeReply(req.method(), builder);
}

StatusOr<OutgoingMessage> WorkerService::AppendKv(const IncomingMessage& req) {
  ASSIGN_OR_RETURN(CapnpMessage msg, CapnpMessage::Parse(req.header()));
  uint64_t id = 0;
  int layer = 0;
  int num_tokens = 0;
  bool block_major = true;
  DType dtype = DType::kFloat32;
  uint64_t k_offset = 0;
  uint64_t v_offset = 0;
  uint32_t sample_count = 0;
  DType sample_dtype = DType::kFloat32;
  uint64_t sample_offset = 0;
  std::vector<int32_t> sample_positions;
  bool build_index = false;
  int kind_number = 0;
  RETURN_IF_ERROR(CatchKj("AppendKvRequest", [&]() -> Status {
    auto r = msg.Root<wire::AppendKvRequest>();
    id = r.getSequenceId();
    if (r.getLayer() >= static_cast<uint32_t>(options_.spec.num_layers) ||
        r.getNumTokens() > static_cast<uint32_t>(KvStore::kMaxSequenceTokens)) {
      return OutOfRangeError("layer " + std::to_string(r.getLayer()) + " or token count " +
                             std::to_string(r.getNumTokens()) + " out of range");
    }
    layer = static_cast<int>(r.getLayer());
    num_tokens = static_cast<int>(r.getNumTokens());
    block_major = r.getLayout() == wire::AppendKvRequest::Layout::BLOCK_MAJOR;
    ASSIGN_OR_RETURN(dtype, transport::DTypeFromWire(r.getDtype()));
    k_offset = r.getKOffset();
    v_offset = r.getVOffset();
    sample_count = r.getSampleCount();
    if (sample_count > 0) {
      ASSIGN_OR_RETURN(sample_dtype, transport::DTypeFromWire(r.getSampleDtype()));
      sample_offset = r.getSampleOffset();
      auto list = r.getSamplePositions();
      if (list.size() != sample_count) {
        return InvalidArgumentError("query sample: " + std::to_string(list.size()) +
                                    " positions for " + std::to_string(sample_count) +
                                    " queries");
      }
      for (uint32_t p : list) {
        if (p > static_cast<uint32_t>(KvStore::kMaxSequenceTokens) ||
            (!sample_positions.empty() && static_cast<int32_t>(p) <= sample_positions.back())) {
          return InvalidArgumentError("query sample positions must ascend below 2^31");
        }
        sample_positions.push_back(static_cast<int32_t>(p));
      }
    }
    build_index = r.getBuildIndex();
    kind_number = static_cast<int>(r.getIndexKind());
    return OkStatus();
  }).WithContext(SeqName(id)));
  ASSIGN_OR_RETURN(SequenceInfo info, store_->GetSequence(id));
  const int64_t heads = info.kv_head_end - info.kv_head_begin;
  const int64_t d = options_.spec.head_dim;
  const int64_t b = options_.spec.block_size;
  const int64_t blocks = (num_tokens + b - 1) / b;
  const int64_t rows = block_major ? blocks * b : num_tokens;
  const uint64_t bytes = static_cast<uint64_t>(heads * rows * d) * DTypeSize(dtype);
  ASSIGN_OR_RETURN(const std::byte* k, PayloadSlice(req.payload(), k_offset, bytes, "k"));
  ASSIGN_OR_RETURN(const std::byte* v, PayloadSlice(req.payload(), v_offset, bytes, "v"));
  // The query sample is checked before anything is appended, so a bad one changes nothing.
  const size_t sample_floats =
      static_cast<size_t>(sample_count) * static_cast<size_t>(options_.spec.group_size() * heads * d);
  const std::byte* sample = nullptr;
  if (sample_count > 0) {
    ASSIGN_OR_RETURN(sample, PayloadSlice(req.payload(), sample_offset,
                                          sample_floats * DTypeSize(sample_dtype), "query sample"));
  }
  if (kind_number != 0 && !retrieval::IndexKindFromNumber(kind_number - 1)) {
    return InvalidArgumentError(SeqName(id) + ": unknown index kind " +
                                std::to_string(kind_number));
  }
  if (num_tokens == 0) {
    // Nothing to append: the request carries only a query sample or a build request.
  } else if (block_major) {
    const TensorView kv_k(k, dtype, {heads, blocks, b, d});
    const TensorView kv_v(v, dtype, {heads, blocks, b, d});
    RETURN_IF_ERROR(store_->AppendPrefill(id, layer, kv_k, kv_v, num_tokens));
  } else {
    const TensorView kv_k(k, dtype, {num_tokens, heads, d});
    const TensorView kv_v(v, dtype, {num_tokens, heads, d});
    RETURN_IF_ERROR(store_->AppendTokens(id, layer, kv_k, kv_v));
  }
  ASSIGN_OR_RETURN(const int length, store_->Length(id, layer));
  if (sample_count > 0 || build_index) {
    AcceptSample(id, layer, static_cast<int>(heads), sample_dtype, sample,
                 std::move(sample_positions), build_index, kind_number);
  }
  capnp::MallocMessageBuilder builder;
  auto reply = builder.initRoot<wire::AppendKvReply>();
  reply.setLength(static_cast<uint32_t>(length));
  ASSIGN_OR_RETURN(const int durable, store_->DurableLength(id, layer));
  reply.setDurableTokens(static_cast<uint32_t>(durable));
  return MakeReply(req.method(), builder);
}

StatusOr<OutgoingMessage> WorkerService::CloseSequence(const IncomingMessage& req) {
  ASSIGN_OR_RETURN(CapnpMessage msg, CapnpMessage::Parse(req.header()));
  uint64_t id = 0;
  RETURN_IF_ERROR(CatchKj("CloseSequenceRequest",
                          [&] { id = msg.Root<wire::CloseSequenceRequest>().getSequenceId(); }));
  // Waits for an index build of this sequence in flight: it reads the blocks the store frees.
  retrieval_->Forget(id);
  RETURN_IF_ERROR(store_->CloseSequence(id));
  SetTokenBegin(id, 0);
  std::erase_if(samples_, [id](const auto& entry) { return entry.first.first == id; });
  capnp::MallocMessageBuilder builder;
  builder.initRoot<wire::CloseSequenceReply>();
  return MakeReply(req.method(), builder);
}

void WorkerService::SetTokenBegin(uint64_t id, uint64_t token_begin) {
  std::lock_guard<std::mutex> lock(token_begins_mu_);
  if (token_begin == 0) {
    token_begins_.erase(id);
  } else {
    token_begins_[id] = token_begin;
  }
}

uint64_t WorkerService::TokenBegin(uint64_t id) const {
  std::lock_guard<std::mutex> lock(token_begins_mu_);
  auto it = token_begins_.find(id);
  return it == token_begins_.end() ? 0 : it->second;
}

StatusOr<OutgoingMessage> WorkerService::Stats(const IncomingMessage& req) {
  const KvStoreStats s = store_->Stats();
  capnp::MallocMessageBuilder builder;
  auto r = builder.initRoot<wire::StatsReply>();
  r.setSequences(static_cast<uint64_t>(s.sequences));
  r.setKBlocksUsed(static_cast<uint64_t>(s.k.used_blocks));
  r.setKBlocksCapacity(static_cast<uint64_t>(s.k.capacity_blocks));
  r.setVBlocksUsed(static_cast<uint64_t>(s.v.used_blocks));
  r.setVBlocksCapacity(static_cast<uint64_t>(s.v.capacity_blocks));
  r.setBlockBytes(s.k.block_bytes);
  r.setPrefixBlocks(static_cast<uint64_t>(s.prefix_blocks));
  r.setCachedBlocks(static_cast<uint64_t>(s.cached_blocks));
  r.setPrefixHits(static_cast<uint64_t>(s.prefix_hits));
  r.setWorkerName(options_.name);
  r.setSsdTier(s.ssd);
  r.setValueDramBlocks(static_cast<uint64_t>(s.value_dram_blocks));
  r.setVResidentBlocks(static_cast<uint64_t>(s.v_resident_blocks));
  r.setVSpilledBlocks(static_cast<uint64_t>(s.v_spilled_blocks));
  r.setSpilledBlocksTotal(static_cast<uint64_t>(s.spilled_total));
  r.setSsdBytesRead(s.ssd_bytes_read);
  r.setSsdBytesWritten(s.tier.block_bytes_written);
  r.setDurabilityErrors(static_cast<uint64_t>(s.durability_errors));
  r.setPendingDurableBlocks(static_cast<uint64_t>(s.pending_durable_blocks));
  r.setRecoveredSequences(static_cast<uint64_t>(s.recovered_sequences));
  return MakeReply(req.method(), builder);
}

}  // namespace attic
