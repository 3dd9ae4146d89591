// attic-bench-replay: the whole system under a real production trace. A local fleet (an
// attic-scheduler and W attic-workers on loopback) replays the Mooncake conversation trace with
// the attic-ref-54m model at increasing speed-ups, a fresh fleet per run, until the p99 decode
// step latency passes the SLO or requests fail; the highest speed-up that held is the
// sustained rate.
//
// Rows: per speed-up the completed request rate, decode tokens/s and p99 step latency; then
//   sustained_request_rate      requests/s at the highest speed-up within the SLO
//   decode_tokens_per_s_per_core  at that speed-up, per worker compute thread
//   attention_read_bandwidth    KV bytes the workers' Attend read per second of decode step,
//                               against the DRAM read bandwidth of as many threads (measured here)
//   prefix_hit_ratio            prompt tokens served from the prefix cache, against the trace's
//                               ideal (every block whose hash chain appeared earlier, unbounded
//                               cache)
//
// Each attention policy (--attention, default dense,auto) runs the same sweep on the same
// trace; a table prints them side by side per speed-up: throughput, step latency, the share
// of heads answered sparse, keys touched, bytes read against a dense pass, online recall.
//
//   attic-bench-replay [--trace FILE] [--requests N] [--speedups 0.5,1,2,4,8,16] [--slo-ms 200]
//                      [--layers N] [--workers 2] [--worker-memory BYTES]
//                      [--attention dense,auto] [--json FILE]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "attention_workers/thread_pool.h"
#include "bench/bench_report.h"
#include "bench/memory_bandwidth.h"
#include "common/hash.h"
#include "services/fleet/local_fleet.h"
#include "services/loadgen/worker_process.h"
#include "services/replay/replay_driver.h"
#include "services/replay/report.h"
#include "services/replay/synthetic.h"
#include "services/replay/trace.h"
#include "services/worker/worker_config.h"

