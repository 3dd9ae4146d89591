// SchedulerService: attic-scheduler's HTTP routes over its state, placement policy and
// metrics (docs/scheduler.md, "Protocol").
//
//   SchedulerService service(config.StateOptions(),
//                            std::make_unique<DefaultPlacementPolicy>(config.PolicyOptions()));
//   ASSIGN_OR_RETURN(auto server, control::HttpServer::Start({.port = 7170}, service.Routes()));
//
// Routes: POST /v1/register, /v1/heartbeat, /v1/place, /v1/locate, /v1/release (flat Cap'n
// Proto bodies of control.capnp); GET /v1/fleet; GET /metrics, /healthz (always 200), /readyz
// (200 once a worker is alive and ready, else 503 with the reason). A refusal is an HTTP
// status other than 200 whose text body is "<CODE>: <message>" (protocol.h, RefusalBody).
//
// Thread safety: the routes may run on several HTTP threads at once; the service must outlive
// the server that calls them.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "services/scheduler/placement_policy.h"
#include "services/scheduler/scheduler_metrics.h"
#include "services/scheduler/scheduler_state.h"
#include "transport/control/http_server.h"

namespace attic::scheduler {

class SchedulerService {
 public:
  // `options.on_worker_dead`, when unset, logs the death. `clock` as for SchedulerState.
  SchedulerService(SchedulerStateOptions options, std::unique_ptr<PlacementPolicy> policy,
                   Clock clock = {});
  SchedulerService(const SchedulerService&) = delete;
  SchedulerService& operator=(const SchedulerService&) = delete;

  std::map<std::string, control::HttpHandler> Routes();

  SchedulerState& state() { return state_; }
  SchedulerMetrics& metrics() { return metrics_; }

 private:
  control::HttpResponse Register(const control::HttpRequest& request);
  control::HttpResponse Heartbeat(const control::HttpRequest& request);
  control::HttpResponse Place(const control::HttpRequest& request);
  control::HttpResponse Locate(const control::HttpRequest& request);
  control::HttpResponse Release(const control::HttpRequest& request);
  control::HttpResponse GetFleet(const control::HttpRequest& request);
  control::HttpResponse Metrics(const control::HttpRequest& request);
  control::HttpResponse Ready(const control::HttpRequest& request);

  SchedulerState state_;
  const std::unique_ptr<PlacementPolicy> policy_;
  SchedulerMetrics metrics_;
};

}  // namespace attic::scheduler
