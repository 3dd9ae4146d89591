// Asking an Attic scheduler about its fleet (docs/scheduler.md): tools, dashboards and load
// generators read the workers the scheduler knows and their latest figures.
//
//   ASSIGN_OR_RETURN(std::vector<FleetWorker> fleet,
//                    GetFleet("127.0.0.1:7100", std::chrono::seconds(2)));
//   for (const FleetWorker& w : fleet) if (w.alive) free += w.dram_free_bytes;
//
// Placement itself goes through Client::Place (client/client.h).
// Thread safety: stateless functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace attic {

struct FleetWorker {
  std::string name;
  std::string data_address;     // host:port, UCX
  std::string metrics_address;  // host:port of /metrics, /healthz, /readyz
  bool alive = false;
  bool ready = false;
  uint64_t silent_ms = 0;       // since its last heartbeat
  // The figures of its latest heartbeat.
  uint64_t kv_bytes_dram = 0;
  uint64_t kv_bytes_ssd = 0;
  uint64_t dram_capacity_bytes = 0;
  uint64_t dram_free_bytes = 0;
  uint64_t ssd_bytes_used = 0;
  bool ssd_tier = false;
  uint64_t sequences = 0;
  uint64_t prefix_blocks = 0;
  uint64_t queue_depth = 0;
  double attend_p50_us = 0;
  double attend_p99_us = 0;
  uint64_t requests_total = 0;
  uint32_t compute_threads = 0;
};

// GET /v1/fleet. UNAVAILABLE or DEADLINE_EXCEEDED naming the scheduler when it cannot be
// reached in time; INTERNAL for a malformed answer.
StatusOr<std::vector<FleetWorker>> GetFleet(const std::string& scheduler,
                                            std::chrono::milliseconds timeout);

}  // namespace attic
