// WorkerReporter: what a worker tells the scheduler about itself (control.capnp WorkerState):
// the figures it exports to Prometheus, a Bloom-filter summary of its prefix cache and the
// sequence shards it holds.
//
//   WorkerReporter reporter({.name = "w1", .data_address = "10.0.0.5:7100", ...}, service,
//                           &metrics, [&] { return rpc->stats().requests_received.load(); },
//                           [&] { return phase == kReady; });
//   scheduler::WorkerReport report = reporter.Report();
//
// Figures (docs/scheduler.md, "What workers report"): KV bytes in DRAM and on SSD, the pools'
// DRAM capacity, the free room as block pairs (cached prefix blocks count free) with and
// without values spilling to the SSD tier, sequences, prefix blocks, queue depth, the Attend
// latency p50 / p99 since the previous report (from attic_worker_request_duration_seconds),
// requests served, compute threads, B and the KV bytes of one token.
//
// Report() takes the store's locks one at a time (never while answering a request) and walks
// the prefix cache under its mutex when its figures (entries, blocks, evictions, entries on
// SSD) changed since the previous report.
//
// Thread safety: Report is called from one thread at a time (the agent's); it reads the
// service, which serves requests concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "transport/control/scheduler_protocol.h"

namespace attic {

class WorkerService;
class WorkerMetrics;
struct KvStoreStats;

struct WorkerIdentity {
  std::string name;
  std::string data_address;     // host:port clients reach the data plane at
  std::string metrics_address;  // host:port of /metrics
  uint64_t incarnation = 0;     // changes at every start
};

class WorkerReporter {
 public:
  // service must outlive the reporter; metrics may be null (no latency figures).
  WorkerReporter(WorkerIdentity identity, const WorkerService* service,
                 const WorkerMetrics* metrics, std::function<uint64_t()> requests_total,
                 std::function<bool()> ready);

  scheduler::WorkerReport Report();

  // The q-quantile (0 < q < 1) of the observations counted in `counts` (per bucket, not
  // cumulative, the last for +Inf) of buckets with upper bounds `bounds`, interpolated within
  // its bucket, in microseconds; 0 when there are none. Exposed for tests.
  static double QuantileUs(const std::vector<uint64_t>& counts, std::span<const double> bounds,
                           double q);

 private:
  scheduler::WorkerFigures Figures(const KvStoreStats& s);
  std::vector<scheduler::HeldShard> HeldShards() const;
  // The prefix summary, rebuilt only when the prefix cache's figures moved since the last one.
  const scheduler::PrefixSummary& Summary(const KvStoreStats& s);

  const WorkerIdentity identity_;
  const WorkerService* const service_;
  const WorkerMetrics* const metrics_;
  const std::function<uint64_t()> requests_total_;
  const std::function<bool()> ready_;
  std::vector<uint64_t> last_attend_;  // Attend's duration counts at the previous report
  scheduler::PrefixSummary summary_;
  std::vector<int64_t> summary_key_;  // the figures summary_ was built at
};

}  // namespace attic
