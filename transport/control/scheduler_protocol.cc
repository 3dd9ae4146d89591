#include "transport/control/scheduler_protocol.h"

#include <capnp/message.h>

#include <span>
#include <utility>

#include "transport/capnp_codec.h"
#include "transport/proto/control.capnp.h"

namespace attic::scheduler {
namespace {

using transport::CapnpMessage;
using transport::CatchKj;

StatusOr<CapnpMessage> Parse(std::string_view body, std::string_view what) {
  StatusOr<CapnpMessage> msg =
      CapnpMessage::Parse(std::as_bytes(std::span<const char>(body.data(), body.size())));
  if (!msg.ok()) return msg.status().WithContext(what);
  return msg;
}

std::string Text(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

void SetFigures(const WorkerFigures& f, wire::WorkerFigures::Builder b) {
  b.setKvBytesDram(f.kv_bytes_dram);
  b.setKvBytesSsd(f.kv_bytes_ssd);
  b.setDramCapacityBytes(f.dram_capacity_bytes);
  b.setDramFreeBytes(f.dram_free_bytes);
  b.setSsdBytesUsed(f.ssd_bytes_used);
  b.setSsdTier(f.ssd_tier);
  b.setSequences(f.sequences);
  b.setPrefixBlocks(f.prefix_blocks);
  b.setQueueDepth(f.queue_depth);
  b.setAttendP50Us(f.attend_p50_us);
  b.setAttendP99Us(f.attend_p99_us);
  b.setRequestsTotal(f.requests_total);
  b.setComputeThreads(f.compute_threads);
  b.setBlockTokens(f.block_tokens);
  b.setKvBytesPerToken(f.kv_bytes_per_token);
  b.setKvFreeBytes(f.kv_free_bytes);
}

WorkerFigures GetFigures(wire::WorkerFigures::Reader r) {
  return {.kv_bytes_dram = r.getKvBytesDram(),
          .kv_bytes_ssd = r.getKvBytesSsd(),
          .dram_capacity_bytes = r.getDramCapacityBytes(),
          .dram_free_bytes = r.getDramFreeBytes(),
          .ssd_bytes_used = r.getSsdBytesUsed(),
          .ssd_tier = r.getSsdTier(),
          .sequences = r.getSequences(),
          .prefix_blocks = r.getPrefixBlocks(),
          .queue_depth = r.getQueueDepth(),
          .attend_p50_us = r.getAttendP50Us(),
          .attend_p99_us = r.getAttendP99Us(),
          .requests_total = r.getRequestsTotal(),
          .compute_threads = r.getComputeThreads(),
          .block_tokens = r.getBlockTokens(),
          .kv_bytes_per_token = r.getKvBytesPerToken(),
          .kv_free_bytes = r.getKvFreeBytes()};
}

void SetShards(const std::vector<PlacedShard>& shards,
               capnp::List<wire::PlacedShard>::Builder list) {
  for (size_t i = 0; i < shards.size(); ++i) {
    const PlacedShard& s = shards[i];
    auto b = list[static_cast<unsigned>(i)];
    b.setWorkerName(s.worker_name);
    b.setDataAddress(s.data_address);
    b.setKvHeadBegin(s.kv_head_begin);
    b.setKvHeadEnd(s.kv_head_end);
    b.setTokenBegin(s.token_begin);
    b.setTokenEnd(s.token_end);
  }
}

Status CheckHeads(uint32_t begin, uint32_t end, std::string_view what) {
  if (begin >= end) {
    return InvalidArgumentError(std::string(what) + ": KV head range [" + std::to_string(begin) +
                                ", " + std::to_string(end) + ") is empty");
  }
  return OkStatus();
}

Status ReadReport(wire::WorkerState::Reader r, WorkerReport* out) {
  out->name = Text(r.getName());
  if (out->name.empty()) return InvalidArgumentError("WorkerState: empty name");
  out->data_address = Text(r.getDataAddress());
  out->metrics_address = Text(r.getMetricsAddress());
  out->incarnation = r.getIncarnation();
  out->model_fingerprint = r.getModelFingerprint();
  out->num_kv_heads = r.getNumKvHeads();
  out->figures = GetFigures(r.getFigures());
  out->ready = r.getReady();
  auto prefix = r.getPrefix();
  auto bits = prefix.getBits();
  ASSIGN_OR_RETURN(
      out->prefix,
      PrefixSummary::FromBits(std::string(reinterpret_cast<const char*>(bits.begin()), bits.size()),
                              prefix.getNumHashes(), prefix.getEntries()));
  auto shards = r.getShards();
  out->shards.reserve(shards.size());
  for (auto s : shards) {
    HeldShard h{.sequence_id = s.getSequenceId(),
                .tenant = Text(s.getTenant()),
                .kv_head_begin = s.getKvHeadBegin(),
                .kv_head_end = s.getKvHeadEnd(),
                .token_begin = s.getTokenBegin(),
                .tokens = s.getTokens()};
    RETURN_IF_ERROR(CheckHeads(h.kv_head_begin, h.kv_head_end,
                               "held shard of sequence " + std::to_string(h.sequence_id)));
    out->shards.push_back(std::move(h));
  }
  return OkStatus();
}

}  // namespace

std::string EncodeWorkerReport(const WorkerReport& report) {
  capnp::MallocMessageBuilder builder;
  auto b = builder.initRoot<wire::WorkerState>();
  b.setName(report.name);
  b.setDataAddress(report.data_address);
  b.setMetricsAddress(report.metrics_address);
  b.setIncarnation(report.incarnation);
  b.setModelFingerprint(report.model_fingerprint);
  b.setNumKvHeads(report.num_kv_heads);
  SetFigures(report.figures, b.initFigures());
  auto prefix = b.initPrefix();
  const std::string& bits = report.prefix.bits();
  prefix.setBits(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bits.data()), bits.size()));
  prefix.setNumHashes(static_cast<uint8_t>(report.prefix.num_hashes()));
  prefix.setEntries(report.prefix.entries());
  auto shards = b.initShards(static_cast<unsigned>(report.shards.size()));
  for (size_t i = 0; i < report.shards.size(); ++i) {
    const HeldShard& h = report.shards[i];
    auto s = shards[static_cast<unsigned>(i)];
    s.setSequenceId(h.sequence_id);
    s.setTenant(h.tenant);
    s.setKvHeadBegin(h.kv_head_begin);
    s.setKvHeadEnd(h.kv_head_end);
    s.setTokenBegin(h.token_begin);
    s.setTokens(h.tokens);
  }
  b.setReady(report.ready);
  return transport::EncodeCapnp(builder);
}

