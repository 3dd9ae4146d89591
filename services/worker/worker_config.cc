#include "services/worker/worker_config.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <cstdio>
#include <string_view>
#include <utility>
#include <vector>

#include "common/dtype.h"
#include "services/config/settings.h"
#include "transport/frame.h"

namespace attic {
namespace {

constexpr char kProgram[] = "attic-worker";
constexpr char kVersion[] = ATTIC_VERSION;  // the CMake project version
constexpr char kDefaultPreset[] = "attic-ref-54m";
constexpr int64_t kMaxTimeoutMs = 3600 * 1000;
constexpr uint64_t kKiB = uint64_t{1} << 10;
constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kTiB = uint64_t{1} << 40;

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "unknown";
  return buf;
}

Status CheckName(const std::string& name) {
  if (name.empty() || name.size() > 128) return InvalidArgumentError("must be 1 to 128 characters");
  for (const char c : name) {
    if (std::isspace(static_cast<unsigned char>(c)) ||
        std::iscntrl(static_cast<unsigned char>(c))) {
      return InvalidArgumentError("must not contain blanks or control characters");
    }
  }
  return OkStatus();
}

Status CheckIpAddress(const std::string& address) {
  unsigned char buf[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, address.c_str(), buf) == 1 ||
      inet_pton(AF_INET6, address.c_str(), buf) == 1) {
    return OkStatus();
  }
  return InvalidArgumentError("must be an IPv4 or IPv6 address (like 0.0.0.0 or ::1)");
}

// "host:port" or "[v6]:port" with a port in [1, 65535]; empty is allowed (no scheduler).
Status CheckHostPort(const std::string& value) {
  if (value.empty()) return OkStatus();
  const size_t colon = value.rfind(':');
  const std::string_view port =
      colon == std::string::npos ? std::string_view() : std::string_view(value).substr(colon + 1);
  int n = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
  if (colon == 0 || colon == std::string::npos || ec != std::errc() ||
      end != port.data() + port.size() || n < 1 || n > 65535) {
    return InvalidArgumentError("must be host:port (like 10.0.0.2:7170) or empty");
  }
  return OkStatus();
}

Status CheckNonEmpty(const std::string& value) {
  return value.empty() ? InvalidArgumentError("must not be empty") : OkStatus();
}

config::Setting PresetSetting(WorkerConfig* c) {
  config::Setting s{.key = "model.preset",
                    .value_name = "attic-ref-54m|llama3-8b",
                    .help =
                        "Model the model.* settings start from; each model.* setting "
                        "overrides one field of it, whatever its source."};
  s.set = [c](std::string_view text) -> Status {
    ASSIGN_OR_RETURN(c->model, ModelPreset(std::string(text)));
    c->model_preset = std::string(text);
    return OkStatus();
  };
  s.show = [c] { return c->model_preset; };
  return s;
}

config::Setting DTypeSetting(DType* field) {
  config::Setting s{.key = "model.dtype",
                    .value_name = "bf16|fp16|fp32",
                    .help = "Storage dtype of K and V in the pools and on the wire."};
  s.set = [field](std::string_view text) -> Status {
    const std::optional<DType> t = ParseDType(text);
    if (!t) return InvalidArgumentError("must be one of bf16, fp16, fp32");
    *field = *t;
    return OkStatus();
  };
  s.show = [field] { return std::string(DTypeName(*field)); };
  return s;
}

config::Setting FingerprintSetting(uint64_t* field) {
  config::Setting s{.key = "model_fingerprint",
                    .value_name = "N",
                    .help =
                        "Scope of the prefix cache (decimal or 0x-hex, 64 bits); 0 = the "
                        "model spec's fingerprint."};
  s.set = [field](std::string_view text) -> Status {
    const bool hex = text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
    if (hex) text.remove_prefix(2);
    uint64_t v = 0;
    const auto [end, ec] =
        std::from_chars(text.data(), text.data() + text.size(), v, hex ? 16 : 10);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
      return InvalidArgumentError("must be a 64-bit unsigned integer (decimal or 0x-hex)");
    }
    *field = v;
    return OkStatus();
  };
  s.show = [field] {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "0x%016llx", static_cast<unsigned long long>(*field));
    return *field == 0 ? std::string("0") : std::string(buf);
  };
  return s;
}

