// The SSD tier's side of WorkerService: recovery at start (the store recovers the sequences;
// the worker restores their query samples so the retrieval indexes rebuild), OpenSequence with
// resume, the stored query samples, durable lengths in replies, and the upkeep between requests.
#include <string>
#include <utility>
#include <vector>

#include "common/log.h"
#include "services/worker/query_sample_codec.h"
#include "services/worker/worker_service.h"
#include "services/worker/codec/worker_codec.h"

namespace attic {

using transport::OutgoingMessage;
using worker_internal::QuerySampleRecord;

namespace {

std::string SeqName(uint64_t id) { return "sequence " + std::to_string(id); }

std::string HeadRange(int begin, int end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

// FAILED_PRECONDITION naming the first field in which the request differs from the recovered
// sequence.
Status CheckResumable(const SequenceOptions& want, const SequenceInfo& have) {
  const std::string name =
      SeqName(want.id) + (have.recovered ? " recovered from the SSD tier" : " open here");
  if (want.tenant != have.tenant) {
    return FailedPreconditionError(name + " belongs to tenant '" + have.tenant + "', not '" +
                                   want.tenant + "'");
  }
  if (!(want.spec == have.spec)) {
    return FailedPreconditionError(name + " has model " + have.spec.ToString() + ", not " +
                                   want.spec.ToString());
  }
  const uint64_t fingerprint =
      want.model_fingerprint != 0 ? want.model_fingerprint : want.spec.Fingerprint();
  if (fingerprint != have.model_fingerprint) {
    return FailedPreconditionError(name + " has model fingerprint " +
                                   std::to_string(have.model_fingerprint) + ", not " +
                                   std::to_string(fingerprint));
  }
  if (want.kv_head_begin != have.kv_head_begin || want.kv_head_end != have.kv_head_end) {
    return FailedPreconditionError(name + " holds KV heads " +
                                   HeadRange(have.kv_head_begin, have.kv_head_end) + ", not " +
                                   HeadRange(want.kv_head_begin, want.kv_head_end));
  }
  return OkStatus();
}

}  // namespace

Status WorkerService::Recover() {
  if (!store_->has_ssd_tier()) return OkStatus();
  for (uint64_t id : store_->RecoveredSequences()) {
    ASSIGN_OR_RETURN(SequenceInfo info, store_->GetSequence(id));
    ++recovery_.sequences;
    for (int n : info.layer_lengths) recovery_.tokens += n;
    StatusOr<std::vector<std::pair<int, std::string>>> samples = store_->LoadSamples(id);
    if (!samples.ok()) {
      // The sequence itself is intact: only its indexes are built without learned queries.
      ATTIC_LOG(kWarn, "worker") << SeqName(id)
                                 << ": query samples not recovered: " << samples.status();
      continue;
    }
    for (auto& [layer, blob] : *samples) {
      const Status s = RestoreSamples(info, layer, std::move(blob));
      if (!s.ok()) {
        ATTIC_LOG(kWarn, "worker")
            << SeqName(id) << " layer " << layer << ": query sample not restored: " << s;
      }
    }
  }
  return OkStatus();
}

Status WorkerService::RestoreSamples(const SequenceInfo& info, int layer, std::string blob) {
  const int heads = info.kv_head_end - info.kv_head_begin;
  if (layer < 0 || layer >= options_.spec.num_layers) {
    return DataLossError("stored query sample of layer " + std::to_string(layer) +
                         " outside the model's " + std::to_string(options_.spec.num_layers));
  }
  ASSIGN_OR_RETURN(std::vector<QuerySampleRecord> records,
                   worker_internal::DecodeQuerySamples(blob));
  bool built = false;
  for (const QuerySampleRecord& r : records) {
    built = built || r.build;
    if (!r.positions.empty() &&
        (r.q_heads != options_.spec.group_size() * heads || r.head_dim != options_.spec.head_dim)) {
      return DataLossError("stored query sample of " + std::to_string(r.q_heads) + " x " +
                           std::to_string(r.head_dim) + " queries for " + std::to_string(heads) +
                           " KV heads of " + options_.spec.ToString());
    }
  }
  // A layer whose prompt was not complete (no build asked yet) starts over: the engine re-sends
  // its prefill and sample after Resume, and that sample replaces the stored one.
  if (!built) return OkStatus();
  for (QuerySampleRecord& r : records) {
    // The stored number is the wire's: 0 the worker's default, else the kind + 1.
    const std::optional<IndexKind> kind =
        r.index_kind == 0 ? std::nullopt : IndexKindFromNumber(r.index_kind - 1);
    FeedRetrieval(info.id, layer, heads, r.dtype, reinterpret_cast<const std::byte*>(r.q.data()),
                  std::move(r.positions), r.build, kind);
  }
  {
    MutexLock lock(&samples_mu_);
    samples_[{info.id, layer}] = std::move(blob);
  }
  ++recovery_.sample_layers;
  return OkStatus();
}

Status WorkerService::CheckNotRecovered(uint64_t id) const {
  if (!store_->has_ssd_tier()) return OkStatus();
  const StatusOr<SequenceInfo> info = store_->GetSequence(id);
  if (info.ok() && info->recovered) {
    return AlreadyExistsError(SeqName(id) + " was recovered from the SSD tier of worker " +
                              options_.name + "; open it with resume");
  }
  return OkStatus();
}

StatusOr<OutgoingMessage> WorkerService::Resume(const SequenceOptions& seq) {
  // Recovered after a restart, or still open here while another shard's worker restarted (or
  // the engine did): either way the caller takes over what this worker holds.
  const StatusOr<SequenceInfo> info = store_->GetSequence(seq.id);
  if (!info.ok()) {
    return NotFoundError(SeqName(seq.id) + " is neither open on worker " + options_.name +
                         " nor recovered from " +
                         (store_->has_ssd_tier() ? "its SSD tier" : "an SSD tier (it has none)"));
  }
  RETURN_IF_ERROR(CheckResumable(seq, *info));
  const worker_codec::ResumedReply resumed{.lengths = info->layer_lengths,
                                           .durable = info->durable_lengths};
  OutgoingMessage out;
  out.method = transport::Method::kOpenSequence;
  out.header = worker_codec::EncodeOpenSequenceReply(&resumed);
  return out;
}

void WorkerService::FeedRetrieval(uint64_t id, int layer, int heads, DType dtype,
                                  const std::byte* q, std::vector<int32_t> positions, bool build,
                                  std::optional<IndexKind> kind) {
  if (!positions.empty()) {
    std::vector<float> qf(positions.size() * static_cast<size_t>(options_.spec.group_size()) *
                          static_cast<size_t>(heads) * static_cast<size_t>(options_.spec.head_dim));
    ConvertToFloat(dtype, q, qf.data(), qf.size());
    retrieval_->AddSample(id, layer, heads, std::move(qf), std::move(positions));
  }
  if (!build) return;
  retrieval_->RequestBuild(id, layer, heads, kind.value_or(options_.retrieval.kind));
}

void WorkerService::AcceptSample(uint64_t id, int layer, int heads, DType dtype, const std::byte* q,
                                 std::vector<int32_t> positions, bool build,
                                 std::optional<IndexKind> kind) {
  if (store_->has_ssd_tier()) {
    const int q_heads = options_.spec.group_size() * heads;
    QuerySampleRecord record{.q_heads = q_heads,
                             .head_dim = options_.spec.head_dim,
                             .dtype = dtype,
                             .positions = positions,
                             .build = build,
                             .index_kind = kind ? static_cast<int>(*kind) + 1 : 0};
    if (!positions.empty()) {
      record.q.assign(reinterpret_cast<const char*>(q),
                      positions.size() * static_cast<size_t>(q_heads) *
                          static_cast<size_t>(options_.spec.head_dim) * DTypeSize(dtype));
    }
    // The lock keeps the map whole while other sequences' requests change it; this entry is
    // this sequence's, whose requests run one at a time, and std::map entries stay put.
    std::string* blob = nullptr;
    {
      MutexLock lock(&samples_mu_);
      blob = &samples_[{id, layer}];
    }
    worker_internal::AppendQuerySample(record, blob);
    const Status s = store_->StoreSample(id, layer, *blob);
    if (!s.ok()) {
      // The appended data is durable regardless; only a restart's index rebuild loses it.
      sample_store_errors_.fetch_add(1, std::memory_order_relaxed);
      ATTIC_LOG(kWarn, "worker") << SeqName(id) << " layer " << layer
                                 << ": query sample not stored on the SSD tier: " << s;
    }
  }
  FeedRetrieval(id, layer, heads, dtype, q, std::move(positions), build, kind);
}

void WorkerService::MaintainTier() {
  const MaintainStats m = store_->Maintain();
  durable_retries_.fetch_add(static_cast<uint64_t>(m.durable_retries), std::memory_order_relaxed);
  // Logged when the state changes, not on every request while a disk stays full. Maintain
  // reports the errors since its previous call, so a quiet interval is not a recovery: that
  // is when nothing waits to be written any more.
  if (!m.durability.ok()) {
    if (!durability_failing_) {
      ATTIC_LOG(kWarn, "worker") << "SSD tier write-through failing (tokens stay in DRAM; "
                                    "sealed blocks are retried between requests): "
                                 << m.durability;
    }
    durability_failing_ = true;
  } else if (durability_failing_ && store_->Stats().pending_durable_blocks == 0) {
    ATTIC_LOG(kInfo, "worker") << "SSD tier write-through recovered: every sealed block is "
                                  "durable again";
    durability_failing_ = false;
  }
}

}  // namespace attic
