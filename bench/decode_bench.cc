// attic-bench-decode: end-to-end decode attention through local attic-worker processes.
//
// W workers on loopback hold B sequences of T tokens of a Llama-3-8B-shaped model (Hq = 32,
// Hkv = 8, D = 128, bf16) with L layers, KV heads split over the workers. The client runs
// decode steps layer by layer (append the token, attend, merge) and the benchmark reports the
// per-layer Attend latency (p50, p99) and decode tokens/s beside the lower bound measured in
// the same run: every KV byte read once at the DRAM bandwidth of as many threads as the
// workers compute with, plus one round trip per layer (Attic's own echo).
//
//   attic-bench-decode [--workers 2] [--sequences 4] [--context 32768] [--layers 4]
//                      [--steps 16] [--threads-per-worker N] [--json FILE] [--quick]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_report.h"
#include "bench/decode/concurrent_decode.h"
#include "bench/decode/decode_probes.h"
#include "bench/memory_bandwidth.h"
#include "client/client.h"
#include "services/loadgen/decode_driver.h"
#include "services/loadgen/engine_model.h"
#include "services/loadgen/worker_process.h"
#include "transport/control/http_server.h"
#include "transport/rpc_client.h"

namespace attic::bench {
namespace {

struct Flags {
  int workers = 2;
  int sequences = 4;
  int context = 32768;
  int layers = 4;
  int steps = 16;
  int threads_per_worker = 0;
  std::string json;
  bool quick = false;
  std::vector<int> concurrency;  // non-empty: the concurrent-sequences mode
};

std::vector<int> ParseList(const char* text) {
  std::vector<int> out;
  for (const char* p = text; *p != '\0';) {
    char* end = nullptr;
    const long v = std::strtol(p, &end, 10);
    if (end == p || v < 1 || v > 4096) {
      std::fprintf(stderr, "attic-bench-decode: --concurrency wants a list like 1,4,16,64\n");
      std::exit(2);
    }
    out.push_back(static_cast<int>(v));
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

bool ParseFlags(int argc, char** argv, Flags* f) {
  bool context_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "attic-bench-decode: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--workers") f->workers = std::atoi(next());
    else if (a == "--sequences") f->sequences = std::atoi(next());
    else if (a == "--context") f->context = std::atoi(next()), context_given = true;
    else if (a == "--layers") f->layers = std::atoi(next());
    else if (a == "--steps") f->steps = std::atoi(next());
    else if (a == "--threads-per-worker") f->threads_per_worker = std::atoi(next());
    else if (a == "--json") f->json = next();
    else if (a == "--concurrency") f->concurrency = ParseList(next());
    else if (a == "--quick") f->quick = true;
    else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: attic-bench-decode [--workers W] [--sequences B] [--context T] [--layers L]\n"
          "                          [--steps N] [--threads-per-worker N] [--json FILE] [--quick]\n"
          "       attic-bench-decode --concurrency 1,4,16,64 [--context T] [--steps N]\n"
          "                          [--threads-per-worker N] [--json FILE] [--quick]\n"
          "Decode attention through W local attic-worker processes; per-layer latency and\n"
          "tokens/s against the DRAM-bandwidth + round-trip lower bound measured in the run.\n"
          "--concurrency: N sequences of attic-ref-54m's shape (default context 16384) decoding\n"
          "at once through one worker, one engine stream each; tokens/s and step latency\n"
          "against N x (step KV bytes / bandwidth) + layers x round trip.\n");
      return false;
    } else {
      std::fprintf(stderr, "attic-bench-decode: unknown argument '%s'\n", a.c_str());
      std::exit(2);
    }
  }
  if (!f->concurrency.empty() && !context_given) f->context = 16384;
  if (f->quick) {
    f->context = std::min(f->context, 8192);
    f->steps = std::min(f->steps, 4);
  }
  if (f->workers < 1 || f->sequences < 1 || f->context < 64 || f->layers < 1 || f->steps < 1) {
    std::fprintf(stderr, "attic-bench-decode: every count must be positive\n");
    std::exit(2);
  }
  return true;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "attic-bench-decode: %s\n", s.ToString().c_str());
  return 1;
}

