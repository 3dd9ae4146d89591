#include "services/scheduler/scheduler_service.h"

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <utility>

#include "common/log.h"
#include "transport/control/scheduler_protocol.h"

namespace attic::scheduler {
namespace {

using control::HttpRequest;
using control::HttpResponse;

constexpr char kComponent[] = "scheduler";

HttpResponse Capnp(std::string body) {
  return HttpResponse{.status = 200, .content_type = kCapnpContentType, .body = std::move(body)};
}

HttpResponse Refuse(const Status& status) {
  return HttpResponse{.status = RefusalHttpStatus(status.code()),
                      .body = RefusalBody(status) + "\n"};
}

// 405 for a GET on a POST route (and the reverse).
std::optional<HttpResponse> WrongMethod(const HttpRequest& request, const char* method) {
  if (request.method == method) return std::nullopt;
  return HttpResponse{.status = 405,
                      .body = "INVALID_ARGUMENT: " + request.path + " takes " + method + "\n"};
}

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

SchedulerStateOptions WithDeathLog(SchedulerStateOptions options) {
  if (!options.on_worker_dead) {
    options.on_worker_dead = [](const std::string& name, const std::string& address,
                                std::chrono::milliseconds silent) {
      ATTIC_LOG(kWarn, kComponent) << "worker " << name << " (" << address
                                   << ") is dead: no heartbeat for " << silent.count() << " ms";
    };
  }
  return options;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

SchedulerService::SchedulerService(SchedulerStateOptions options,
                                   std::unique_ptr<PlacementPolicy> policy, Clock clock)
    : state_(WithDeathLog(std::move(options)), std::move(clock)),
      policy_(std::move(policy)),
      metrics_(state_.incarnation()) {}

std::map<std::string, control::HttpHandler> SchedulerService::Routes() {
  std::map<std::string, control::HttpHandler> routes;
  const auto bind = [this](HttpResponse (SchedulerService::*method)(const HttpRequest&)) {
    return [this, method](const HttpRequest& r) { return (this->*method)(r); };
  };
  routes["/v1/register"] = bind(&SchedulerService::Register);
  routes["/v1/heartbeat"] = bind(&SchedulerService::Heartbeat);
  routes["/v1/place"] = bind(&SchedulerService::Place);
  routes["/v1/locate"] = bind(&SchedulerService::Locate);
  routes["/v1/release"] = bind(&SchedulerService::Release);
  routes["/v1/fleet"] = bind(&SchedulerService::GetFleet);
  routes["/metrics"] = bind(&SchedulerService::Metrics);
  routes["/readyz"] = bind(&SchedulerService::Ready);
  routes["/healthz"] = [](const HttpRequest&) { return HttpResponse{.body = "ok\n"}; };
  return routes;
}

HttpResponse SchedulerService::Register(const HttpRequest& request) {
  if (auto wrong = WrongMethod(request, "POST")) return *wrong;
  StatusOr<WorkerReport> report = DecodeWorkerReport(request.body);
  if (!report.ok()) return Refuse(report.status().WithContext("register from " + request.peer));
  const std::string name = report->name;
  const std::string address = report->data_address;
  const uint64_t incarnation = report->incarnation;
  const size_t shards = report->shards.size();
  const RegisterOutcome out = state_.Register(std::move(report).value());
  metrics_.ObserveRegistration();
  const char* what = out.is_new      ? "registered"
                     : out.restarted ? "registered again after a restart"
                     : out.came_back ? "is back after being dead"
                                     : "registered again";
  ATTIC_LOG(kInfo, kComponent) << "worker " << name << " (" << address << ", incarnation "
                               << Hex(incarnation) << ") " << what << ", holding " << shards
                               << " sequence shards";
  return Capnp(EncodeRegisterReply(out.reply));
}

HttpResponse SchedulerService::Heartbeat(const HttpRequest& request) {
  if (auto wrong = WrongMethod(request, "POST")) return *wrong;
  StatusOr<WorkerReport> report = DecodeWorkerReport(request.body);
  if (!report.ok()) return Refuse(report.status().WithContext("heartbeat from " + request.peer));
  const HeartbeatReply reply = state_.Heartbeat(std::move(report).value());
  metrics_.ObserveHeartbeat(reply.known);
  return Capnp(EncodeHeartbeatReply(reply));
}

HttpResponse SchedulerService::Place(const HttpRequest& request) {
  if (auto wrong = WrongMethod(request, "POST")) return *wrong;
  const auto start = std::chrono::steady_clock::now();
  StatusOr<PlaceRequest> place = DecodePlaceRequest(request.body);
  if (!place.ok()) {
    metrics_.ObserveRejection(place.status().code(), SecondsSince(start));
    return Refuse(place.status());
  }
  StatusOr<PlaceOutcome> out = state_.Place(*place, *policy_);
  if (!out.ok()) {
    metrics_.ObserveRejection(out.status().code(), SecondsSince(start));
    ATTIC_LOG(kDebug, kComponent) << "place refused: " << out.status();
    return Refuse(out.status());
  }
  if (!out->repeated) metrics_.ObservePlacement(out->placement.reason, SecondsSince(start));
  return Capnp(EncodePlacement(out->placement));
}

HttpResponse SchedulerService::Locate(const HttpRequest& request) {
  if (auto wrong = WrongMethod(request, "POST")) return *wrong;
  StatusOr<uint64_t> id = DecodeLocateRequest(request.body);
  if (!id.ok()) return Refuse(id.status());
  StatusOr<Placement> where = state_.Locate(*id);
  metrics_.ObserveLocate(where.status().code());
  if (!where.ok()) return Refuse(where.status());
  return Capnp(EncodePlacement(*where));
}

HttpResponse SchedulerService::Release(const HttpRequest& request) {
  if (auto wrong = WrongMethod(request, "POST")) return *wrong;
  StatusOr<uint64_t> id = DecodeLocateRequest(request.body);
  if (!id.ok()) return Refuse(id.status());
  state_.Release(*id);  // releasing an unknown sequence is not an error: it may be gone already
  return HttpResponse{.status = 200, .content_type = kCapnpContentType};
}

HttpResponse SchedulerService::GetFleet(const HttpRequest& request) {
  if (auto wrong = WrongMethod(request, "GET")) return *wrong;
  return Capnp(EncodeFleet(state_.GetFleet()));
}

HttpResponse SchedulerService::Metrics(const HttpRequest&) {
  metrics_.SetState(state_.Counts());
  return HttpResponse{
      .status = 200, .content_type = SchedulerMetrics::kContentType, .body = metrics_.Serialize()};
}

HttpResponse SchedulerService::Ready(const HttpRequest&) {
  const StateCounts c = state_.Counts();
  if (c.workers_ready > 0) return HttpResponse{.status = 200, .body = "ready\n"};
  return HttpResponse{.status = 503,
                      .body = "no live, ready worker (" + std::to_string(c.workers_alive) +
                              " alive, " + std::to_string(c.workers_dead) + " dead)\n"};
}

}  // namespace attic::scheduler
