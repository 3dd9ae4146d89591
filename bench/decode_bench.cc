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
};

bool ParseFlags(int argc, char** argv, Flags* f) {
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
    else if (a == "--context") f->context = std::atoi(next());
    else if (a == "--layers") f->layers = std::atoi(next());
    else if (a == "--steps") f->steps = std::atoi(next());
    else if (a == "--threads-per-worker") f->threads_per_worker = std::atoi(next());
    else if (a == "--json") f->json = next();
    else if (a == "--quick") f->quick = true;
    else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: attic-bench-decode [--workers W] [--sequences B] [--context T] [--layers L]\n"
          "                          [--steps N] [--threads-per-worker N] [--json FILE] [--quick]\n"
          "Decode attention through W local attic-worker processes; per-layer latency and\n"
          "tokens/s against the DRAM-bandwidth + round-trip lower bound measured in the run.\n");
      return false;
    } else {
      std::fprintf(stderr, "attic-bench-decode: unknown argument '%s'\n", a.c_str());
      std::exit(2);
    }
  }
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

// Median round trip of a small Echo to the first worker: the per-layer network floor.
StatusOr<double> MeasureRoundTrip(const std::string& address, uint64_t fingerprint) {
  ASSIGN_OR_RETURN(auto rpc, transport::RpcClient::Create({.name = "bench-rtt",
                                                           .model_fingerprint = fingerprint}));
  ASSIGN_OR_RETURN(auto conn, rpc->Connect(address, transport::DeadlineAfter(std::chrono::seconds(10))));
  std::vector<double> rtts;
  for (int i = 0; i < 2000; ++i) {
    transport::OutgoingMessage m;
    m.method = transport::Method::kEcho;
    m.header = std::string(64, 'x');
    const auto t0 = std::chrono::steady_clock::now();
    StatusOr<transport::IncomingMessage> r =
        conn->Call(std::move(m), transport::DeadlineAfter(std::chrono::seconds(5))).get();
    if (!r.ok()) return r.status();
    if (i >= 200) {
      rtts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  return loadgen::Percentile(rtts, 0.5);
}

// Attend time as the workers measured it (sum and count of their duration histogram), so the
// report can tell compute on the workers from transport and client time.
struct WorkerAttendTime {
  double seconds = 0.0;
  double count = 0.0;
  double prepare = 0.0;  // phase totals (attic_worker_attend_phase_seconds_total)
  double compute = 0.0;
  double reply = 0.0;
};

StatusOr<WorkerAttendTime> ScrapeAttendTime(const std::string& control) {
  ASSIGN_OR_RETURN(control::HttpResponse r,
                   control::HttpGet(control, "/metrics", std::chrono::seconds(10)));
  WorkerAttendTime t;
  auto value_of = [&](const std::string& series) -> double {
    const size_t at = r.body.find(series);
    if (at == std::string::npos) return 0.0;
    return std::atof(r.body.c_str() + at + series.size());
  };
  t.seconds = value_of("attic_worker_request_duration_seconds_sum{op=\"Attend\"} ");
  t.count = value_of("attic_worker_request_duration_seconds_count{op=\"Attend\"} ");
  t.prepare = value_of("attic_worker_attend_phase_seconds_total{phase=\"prepare\"} ");
  t.compute = value_of("attic_worker_attend_phase_seconds_total{phase=\"compute\"} ");
  t.reply = value_of("attic_worker_attend_phase_seconds_total{phase=\"reply\"} ");
  return t;
}

std::vector<std::string> WorkerArgs(const ModelSpec& spec, uint64_t kv_bytes, int threads) {
  std::vector<std::string> args = loadgen::WorkerModelArgs(spec);
  args.insert(args.end(), {"--kv-memory-bytes", std::to_string(kv_bytes), "--compute-threads",
                           std::to_string(threads), "--populate", "--log-level", "warn"});
  return args;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "attic-bench-decode: %s\n", s.ToString().c_str());
  return 1;
}

int Run(const Flags& f) {
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
