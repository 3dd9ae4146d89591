// LocalFleet: an Attic fleet on one machine — an attic-scheduler and N attic-workers as child
// processes on loopback, each worker with its own data directory (SSD tier) — for the quick
// start (`./attic up`, `./attic replay`), tests and benchmarks.
//
//   LocalFleet fleet({.workers = 2, .base_port = 7300, .dir = "/tmp/attic-fleet"});
//   RETURN_IF_ERROR(fleet.Start(std::chrono::seconds(60)));  // waits for every worker's
//                                                            // registration with the scheduler
//   client_options.scheduler = fleet.scheduler_address();
//   std::cout << fleet.StateJson();
//   fleet.Stop();                                             // SIGTERM, then SIGKILL late ones
//
// Ports: with base_port P the scheduler listens on P and worker i on data port P + 1 + 2i and
// control port P + 2 + 2i; base_port 0 takes ephemeral ports.
// Thread safety: not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "services/loadgen/worker_process.h"

namespace attic::fleet {

struct LocalFleetOptions {
  int workers = 2;
  uint16_t base_port = 0;
  // Root folder: <dir>/scheduler.log, <dir>/worker-<i>/{data/, worker-<i>.log}. Empty = a
  // fresh temp folder, removed by Stop() unless keep_dir.
  std::string dir;
  bool keep_dir = false;
  std::string scheduler_binary;  // empty = next to the running executable
  std::string worker_binary;
  // Extra flags of every worker (model, memory, threads) and of the scheduler.
  std::vector<std::string> worker_args;
  std::vector<std::string> scheduler_args;
  // Workers without an SSD tier (no --data-dir).
  bool dram_only = false;
};

struct FleetWorkerAddresses {
  std::string name;
  std::string data;     // host:port (UCX)
  std::string control;  // host:port (HTTP: /metrics, /healthz, /readyz)
  std::string metrics;  // http://host:port/metrics
  std::string dir;      // its data directory
};

class LocalFleet {
 public:
  explicit LocalFleet(LocalFleetOptions options);
  // Stops whatever still runs.
  ~LocalFleet();
  LocalFleet(const LocalFleet&) = delete;
  LocalFleet& operator=(const LocalFleet&) = delete;

  // Starts the scheduler, then the workers (told the scheduler's address), and waits until the
  // scheduler lists every worker alive and ready. UNAVAILABLE naming the process (with the end
  // of its log) when one exits or the timeout passes; everything started is stopped again.
  Status Start(std::chrono::milliseconds timeout);
  // SIGTERM to every process (workers first), waiting up to `grace` for each, then SIGKILL.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

  std::string scheduler_address() const;
  const std::vector<FleetWorkerAddresses>& workers() const { return addresses_; }
  const std::string& dir() const { return dir_; }
  // {"scheduler": "host:port", "workers": [{"name", "data", "control", "metrics", "dir"}, ...]}
  std::string StateJson() const;

  // The processes, for tests that kill and restart them.
  loadgen::WorkerProcess& scheduler_process() { return *scheduler_; }
  loadgen::WorkerProcess& worker_process(int i) { return *workers_[static_cast<size_t>(i)]; }

 private:
  Status WaitRegistered(std::chrono::steady_clock::time_point deadline);

  LocalFleetOptions options_;
  std::string dir_;
  bool own_dir_ = false;
  std::unique_ptr<loadgen::WorkerProcess> scheduler_;
  std::vector<std::unique_ptr<loadgen::WorkerProcess>> workers_;
  std::vector<FleetWorkerAddresses> addresses_;
};

}  // namespace attic::fleet
