// attic-replay: replays a production trace (Mooncake JSONL or Azure CSV) open-loop against an
// Attic fleet and reports what happened: a summary table, a JSON file and an HTML report.
// Without --scheduler it starts a local fleet (scheduler + workers on loopback) for the run.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/model_spec.h"
#include "common/status.h"
#include "services/config/settings.h"
#include "services/fleet/local_fleet.h"
#include "services/loadgen/worker_process.h"
#include "services/replay/replay_driver.h"
#include "services/replay/report.h"
#include "services/replay/trace.h"
#include "services/worker/worker_config.h"

namespace attic::replay {
namespace {

struct ReplayFlags {
  std::string trace;
  std::string format = "auto";
  float speedup = 1.0f;
  int64_t start = 0;
  int64_t limit = -1;
  std::string model = "attic-ref-54m";
  int layers = 0;
  int max_concurrency = 0;
  int max_queue = -1;
  int prefill_threads = 2;
  int64_t prefill_chunk = 8192;
  uint64_t seed = 1;
  std::string attention = "auto";
  int index_sample_stride = 16;
  std::string tenant = "replay";
  std::string json;
  std::string html;
  std::string scheduler;
  int timeout_ms = 120000;
  bool progress = true;
  // The local fleet, without --scheduler.
  int workers = 2;
  uint64_t worker_memory = uint64_t{2} << 30;
  int worker_threads = 0;
  std::string fleet_dir;
  int base_port = 0;
  bool dram_only = false;
};

std::vector<config::Setting> Table(ReplayFlags* f) {
  using namespace config;
  return {
      StringSetting("trace", &f->trace, "Trace file: Mooncake JSON lines or Azure CSV (required)."),
      ChoiceSetting("format", &f->format, {"auto", "mooncake", "azure"},
                    "Trace format; auto detects it from the first line."),
      FloatSetting("speedup", &f->speedup, 1e-3, 1e6,
                   "Time factor: a request at trace time t is issued at t / speedup."),
      Int64Setting(
          "start", [f](int64_t v) { f->start = v; }, [f] { return f->start; }, 0, int64_t{1} << 40,
          "First request of the trace replayed (0-based)."),
      Int64Setting(
          "limit", [f](int64_t v) { f->limit = v; }, [f] { return f->limit; }, -1, int64_t{1} << 40,
          "Requests replayed; -1 = all from start."),
      ChoiceSetting("model", &f->model, {"attic-ref-54m", "llama3-8b"},
                    "Model preset: attic-ref-54m (L=6, Hq=8, Hkv=2, D=128, bf16) or llama3-8b "
                    "(L=32, Hq=32, Hkv=8, D=128, bf16)."),
      IntSetting("layers", &f->layers, 0, 4096,
                 "Layers replayed (scales the preset down); 0 = the preset's."),
      IntSetting("max_concurrency", &f->max_concurrency, 0, 65536,
                 "Requests prefilling or decoding at once; 0 = from the fleet's free KV memory."),
      IntSetting("max_queue", &f->max_queue, -1, 1 << 20,
                 "Requests waiting for a slot; one more fails with RESOURCE_EXHAUSTED. "
                 "-1 = 4 x max_concurrency."),
      IntSetting("prefill_threads", &f->prefill_threads, 1, 64, "Requests prefilled at once."),
      Int64Setting(
          "prefill_chunk_tokens", [f](int64_t v) { f->prefill_chunk = v; },
          [f] { return f->prefill_chunk; }, 64, 1 << 20,
          "Prompt tokens sent per Prefill call and layer."),
      IntSetting("seed", &f->seed, 0, std::numeric_limits<int64_t>::max(),
                 "Seed of the synthetic K/V/Q contents."),
      ChoiceSetting("attention", &f->attention, {"auto", "retrieval", "dense"},
                    "Decode attention: auto = retrieval where the workers profile a head as "
                    "sparse, dense elsewhere; retrieval = every head; dense = none."),
      IntSetting("index_sample_stride", &f->index_sample_stride, 1, 1 << 20,
                 "Retrieval: one prompt query in this many is sent for the indexes to learn "
                 "from."),
      StringSetting("tenant", &f->tenant, "Prefix-cache scope of the replayed requests."),
      StringSetting("json", &f->json, "Write the JSON report here."),
      StringSetting("html", &f->html, "Write the HTML report here."),
      StringSetting("scheduler", &f->scheduler,
                    "Scheduler host:port of a running fleet; empty = start a local fleet."),
      IntSetting("timeout_ms", &f->timeout_ms, 1, 3600000, "Deadline of each client call, ms."),
      BoolSetting("progress", &f->progress, "Show a progress line on stderr."),
      IntSetting("workers", &f->workers, 1, 64, "Local fleet: workers to start."),
      SizeSetting("worker_memory", &f->worker_memory, uint64_t{1} << 20, uint64_t{1} << 46,
                  "Local fleet: each worker's DRAM for KV."),
      IntSetting("worker_threads", &f->worker_threads, 0, 1024,
                 "Local fleet: each worker's compute threads; 0 = one per core."),
      StringSetting("fleet_dir", &f->fleet_dir,
                    "Local fleet: folder for logs and data (default: a temp folder, removed)."),
      IntSetting("base_port", &f->base_port, 0, 65000,
                 "Local fleet: scheduler port (workers take the next ones); 0 = ephemeral."),
      BoolSetting("dram_only", &f->dram_only, "Local fleet: workers without an SSD tier."),
  };
}

Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return UnavailableError("cannot write " + path);
  return OkStatus();
}

// Prints the error and returns the exit status `rc`.
int Fail(const std::string& message, int rc) {
  std::fprintf(stderr, "attic-replay: error: %s\n", message.c_str());
  return rc;
}

// Reads the flags from the command line and the environment; the exit status when the program
// ends here (--help, --version, a bad flag).
std::optional<int> LoadFlags(int argc, char** argv, ReplayFlags* flags) {
  std::vector<config::Setting> table = Table(flags);
  const config::ProgramInfo program{
      .name = "attic-replay",
      .version_line = "attic-replay 0.1.0",
      .summary =
          "Replays a production LLM-serving trace (Mooncake JSONL or Azure CSV) open-loop "
          "against an Attic fleet: each request is placed, opened, looked up in the prefix "
          "cache, prefilled and decoded (Attend over every layer per step), then closed. "
          "Prints a summary table and writes JSON and HTML reports. Without --scheduler "
          "it starts a local fleet for the run.",
      .env_prefix = "ATTIC_REPLAY_"};
  StatusOr<config::LoadResult> loaded =
      config::LoadSettings(table, program, argc, argv, config::EnvironmentMap());
  if (!loaded.ok()) return Fail(loaded.status().ToString(), 2);
  if (loaded->exit_now) {
    std::cout << loaded->output;
    return loaded->exit_code;
  }
  if (flags->trace.empty()) return Fail("--trace FILE is required (see --help)", 2);
  return std::nullopt;
}

// What is replayed: the model (layers scaled) and the selected slice of the trace.
struct ReplayInput {
  ModelSpec spec;
  Trace trace;
};

// nullopt, the error printed, when the format, the model or the trace cannot be used.
std::optional<ReplayInput> ReadInput(const ReplayFlags& flags) {
  StatusOr<TraceFormat> format = ParseTraceFormat(flags.format);
  StatusOr<ModelSpec> spec = ModelPreset(flags.model);
  if (!format.ok() || !spec.ok()) {
    Fail((!format.ok() ? format.status() : spec.status()).ToString(), 2);
    return std::nullopt;
  }
  if (flags.layers > 0) spec->num_layers = flags.layers;
  StatusOr<Trace> trace =
      ReadTrace(flags.trace, {.format = *format, .start = flags.start, .limit = flags.limit});
  if (!trace.ok()) {
    Fail(trace.status().ToString(), 2);
    return std::nullopt;
  }
  if (trace->requests.empty()) {
    Fail(flags.trace + ": no request in the selected slice", 2);
    return std::nullopt;
  }
  return ReplayInput{.spec = *std::move(spec), .trace = *std::move(trace)};
}

fleet::LocalFleetOptions LocalFleetOptionsFor(const ReplayFlags& flags, const ModelSpec& spec) {
  fleet::LocalFleetOptions o{.workers = flags.workers,
                             .base_port = static_cast<uint16_t>(flags.base_port),
                             .dir = flags.fleet_dir,
                             .keep_dir = !flags.fleet_dir.empty(),
                             .dram_only = flags.dram_only};
  o.worker_args = loadgen::WorkerModelArgs(spec);
  o.worker_args.insert(o.worker_args.end(),
                       {"--kv-memory-bytes", std::to_string(flags.worker_memory),
                        "--compute-threads", std::to_string(flags.worker_threads)});
  return o;
}

// The fleet of a run without --scheduler, started and ready.
StatusOr<std::unique_ptr<fleet::LocalFleet>> StartLocalFleet(const ReplayFlags& flags,
                                                             const ModelSpec& spec) {
  auto local = std::make_unique<fleet::LocalFleet>(LocalFleetOptionsFor(flags, spec));
  std::fprintf(stderr, "attic-replay: starting a local fleet of %d worker%s\n", flags.workers,
               flags.workers == 1 ? "" : "s");
  RETURN_IF_ERROR(local->Start(std::chrono::seconds(120)));
  std::fprintf(stderr, "attic-replay: fleet ready: scheduler %s, logs in %s\n",
               local->scheduler_address().c_str(), local->dir().c_str());
  return local;
}

DriverOptions DriverOptionsFor(const ReplayFlags& flags, const ModelSpec& spec,
                               const std::string& scheduler) {
  return {.spec = spec,
          .model_name = flags.model,
          .scheduler = scheduler,
          .speedup = static_cast<double>(flags.speedup),
          .max_concurrency = flags.max_concurrency,
          .max_queue = flags.max_queue,
          .prefill_threads = flags.prefill_threads,
          .prefill_chunk_tokens = flags.prefill_chunk,
          .seed = flags.seed,
          .attention = flags.attention == "dense"       ? AttentionPolicy::kDense
                       : flags.attention == "retrieval" ? AttentionPolicy::kRetrieval
                                                        : AttentionPolicy::kAuto,
          .index_sample_stride = flags.index_sample_stride,
          .tenant = flags.tenant,
          .timeout = std::chrono::milliseconds(flags.timeout_ms),
          .progress = flags.progress};
}

// Writes one report file and says where (as `shown`); false, the error printed, if it cannot.
bool WriteReport(const std::string& path, const std::string& text, const char* kind,
                 const std::string& shown) {
  if (Status s = WriteFile(path, text); !s.ok()) {
    Fail(s.ToString(), 1);
    return false;
  }
  std::fprintf(stderr, "attic-replay: %s report: %s\n", kind, shown.c_str());
  return true;
}

// The JSON and HTML reports the flags ask for; the exit status (1 if one could not be written).
int WriteReports(const ReplayFlags& flags, const ReplayReport& report,
                 const ReplaySummary& summary) {
  int rc = 0;
  if (!flags.json.empty() &&
      !WriteReport(flags.json, RenderJson(report, summary), "JSON", flags.json)) {
    rc = 1;
  }
  if (!flags.html.empty() && !WriteReport(flags.html, RenderHtml(report, summary), "HTML",
                                          std::filesystem::absolute(flags.html).string())) {
    rc = 1;
  }
  return rc;
}

int Main(int argc, char** argv) {
  ReplayFlags flags;
  if (const std::optional<int> rc = LoadFlags(argc, argv, &flags)) return *rc;
  std::optional<ReplayInput> input = ReadInput(flags);
  if (!input) return 2;
  std::unique_ptr<fleet::LocalFleet> local;
  std::string scheduler = flags.scheduler;
  if (scheduler.empty()) {
    StatusOr<std::unique_ptr<fleet::LocalFleet>> started = StartLocalFleet(flags, input->spec);
    if (!started.ok()) return Fail(started.status().ToString(), 1);
    local = *std::move(started);
    scheduler = local->scheduler_address();
  }
  std::fprintf(stderr,
               "attic-replay: %zu requests of %s (%s) at speed-up %g, model %s with %d layers\n",
               input->trace.requests.size(), flags.trace.c_str(),
               std::string(TraceFormatName(input->trace.format)).c_str(),
               static_cast<double>(flags.speedup), flags.model.c_str(), input->spec.num_layers);
  StatusOr<ReplayReport> report =
      ReplayDriver(DriverOptionsFor(flags, input->spec, scheduler), std::move(input->trace)).Run();
  if (local) local->Stop();
  if (!report.ok()) return Fail(report.status().ToString(), 1);
  report->config.trace = flags.trace;
  report->config.start = flags.start;
  report->config.limit = flags.limit;
  const ReplaySummary summary = Summarize(*report);
  std::cout << RenderTable(*report, summary) << std::flush;
  return WriteReports(flags, *report, summary);
}

}  // namespace
}  // namespace attic::replay

int main(int argc, char** argv) { return attic::replay::Main(argc, argv); }