namespace attic::bench {
namespace {

struct Flags {
  std::string trace;
  int requests = 100;
  std::vector<double> speedups = {0.5, 1, 2, 4, 8, 16};
  double slo_ms = 200;
  int layers = 2;
  int workers = 2;
  std::string worker_memory = "3GiB";
  int worker_threads = 1;
  std::vector<replay::AttentionPolicy> attention = {replay::AttentionPolicy::kDense,
                                                    replay::AttentionPolicy::kAuto};
  std::string json;
};

[[noreturn]] void Usage(const std::string& error) {
  std::fprintf(stderr,
               "attic-bench-replay: %s\nusage: attic-bench-replay [--trace FILE] [--requests N] "
               "[--speedups X,Y,...] [--slo-ms MS] [--layers N] [--workers N] "
               "[--worker-memory BYTES] [--worker-threads N] [--attention dense,auto,retrieval] "
               "[--json FILE]\n",
               error.c_str());
  std::exit(2);
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--trace") f.trace = next();
    else if (a == "--requests") f.requests = std::atoi(next().c_str());
    else if (a == "--slo-ms") f.slo_ms = std::atof(next().c_str());
    else if (a == "--layers") f.layers = std::atoi(next().c_str());
    else if (a == "--workers") f.workers = std::atoi(next().c_str());
    else if (a == "--worker-memory") f.worker_memory = next();
    else if (a == "--worker-threads") f.worker_threads = std::atoi(next().c_str());
    else if (a == "--json") f.json = next();
    else if (a == "--attention") {
      f.attention.clear();
      std::stringstream s(next());
      for (std::string x; std::getline(s, x, ',');) {
        if (x == "dense") f.attention.push_back(replay::AttentionPolicy::kDense);
        else if (x == "auto") f.attention.push_back(replay::AttentionPolicy::kAuto);
        else if (x == "retrieval") f.attention.push_back(replay::AttentionPolicy::kRetrieval);
        else Usage("--attention takes dense, auto and retrieval, not '" + x + "'");
      }
    }
    else if (a == "--speedups") {
      f.speedups.clear();
      std::stringstream s(next());
      for (std::string x; std::getline(s, x, ',');) f.speedups.push_back(std::atof(x.c_str()));
    } else if (a == "-h" || a == "--help") {
      Usage("help");
    } else {
      Usage("unknown flag " + a);
    }
  }
  if (f.requests < 1 || f.layers < 1 || f.workers < 1 || f.worker_threads < 1 ||
      f.speedups.empty() || f.attention.empty() || !(f.slo_ms > 0)) {
    Usage("bad value");
  }
  for (double x : f.speedups) {
    if (!(x > 0)) Usage("speed-ups must be > 0");
  }
  return f;
}

// The full trace under ../shared when present, else the slice the project carries.
std::string DefaultTrace() {
  if (const char* shared = std::getenv("ATTIC_SHARED_DIR")) {
    const std::string p = std::string(shared) + "/data/traces/mooncake_conversation.jsonl";
    if (std::filesystem::exists(p)) return p;
  }
  const std::filesystem::path bin = loadgen::SiblingBinary("attic-bench-replay");
  // build/<preset>/bin/ -> the repository root.
  const std::filesystem::path root = bin.parent_path().parent_path().parent_path().parent_path();
  return (root / "data/traces/mooncake_conversation_head1000.jsonl").string();
}

// Prompt tokens an unbounded prefix cache would serve: every full block whose chained hash an
// earlier request of the slice already had.
double IdealPrefixHitRatio(const replay::Trace& trace, int block_tokens) {
  std::unordered_set<uint64_t> seen;
  double hit = 0, total = 0;
  for (const replay::TraceRequest& r : trace.requests) {
    const replay::PromptHashes h = replay::PromptBlockHashes(
        r.hash_ids, r.input_tokens, block_tokens, static_cast<uint64_t>(r.index) + 1, 1);
    size_t matched = 0;
    while (matched < h.blocks.size() && seen.count(h.blocks[matched]) != 0) ++matched;
    for (uint64_t b : h.blocks) seen.insert(b);
    hit += static_cast<double>(matched) * block_tokens;
    total += static_cast<double>(r.input_tokens);
  }
  return total > 0 ? hit / total : 0.0;
}

struct RunResult {
  replay::AttentionPolicy policy = replay::AttentionPolicy::kDense;
  double speedup = 0;
  replay::ReplaySummary summary;
  replay::AttentionTotals attention;
  double attention_gbps = 0;
  bool within_slo = false;
};

// One replay of the trace at one speed-up and policy, on a fresh local fleet.
StatusOr<RunResult> RunOnce(const Flags& flags, const ModelSpec& spec, const replay::Trace& trace,
                            replay::AttentionPolicy policy, double speedup, uint64_t seed) {
  fleet::LocalFleetOptions o{.workers = flags.workers};
  o.worker_args = loadgen::WorkerModelArgs(spec);
  o.worker_args.insert(o.worker_args.end(),
                       {"--kv-memory-bytes", flags.worker_memory, "--compute-threads",
                        std::to_string(flags.worker_threads)});
  fleet::LocalFleet fleet(o);
  RETURN_IF_ERROR(fleet.Start(std::chrono::seconds(120)));
  replay::DriverOptions d{.spec = spec,
                          .model_name = "attic-ref-54m",
                          .scheduler = fleet.scheduler_address(),
                          .speedup = speedup,
                          .seed = seed,
                          .attention = policy,
                          .progress = false};
  StatusOr<replay::ReplayReport> r = replay::ReplayDriver(d, trace).Run();
  fleet.Stop();
  RETURN_IF_ERROR(r.status());
  RunResult run{.policy = policy, .speedup = speedup, .summary = replay::Summarize(*r),
                .attention = r->attention};
  double busy_s = 0;
  for (float ms : r->step_latency_ms) busy_s += ms / 1000.0;
  run.attention_gbps = busy_s > 0 ? static_cast<double>(r->attend_bytes_read) / busy_s / 1e9 : 0;
  run.within_slo =
      run.summary.requests_failed == 0 && run.summary.step_latency_ms.p99 <= flags.slo_ms;
  return run;
}

// Per speed-up, one column per policy.
void PrintSideBySide(const Flags& flags, const std::vector<std::vector<RunResult>>& by_policy) {
  std::printf("\nside by side (%s)\n", by_policy.size() > 1 ? "same trace, seeds, fleet" : "");
  std::printf("%-8s %-28s", "speed-up", "figure");
  for (replay::AttentionPolicy p : flags.attention) {
    std::printf(" %14s", std::string(replay::AttentionPolicyName(p)).c_str());
  }
  std::printf("\n");
  for (const double x : flags.speedups) {
    std::vector<const RunResult*> col;
    bool any = false;
    for (const auto& runs : by_policy) {
      const RunResult* found = nullptr;
      for (const RunResult& r : runs) {
        if (r.speedup == x) found = &r;
      }
      col.push_back(found);
      any = any || found != nullptr;
    }
    if (!any) continue;
    auto row = [&](const char* figure, auto value) {
      std::printf("%-8g %-28s", x, figure);
      for (const RunResult* r : col) {
        if (r == nullptr) {
          std::printf(" %14s", "-");
        } else {
          std::printf(" %14s", value(*r).c_str());
        }
      }
      std::printf("\n");
    };
    auto num = [](double v, const char* f) {
      char b[32];
      std::snprintf(b, sizeof(b), f, v);
      return std::string(b);
    };
    row("completed / admitted", [](const RunResult& r) {
      return std::to_string(r.summary.requests_completed) + "/" +
             std::to_string(r.summary.requests_admitted);
    });
    row("decode tokens/s", [&](const RunResult& r) {
      return num(r.summary.decode_tokens_per_s, "%.0f");
    });
    row("step p50 / p99 (ms)", [&](const RunResult& r) {
      return num(r.summary.step_latency_ms.p50, "%.0f") + " / " +
             num(r.summary.step_latency_ms.p99, "%.0f");
    });
    row("TTFT p50 (ms)", [&](const RunResult& r) { return num(r.summary.ttft_ms.p50, "%.0f"); });
    row("heads sparse", [&](const RunResult& r) {
      return num(100.0 * r.attention.sparse_fraction(), "%.1f %%");
    });
    row("keys touched", [&](const RunResult& r) {
      return num(100.0 * r.attention.keys_touched_fraction(), "%.1f %%");
    });
    row("bytes of a dense pass", [&](const RunResult& r) {
      return num(100.0 * r.attention.bytes_fraction(), "%.1f %%");
    });
    row("online recall@k", [&](const RunResult& r) {
      return r.attention.recall_exact > 0
                 ? num(r.attention.recall(), "%.3f")
                 : std::string("-");
    });
  }
}

int Run(const Flags& flags) {
  const std::string trace_path = flags.trace.empty() ? DefaultTrace() : flags.trace;
  StatusOr<replay::Trace> trace = replay::ReadTrace(trace_path, {.limit = flags.requests});
  if (!trace.ok()) {
    std::fprintf(stderr, "attic-bench-replay: %s\n", trace.status().ToString().c_str());
    return 1;
  }
  StatusOr<ModelSpec> spec = ModelPreset("attic-ref-54m");
  if (!spec.ok()) return 1;
  spec->num_layers = flags.layers;
  const int cores = flags.workers * flags.worker_threads;
  std::printf("attic-bench-replay: %zu requests of %s, attic-ref-54m with %d layers, %d workers "
              "x %d compute thread(s)\nSLO: p99 decode step (every layer of the batch) <= %.0f ms, "
              "and every request completed\n",
              trace->requests.size(), trace_path.c_str(), flags.layers, flags.workers,
              flags.worker_threads, flags.slo_ms);

  BenchReport report("replay");
  report.AddHostFact("trace", trace_path);
  report.AddHostFact("slo_p99_step_ms", std::to_string(flags.slo_ms));
  // Every policy runs the same sweep (same seeds, so the same synthetic K/V), each on a
  // fresh fleet, until its p99 step passes the SLO.
  std::vector<std::vector<RunResult>> by_policy;
  for (const replay::AttentionPolicy policy : flags.attention) {
    const std::string name(replay::AttentionPolicyName(policy));
    std::vector<RunResult>& runs = by_policy.emplace_back();
    for (size_t i = 0; i < flags.speedups.size(); ++i) {
      StatusOr<RunResult> run = RunOnce(flags, *spec, *trace, policy, flags.speedups[i], i + 1);
      if (!run.ok()) {
        std::fprintf(stderr, "attic-bench-replay: %s\n", run.status().ToString().c_str());
        return 1;
      }
      const replay::ReplaySummary& s = run->summary;
      std::printf("%-9s speed-up %-6g %4lld/%lld completed  %.3f req/s  %8.0f decode tok/s  "
                  "step p50 %.1f p99 %.1f ms  sparse %.1f %%  %s\n",
                  name.c_str(), run->speedup, static_cast<long long>(s.requests_completed),
                  static_cast<long long>(s.requests_admitted), s.request_rate,
                  s.decode_tokens_per_s, s.step_latency_ms.p50, s.step_latency_ms.p99,
                  100.0 * run->attention.sparse_fraction(), run->within_slo ? "within SLO" : "OVER SLO");
      std::fflush(stdout);
      const std::vector<Param> params = {{"attention", name},
                                         {"speedup", std::to_string(run->speedup)},
                                         {"requests", std::to_string(s.requests_admitted)}};
      report.AddRow({.name = "request_rate", .params = params, .value = s.request_rate,
                     .unit = "req/s"});
      report.AddRow({.name = "decode_tokens_per_s", .params = params,
                     .value = s.decode_tokens_per_s, .unit = "tok/s"});
      report.AddRow({.name = "step_latency_p99", .params = params,
                     .value = s.step_latency_ms.p99, .unit = "ms", .limit = flags.slo_ms,
                     .limit_source = "SLO", .better = "lower"});
      report.AddRow({.name = "sparse_head_fraction", .params = params,
                     .value = run->attention.sparse_fraction(), .unit = "fraction"});
      report.AddRow({.name = "bytes_fraction", .params = params,
                     .value = run->attention.bytes_fraction(),
                     .unit = "fraction", .limit = 1.0, .limit_source = "a dense pass",
                     .better = "lower"});
      const bool within = run->within_slo;
      runs.push_back(*std::move(run));
      if (!within) break;
    }
  }
  PrintSideBySide(flags, by_policy);

  ThreadPool pool({.num_threads = cores});
  const ReadBandwidth bw = MeasureReadBandwidth(pool, size_t{1} << 30, 5);
  const double ideal = IdealPrefixHitRatio(*trace, spec->block_size);
  for (size_t k = 0; k < by_policy.size(); ++k) {
    const std::vector<RunResult>& runs = by_policy[k];
    const std::string name(replay::AttentionPolicyName(flags.attention[k]));
    // The highest speed-up within the SLO (the first run when none was).
    const RunResult* best = nullptr;
    for (const RunResult& r : runs) {
      if (r.within_slo) best = &r;
    }
    const bool sustained = best != nullptr;
    if (!best) best = &runs.front();
    const std::vector<Param> params = {{"attention", name},
                                       {"speedup", std::to_string(best->speedup)},
                                       {"sustained", sustained ? "yes" : "no"},
                                       {"worker_cores", std::to_string(cores)}};
    report.AddRow({.name = "sustained_request_rate", .params = params,
                   .value = best->summary.request_rate, .unit = "req/s"});
    report.AddRow({.name = "decode_tokens_per_s_per_core", .params = params,
                   .value = best->summary.decode_tokens_per_s / cores, .unit = "tok/s"});
    report.AddRow({.name = "attention_read_bandwidth", .params = params,
                   .value = best->attention_gbps, .unit = "GB/s", .limit = bw.best_gbps,
                   .limit_source = "DRAM read bandwidth, " + std::to_string(cores) + " threads"});
    report.AddRow({.name = "prefix_hit_ratio", .params = params,
                   .value = best->summary.prefix_hit_ratio, .unit = "ratio", .limit = ideal,
                   .limit_source = "trace ideal (unbounded cache)"});
    std::printf("%s: %s %g (%.3f req/s)\n", name.c_str(),
                sustained ? "highest speed-up within the SLO"
                          : "NOT SUSTAINED at any speed-up; first run",
                best->speedup, best->summary.request_rate);
  }
  return report.Finish(flags.json, "attic-bench-replay");
}

}  // namespace
}  // namespace attic::bench

int main(int argc, char** argv) {
  return attic::bench::Run(attic::bench::ParseFlags(argc, argv));
}
