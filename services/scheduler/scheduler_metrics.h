// SchedulerMetrics: the Prometheus metrics of attic-scheduler (prometheus-cpp's core registry,
// text exposition format 0.0.4), served on its /metrics.
//
//   SchedulerMetrics metrics;
//   metrics.ObservePlacement("prefix-affinity", 0.00004);
//   metrics.ObserveRejection(StatusCode::kResourceExhausted);
//   metrics.SetState(state.Counts());
//   routes["/metrics"] = [&](const control::HttpRequest&) { ... metrics.Serialize() ... };
//
// Series:
//   attic_scheduler_workers_alive, attic_scheduler_workers_ready,
//   attic_scheduler_workers_dead, attic_scheduler_sequences                      gauges
//   attic_scheduler_placements_total{reason}     counter: "prefix-affinity", "headroom",
//                                                "head-shard", "token-split"
//   attic_scheduler_rejections_total{reason}     counter: the refusal's code name
//                                                ("RESOURCE_EXHAUSTED", "UNAVAILABLE", ...)
//   attic_scheduler_placement_seconds            histogram, 10 us quadrupling to 0.65 s
//   attic_scheduler_prefix_affinity_hits_total   counter: placements made for prefix affinity
//   attic_scheduler_heartbeats_total{result}     counter: "known" or "unknown" (told to register)
//   attic_scheduler_registrations_total          counter
//   attic_scheduler_locates_total{code}          counter: Locate answers by code name
//   attic_scheduler_up, attic_scheduler_build_info{version,incarnation}  gauges (1)
//
// Thread safety: every method may be called from any thread (prometheus-cpp's series are
// thread-safe; label lookups take the family's lock).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "services/scheduler/scheduler_state.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace attic::scheduler {

class SchedulerMetrics {
 public:
  static constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

  explicit SchedulerMetrics(uint64_t incarnation);
  ~SchedulerMetrics();
  SchedulerMetrics(const SchedulerMetrics&) = delete;
  SchedulerMetrics& operator=(const SchedulerMetrics&) = delete;

  // A placement made for `reason`, which took `seconds`.
  void ObservePlacement(std::string_view reason, double seconds);
  // A placement refused with `code`, which took `seconds`.
  void ObserveRejection(StatusCode code, double seconds);
  void ObserveHeartbeat(bool known);
  void ObserveRegistration();
  void ObserveLocate(StatusCode code);
  // The registry's figures, copied before each scrape.
  void SetState(const StateCounts& counts);

  std::string Serialize() const;

 private:
  const std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* placements_;
  prometheus::Family<prometheus::Counter>* rejections_;
  prometheus::Family<prometheus::Counter>* locates_;
  prometheus::Histogram* placement_seconds_;
  prometheus::Counter* affinity_hits_;
  prometheus::Counter* heartbeats_known_;
  prometheus::Counter* heartbeats_unknown_;
  prometheus::Counter* registrations_;
  prometheus::Gauge* workers_alive_;
  prometheus::Gauge* workers_ready_;
  prometheus::Gauge* workers_dead_;
  prometheus::Gauge* sequences_;
};

}  // namespace attic::scheduler