// A fraction in (0, 1], for a double field.
config::Setting FractionSetting(std::string key, double* field, std::string help) {
  config::Setting s{.key = std::move(key), .value_name = "X", .help = std::move(help)};
  s.set = [field](std::string_view text) -> Status {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
      text.remove_prefix(1);
    }
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
      text.remove_suffix(1);
    }
    double v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || !(v > 0.0) ||
        v > 1.0) {
      return InvalidArgumentError("must be a number in (0, 1]");
    }
    *field = v;
    return OkStatus();
  };
  s.show = [field] {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", *field);
    return std::string(buf);
  };
  return s;
}

// The SSD tier's settings (after the retrieval ones in the table).
std::vector<config::Setting> SsdSettings(WorkerConfig* c) {
  using config::IntSetting;
  return {
      config::StringSetting("data_dir", &c->data_dir,
                            "RocksDB directory of the SSD tier (created if missing); empty = "
                            "DRAM only, nothing survives a restart."),
      IntSetting("ssd.block_cache_mb", &c->ssd.block_cache_mb, 0, 1 << 20,
                 "RocksDB block cache (indexes, filters, small records), MiB"),
      IntSetting("ssd.background_threads", &c->ssd.background_threads, 1, 64,
                 "RocksDB flush and compaction threads"),
      config::BoolSetting("ssd.direct_io", &c->ssd.direct_io,
                          "Direct I/O for block reads and flushes (buffered if the file system "
                          "refuses it)."),
      config::BoolSetting("ssd.sync", &c->ssd.sync,
                          "fsync every write: durable across power loss, not only crashes."),
      IntSetting("ssd.flush_mb", &c->ssd.flush_mb, 1, 128,
                 "Writes of at least this many MiB skip the WAL and are flushed at once"),
      IntSetting("ssd.capacity_mb", &c->ssd.capacity_mb, 0, int64_t{1} << 32,
                 "SSD tier capacity, MiB; past it unpinned prefix entries are reclaimed, "
                 "least recently used first; 0 = no limit but the disk"),
      FractionSetting("value_dram_fraction", &c->value_dram_fraction,
                      "With the SSD tier: fraction of the V pool's blocks whose values stay in "
                      "DRAM; 1 = spill only when the pool is full."),
      IntSetting("value_dram_mb", &c->value_dram_mb, 0, int64_t{1} << 26,
                 "With the SSD tier: values kept in DRAM, MiB; 0 = use value_dram_fraction"),
      FractionSetting("spill_high_watermark", &c->spill_high_watermark,
                      "Spilling starts above this fraction of the values' DRAM budget."),
      FractionSetting("spill_low_watermark", &c->spill_low_watermark,
                      "Spilling stops at this fraction of the values' DRAM budget (below "
                      "spill_high_watermark)."),
  };
}

