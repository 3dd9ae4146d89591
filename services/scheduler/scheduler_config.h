// SchedulerConfig: every setting of attic-scheduler, loaded like the worker's (services/config:
// YAML file, ATTIC_* environment variables and flags, precedence flag > environment > file >
// default).
//
//   StatusOr<SchedulerConfigResult> loaded = LoadSchedulerConfig(argc, argv, env);
//   if (loaded->exit_now) { fputs(loaded->output.c_str(), stdout); return loaded->exit_code; }
//   ATTIC_LOG(kInfo, "scheduler") << "configuration:\n" << DescribeConfig(loaded->config);
//
// Example file:
//
//   port: 7170
//   heartbeat_interval_ms: 500
//   dead_after_ms: 3000
//   policy: {min_prefix_blocks: 2, head_shard_min_tokens: 65536}
//
// Thread safety: LoadSchedulerConfig and DescribeConfig are reentrant; the config is a value.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common/status.h"
#include "services/scheduler/placement_policy.h"
#include "services/scheduler/scheduler_state.h"

namespace attic::scheduler {

// "attic-scheduler 0.1.0".
std::string SchedulerVersionLine();

struct SchedulerConfig {
  // Control-plane listen address (IP literal) and port; 0 = ephemeral.
  std::string listen_address = "0.0.0.0";
  uint16_t port = 7170;
  // HTTP threads serving the API and /metrics. [1, 64].
  int threads = 2;
  // Largest request body (a heartbeat carries the prefix summary and the held shards). [1 MiB,
  // 1 GiB].
  uint64_t max_request_bytes = uint64_t{32} << 20;
  // Heartbeat interval sent to the workers, and the silence after which one is dead, ms.
  // dead_after_ms must exceed heartbeat_interval_ms.
  uint32_t heartbeat_interval_ms = 500;
  uint32_t dead_after_ms = 3000;
  // A placed shard its worker never announces is forgotten after this, ms.
  uint32_t sequence_grace_ms = 10000;
  // A dead worker and its sequences are dropped after this, ms.
  uint32_t forget_dead_after_ms = 600000;
  // The placement policy's knobs (DefaultPlacementOptions) and the TTL of the recent
  // placements that prefix affinity uses before heartbeats show a prefix, ms.
  DefaultPlacementOptions policy;
  int headroom_step_pct = 10;
  uint32_t recent_placement_ttl_ms = 10000;
  // error, warn, info or debug.
  std::string log_level = "info";
  // When set, written once the scheduler listens: {"name": "attic-scheduler", "pid": N,
  // "control_port": P} (the shape of the worker's ready file).
  std::string ready_file;

  SchedulerStateOptions StateOptions() const;
  DefaultPlacementOptions PolicyOptions() const;
};

struct SchedulerConfigResult {
  SchedulerConfig config;
  bool exit_now = false;  // --help or --version: print output, exit with exit_code
  int exit_code = 0;
  std::string output;
  std::string config_file;
};

// InvalidArgument naming the setting, its value and its source for anything refused, as
// LoadWorkerConfig does; dead_after_ms not above heartbeat_interval_ms is refused.
StatusOr<SchedulerConfigResult> LoadSchedulerConfig(int argc, const char* const* argv,
                                                    const std::map<std::string, std::string>& env);

// "key = value" lines, one per setting.
std::string DescribeConfig(const SchedulerConfig& config);

}  // namespace attic::scheduler