int Run(const Flags& f) {
  if (!f.concurrency.empty()) {
    return RunConcurrentDecode({.concurrency = f.concurrency,
                                .context = f.context,
                                .steps = f.steps,
                                .threads = f.threads_per_worker,
                                .json = f.json});
  }
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = f.threads_per_worker > 0 ? f.threads_per_worker
                                               : std::max(1, cores / f.workers);
  ModelSpec spec{.name = "llama3-8b-shape", .num_layers = f.layers, .num_q_heads = 32,
                 .num_kv_heads = 8, .head_dim = 128, .dtype = DType::kBFloat16, .block_size = 64};
  const int64_t tokens = f.context + f.steps;
  const uint64_t kv_bytes_total = static_cast<uint64_t>(f.sequences) * static_cast<uint64_t>(tokens) *
                                  static_cast<uint64_t>(f.layers * spec.num_kv_heads * spec.head_dim) *
                                  2 * DTypeSize(spec.dtype);
  const uint64_t per_worker = kv_bytes_total / static_cast<uint64_t>(f.workers) * 5 / 4 +
                              (uint64_t{256} << 20);
  std::printf("attic-bench-decode: %d workers x %d threads, %d sequences x %d tokens x %d layers, "
              "%.2f GiB of KV\n",
              f.workers, threads, f.sequences, f.context, f.layers,
              static_cast<double>(kv_bytes_total) / (1 << 30));

  std::vector<std::unique_ptr<loadgen::WorkerProcess>> workers;
  ClientOptions copts;
  for (int i = 0; i < f.workers; ++i) {
    workers.push_back(std::make_unique<loadgen::WorkerProcess>(loadgen::WorkerProcessOptions{
        .binary = loadgen::SiblingBinary("attic-worker"),
        .args = WorkerArgs(spec, per_worker, threads),
        .name = "bench-w" + std::to_string(i)}));
    Status s = workers.back()->Start(std::chrono::seconds(120));
    if (!s.ok()) return Fail(s);
    copts.workers.push_back(workers.back()->data_address());
  }
  copts.spec = spec;
  copts.name = "attic-bench-decode";
  copts.timeout = std::chrono::milliseconds(60000);
  StatusOr<std::unique_ptr<Client>> client = Client::Connect(copts);
  if (!client.ok()) return Fail(client.status());

  loadgen::EngineModel model(spec, 1);
  std::vector<int> all_workers(static_cast<size_t>(f.workers));
  for (int i = 0; i < f.workers; ++i) all_workers[static_cast<size_t>(i)] = i;
  std::vector<uint64_t> ids;
  for (int s = 0; s < f.sequences; ++s) {
    const uint64_t id = static_cast<uint64_t>(s + 1);
    model.AddSequence({.id = id, .prompt_tokens = f.context});
    StatusOr<PrefixMatch> m = loadgen::OpenAndPrefill(**client, model, id,
                                                      ShardPlan::SplitHeads(spec, all_workers), "bench");
    if (!m.ok()) return Fail(m.status());
    ids.push_back(id);
  }

  // Warm-up step (first touches, page faults), then the timed ones.
  for (int layer = 0; layer < f.layers; ++layer) {
    StatusOr<loadgen::StepResult> r = loadgen::DecodeStep(**client, model, layer, ids, layer == 0);
    if (!r.ok()) return Fail(r.status());
    if (r->checked && r->max_relative_error > 5e-3) {
      return Fail(InternalError("decode output differs from exact attention: relative error " +
                                std::to_string(r->max_relative_error)));
    }
  }
  std::vector<WorkerAttendTime> before;
  for (const auto& w : workers) {
    StatusOr<WorkerAttendTime> t = ScrapeAttendTime(w->control_address());
    if (!t.ok()) return Fail(t.status());
    before.push_back(*t);
  }
  std::vector<double> layer_seconds;
  double total = 0.0;
  for (int step = 0; step < f.steps; ++step) {
    for (int layer = 0; layer < f.layers; ++layer) {
      StatusOr<loadgen::StepResult> r = loadgen::DecodeStep(**client, model, layer, ids, false);
      if (!r.ok()) return Fail(r.status());
      layer_seconds.push_back(r->seconds);
      total += r->seconds;
    }
  }
  // The slowest worker's mean time per Attend over the timed steps.
  double worker_attend = 0.0;
  WorkerAttendTime phases;  // per Attend, of the slowest worker
  for (size_t i = 0; i < workers.size(); ++i) {
    StatusOr<WorkerAttendTime> t = ScrapeAttendTime(workers[i]->control_address());
    if (!t.ok()) return Fail(t.status());
    const double n = t->count - before[i].count;
    if (n <= 0) continue;
    const double mean = (t->seconds - before[i].seconds) / n;
    if (mean < worker_attend) continue;
    worker_attend = mean;
    phases.prepare = (t->prepare - before[i].prepare) / n;
    phases.compute = (t->compute - before[i].compute) / n;
    phases.reply = (t->reply - before[i].reply) / n;
  }
  StatusOr<double> rtt = MeasureRoundTrip(workers[0]->data_address(), spec.Fingerprint());
  if (!rtt.ok()) return Fail(rtt.status());
  // Stop the workers before measuring bandwidth so the measurement has the cores to itself.
  client->reset();
  workers.clear();
  ThreadPool pool({.num_threads = std::min(cores, threads * f.workers)});
  const ReadBandwidth bw = MeasureReadBandwidth(pool, size_t{1} << 30, 7);

  const double ctx = static_cast<double>(f.context) + static_cast<double>(f.steps) / 2;
  const double layer_bytes = static_cast<double>(f.sequences) * ctx * spec.num_kv_heads *
                             spec.head_dim * 2 * static_cast<double>(DTypeSize(spec.dtype));
  const double bound = layer_bytes / (bw.best_gbps * 1e9) + *rtt;
  const double p50 = loadgen::Percentile(layer_seconds, 0.5);
  const double p99 = loadgen::Percentile(layer_seconds, 0.99);
  const double tokens_per_s = static_cast<double>(f.sequences) * f.steps / total;
  const double bound_tokens_per_s = static_cast<double>(f.sequences) / (bound * f.layers);

  BenchReport report("decode");
  const std::vector<Param> params = {{"workers", std::to_string(f.workers)},
                                     {"threads_per_worker", std::to_string(threads)},
                                     {"sequences", std::to_string(f.sequences)},
                                     {"context", std::to_string(f.context)},
                                     {"layers", std::to_string(f.layers)},
                                     {"steps", std::to_string(f.steps)},
                                     {"model", "Hq=32 Hkv=8 D=128 bf16"}};
  auto with = [&](std::vector<Param> extra) {
    std::vector<Param> p = params;
    p.insert(p.end(), extra.begin(), extra.end());
    return p;
  };
  report.AddRow({.name = "dram_read_bandwidth", .params = {{"threads", std::to_string(pool.num_threads())}},
                 .value = bw.best_gbps, .unit = "GB/s"});
  report.AddRow({.name = "round_trip", .params = {{"bytes", "64"}, {"stat", "p50"}},
                 .value = *rtt * 1e6, .unit = "us", .better = "lower"});
  report.AddRow({.name = "attend_layer_latency", .params = with({{"stat", "p50"}}),
                 .value = p50 * 1e6, .unit = "us", .limit = bound * 1e6,
                 .limit_source = "KV bytes / dram_read_bandwidth + round_trip", .better = "lower"});
  report.AddRow({.name = "attend_layer_latency", .params = with({{"stat", "p99"}}),
                 .value = p99 * 1e6, .unit = "us", .limit = bound * 1e6,
                 .limit_source = "KV bytes / dram_read_bandwidth + round_trip", .better = "lower"});
  report.AddRow({.name = "worker_attend_time", .params = with({{"stat", "mean, slowest worker"}}),
                 .value = worker_attend * 1e6, .unit = "us",
                 .limit = (layer_bytes / (bw.best_gbps * 1e9)) * 1e6,
                 .limit_source = "KV bytes / dram_read_bandwidth", .better = "lower"});
  for (const auto& [phase, secs] : {std::pair<const char*, double>{"prepare", phases.prepare},
                                    {"compute", phases.compute}, {"reply", phases.reply}}) {
    report.AddRow({.name = "worker_attend_phase", .params = with({{"phase", phase}}),
                   .value = secs * 1e6, .unit = "us", .better = "lower"});
  }
  report.AddRow({.name = "decode_throughput", .params = with({}), .value = tokens_per_s,
                 .unit = "tokens/s", .limit = bound_tokens_per_s,
                 .limit_source = "sequences / (layers x latency bound)"});
  const int rc = report.Finish(f.json, "attic-bench-decode");
  std::printf("p50 per-layer latency is %.2fx the bound (target <= 1.3x)\n", p50 / bound);
  return rc;
}

}  // namespace
}  // namespace attic::bench

int main(int argc, char** argv) {
  attic::bench::Flags flags;
  if (!attic::bench::ParseFlags(argc, argv, &flags)) return 0;
  return attic::bench::Run(flags);
}
