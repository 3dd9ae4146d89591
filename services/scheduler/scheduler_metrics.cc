#include "services/scheduler/scheduler_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <cmath>
#include <exception>
#include <vector>

namespace attic::scheduler {
namespace {

prometheus::Counter* AddCounter(prometheus::Registry& registry, const std::string& name,
                                const std::string& help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add({});
}

prometheus::Gauge* AddGauge(prometheus::Registry& registry, const std::string& name,
                            const std::string& help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

// 10 us quadrupling to 0.65 s (written out: products of 4 print with rounding noise).
prometheus::Histogram::BucketBoundaries PlacementBuckets() {
  return {10e-6, 40e-6, 160e-6, 640e-6, 2.56e-3, 10.24e-3, 40.96e-3, 0.16384, 0.65536};
}

double Gauge(int64_t v) { return v > 0 ? static_cast<double>(v) : 0.0; }

}  // namespace

SchedulerMetrics::SchedulerMetrics(uint64_t incarnation)
    : registry_(std::make_shared<prometheus::Registry>()),
      placements_(&prometheus::BuildCounter()
                       .Name("attic_scheduler_placements_total")
                       .Help("Sequences placed, by the policy's reason.")
                       .Register(*registry_)),
      rejections_(&prometheus::BuildCounter()
                       .Name("attic_scheduler_rejections_total")
                       .Help("Placements refused, by the refusal's status code.")
                       .Register(*registry_)),
      locates_(&prometheus::BuildCounter()
                    .Name("attic_scheduler_locates_total")
                    .Help("Locate answers, by status code.")
                    .Register(*registry_)),
      placement_seconds_(&prometheus::BuildHistogram()
                              .Name("attic_scheduler_placement_seconds")
                              .Help("Time to decide a placement (or refuse it).")
                              .Register(*registry_)
                              .Add({}, PlacementBuckets())),
      affinity_hits_(AddCounter(*registry_, "attic_scheduler_prefix_affinity_hits_total",
                                "Placements sent to a worker for the prompt prefix it holds.")),
      registrations_(AddCounter(*registry_, "attic_scheduler_registrations_total",
                                "Worker registrations (first ones and re-registrations).")),
      workers_alive_(AddGauge(*registry_, "attic_scheduler_workers_alive",
                              "Workers heard from within the dead-after timeout.")),
      workers_ready_(AddGauge(*registry_, "attic_scheduler_workers_ready",
                              "Alive workers that say they serve.")),
      workers_dead_(AddGauge(*registry_, "attic_scheduler_workers_dead",
                             "Workers silent past the dead-after timeout, not yet forgotten.")),
      sequences_(AddGauge(*registry_, "attic_scheduler_sequences",
                          "Sequences the scheduler knows (placed or announced by workers).")) {
  auto& heartbeats = prometheus::BuildCounter()
                         .Name("attic_scheduler_heartbeats_total")
                         .Help(
                             "Heartbeats received: from a known worker, or answered "
                             "known = false (the worker registers again).")
                         .Register(*registry_);
  heartbeats_known_ = &heartbeats.Add({{"result", "known"}});
  heartbeats_unknown_ = &heartbeats.Add({{"result", "unknown"}});
  // The usual reasons exist from the start, so rates begin at zero.
  for (const char* reason : {"prefix-affinity", "headroom", "head-shard", "token-split"}) {
    placements_->Add({{"reason", reason}});
  }
  for (const StatusCode code : {StatusCode::kResourceExhausted, StatusCode::kUnavailable}) {
    rejections_->Add({{"reason", std::string(StatusCodeName(code))}});
  }
  AddGauge(*registry_, "attic_scheduler_up", "1 while the scheduler runs.")->Set(1);
  prometheus::BuildGauge()
      .Name("attic_scheduler_build_info")
      .Help("Build and incarnation of the running scheduler; the value is 1.")
      .Register(*registry_)
      .Add({{"version", ATTIC_VERSION}, {"incarnation", std::to_string(incarnation)}})
      .Set(1);
}

SchedulerMetrics::~SchedulerMetrics() = default;

void SchedulerMetrics::ObservePlacement(std::string_view reason, double seconds) {
  placements_->Add({{"reason", std::string(reason)}}).Increment();
  if (reason == "prefix-affinity") affinity_hits_->Increment();
  placement_seconds_->Observe(std::isfinite(seconds) && seconds > 0 ? seconds : 0.0);
}

void SchedulerMetrics::ObserveRejection(StatusCode code, double seconds) {
  rejections_->Add({{"reason", std::string(StatusCodeName(code))}}).Increment();
  placement_seconds_->Observe(std::isfinite(seconds) && seconds > 0 ? seconds : 0.0);
}

void SchedulerMetrics::ObserveHeartbeat(bool known) {
  (known ? heartbeats_known_ : heartbeats_unknown_)->Increment();
}

void SchedulerMetrics::ObserveRegistration() { registrations_->Increment(); }

void SchedulerMetrics::ObserveLocate(StatusCode code) {
  locates_->Add({{"code", std::string(StatusCodeName(code))}}).Increment();
}

void SchedulerMetrics::SetState(const StateCounts& c) {
  workers_alive_->Set(Gauge(c.workers_alive));
  workers_ready_->Set(Gauge(c.workers_ready));
  workers_dead_->Set(Gauge(c.workers_dead));
  sequences_->Set(Gauge(c.sequences));
}

std::string SchedulerMetrics::Serialize() const {
  try {
    return prometheus::TextSerializer().Serialize(registry_->Collect());
  } catch (const std::exception& e) {
    return std::string("# attic_scheduler metrics unavailable: ") + e.what() + "\n";
  }
}

}  // namespace attic::scheduler
