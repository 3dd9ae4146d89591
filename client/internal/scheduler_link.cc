#include "client/internal/scheduler_link.h"

#include <utility>

#include "client/scheduler.h"
#include "transport/control/http_server.h"

namespace attic {
namespace client_internal {
namespace {

std::string SchedulerLabel(const std::string& scheduler) { return "scheduler " + scheduler; }

// The 200 answer's body to `path` (GET without a body, POST with one), or the scheduler's
// refusal, named.
StatusOr<std::string> Call(const std::string& scheduler, const std::string& path,
                           const std::string* body, std::chrono::milliseconds timeout) {
  StatusOr<control::HttpResponse> r =
      body ? control::HttpPost(scheduler, path, *body, timeout, scheduler::kCapnpContentType)
           : control::HttpGet(scheduler, path, timeout);
  if (!r.ok()) return r.status().WithContext(SchedulerLabel(scheduler));
  if (r->status != 200) {
    return scheduler::RefusalStatus(r->status, r->body).WithContext(SchedulerLabel(scheduler));
  }
  return std::move(r->body);
}

StatusOr<scheduler::Placement> AskPlacement(const std::string& scheduler, const std::string& path,
                                            const std::string& request,
                                            std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(std::string body, Call(scheduler, path, &request, timeout));
  StatusOr<scheduler::Placement> p = scheduler::DecodePlacement(body);
  if (!p.ok()) return p.status().WithContext("answer of " + SchedulerLabel(scheduler));
  if (p->shards.empty()) {
    return InternalError("answer of " + SchedulerLabel(scheduler) + ": a placement without shards");
  }
  return p;
}

}  // namespace

StatusOr<scheduler::Placement> SchedulerPlace(const std::string& scheduler,
                                              const PlaceOptions& options, uint64_t prefix_scope,
                                              uint64_t model_fingerprint,
                                                 std::chrono::milliseconds timeout) {
  const std::string request = scheduler::EncodePlaceRequest(
      {.sequence_id = options.id,
       .tenant = options.tenant,
       .model_fingerprint = model_fingerprint,
       .prompt_tokens = static_cast<uint64_t>(options.prompt_tokens),
       .expected_tokens = static_cast<uint64_t>(options.expected_tokens),
       .prompt_hashes = options.prompt_hashes,
       .prefix_scope = prefix_scope});
  return AskPlacement(scheduler, "/v1/place", request, timeout);
}

StatusOr<scheduler::Placement> SchedulerLocate(const std::string& scheduler, uint64_t id,
                                                  std::chrono::milliseconds timeout) {
  return AskPlacement(scheduler, "/v1/locate", scheduler::EncodeLocateRequest(id), timeout);
}

Status SchedulerRelease(const std::string& scheduler, uint64_t id,
                        std::chrono::milliseconds timeout) {
  const std::string request = scheduler::EncodeLocateRequest(id);
  return Call(scheduler, "/v1/release", &request, timeout).status();
}

}  // namespace client_internal

StatusOr<std::vector<FleetWorker>> GetFleet(const std::string& scheduler,
                                               std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(std::string body,
                   client_internal::Call(scheduler, "/v1/fleet", nullptr, timeout));
  StatusOr<scheduler::Fleet> fleet = scheduler::DecodeFleet(body);
  if (!fleet.ok()) {
    return fleet.status().WithContext("answer of " + client_internal::SchedulerLabel(scheduler));
  }
  std::vector<FleetWorker> out;
  for (const scheduler::FleetWorker& w : fleet->workers) {
    const scheduler::WorkerFigures& g = w.figures;
    out.push_back({.name = w.name,
                   .data_address = w.data_address,
                   .metrics_address = w.metrics_address,
                   .alive = w.alive,
                   .ready = w.ready,
                   .silent_ms = w.silent_ms,
                   .kv_bytes_dram = g.kv_bytes_dram,
                   .kv_bytes_ssd = g.kv_bytes_ssd,
                   .dram_capacity_bytes = g.dram_capacity_bytes,
                   .dram_free_bytes = g.dram_free_bytes,
                   .ssd_bytes_used = g.ssd_bytes_used,
                   .ssd_tier = g.ssd_tier,
                   .sequences = g.sequences,
                   .prefix_blocks = g.prefix_blocks,
                   .queue_depth = g.queue_depth,
                   .attend_p50_us = g.attend_p50_us,
                   .attend_p99_us = g.attend_p99_us,
                   .requests_total = g.requests_total,
                   .compute_threads = g.compute_threads});
  }
  return out;
}

}  // namespace attic
