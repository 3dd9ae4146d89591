#include "services/replay/replay_driver.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <deque>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "client/client.h"
#include "client/scheduler.h"
#include "common/hash.h"
#include "common/tensor_view.h"
#include "common/thread_annotations.h"
#include "services/replay/synthetic.h"

namespace attic::replay {

std::string_view AttentionPolicyName(AttentionPolicy p) {
  switch (p) {
    case AttentionPolicy::kDense: return "dense";
    case AttentionPolicy::kAuto: return "auto";
    case AttentionPolicy::kRetrieval: return "retrieval";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;

double MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string IsoNow() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// A request from its slot to its end: its content keys and its decode buffers.
struct Live {
  size_t rec = 0;
  uint64_t id = 0;
  PromptHashes hashes;
  int64_t position = 0;  // the next decode token's position
  int64_t steps = 0;
  bool opened = false;
  std::vector<std::byte> q, k, v;
  std::vector<float> out, lse;
  Status status;
};

// The live, ready workers a scheduler knows, and their free KV memory (DRAM).
struct FleetCapacity {
  int workers = 0;
  uint64_t free_bytes = 0;
};

Status CheckOptions(const DriverOptions& o) {
  if (o.scheduler.empty()) return InvalidArgumentError("replay: no scheduler address");
  if (!(o.speedup > 0)) return InvalidArgumentError("replay: speedup must be > 0");
  if (o.index_sample_stride < 1) {
    return InvalidArgumentError("replay: index_sample_stride must be >= 1");
  }
  return o.spec.Validate();
}

// Unavailable when the scheduler knows no worker to replay against.
StatusOr<FleetCapacity> ReadFleetCapacity(const std::string& scheduler) {
  ASSIGN_OR_RETURN(std::vector<FleetWorker> fleet,
                   GetFleet(scheduler, std::chrono::milliseconds(5000)));
  FleetCapacity capacity;
  for (const FleetWorker& w : fleet) {
    if (!w.alive || !w.ready) continue;
    ++capacity.workers;
    capacity.free_bytes += w.dram_free_bytes;
  }
  if (capacity.workers == 0) {
    return UnavailableError("replay: scheduler " + scheduler + " knows no live, ready worker");
  }
  return capacity;
}

// The base of this run's sequence ids (id = base + trace index): from the clock and the pid, so
// that runs against one fleet do not reuse each other's ids, with the low 32 bits left clear.
uint64_t RunIdBase() {
  return HashCombine(static_cast<uint64_t>(Clock::now().time_since_epoch().count()),
                     static_cast<uint64_t>(getpid())) &
         ~uint64_t{0xffffffff};
}

ReplayConfig DescribeRun(const DriverOptions& o, const Trace& trace, int max_concurrency,
                         int max_queue, int workers) {
  const ModelSpec& spec = o.spec;
  ReplayConfig c;
  c.format = std::string(TraceFormatName(trace.format));
  c.trace = trace.name;
  c.speedup = o.speedup;
  c.model = o.model_name;
  c.layers = spec.num_layers;
  c.num_q_heads = spec.num_q_heads;
  c.num_kv_heads = spec.num_kv_heads;
  c.head_dim = spec.head_dim;
  c.block_tokens = spec.block_size;
  c.dtype = std::string(DTypeName(spec.dtype));
  c.kv_bytes_per_token = static_cast<int64_t>(spec.kv_bytes_per_token());
  c.max_concurrency = max_concurrency;
  c.max_queue = max_queue;
  c.prefill_threads = o.prefill_threads;
  c.seed = o.seed;
  c.scheduler = o.scheduler;
  c.workers = workers;
  c.tenant = o.tenant;
  return c;
}

// One record per request, due at its trace time divided by the speed-up.
std::vector<RequestRecord> ScheduledRequests(const Trace& trace, double speedup) {
  std::vector<RequestRecord> records;
  for (const TraceRequest& t : trace.requests) {
    records.push_back({.index = t.index,
                       .arrival_ms = t.arrival_ms / speedup,
                       .input_tokens = t.input_tokens,
                       .output_tokens = t.output_tokens});
  }
  return records;
}

}  // namespace

struct ReplayDriver::Impl {
  Impl(const DriverOptions& o, const Trace& t) : options(o), trace(t), gen(o.spec, o.seed) {}

  const DriverOptions& options;
  const Trace& trace;
  SyntheticKv gen;
  std::unique_ptr<Client> client;
  ReplayReport report;
  Clock::time_point t0;
  uint64_t id_base = 0;
  int max_concurrency = 1;
  int max_queue = 4;

  Mutex mu;
  CondVar cv;                                    // any change of the state below
  int active GUARDED_BY(mu) = 0;                 // requests holding a slot
  std::deque<size_t> queue GUARDED_BY(mu);       // waiting for a slot
  std::deque<size_t> to_prefill GUARDED_BY(mu);  // holding a slot, waiting for a prefill thread
  std::vector<std::unique_ptr<Live>> joining GUARDED_BY(mu);  // prefilled, not yet in the batch
  int64_t prefilling GUARDED_BY(mu) = 0;
  int64_t decoding GUARDED_BY(mu) = 0;
  int64_t completed GUARDED_BY(mu) = 0;
  int64_t failed GUARDED_BY(mu) = 0;
  bool arrivals_done GUARDED_BY(mu) = false;
  bool stop GUARDED_BY(mu) = false;
  std::atomic<int64_t> decode_tokens{0};

  double Now() const { return MsBetween(t0, Clock::now()); }
  RequestRecord& Rec(size_t i) { return report.requests[i]; }

  // True once stop is set; false after `period` without it.
  bool WaitForStop(std::chrono::milliseconds period) EXCLUDES(mu) {
    const Clock::time_point deadline = Clock::now() + period;
    MutexLock lock(&mu);
    while (!stop) {
      if (!cv.WaitUntil(&mu, deadline)) break;
    }
    return stop;
  }

  bool AllEnded() const REQUIRES(mu) {
    return completed + failed == static_cast<int64_t>(report.requests.size());
  }

  // Ends request `rec`: records the outcome, frees its slot if it held one and gives the slot
  // to the next queued request.
  void EndLocked(size_t rec, const Status& status, bool held_slot) REQUIRES(mu) {
    RequestRecord& r = Rec(rec);
    r.end_ms = Now();
    if (status.ok()) {
      r.code = StatusCode::kOk;
      ++completed;
    } else {
      r.code = status.code();
      r.error = std::string(status.message());
      ++failed;
    }
    if (held_slot) {
      --active;
      if (!queue.empty()) {
        const size_t next = queue.front();
        queue.pop_front();
        ++active;
        Rec(next).start_ms = Now();
        to_prefill.push_back(next);
      }
    }
    cv.NotifyAll();
  }
  void End(size_t rec, const Status& status, bool held_slot) EXCLUDES(mu) {
    MutexLock lock(&mu);
    EndLocked(rec, status, held_slot);
  }

  void Arrive(size_t rec) EXCLUDES(mu) {
    MutexLock lock(&mu);
    if (active < max_concurrency) {
      ++active;
      Rec(rec).start_ms = Now();
      to_prefill.push_back(rec);
      cv.NotifyAll();
    } else if (static_cast<int>(queue.size()) < max_queue) {
      queue.push_back(rec);
    } else {
      EndLocked(rec,
                ResourceExhaustedError("admission queue full: " + std::to_string(queue.size()) +
                                       " requests waiting, " + std::to_string(active) + " running"),
                /*held_slot=*/false);
    }
  }

  Status Prefill(Live& live) {
    RequestRecord& r = Rec(live.rec);
    const TraceRequest& t = trace.requests[live.rec];
    const Clock::time_point begin = Clock::now();
    const ModelSpec& spec = options.spec;
    PlaceOptions place{.id = live.id,
                       .tenant = options.tenant,
                       .prompt_tokens = t.input_tokens,
                       .expected_tokens = t.input_tokens + t.output_tokens,
                       .prompt_hashes = live.hashes.blocks};
    ASSIGN_OR_RETURN(Placement placement, client->Place(place).get());
    r.placement = placement.reason;
    RETURN_IF_ERROR(
        client->Open({.id = live.id, .tenant = options.tenant, .plan = placement.plan}).get());
    live.opened = true;
    ASSIGN_OR_RETURN(PrefixMatch match, client->LookupPrefix(live.id, live.hashes.blocks).get());
    r.prefix_tokens = match.matched_tokens;
    r.lookup_done = true;
    const size_t row = static_cast<size_t>(spec.num_kv_heads) * static_cast<size_t>(spec.head_dim) *
                       DTypeSize(spec.dtype);
    std::vector<std::byte> k, v;
    for (int64_t first = match.matched_tokens; first < t.input_tokens;) {
      const int64_t n = std::min(options.prefill_chunk_tokens, t.input_tokens - first);
      k.resize(static_cast<size_t>(n) * row);
      v.resize(static_cast<size_t>(n) * row);
      std::vector<std::future<Status>> sent;
      for (int layer = 0; layer < spec.num_layers; ++layer) {
        gen.FillPrompt(live.hashes, layer, first, n, k.data(), v.data());
        // The client copies the views before Prefill returns: the buffers are reused.
        sent.push_back(client->Prefill(
            live.id, layer, first,
            TensorView(k.data(), spec.dtype, {n, spec.num_kv_heads, spec.head_dim}),
            TensorView(v.data(), spec.dtype, {n, spec.num_kv_heads, spec.head_dim})));
      }
      Status first_error;
      for (auto& f : sent) {
        Status s = f.get();
        if (first_error.ok()) first_error = s;
      }
      RETURN_IF_ERROR(first_error);
      first += n;
    }
    if (options.attention != AttentionPolicy::kDense) RETURN_IF_ERROR(BuildIndexes(live));
    r.prefill_ms = MsBetween(begin, Clock::now());
    return OkStatus();
  }

  // Retrieval: every layer's prompt queries at a stride, for the workers to profile the heads
  // and build their indexes from (in the background; sparse steps answer densely until then).
  Status BuildIndexes(Live& live) {
    const ModelSpec& spec = options.spec;
    const TraceRequest& t = trace.requests[live.rec];
    std::vector<int64_t> positions;
    for (int64_t p = 0; p < t.input_tokens; p += options.index_sample_stride) {
      positions.push_back(p);
    }
    if (positions.empty()) return OkStatus();
    const int64_t n = static_cast<int64_t>(positions.size());
    std::vector<std::byte> q(static_cast<size_t>(n) * static_cast<size_t>(spec.num_q_heads) *
                             static_cast<size_t>(spec.head_dim) * DTypeSize(spec.dtype));
    std::vector<std::future<Status>> sent;
    for (int layer = 0; layer < spec.num_layers; ++layer) {
      gen.FillPromptQueries(live.hashes, layer, positions, q.data());
      // The client copies the view before BuildIndex returns: the buffer is reused.
      sent.push_back(client->BuildIndex(
          live.id, layer, TensorView(q.data(), spec.dtype, {n, spec.num_q_heads, spec.head_dim}),
          positions));
    }
    Status first_error;
    for (auto& f : sent) {
      Status s = f.get();
      if (first_error.ok()) first_error = s;
    }
    return first_error;
  }

  void CloseQuietly(const Live& live) {
    if (live.opened) client->Close(live.id).get().IgnoreError();
  }

  // The next request to prefill, counted as prefilling; nullopt once stopped with none left.
  std::optional<size_t> TakeToPrefill() EXCLUDES(mu) {
    MutexLock lock(&mu);
    while (!stop && to_prefill.empty()) cv.Wait(&mu);
    if (to_prefill.empty()) return std::nullopt;
    const size_t rec = to_prefill.front();
    to_prefill.pop_front();
    ++prefilling;
    return rec;
  }

  void PrefillLoop() EXCLUDES(mu) {
    while (true) {
      const std::optional<size_t> next = TakeToPrefill();
      if (!next) return;
      const size_t rec = *next;
      const TraceRequest& t = trace.requests[rec];
      auto live = std::make_unique<Live>();
      live->rec = rec;
      live->id = id_base + static_cast<uint64_t>(t.index);
      live->hashes = PromptBlockHashes(t.hash_ids, t.input_tokens, options.spec.block_size,
                                       static_cast<uint64_t>(t.index) + 1, options.seed);
      live->position = t.input_tokens;
      Status s = Prefill(*live);
      if (!s.ok() || t.output_tokens == 0) {
        if (s.ok()) {
          s = client->Close(live->id).get();
        } else {
          CloseQuietly(*live);
        }
        MutexLock lock(&mu);
        --prefilling;
        EndLocked(rec, s, /*held_slot=*/true);
        continue;
      }
      MutexLock lock(&mu);
      --prefilling;
      Rec(rec).first_token_ms = Now();
      joining.push_back(std::move(live));
      cv.NotifyAll();
    }
  }

  // One engine iteration: every layer of one decode step for the whole batch.
  void Step(std::vector<std::unique_ptr<Live>>& batch) {
    const ModelSpec& spec = options.spec;
    const size_t q_bytes = static_cast<size_t>(spec.num_q_heads) *
                           static_cast<size_t>(spec.head_dim) * DTypeSize(spec.dtype);
    const size_t kv_bytes = static_cast<size_t>(spec.num_kv_heads) *
                            static_cast<size_t>(spec.head_dim) * DTypeSize(spec.dtype);
    for (auto& live : batch) {
      live->q.resize(q_bytes);
      live->k.resize(kv_bytes);
      live->v.resize(kv_bytes);
      live->out.resize(static_cast<size_t>(spec.num_q_heads) * static_cast<size_t>(spec.head_dim));
      live->lse.resize(static_cast<size_t>(spec.num_q_heads));
      live->status = OkStatus();
    }
    const Clock::time_point begin = Clock::now();
    for (int layer = 0; layer < spec.num_layers; ++layer) {
      AttendBatch attend{.layer = layer};
      if (options.attention != AttentionPolicy::kDense) {
        attend.mode = AttendMode::kSparse;
        attend.sparse.force = options.attention == AttentionPolicy::kRetrieval;
      }
      uint64_t context = 0;  // keys of the batch's heads after this step's append
      for (auto& live : batch) {
        if (!live->status.ok()) continue;
        gen.FillDecode(live->hashes.tail, live->position, layer, live->k.data(), live->v.data(),
                       live->q.data());
        attend.items.push_back(
            {.id = live->id,
             .q = TensorView(live->q.data(), spec.dtype, {spec.num_q_heads, spec.head_dim}),
             .k_new = TensorView(live->k.data(), spec.dtype, {spec.num_kv_heads, spec.head_dim}),
             .v_new = TensorView(live->v.data(), spec.dtype, {spec.num_kv_heads, spec.head_dim}),
             .out = live->out.data(),
             .lse = live->lse.data(),
             .status = &live->status});
        context += static_cast<uint64_t>(live->position + 1) *
                   static_cast<uint64_t>(spec.num_kv_heads);
      }
      if (attend.items.empty()) break;
      const uint64_t heads = attend.items.size() * static_cast<size_t>(spec.num_kv_heads);
      StatusOr<AttendStats> r = client->Attend(std::move(attend)).get();
      if (r.ok()) {
        report.attend_bytes_read += r->bytes_read;
        CountAttention(layer, heads, context, *r);
      }
      if (!r.ok()) {
        // Items the workers refused carry their own status; a batch refused as a whole (before
        // anything was sent) fails every item in it.
        bool any_item = false;
        for (auto& live : batch) any_item = any_item || !live->status.ok();
        if (!any_item) {
          for (auto& live : batch) live->status = r.status();
        }
      }
    }
    report.step_latency_ms.push_back(static_cast<float>(MsBetween(begin, Clock::now())));
    report.step_batch.push_back(static_cast<int32_t>(batch.size()));
  }

  // One layer's Attend of a whole batch into the report's attention totals.
  void CountAttention(int layer, uint64_t heads, uint64_t context, const AttendStats& s) {
    const ModelSpec& spec = options.spec;
    AttentionTotals& a = report.attention;
    // A dense pass: every context key's K and V row, in the storage dtype.
    const uint64_t row = static_cast<uint64_t>(spec.head_dim) * DTypeSize(spec.dtype);
    const uint64_t dense_heads =
        options.attention == AttentionPolicy::kDense ? heads : std::min(s.dense_heads, heads);
    a.head_steps += heads;
    a.dense_head_steps += dense_heads;
    a.keys_touched += std::min(s.keys_scanned, context);
    a.keys_context += context;
    a.bytes_read += s.bytes_read;
    a.dense_bytes += 2 * context * row;
    a.ssd_bytes += s.ssd_bytes_read;
    a.recall_heads += s.recall_heads;
    a.recall_exact += s.recall_exact;
    a.recall_hits += s.recall_hits;
    a.stand_in_head_steps += std::min(s.stand_in_heads, heads - dense_heads);
    a.layer_head_steps[static_cast<size_t>(layer)] += heads;
    a.layer_dense_head_steps[static_cast<size_t>(layer)] += dense_heads;
  }

  // Moves the prefilled requests into the batch. An empty batch first waits for one, or for
  // every request to have ended (it stays empty then).
  void JoinBatch(std::vector<std::unique_ptr<Live>>& batch) EXCLUDES(mu) {
    MutexLock lock(&mu);
    if (batch.empty()) {
      while (joining.empty() && !(arrivals_done && AllEnded())) cv.Wait(&mu);
    }
    for (auto& live : joining) batch.push_back(std::move(live));
    joining.clear();
    decoding = static_cast<int64_t>(batch.size());
  }

  void DecodeLoop() EXCLUDES(mu) {
    std::vector<std::unique_ptr<Live>> batch;
    while (true) {
      JoinBatch(batch);
      if (batch.empty()) return;
      Step(batch);
      std::vector<std::unique_ptr<Live>> next;
      for (auto& live : batch) {
        const TraceRequest& t = trace.requests[live->rec];
        if (!live->status.ok()) {
          CloseQuietly(*live);
          Rec(live->rec).decode_steps = live->steps;
          End(live->rec, live->status, /*held_slot=*/true);
          continue;
        }
        ++live->steps;
        ++live->position;
        decode_tokens.fetch_add(1, std::memory_order_relaxed);
        if (live->steps < t.output_tokens) {
          next.push_back(std::move(live));
          continue;
        }
        Rec(live->rec).decode_steps = live->steps;
        End(live->rec, client->Close(live->id).get(), /*held_slot=*/true);
      }
      batch = std::move(next);
    }
  }

  TimelineSample Sample(uint64_t dram, uint64_t ssd) EXCLUDES(mu) {
    TimelineSample s;
    s.t_ms = Now();
    {
      MutexLock lock(&mu);
      s.completed = completed;
      s.failed = failed;
      s.decoding = decoding;
      s.prefilling = prefilling + static_cast<int64_t>(to_prefill.size()) +
                     static_cast<int64_t>(joining.size());
      s.queued = static_cast<int64_t>(queue.size());
    }
    s.decode_tokens = decode_tokens.load(std::memory_order_relaxed);
    s.kv_bytes_dram = dram;
    s.kv_bytes_ssd = ssd;
    s.bytes_sent = client->Stats().bytes_sent;
    return s;
  }

  void SampleLoop() EXCLUDES(mu) {
    const bool tty = isatty(STDERR_FILENO) == 1;
    uint64_t dram = 0, ssd = 0;
    Clock::time_point last_fleet{}, last_print{};
    int64_t last_tokens = 0;
    double last_t = 0;
    double rate = 0;
    while (!WaitForStop(std::chrono::milliseconds(250))) {
      const Clock::time_point now = Clock::now();
      if (now - last_fleet >= std::chrono::seconds(1)) {
        last_fleet = now;
        StatusOr<std::vector<FleetWorker>> fleet =
            GetFleet(options.scheduler, std::chrono::milliseconds(1000));
        if (fleet.ok()) {
          dram = ssd = 0;
          for (const FleetWorker& w : *fleet) {
            dram += w.kv_bytes_dram;
            ssd += w.kv_bytes_ssd;
          }
        }
      }
      TimelineSample s = Sample(dram, ssd);
      if (s.t_ms > last_t) {
        rate = 0.5 * rate + 0.5 * static_cast<double>(s.decode_tokens - last_tokens) * 1000.0 /
                                (s.t_ms - last_t);
      }
      last_tokens = s.decode_tokens;
      last_t = s.t_ms;
      report.kv_bytes_dram_peak = std::max(report.kv_bytes_dram_peak, s.kv_bytes_dram);
      report.kv_bytes_ssd_peak = std::max(report.kv_bytes_ssd_peak, s.kv_bytes_ssd);
      report.timeline.push_back(s);
      if (!options.progress) continue;
      const int64_t total = static_cast<int64_t>(report.requests.size());
      if (tty) {
        std::fprintf(stderr, "\r%s\033[K", ProgressLine(s, total, rate, 100).c_str());
      } else if (now - last_print >= std::chrono::seconds(10)) {
        last_print = now;
        std::fprintf(stderr, "%s\n", ProgressLine(s, total, rate, 100).c_str());
      }
    }
    if (options.progress && tty) std::fprintf(stderr, "\n");
  }

  // The concurrency and queue bounds: the options', else sized to the fleet's free memory.
  void SizeAdmission(uint64_t fleet_free_bytes) {
    max_concurrency = options.max_concurrency > 0
                          ? options.max_concurrency
                          : ReplayDriver::AutoConcurrency(fleet_free_bytes, trace, options.spec);
    max_queue = options.max_queue >= 0 ? options.max_queue : 4 * max_concurrency;
  }

  // Issues every request at its scheduled time, from this thread.
  void IssueArrivals() {
    for (size_t i = 0; i < report.requests.size(); ++i) {
      const auto at =
          t0 + std::chrono::duration_cast<Clock::duration>(
                   std::chrono::duration<double, std::milli>(report.requests[i].arrival_ms));
      std::this_thread::sleep_until(at);
      Arrive(i);
    }
  }

  void WaitAllEnded() EXCLUDES(mu) {
    MutexLock lock(&mu);
    arrivals_done = true;
    cv.NotifyAll();
    while (!AllEnded()) cv.Wait(&mu);
  }

  // Ends the prefill threads and the sampler.
  void StopThreads() EXCLUDES(mu) {
    MutexLock lock(&mu);
    stop = true;
    cv.NotifyAll();
  }

  // Runs the replay (prefill threads, the decoder, the sampler, arrivals from this thread)
  // until every request ended; returns when the last one did.
  Clock::time_point ReplayAll() {
    t0 = Clock::now();
    std::vector<std::thread> prefillers;
    for (int i = 0; i < std::max(1, options.prefill_threads); ++i) {
      prefillers.emplace_back([this] { PrefillLoop(); });
    }
    std::thread decoder([this] { DecodeLoop(); });
    std::thread sampler([this] { SampleLoop(); });
    IssueArrivals();
    WaitAllEnded();
    const Clock::time_point end = Clock::now();
    decoder.join();
    StopThreads();
    for (std::thread& t : prefillers) t.join();
    sampler.join();
    return end;
  }

  // The run's totals, and a last sample with the final counts.
  void FinishReport(Clock::time_point end) {
    report.timeline.push_back(
        Sample(report.timeline.empty() ? 0 : report.timeline.back().kv_bytes_dram,
               report.timeline.empty() ? 0 : report.timeline.back().kv_bytes_ssd));
    report.wall_s = std::chrono::duration<double>(end - t0).count();
    report.decode_tokens = decode_tokens.load();
    const ClientStats stats = client->Stats();
    report.bytes_sent = stats.bytes_sent;
    report.bytes_received = stats.bytes_received;
  }
};

ReplayDriver::ReplayDriver(DriverOptions options, Trace trace)
    : options_(std::move(options)), trace_(std::move(trace)) {}

ReplayDriver::~ReplayDriver() = default;

int ReplayDriver::AutoConcurrency(uint64_t fleet_free_bytes, const Trace& trace,
                                  const ModelSpec& spec) {
  if (trace.requests.empty()) return 1;
  const double per_token = static_cast<double>(spec.kv_bytes_per_token());
  double tokens = 0;
  for (const TraceRequest& r : trace.requests) {
    tokens += static_cast<double>(r.input_tokens + r.output_tokens);
  }
  const double mean = per_token * tokens / static_cast<double>(trace.requests.size());
  // A margin for block rounding and prefix blocks kept in the cache.
  const double n = 0.8 * static_cast<double>(fleet_free_bytes) / std::max(mean, 1.0);
  return static_cast<int>(std::clamp(n, 1.0, 256.0));
}

StatusOr<ReplayReport> ReplayDriver::Run() {
  RETURN_IF_ERROR(CheckOptions(options_));
  ASSIGN_OR_RETURN(const FleetCapacity fleet, ReadFleetCapacity(options_.scheduler));
  Impl impl(options_, trace_);
  ASSIGN_OR_RETURN(impl.client, Client::Connect({.scheduler = options_.scheduler,
                                                 .spec = options_.spec,
                                                 .name = "attic-replay",
                                                 .timeout = options_.timeout}));
  impl.SizeAdmission(fleet.free_bytes);
  impl.id_base = RunIdBase();
  impl.report.config =
      DescribeRun(options_, trace_, impl.max_concurrency, impl.max_queue, fleet.workers);
  impl.report.requests = ScheduledRequests(trace_, options_.speedup);
  impl.report.attention.policy = std::string(AttentionPolicyName(options_.attention));
  impl.report.attention.layer_head_steps.assign(static_cast<size_t>(options_.spec.num_layers), 0);
  impl.report.attention.layer_dense_head_steps = impl.report.attention.layer_head_steps;
  impl.report.started_at = IsoNow();
  const Clock::time_point end = impl.ReplayAll();
  impl.FinishReport(end);
  return std::move(impl.report);
}

}  // namespace attic::replay