// Identity, addresses, model, memory, threads, timeouts and retrieval. Order matters:
// model.preset precedes the model.* fields it provides defaults for.
std::vector<config::Setting> ServingSettings(WorkerConfig* c) {
  using config::IntSetting;
  using config::SizeSetting;
  using config::StringSetting;
  ModelSpec* m = &c->model;
  return {
      StringSetting("name", &c->name, "Worker name in logs, metrics and the scheduler.", CheckName),
      StringSetting("listen_address", &c->listen_address, "Data-plane (UCX) listen address.",
                    CheckIpAddress),
      IntSetting("data_port", &c->data_port, 0, 65535, "Data-plane port; 0 = ephemeral"),
      StringSetting("control_address", &c->control_address,
                    "Control-plane HTTP address (/metrics, /healthz, /readyz).", CheckIpAddress),
      IntSetting("control_port", &c->control_port, 0, 65535, "Control-plane port; 0 = ephemeral"),
      PresetSetting(c),
      StringSetting("model.name", &m->name, "Model name (scopes the prefix cache).", CheckNonEmpty),
      IntSetting("model.num_layers", &m->num_layers, 1, 4096, "Transformer layers L"),
      IntSetting("model.num_q_heads", &m->num_q_heads, 1, 131072,
                 "Query heads Hq, a multiple of num_kv_heads, at most 128 per KV head"),
      IntSetting("model.num_kv_heads", &m->num_kv_heads, 1, 1024, "KV heads Hkv"),
      IntSetting("model.head_dim", &m->head_dim, 32, 512, "Head dimension D", 32),
      DTypeSetting(&m->dtype),
      IntSetting("model.block_size", &m->block_size, 16, 1024, "Tokens per KV block B", 16),
      config::FloatSetting("model.softmax_scale", &m->softmax_scale, 0.0, 1e6,
                           "Softmax scale; 0 = 1/sqrt(head_dim)."),
      FingerprintSetting(&c->model_fingerprint),
      config::SecretSetting("token", &c->token,
                            "Shared secret clients present in Hello; empty = none. Never printed."),
      SizeSetting("kv_memory_bytes", &c->kv_memory_bytes, kMiB, 64 * kTiB,
                  "DRAM for the K and V pools together, like 512MiB, 4GiB, 1g"),
      config::BoolSetting("populate", &c->populate, "Pre-fault the pools at start."),
      IntSetting("compute_threads", &c->compute_threads, 0, 1024,
                 "Attention compute threads; 0 = one per core"),
      IntSetting("max_concurrent_requests", &c->max_concurrent_requests, 0, 1024,
                 "Requests served at once; 0 = min(4, compute threads)"),
      IntSetting("max_queued_requests", &c->max_queued_requests, 1, 1000000,
                 "Requests waiting at most; more are refused with RESOURCE_EXHAUSTED"),
      SizeSetting("max_message_bytes", &c->max_message_bytes, 4 * kKiB, 16 * kGiB,
                  "Largest request or reply payload"),
      IntSetting("drain_timeout_ms", &c->drain_timeout_ms, 0, kMaxTimeoutMs,
                 "Time a draining worker lets in-flight requests finish, ms"),
      IntSetting("default_timeout_ms", &c->default_timeout_ms, 1, kMaxTimeoutMs,
                 "Deadline of a request that carries none, ms"),
      IntSetting("busy_poll_us", &c->busy_poll_us, 0, 100000,
                 "Data-plane polling after activity before sleeping, us; 0 = sleep at once "
                 "(oversubscribed cores)"),
      IntSetting("compute_spin_us", &c->compute_spin_us, 0, 100000,
                 "Compute threads poll for the next batch this long before sleeping, us; 0 = "
                 "sleep at once (oversubscribed cores)"),
      config::ChoiceSetting("retrieval.index_kind", &c->retrieval.index_kind,
                            {"exact", "graph", "cluster", "quantized"},
                            "Retrieval index a sparse request gets when it names none."),
      IntSetting("retrieval.sinks", &c->retrieval.sinks, 0, 1 << 20,
                 "First tokens every sparse selection attends to"),
      IntSetting("retrieval.window", &c->retrieval.window, 0, 1 << 20,
                 "Last tokens every sparse selection attends to"),
      IntSetting("retrieval.top_k", &c->retrieval.top_k, 0, 1 << 20,
                 "Tokens retrieved per KV head and step"),
      IntSetting("retrieval.min_tokens", &c->retrieval.min_tokens, 0, 1 << 30,
                 "Contexts shorter than this are answered densely"),
      IntSetting("retrieval.fold_tokens", &c->retrieval.fold_tokens, 1, 1 << 20,
                 "Decode keys past an index's end that trigger folding them in"),
      IntSetting("retrieval.build_threads", &c->retrieval.build_threads, 1, 1024,
                 "Threads that build and fold indexes (below the compute pool's priority)"),
      config::ChoiceSetting("retrieval.stand_in", &c->retrieval.stand_in,
                            {"quantized", "cluster", "none"},
                            "Fast index a sparse head searches while its graph or cluster index "
                            "is being built; none = dense until then."),
      config::BoolSetting("retrieval.profile_heads", &c->retrieval.profile_heads,
                          "Decide per (layer, head) at build whether attention is diffuse "
                          "(then answered densely)."),
      IntSetting("retrieval.fetch_budget", &c->retrieval.fetch_budget, 0, 1 << 20,
                 "With values on SSD: most value blocks a sparse step reads per KV head; "
                 "0 = no limit"),
      IntSetting("retrieval.score_slack_pct", &c->retrieval.score_slack_pct, 0, 1000,
                 "With values on SSD: preference for tokens whose values are in DRAM, in "
                 "percent of the spread of the top-k scores; 0 = none"),
      IntSetting("retrieval.recall_sample_every", &c->retrieval.recall_sample_every, 0,
                 1 << 30,
                 "Online recall: one sparse head in this many is also searched exactly "
                 "(recall@k exported); 0 = never"),
      FractionSetting("retrieval.recall_target", &c->retrieval.recall_target,
                      "Recall@k a sparse head's index must reach on held-out prefill queries "
                      "at build; a graph below it is replaced by the 4-bit scan, a scan below "
                      "it by dense attention"),
      IntSetting("retrieval.recall_guard_checks", &c->retrieval.recall_guard_checks, 0, 1 << 20,
                 "Sampled recall checks of a head pooled before the recall guard acts: below "
                 "recall_target its search effort is raised by half; at the largest beam the "
                 "graph is replaced by the 4-bit scan, and a scan below it goes dense; 0 = no "
                 "guard"),
  };
}