StatusOr<WorkerReport> DecodeWorkerReport(std::string_view body) {
  ASSIGN_OR_RETURN(CapnpMessage msg, Parse(body, "WorkerState"));
  WorkerReport report;
  RETURN_IF_ERROR(
      CatchKj("WorkerState", [&] { return ReadReport(msg.Root<wire::WorkerState>(), &report); }));
  return report;
}

std::string EncodeRegisterReply(const RegisterReply& reply) {
  capnp::MallocMessageBuilder builder;
  auto b = builder.initRoot<wire::RegisterReply>();
  b.setHeartbeatIntervalMs(reply.heartbeat_interval_ms);
  b.setDeadAfterMs(reply.dead_after_ms);
  b.setSchedulerIncarnation(reply.scheduler_incarnation);
  return transport::EncodeCapnp(builder);
}

StatusOr<RegisterReply> DecodeRegisterReply(std::string_view body) {
  ASSIGN_OR_RETURN(CapnpMessage msg, Parse(body, "RegisterReply"));
  RegisterReply reply;
  RETURN_IF_ERROR(CatchKj("RegisterReply", [&] {
    auto r = msg.Root<wire::RegisterReply>();
    reply = {.heartbeat_interval_ms = r.getHeartbeatIntervalMs(),
             .dead_after_ms = r.getDeadAfterMs(),
             .scheduler_incarnation = r.getSchedulerIncarnation()};
  }));
  return reply;
}

std::string EncodeHeartbeatReply(const HeartbeatReply& reply) {
  capnp::MallocMessageBuilder builder;
  auto b = builder.initRoot<wire::HeartbeatReply>();
  b.setKnown(reply.known);
  b.setSchedulerIncarnation(reply.scheduler_incarnation);
  return transport::EncodeCapnp(builder);
}

StatusOr<HeartbeatReply> DecodeHeartbeatReply(std::string_view body) {
  ASSIGN_OR_RETURN(CapnpMessage msg, Parse(body, "HeartbeatReply"));
  HeartbeatReply reply;
  RETURN_IF_ERROR(CatchKj("HeartbeatReply", [&] {
    auto r = msg.Root<wire::HeartbeatReply>();
    reply = {.known = r.getKnown(), .scheduler_incarnation = r.getSchedulerIncarnation()};
  }));
  return reply;
}

std::string EncodePlaceRequest(const PlaceRequest& request) {
  capnp::MallocMessageBuilder builder;
  auto b = builder.initRoot<wire::PlaceRequest>();
  b.setSequenceId(request.sequence_id);
  b.setTenant(request.tenant);
  b.setModelFingerprint(request.model_fingerprint);
  b.setPromptTokens(request.prompt_tokens);
  b.setExpectedTokens(request.expected_tokens);
  auto hashes = b.initPromptHashes(static_cast<unsigned>(request.prompt_hashes.size()));
  for (size_t i = 0; i < request.prompt_hashes.size(); ++i) {
    hashes.set(static_cast<unsigned>(i), request.prompt_hashes[i]);
  }
  b.setPrefixScope(request.prefix_scope);
  return transport::EncodeCapnp(builder);
}

StatusOr<PlaceRequest> DecodePlaceRequest(std::string_view body) {
  ASSIGN_OR_RETURN(CapnpMessage msg, Parse(body, "PlaceRequest"));
  PlaceRequest request;
  RETURN_IF_ERROR(CatchKj("PlaceRequest", [&] {
    auto r = msg.Root<wire::PlaceRequest>();
    request.sequence_id = r.getSequenceId();
    request.tenant = Text(r.getTenant());
    request.model_fingerprint = r.getModelFingerprint();
    request.prompt_tokens = r.getPromptTokens();
    request.expected_tokens = r.getExpectedTokens();
    auto hashes = r.getPromptHashes();
    request.prompt_hashes.reserve(hashes.size());
    for (uint64_t h : hashes) request.prompt_hashes.push_back(h);
    request.prefix_scope = r.getPrefixScope();
  }));
  return request;
}

