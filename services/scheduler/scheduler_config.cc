#include "services/scheduler/scheduler_config.h"

#include <arpa/inet.h>

#include <vector>

#include "services/config/settings.h"

namespace attic::scheduler {
namespace {

constexpr char kProgram[] = "attic-scheduler";
constexpr int64_t kHourMs = 3600 * 1000;

Status CheckIpAddress(const std::string& address) {
  unsigned char buf[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, address.c_str(), buf) == 1 ||
      inet_pton(AF_INET6, address.c_str(), buf) == 1) {
    return OkStatus();
  }
  return InvalidArgumentError("must be an IPv4 or IPv6 address (like 0.0.0.0 or ::1)");
}

std::vector<config::Setting> Settings(SchedulerConfig* c) {
  using config::IntSetting;
  DefaultPlacementOptions* p = &c->policy;
  return {
      config::StringSetting("listen_address", &c->listen_address,
                            "Control-plane HTTP address (API, /metrics, /healthz, /readyz).",
                            CheckIpAddress),
      IntSetting("port", &c->port, 0, 65535, "Control-plane port; 0 = ephemeral"),
      IntSetting("threads", &c->threads, 1, 64, "HTTP threads"),
      config::SizeSetting("max_request_bytes", &c->max_request_bytes, uint64_t{1} << 20,
                          uint64_t{1} << 30, "Largest request body (heartbeats carry summaries)"),
      IntSetting("heartbeat_interval_ms", &c->heartbeat_interval_ms, 10, kHourMs,
                 "Heartbeat interval the workers are told, ms"),
      IntSetting("dead_after_ms", &c->dead_after_ms, 20, kHourMs,
                 "A worker silent this long is dead, ms (above heartbeat_interval_ms)"),
      IntSetting("sequence_grace_ms", &c->sequence_grace_ms, 1, kHourMs,
                 "A placed sequence its worker never announces is forgotten after this, ms"),
      IntSetting("forget_dead_after_ms", &c->forget_dead_after_ms, 1, 24 * kHourMs,
                 "A dead worker and its sequences are dropped after this, ms"),
      IntSetting("policy.min_prefix_blocks", &p->min_prefix_blocks, 1, 1 << 20,
                 "Shortest leading run of cached prompt blocks that makes a worker affine"),
      IntSetting("policy.affinity_max_queue_gap", &p->affinity_max_queue_gap, 0, 1 << 20,
                 "Affinity yields when the affine worker's queue exceeds the shortest by more"),
      IntSetting("policy.head_shard_min_tokens", &p->head_shard_min_tokens, 0, int64_t{1} << 40,
                 "Sequences expecting this many tokens split their KV heads over workers; "
                 "0 = never"),
      IntSetting("policy.head_shard_workers", &p->head_shard_workers, 1, 1024,
                 "Most workers one head-sharded sequence spans"),
      IntSetting("policy.headroom_step_pct", &c->headroom_step_pct, 1, 100,
                 "Room is compared in steps of this percentage of capacity before load decides"),
      IntSetting("policy.recent_placement_ttl_ms", &c->recent_placement_ttl_ms, 0, kHourMs,
                 "How long a placed prompt counts for prefix affinity before heartbeats show it"),
      config::ChoiceSetting("log_level", &c->log_level, {"error", "warn", "info", "debug"},
                            "Least severe level logged."),
      config::StringSetting("ready_file", &c->ready_file,
                            "When set, the scheduler writes its pid and port as JSON here once "
                            "it listens."),
  };
}

}  // namespace

std::string SchedulerVersionLine() { return std::string(kProgram) + " " + ATTIC_VERSION; }

SchedulerStateOptions SchedulerConfig::StateOptions() const {
  using std::chrono::milliseconds;
  return {.heartbeat_interval = milliseconds(heartbeat_interval_ms),
          .dead_after = milliseconds(dead_after_ms),
          .sequence_grace = milliseconds(sequence_grace_ms),
          .forget_dead_after = milliseconds(forget_dead_after_ms),
          .recent_placement_ttl = milliseconds(recent_placement_ttl_ms)};
}

DefaultPlacementOptions SchedulerConfig::PolicyOptions() const {
  DefaultPlacementOptions o = policy;
  o.headroom_step = headroom_step_pct / 100.0;
  return o;
}

StatusOr<SchedulerConfigResult> LoadSchedulerConfig(int argc, const char* const* argv,
                                                    const std::map<std::string, std::string>& env) {
  SchedulerConfigResult result;
  const std::vector<config::Setting> table = Settings(&result.config);
  const config::ProgramInfo program{
      .name = kProgram,
      .version_line = SchedulerVersionLine(),
      .summary =
          "Scheduler: workers register and heartbeat; clients ask it where to place a "
          "sequence and where one lives. Soft state only."};
  ASSIGN_OR_RETURN(config::LoadResult loaded,
                   config::LoadSettings(table, program, argc, argv, env));
  result.exit_now = loaded.exit_now;
  result.exit_code = loaded.exit_code;
  result.output = std::move(loaded.output);
  result.config_file = loaded.config_file;
  if (result.exit_now) return result;
  const SchedulerConfig& c = result.config;
  if (c.dead_after_ms <= c.heartbeat_interval_ms) {
    return InvalidArgumentError(
        "dead_after_ms = " + std::to_string(c.dead_after_ms) + " (" +
        loaded.OriginOf("dead_after_ms").Describe() +
        "): must exceed heartbeat_interval_ms = " + std::to_string(c.heartbeat_interval_ms) + " (" +
        loaded.OriginOf("heartbeat_interval_ms").Describe() + ")");
  }
  return result;
}

std::string DescribeConfig(const SchedulerConfig& config) {
  SchedulerConfig copy = config;
  return config::DescribeSettings(Settings(&copy));
}

}  // namespace attic::scheduler
