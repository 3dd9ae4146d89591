// WorkerConfig: every setting of attic-worker, loaded from a YAML file, ATTIC_* environment
// variables and command-line flags with the precedence flag > environment > file > default.
//
//   StatusOr<ConfigResult> loaded = LoadWorkerConfig(argc, argv, Environment());
//   if (!loaded.ok()) { fprintf(stderr, "%s\n", loaded.status().ToString().c_str()); return 2; }
//   if (loaded->exit_now) { fputs(loaded->output.c_str(), stdout); return loaded->exit_code; }
//   ATTIC_LOG(kInfo, "worker") << "configuration:\n" << DescribeConfig(loaded->config);
//
// The table (one dotted key per setting, its flag and variable derived from it) lives in
// worker_config.cc; `attic-worker --help` prints it. Example file:
//
//   name: worker-3
//   control_port: 0
//   model: {preset: llama3-8b, block_size: 32}
//   kv_memory_bytes: 64GiB
//
// Thread safety: LoadWorkerConfig and DescribeConfig are reentrant; WorkerConfig is a value.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common/model_spec.h"
#include "common/status.h"

namespace attic {

// "attic-worker 0.1.0 (protocol 1)".
std::string WorkerVersionLine();

// The model a preset names (model.preset); InvalidArgument listing the presets for another name.
// "attic-ref-54m": L=6, Hq=8, Hkv=2, D=128, bf16, B=64 (the default);
// "llama3-8b": L=32, Hq=32, Hkv=8, D=128, bf16, B=64.
StatusOr<ModelSpec> ModelPreset(const std::string& name);

struct WorkerConfig {
  // Worker name in logs, metrics and the scheduler. Default "attic-worker-" + hostname.
  // 1..128 characters, none of them blank or control.
  std::string name;
  // Data-plane (UCX) listen address, an IP literal.
  std::string listen_address = "0.0.0.0";
  // Data-plane port; 0 = ephemeral.
  uint16_t data_port = 7100;
  // Control-plane (HTTP: /metrics /healthz /readyz) address, an IP literal.
  std::string control_address = "0.0.0.0";
  // Control-plane port; 0 = ephemeral. Must differ from data_port when both are fixed.
  uint16_t control_port = 7180;
  // The preset model.* fields start from (model.preset); each model.* setting overrides one field.
  std::string model_preset = "attic-ref-54m";
  // Validated with ModelSpec::Validate().
  ModelSpec model;
  // Scope of the prefix cache. A loaded config never holds 0: 0 (the default) is replaced by
  // model.Fingerprint().
  uint64_t model_fingerprint = 0;
  // Shared secret clients present in Hello; empty = no authentication. Never printed.
  std::string token;
  // DRAM for the K and V pools together, bytes. [1 MiB, 64 TiB].
  uint64_t kv_memory_bytes = uint64_t{1} << 30;
  // Pre-fault the pools at start (slower start, no page faults on the first requests).
  bool populate = false;
  // Attention compute threads; 0 = one per core. [0, 1024].
  int compute_threads = 0;
  // Requests served at once (each spreads over the compute threads); 0 = min(4, compute
  // threads). Requests of one sequence always run in arrival order. [0, 1024].
  int max_concurrent_requests = 0;
  // Requests waiting at most before admission refuses new ones with RESOURCE_EXHAUSTED; a
  // request whose deadline the queued work would pass is refused as well. [1, 1000000].
  int max_queued_requests = 1024;
  // Largest request or reply payload, bytes. [4 KiB, 16 GiB].
  uint64_t max_message_bytes = uint64_t{1} << 30;
  // Time a draining worker lets in-flight requests finish before it stops, ms. [0, 1 h].
  uint32_t drain_timeout_ms = 10000;
  // Deadline applied to a request that carries none, ms. [1, 1 h].
  uint32_t default_timeout_ms = 10000;
  // How long the data plane's progress thread keeps polling after activity before it sleeps,
  // us (transport::RpcServerOptions::busy_poll_us). 0 = sleep at once: best when the worker's
  // cores are oversubscribed. [0, 100000].
  uint32_t busy_poll_us = 50;
  // How long a compute thread polls for the next batch before it sleeps, us
  // (ThreadPoolOptions::spin_us): a decode step's batch then starts on every core without a
  // wake-up each. 0 = sleep at once (oversubscribed cores). [0, 100000].
  uint32_t compute_spin_us = 0;
  // Retrieval attention (docs/retrieval.md): the index built when a request names none (exact,
  // graph, cluster or quantized), the selection a sparse request gets when it leaves a field
  // unset, contexts answered densely, background build threads, the fold trigger and the
  // per-head dense decision at build.
  struct Retrieval {
    std::string index_kind = "graph";
    int sinks = 4;
    int window = 64;
    int top_k = 100;
    int min_tokens = 1024;
    int fold_tokens = 256;
    int build_threads = 1;
    // The fast index searched while a graph or cluster index is being built ("none": heads run
    // dense until then).
    std::string stand_in = "quantized";
    bool profile_heads = true;
    // Sparse fetch from the SSD tier (docs/retrieval-locality.md): most value blocks one
    // (sequence, layer, KV head) reads per step (0 = no limit), and the preference for
    // resident blocks, in percent of the spread of the top-k scores.
    int fetch_budget = 0;
    int score_slack_pct = 2;
    // Online recall: one sparse head in this many is also searched exactly and its recall@k
    // exported (attic_worker_retrieval_recall); 0 = never.
    int recall_sample_every = 64;
    // The recall@k a sparse head's index must reach on held-out prefill queries at build;
    // below it the head is served by the 4-bit scan, or densely.
    double recall_target = 0.96;
    // Sampled checks of a head pooled before the recall guard acts (raises its search effort;
    // at the largest, the 4-bit scan, then dense); 0 = no guard.
    int recall_guard_checks = 4;
  };
  Retrieval retrieval;
  // The SSD tier (docs/worker.md, "Durability and restart"): the RocksDB directory, created if
  // missing. Empty = DRAM only: nothing survives a restart. With a directory, prefill chunks
  // are durable when acknowledged, decode tokens when their block seals, a restarted worker
  // recovers its sequences and prefix cache from it, and values spill to SSD while keys stay
  // in DRAM.
  std::string data_dir;
  // RocksDB tuning (SsdTierOptions): block cache in MiB [0, 1 TiB], background threads
  // [1, 64], direct I/O, fsync per write (durable across power loss, not only process
  // crashes), and the write size in MiB [1, 128] from which a write skips the WAL and is
  // flushed at once.
  struct Ssd {
    int block_cache_mb = 32;
    int background_threads = 2;
    bool direct_io = true;
    bool sync = false;
    int flush_mb = 1;
    // The tier's capacity, MiB; 0 = no limit but the disk. Past it, prefix entries no open
    // sequence holds are reclaimed least recently used first (docs/kvstore-ssd.md).
    uint64_t capacity_mb = 0;
  };
  Ssd ssd;
  // With the SSD tier: values kept in DRAM, as a fraction (0, 1] of the V pool's blocks
  // (kv_memory_bytes / 2 worth), or in MiB when value_dram_mb is nonzero (then the fraction
  // must be left at its default). 1.0 = spill only when the V pool is full.
  double value_dram_fraction = 1.0;
  uint64_t value_dram_mb = 0;
  // Spilling starts when resident values exceed high * budget and stops at low * budget; both
  // in (0, 1], low < high.
  double spill_high_watermark = 0.9;
  double spill_low_watermark = 0.75;
  // error, warn, info or debug.
  std::string log_level = "info";
  // When set, the worker writes its name and bound ports as JSON to this path once ready.
  std::string ready_file;
  // The scheduler (docs/scheduler.md): its control address "host:port" (empty = none: the
  // worker serves a fixed fleet), the host clients reach this worker's ports at (empty =
  // listen_address, or 127.0.0.1 when that is a wildcard or loopback address), and the
  // heartbeat interval used until the scheduler names one, ms [10, 1 h].
  struct Scheduler {
    std::string address;
    std::string advertise_host;
    uint32_t heartbeat_ms = 500;
  };
  Scheduler scheduler;
};

// The host the scheduler tells clients to reach this worker at: scheduler.advertise_host, else
// listen_address unless it is a wildcard or loopback address, else 127.0.0.1.
std::string AdvertisedHost(const WorkerConfig& config);

struct ConfigResult {
  WorkerConfig config;
  // --help or --version was given: print `output` and exit with `exit_code` instead of serving.
  bool exit_now = false;
  int exit_code = 0;
  std::string output;
  // The YAML file that was read, empty if none.
  std::string config_file;
};

// Loads the configuration. `env` is the environment (see Environment()); argv[0] is the program.
// InvalidArgument naming the setting, its value and its source for anything refused
// ("model.head_dim = 100 (from --model-head-dim): must be a multiple of 32 in [32, 512]"):
// unknown flag or YAML key, value of the wrong type or out of range, a model that fails
// ModelSpec::Validate(), equal fixed data and control ports, spill watermarks with low >= high,
// value_dram_mb together with value_dram_fraction or above the V pool. NotFound when the YAML file named by
// --config or ATTIC_CONFIG cannot be opened.
StatusOr<ConfigResult> LoadWorkerConfig(int argc, const char* const* argv,
                                        const std::map<std::string, std::string>& env);

// "key = value" lines, one per setting, for the startup log. The token is shown as "***"
// (or empty when unset), never in clear.
std::string DescribeConfig(const WorkerConfig& config);

// The process environment as a map, for LoadWorkerConfig.
std::map<std::string, std::string> Environment();

}  // namespace attic