std::string EncodePlacement(const Placement& placement) {
  capnp::MallocMessageBuilder builder;
  auto b = builder.initRoot<wire::Placement>();
  b.setSequenceId(placement.sequence_id);
  SetShards(placement.shards, b.initShards(static_cast<unsigned>(placement.shards.size())));
  b.setPrefixBlocksMatched(placement.prefix_blocks_matched);
  b.setReason(placement.reason);
  return transport::EncodeCapnp(builder);
}

StatusOr<Placement> DecodePlacement(std::string_view body) {
  ASSIGN_OR_RETURN(CapnpMessage msg, Parse(body, "Placement"));
  Placement placement;
  const Status read = CatchKj("Placement", [&]() -> Status {
    auto r = msg.Root<wire::Placement>();
    placement.sequence_id = r.getSequenceId();
    for (auto s : r.getShards()) {
      PlacedShard p{.worker_name = Text(s.getWorkerName()),
                    .data_address = Text(s.getDataAddress()),
                    .kv_head_begin = s.getKvHeadBegin(),
                    .kv_head_end = s.getKvHeadEnd(),
                    .token_begin = s.getTokenBegin(),
                    .token_end = s.getTokenEnd()};
      RETURN_IF_ERROR(CheckHeads(p.kv_head_begin, p.kv_head_end, "placed shard"));
      placement.shards.push_back(std::move(p));
    }
    placement.prefix_blocks_matched = r.getPrefixBlocksMatched();
    placement.reason = Text(r.getReason());
    return OkStatus();
  });
  RETURN_IF_ERROR(read);
  return placement;
}

std::string EncodeLocateRequest(uint64_t sequence_id) {
  capnp::MallocMessageBuilder builder;
  builder.initRoot<wire::LocateRequest>().setSequenceId(sequence_id);
  return transport::EncodeCapnp(builder);
}

StatusOr<uint64_t> DecodeLocateRequest(std::string_view body) {
  ASSIGN_OR_RETURN(CapnpMessage msg, Parse(body, "LocateRequest"));
  uint64_t id = 0;
  RETURN_IF_ERROR(
      CatchKj("LocateRequest", [&] { id = msg.Root<wire::LocateRequest>().getSequenceId(); }));
  return id;
}

std::string EncodeFleet(const Fleet& fleet) {
  capnp::MallocMessageBuilder builder;
  auto b = builder.initRoot<wire::Fleet>();
  auto list = b.initWorkers(static_cast<unsigned>(fleet.workers.size()));
  for (size_t i = 0; i < fleet.workers.size(); ++i) {
    const FleetWorker& w = fleet.workers[i];
    auto e = list[static_cast<unsigned>(i)];
    e.setName(w.name);
    e.setDataAddress(w.data_address);
    e.setMetricsAddress(w.metrics_address);
    e.setAlive(w.alive);
    e.setReady(w.ready);
    e.setSilentMs(w.silent_ms);
    SetFigures(w.figures, e.initFigures());
  }
  b.setSchedulerIncarnation(fleet.scheduler_incarnation);
  return transport::EncodeCapnp(builder);
}

StatusOr<Fleet> DecodeFleet(std::string_view body) {
  ASSIGN_OR_RETURN(CapnpMessage msg, Parse(body, "Fleet"));
  Fleet fleet;
  RETURN_IF_ERROR(CatchKj("Fleet", [&] {
    auto r = msg.Root<wire::Fleet>();
    for (auto w : r.getWorkers()) {
      fleet.workers.push_back({.name = Text(w.getName()),
                               .data_address = Text(w.getDataAddress()),
                               .metrics_address = Text(w.getMetricsAddress()),
                               .alive = w.getAlive(),
                               .ready = w.getReady(),
                               .silent_ms = w.getSilentMs(),
                               .figures = GetFigures(w.getFigures())});
    }
    fleet.scheduler_incarnation = r.getSchedulerIncarnation();
  }));
  return fleet;
}

std::string RefusalBody(const Status& status) {
  return std::string(StatusCodeName(status.code())) + ": " + std::string(status.message());
}

int RefusalHttpStatus(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kAborted:
      return 409;
    case StatusCode::kResourceExhausted:
      return 429;
    case StatusCode::kUnimplemented:
      return 501;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

Status RefusalStatus(int http_status, std::string_view body) {
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.remove_suffix(1);
  const size_t colon = body.find(": ");
  if (colon != std::string_view::npos) {
    const std::optional<StatusCode> code = StatusCodeFromName(body.substr(0, colon));
    if (code && *code != StatusCode::kOk) {
      return Status(*code, std::string(body.substr(colon + 2)));
    }
  }
  return UnknownError("HTTP " + std::to_string(http_status) + ": " + std::string(body));
}

}  // namespace attic::scheduler
