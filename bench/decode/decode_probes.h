// What attic-bench-decode measures beside the decode itself: the data plane's round trip (the
// per-layer network floor) and the Attend time the workers report in their metrics.
//
//   ASSIGN_OR_RETURN(double rtt, MeasureRoundTrip(worker->data_address(), spec.Fingerprint()));
//   ASSIGN_OR_RETURN(WorkerAttendTime t, ScrapeAttendTime(worker->control_address()));
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/model_spec.h"
#include "common/status.h"

namespace attic::bench {

// Median round trip (seconds) of a small Echo to a worker's data address.
StatusOr<double> MeasureRoundTrip(const std::string& address, uint64_t fingerprint);

// Attend time as the worker measured it (sum and count of its duration histogram, and its
// phase totals), so a report can tell compute on the workers from transport and client time.
struct WorkerAttendTime {
  double seconds = 0.0;
  double count = 0.0;
  double prepare = 0.0;  // attic_worker_attend_phase_seconds_total
  double compute = 0.0;
  double reply = 0.0;
};
StatusOr<WorkerAttendTime> ScrapeAttendTime(const std::string& control);

// attic-worker's arguments for a benchmark: the model, its KV memory, compute threads.
std::vector<std::string> WorkerArgs(const ModelSpec& spec, uint64_t kv_bytes, int threads);

}  // namespace attic::bench