// The table: serving, SSD tier, logging.
std::vector<config::Setting> WorkerSettings(WorkerConfig* c) {
  std::vector<config::Setting> table = ServingSettings(c);
  for (config::Setting& s : SsdSettings(c)) table.push_back(std::move(s));
  table.push_back(config::ChoiceSetting("log_level", &c->log_level,
                                        {"error", "warn", "info", "debug"},
                                        "Least severe level logged."));
  table.push_back(config::StringSetting(
      "ready_file", &c->ready_file,
      "When set, the worker writes its name and bound ports as JSON here once ready."));
  table.push_back(config::StringSetting(
      "scheduler.address", &c->scheduler.address,
      "The scheduler's control address host:port; empty = no scheduler (a fixed fleet).",
      CheckHostPort));
  table.push_back(config::StringSetting(
      "scheduler.advertise_host", &c->scheduler.advertise_host,
      "Host clients reach this worker at; empty = listen_address, or 127.0.0.1 for a wildcard "
      "or loopback one."));
  table.push_back(config::IntSetting("scheduler.heartbeat_ms", &c->scheduler.heartbeat_ms, 10,
                                     kMaxTimeoutMs,
                                     "Heartbeat interval until the scheduler names one, ms"));
  return table;
}

WorkerConfig Defaults() {
  WorkerConfig c;
  c.name = std::string(kProgram) + "-" + Hostname();
  c.model = *ModelPreset(kDefaultPreset);
  c.model_preset = kDefaultPreset;
  return c;
}

