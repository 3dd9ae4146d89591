#include "bench/decode/concurrent_decode.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "attention_workers/thread_pool.h"
#include "bench/bench_report.h"
#include "bench/decode/decode_probes.h"
#include "bench/memory_bandwidth.h"
#include "client/client.h"
#include "services/loadgen/decode_driver.h"
#include "services/loadgen/engine_model.h"
#include "services/loadgen/worker_process.h"

namespace attic::bench {
namespace {

using Clock = std::chrono::steady_clock;

ModelSpec RefModelShape() {
  return ModelSpec{.name = "attic-ref-54m-shape", .num_layers = 6, .num_q_heads = 8,
                   .num_kv_heads = 2, .head_dim = 128, .dtype = DType::kBFloat16,
                   .block_size = 64};
}

// One engine stream: a sequence and the engine's own copy of its KV.
struct Stream {
  std::unique_ptr<loadgen::EngineModel> model;
  uint64_t id = 0;
};

int Fail(const Status& s) {
  std::fprintf(stderr, "attic-bench-decode: %s\n", s.ToString().c_str());
  return 1;
}

// Opens, prefills and warms up (one checked step over every layer) a new stream.
StatusOr<Stream> OpenStream(Client& client, const ModelSpec& spec, uint64_t id, int context) {
  Stream s{std::make_unique<loadgen::EngineModel>(spec, id), id};
  s.model->AddSequence({.id = id, .prompt_tokens = context});
  ASSIGN_OR_RETURN(PrefixMatch m, loadgen::OpenAndPrefill(client, *s.model, id,
                                                          ShardPlan::Single(spec, 0), "bench"));
  (void)m;
  for (int layer = 0; layer < spec.num_layers; ++layer) {
    ASSIGN_OR_RETURN(loadgen::StepResult r,
                     loadgen::DecodeStep(client, *s.model, layer, {id}, /*check=*/true));
    if (r.max_relative_error > 5e-3) {
      return InternalError("sequence " + std::to_string(id) +
                           ": decode output differs from exact attention, relative error " +
                           std::to_string(r.max_relative_error));
    }
  }
  return s;
}

struct RunFigures {
  double seconds = 0;               // wall time of the timed steps
  std::vector<double> step_seconds;  // every stream's steps (all layers)
  WorkerAttendTime worker;           // what the worker measured over the timed steps
};

// The worker's Attend figures accumulated between two scrapes.
WorkerAttendTime Between(const WorkerAttendTime& a, const WorkerAttendTime& b) {
  return {.seconds = b.seconds - a.seconds, .count = b.count - a.count,
          .prepare = b.prepare - a.prepare, .compute = b.compute - a.compute,
          .reply = b.reply - a.reply};
}

// Every stream decodes `steps` steps at once, each on its own thread.
StatusOr<RunFigures> DecodeTogether(Client& client, std::vector<Stream>& streams, int steps) {
  const int layers = streams.front().model->spec().num_layers;
  std::vector<std::vector<double>> per(streams.size());
  std::vector<Status> status(streams.size());
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (size_t i = 0; i < streams.size(); ++i) {
    threads.emplace_back([&, i] {
      ++ready;
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      for (int step = 0; step < steps && status[i].ok(); ++step) {
        const auto t0 = Clock::now();
        for (int layer = 0; layer < layers && status[i].ok(); ++layer) {
          StatusOr<loadgen::StepResult> r = loadgen::DecodeStep(
              client, *streams[i].model, layer, {streams[i].id}, /*check=*/false);
          if (!r.ok()) status[i] = r.status();
        }
        per[i].push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      }
    });
  }
  while (ready.load() < static_cast<int>(streams.size())) std::this_thread::yield();
  const auto start = Clock::now();
  go.store(true, std::memory_order_release);
  for (std::thread& t : threads) t.join();
  RunFigures f;
  f.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (size_t i = 0; i < streams.size(); ++i) {
    RETURN_IF_ERROR(status[i]);
    f.step_seconds.insert(f.step_seconds.end(), per[i].begin(), per[i].end());
  }
  return f;
}

}  // namespace

int RunConcurrentDecode(const ConcurrentDecodeFlags& f) {
  const ModelSpec spec = RefModelShape();
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = f.threads > 0 ? f.threads : cores;
  const int max_n = *std::max_element(f.concurrency.begin(), f.concurrency.end());
  const uint64_t seq_bytes = static_cast<uint64_t>(f.context + f.steps * (1 + static_cast<int>(f.concurrency.size())) + 64) *
                             static_cast<uint64_t>(spec.num_layers * spec.num_kv_heads) *
                             static_cast<uint64_t>(spec.head_dim) * 2 * DTypeSize(spec.dtype);
  const uint64_t kv_bytes = seq_bytes * static_cast<uint64_t>(max_n) * 5 / 4 + (uint64_t{256} << 20);
  std::printf("attic-bench-decode: concurrency %d..%d sequences x %d tokens, %s, one worker "
              "with %d compute threads, %.2f GiB of KV at the largest N\n",
              f.concurrency.front(), max_n, f.context, spec.ToString().c_str(), threads,
              static_cast<double>(seq_bytes * static_cast<uint64_t>(max_n)) / (1 << 30));

  auto worker = std::make_unique<loadgen::WorkerProcess>(loadgen::WorkerProcessOptions{
      .binary = loadgen::SiblingBinary("attic-worker"),
      .args = [&] {
        std::vector<std::string> a = WorkerArgs(spec, kv_bytes, threads);
        a.insert(a.end(), {"--max-concurrent-requests", std::to_string(threads)});
        return a;
      }(),
      .name = "bench-concurrent"});
  if (Status s = worker->Start(std::chrono::seconds(300)); !s.ok()) return Fail(s);
  ClientOptions copts;
  copts.workers = {worker->data_address()};
  copts.spec = spec;
  copts.name = "attic-bench-decode";
  copts.timeout = std::chrono::milliseconds(120000);
  StatusOr<std::unique_ptr<Client>> client = Client::Connect(copts);
  if (!client.ok()) return Fail(client.status());
  StatusOr<double> rtt = MeasureRoundTrip(worker->data_address(), spec.Fingerprint());
  if (!rtt.ok()) return Fail(rtt.status());

  std::vector<Stream> streams;
  struct Row {
    int n;
    RunFigures run;
  };
  std::vector<Row> rows;
  for (int n : f.concurrency) {
    while (static_cast<int>(streams.size()) < n) {
      StatusOr<Stream> s =
          OpenStream(**client, spec, static_cast<uint64_t>(streams.size() + 1), f.context);
      if (!s.ok()) return Fail(s.status());
      streams.push_back(std::move(s).value());
    }
    std::vector<Stream> active;
    for (int i = 0; i < n; ++i) active.push_back(std::move(streams[static_cast<size_t>(i)]));
    StatusOr<WorkerAttendTime> before = ScrapeAttendTime(worker->control_address());
    if (!before.ok()) return Fail(before.status());
    StatusOr<RunFigures> run = DecodeTogether(**client, active, f.steps);
    for (int i = 0; i < n; ++i) streams[static_cast<size_t>(i)] = std::move(active[static_cast<size_t>(i)]);
    if (!run.ok()) return Fail(run.status());
    StatusOr<WorkerAttendTime> after = ScrapeAttendTime(worker->control_address());
    if (!after.ok()) return Fail(after.status());
    run->worker = Between(*before, *after);
    rows.push_back({n, std::move(run).value()});
    std::printf("  N = %-3d decoded in %.2f s\n", n, rows.back().run.seconds);
  }
  client->reset();
  streams.clear();
  // The worker goes before the bandwidth is measured, so the measurement has the cores.
  worker.reset();
  ThreadPool pool({.num_threads = threads});
  const ReadBandwidth bw = MeasureReadBandwidth(pool, size_t{1} << 30, 7);

  BenchReport report("decode");
  report.AddRow({.name = "dram_read_bandwidth", .params = {{"threads", std::to_string(threads)}},
                 .value = bw.best_gbps, .unit = "GB/s"});
  report.AddRow({.name = "round_trip", .params = {{"bytes", "64"}, {"stat", "p50"}},
                 .value = *rtt * 1e6, .unit = "us", .better = "lower"});
  // A step's KV bytes (the context grows by a token a step: its mean over a run, roughly) and
  // N streams' step bound.
  const double step_bytes = (static_cast<double>(f.context) + f.steps) * spec.num_layers *
                            spec.num_kv_heads * spec.head_dim * 2 *
                            static_cast<double>(DTypeSize(spec.dtype));
  const auto step_bound = [&](int n) {
    return n * step_bytes / (bw.best_gbps * 1e9) + spec.num_layers * *rtt;
  };
  for (const Row& r : rows) {
    const double bound = step_bound(r.n);
    const double p50 = loadgen::Percentile(r.run.step_seconds, 0.5);
    const double p99 = loadgen::Percentile(r.run.step_seconds, 0.99);
    const double tps = static_cast<double>(r.n) * f.steps / r.run.seconds;
    const std::vector<Param> params = {{"sequences", std::to_string(r.n)},
                                       {"context", std::to_string(f.context)},
                                       {"threads", std::to_string(threads)},
                                       {"model", "L=6 Hq=8 Hkv=2 D=128 bf16"}};
    auto with = [&](Param p) {
      std::vector<Param> out = params;
      out.push_back(std::move(p));
      return out;
    };
    const std::string source = "N x step KV bytes / dram_read_bandwidth + layers x round_trip";
    report.AddRow({.name = "decode_step_latency", .params = with({"stat", "p50"}),
                   .value = p50 * 1e3, .unit = "ms", .limit = bound * 1e3,
                   .limit_source = source, .better = "lower"});
    report.AddRow({.name = "decode_step_latency", .params = with({"stat", "p99"}),
                   .value = p99 * 1e3, .unit = "ms", .limit = bound * 1e3,
                   .limit_source = source, .better = "lower"});
    report.AddRow({.name = "decode_throughput", .params = params, .value = tps,
                   .unit = "tokens/s", .limit = r.n / bound,
                   .limit_source = "N / step bound"});
    // Where a request's time goes on the worker: its whole Attend (queueing excluded) and the
    // kernels' share, against one request's KV bytes at the measured bandwidth.
    const WorkerAttendTime& w = r.run.worker;
    if (w.count > 0) {
      const double request_bound = step_bytes / spec.num_layers / (bw.best_gbps * 1e9);
      report.AddRow({.name = "worker_attend_time", .params = with({"stat", "mean"}),
                     .value = w.seconds / w.count * 1e6, .unit = "us",
                     .limit = request_bound * 1e6,
                     .limit_source = "one request's KV bytes / dram_read_bandwidth",
                     .better = "lower"});
      report.AddRow({.name = "worker_attend_phase", .params = with({"phase", "compute"}),
                     .value = w.compute / w.count * 1e6, .unit = "us",
                     .limit = request_bound * 1e6,
                     .limit_source = "one request's KV bytes / dram_read_bandwidth",
                     .better = "lower"});
    }
  }
  const int rc = report.Finish(f.json, "attic-bench-decode");
  for (const Row& r : rows) {
    std::printf("N = %-3d p50 step %.2fx the bound (target <= 1.3x at N >= 4)\n", r.n,
                loadgen::Percentile(r.run.step_seconds, 0.5) / step_bound(r.n));
  }
  return rc;
}

}  // namespace attic::bench
