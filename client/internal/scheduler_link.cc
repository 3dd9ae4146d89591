#include "client/internal/scheduler_link.h"

#include <capnp/message.h>

#include <cstring>
#include <string_view>
#include <utility>

#include "client/scheduler.h"
#include "transport/capnp_codec.h"
#include "transport/control/http_server.h"
#include "transport/proto/control.capnp.h"

namespace attic {
namespace client_internal {
namespace {

using transport::CapnpMessage;
using transport::CatchKj;

constexpr std::string_view kCapnpType = "application/x-capnp";

std::string SchedulerLabel(const std::string& scheduler) { return "scheduler " + scheduler; }

// A non-200 answer "<CODE>: <message>" as a Status naming the scheduler.
Status Refusal(const std::string& scheduler, const control::HttpResponse& r) {
  std::string_view body = r.body;
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.remove_suffix(1);
  StatusCode code = StatusCode::kInternal;
  std::string_view message = body;
  if (size_t colon = body.find(": "); colon != std::string_view::npos) {
    if (std::optional<StatusCode> c = StatusCodeFromName(body.substr(0, colon))) {
      code = *c;
      message = body.substr(colon + 2);
    }
  }
  if (code == StatusCode::kInternal && message == body) {
    return InternalError(SchedulerLabel(scheduler) + " answered HTTP " + std::to_string(r.status) +
                         ": " + std::string(body));
  }
  return Status(code, SchedulerLabel(scheduler) + ": " + std::string(message));
}

// POSTs `body` to `path`; the 200 answer's body, or the scheduler's refusal.
StatusOr<std::string> Post(const std::string& scheduler, const std::string& path,
                           const std::string& body, std::chrono::milliseconds timeout) {
  StatusOr<control::HttpResponse> r =
      control::HttpPost(scheduler, path, body, timeout, std::string(kCapnpType));
  if (!r.ok()) return r.status().WithContext(SchedulerLabel(scheduler));
  if (r->status != 200) return Refusal(scheduler, *r);
  return std::move(r->body);
}

std::span<const std::byte> Bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

template <typename T, typename F>
Status ReadAnswer(const std::string& scheduler, std::string_view what, const std::string& body,
                  F&& read) {
  StatusOr<CapnpMessage> msg = CapnpMessage::Parse(Bytes(body));
  Status s = msg.ok() ? CatchKj(what, [&]() -> Status { return read(msg->Root<T>()); })
                      : msg.status();
  if (s.ok()) return s;
  return InternalError("bad " + std::string(what) + " from " + SchedulerLabel(scheduler) + ": " +
                       std::string(s.message()));
}

StatusOr<PlacedSequence> ParsePlacement(const std::string& scheduler, const std::string& body) {
  PlacedSequence out;
  RETURN_IF_ERROR(ReadAnswer<wire::Placement>(
      scheduler, "Placement", body, [&](wire::Placement::Reader p) -> Status {
        out.id = p.getSequenceId();
        out.prefix_blocks_matched = static_cast<int64_t>(p.getPrefixBlocksMatched());
        out.reason = p.getReason();
        for (wire::PlacedShard::Reader s : p.getShards()) {
          out.shards.push_back({.worker_name = s.getWorkerName(),
                                .data_address = s.getDataAddress(),
                                .kv_head_begin = static_cast<int>(s.getKvHeadBegin()),
                                .kv_head_end = static_cast<int>(s.getKvHeadEnd()),
                                .token_begin = static_cast<int64_t>(s.getTokenBegin()),
                                .token_end = s.getTokenEnd()});
          if (out.shards.back().data_address.empty()) {
            return InvalidArgumentError("a shard has no data address");
          }
        }
        if (out.shards.empty()) return InvalidArgumentError("no shards");
        return OkStatus();
      }));
  return out;
}

}  // namespace

StatusOr<PlacedSequence> SchedulerPlace(const std::string& scheduler, const PlaceOptions& options,
                                        uint64_t prefix_scope, uint64_t model_fingerprint,
                                        std::chrono::milliseconds timeout) {
  capnp::MallocMessageBuilder b;
  auto req = b.initRoot<wire::PlaceRequest>();
  req.setSequenceId(options.id);
  req.setTenant(options.tenant);
  req.setModelFingerprint(model_fingerprint);
  req.setPromptTokens(static_cast<uint64_t>(options.prompt_tokens));
  req.setExpectedTokens(static_cast<uint64_t>(options.expected_tokens));
  req.setPrefixScope(prefix_scope);
  auto hashes = req.initPromptHashes(static_cast<unsigned>(options.prompt_hashes.size()));
  for (size_t i = 0; i < options.prompt_hashes.size(); ++i) {
    hashes.set(static_cast<unsigned>(i), options.prompt_hashes[i]);
  }
  ASSIGN_OR_RETURN(std::string body,
                   Post(scheduler, "/v1/place", transport::EncodeCapnp(b), timeout));
  return ParsePlacement(scheduler, body);
}

StatusOr<PlacedSequence> SchedulerLocate(const std::string& scheduler, uint64_t id,
                                         std::chrono::milliseconds timeout) {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::LocateRequest>().setSequenceId(id);
  ASSIGN_OR_RETURN(std::string body,
                   Post(scheduler, "/v1/locate", transport::EncodeCapnp(b), timeout));
  return ParsePlacement(scheduler, body);
}

Status SchedulerRelease(const std::string& scheduler, uint64_t id,
                        std::chrono::milliseconds timeout) {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::LocateRequest>().setSequenceId(id);
  return Post(scheduler, "/v1/release", transport::EncodeCapnp(b), timeout).status();
}

}  // namespace client_internal

StatusOr<std::vector<FleetWorker>> GetFleet(const std::string& scheduler,
                                            std::chrono::milliseconds timeout) {
  StatusOr<control::HttpResponse> r = control::HttpGet(scheduler, "/v1/fleet", timeout);
  if (!r.ok()) return r.status().WithContext(client_internal::SchedulerLabel(scheduler));
  if (r->status != 200) return client_internal::Refusal(scheduler, *r);
  std::vector<FleetWorker> out;
  RETURN_IF_ERROR(client_internal::ReadAnswer<wire::Fleet>(
      scheduler, "Fleet", r->body, [&](wire::Fleet::Reader f) -> Status {
        for (wire::FleetWorker::Reader w : f.getWorkers()) {
          wire::WorkerFigures::Reader g = w.getFigures();
          out.push_back({.name = w.getName(),
                         .data_address = w.getDataAddress(),
                         .metrics_address = w.getMetricsAddress(),
                         .alive = w.getAlive(),
                         .ready = w.getReady(),
                         .silent_ms = w.getSilentMs(),
                         .kv_bytes_dram = g.getKvBytesDram(),
                         .kv_bytes_ssd = g.getKvBytesSsd(),
                         .dram_capacity_bytes = g.getDramCapacityBytes(),
                         .dram_free_bytes = g.getDramFreeBytes(),
                         .ssd_bytes_used = g.getSsdBytesUsed(),
                         .ssd_tier = g.getSsdTier(),
                         .sequences = g.getSequences(),
                         .prefix_blocks = g.getPrefixBlocks(),
                         .queue_depth = g.getQueueDepth(),
                         .attend_p50_us = g.getAttendP50Us(),
                         .attend_p99_us = g.getAttendP99Us(),
                         .requests_total = g.getRequestsTotal(),
                         .compute_threads = g.getComputeThreads()});
        }
        return OkStatus();
      }));
  return out;
}

}  // namespace attic