std::string Fraction(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

// The SSD tier's checks that span settings.
Status CheckSsdFields(const WorkerConfig& c, const config::LoadResult& loaded) {
  if (c.spill_low_watermark >= c.spill_high_watermark) {
    return InvalidArgumentError(
        "spill_low_watermark = " + Fraction(c.spill_low_watermark) + " (" +
        loaded.OriginOf("spill_low_watermark").Describe() + "): must be below " +
        "spill_high_watermark = " + Fraction(c.spill_high_watermark) + " (" +
        loaded.OriginOf("spill_high_watermark").Describe() + ")");
  }
  if (c.value_dram_mb == 0) return OkStatus();
  const std::string mb = "value_dram_mb = " + std::to_string(c.value_dram_mb) + " (" +
                         loaded.OriginOf("value_dram_mb").Describe() + ")";
  if (loaded.OriginOf("value_dram_fraction").source != config::Source::kDefault) {
    return InvalidArgumentError(mb + ": set either it or value_dram_fraction (" +
                                loaded.OriginOf("value_dram_fraction").Describe() + ")");
  }
  if (c.value_dram_mb * kMiB > c.kv_memory_bytes / 2) {
    return InvalidArgumentError(mb + ": exceeds the V pool, half of kv_memory_bytes = " +
                                config::FormatSize(c.kv_memory_bytes) + " (" +
                                loaded.OriginOf("kv_memory_bytes").Describe() + ")");
  }
  return OkStatus();
}

// Checks that span several settings, naming each one's source.
Status CheckCrossFields(const WorkerConfig& c, const config::LoadResult& loaded) {
  const Status model = c.model.Validate();
  if (!model.ok()) {
    std::string sources;
    for (const char* key : {"model.preset", "model.num_q_heads", "model.num_kv_heads"}) {
      sources +=
          std::string(sources.empty() ? "" : ", ") + key + " " + loaded.OriginOf(key).Describe();
    }
    return InvalidArgumentError(std::string(model.message()) + " (" + sources + ")");
  }
  if (c.data_port != 0 && c.data_port == c.control_port) {
    return InvalidArgumentError("control_port = " + std::to_string(c.control_port) + " (" +
                                loaded.OriginOf("control_port").Describe() +
                                "): equals data_port (" + loaded.OriginOf("data_port").Describe() +
                                ")");
  }
  return CheckSsdFields(c, loaded);
}

}  // namespace

std::string WorkerVersionLine() {
  return std::string(kProgram) + " " + kVersion + " (protocol " +
         std::to_string(transport::kProtocolVersion) + ")";
}

StatusOr<ModelSpec> ModelPreset(const std::string& name) {
  if (name == "attic-ref-54m") {
    return ModelSpec{.name = name,
                     .num_layers = 6,
                     .num_q_heads = 8,
                     .num_kv_heads = 2,
                     .head_dim = 128,
                     .dtype = DType::kBFloat16,
                     .block_size = 64};
  }
  if (name == "llama3-8b") {
    return ModelSpec{.name = name,
                     .num_layers = 32,
                     .num_q_heads = 32,
                     .num_kv_heads = 8,
                     .head_dim = 128,
                     .dtype = DType::kBFloat16,
                     .block_size = 64};
  }
  return InvalidArgumentError("must be one of attic-ref-54m, llama3-8b");
}

StatusOr<ConfigResult> LoadWorkerConfig(int argc, const char* const* argv,
                                        const std::map<std::string, std::string>& env) {
  ConfigResult result;
  result.config = Defaults();
  const std::vector<config::Setting> table = WorkerSettings(&result.config);
  const config::ProgramInfo program{
      .name = kProgram,
      .version_line = WorkerVersionLine(),
      .summary = "Attention worker: holds KV caches in DRAM and answers attention requests."};
  ASSIGN_OR_RETURN(config::LoadResult loaded,
                   config::LoadSettings(table, program, argc, argv, env));
  result.exit_now = loaded.exit_now;
  result.exit_code = loaded.exit_code;
  result.output = std::move(loaded.output);
  result.config_file = loaded.config_file;
  if (result.exit_now) return result;
  RETURN_IF_ERROR(CheckCrossFields(result.config, loaded));
  if (result.config.model_fingerprint == 0) {
    result.config.model_fingerprint = result.config.model.Fingerprint();
  }
  return result;
}

std::string DescribeConfig(const WorkerConfig& config) {
  WorkerConfig copy = config;
  return config::DescribeSettings(WorkerSettings(&copy));
}

std::map<std::string, std::string> Environment() { return config::EnvironmentMap(); }

std::string AdvertisedHost(const WorkerConfig& config) {
  if (!config.scheduler.advertise_host.empty()) return config.scheduler.advertise_host;
  const std::string& a = config.listen_address;
  const bool wildcard = a == "0.0.0.0" || a == "::" || a == "::1" || a.rfind("127.", 0) == 0;
  return wildcard ? "127.0.0.1" : a;
}

}  // namespace attic
