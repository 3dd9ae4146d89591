#include "services/worker/worker_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <iterator>
#include <limits>
#include <string_view>
#include <tuple>
#include <vector>

#include "transport/frame.h"

namespace attic {
namespace {

// transport::Method numbers -> names (transport::MethodName spells the same; a test checks).
constexpr std::string_view kOpNames[WorkerMetrics::kMaxOp + 1] = {
    "Unknown", "Hello",         "OpenSequence", "LookupPrefix", "AppendKv",
    "Attend",  "CloseSequence", "Stats",        "Echo",     "Discard"};

// 50 us doubling 17 times (6.5536 s), then 10 s.
constexpr int kNumBuckets = 19;
constexpr std::array<double, kNumBuckets> MakeBuckets() {
  std::array<double, kNumBuckets> b{};
  double v = 50e-6;
  for (int i = 0; i + 1 < kNumBuckets; ++i, v *= 2) b[static_cast<size_t>(i)] = v;
  b[kNumBuckets - 1] = 10.0;
  return b;
}
constexpr std::array<double, kNumBuckets> kBuckets = MakeBuckets();

int OpIndex(int op) { return op >= 1 && op <= WorkerMetrics::kMaxOp ? op : 0; }

int CodeIndex(StatusCode code) {
  const int n = static_cast<int>(code);
  return n >= 0 && n < kNumStatusCodes ? n : static_cast<int>(StatusCode::kUnknown);
}

double NonNegative(int64_t v) { return v > 0 ? static_cast<double>(v) : 0.0; }

prometheus::Counter* AddCounter(prometheus::Registry& registry, const std::string& name,
                                const std::string& help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add({});
}

prometheus::Gauge* AddGauge(prometheus::Registry& registry, const std::string& name,
                            const std::string& help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

}  // namespace

// Per op, non-cumulative bucket counts (the last one is +Inf) and the sum of observations.
struct WorkerMetrics::Durations {
  struct PerOp {
    std::array<std::atomic<uint64_t>, kNumBuckets + 1> buckets{};
    std::atomic<double> sum{0.0};
  };
  std::array<PerOp, kMaxOp + 1> ops;

  void Observe(int op, double seconds) {
    const auto it = std::lower_bound(kBuckets.begin(), kBuckets.end(), seconds);
    const size_t bucket = static_cast<size_t>(it - kBuckets.begin());  // le is inclusive
    PerOp& p = ops[static_cast<size_t>(op)];
    p.buckets[bucket].fetch_add(1, std::memory_order_relaxed);
    p.sum.fetch_add(seconds, std::memory_order_relaxed);
  }

  prometheus::MetricFamily Collect() const {
    prometheus::MetricFamily family{
        .name = "attic_worker_request_duration_seconds",
        .help = "Time from a request's arrival to its reply, by method.",
        .type = prometheus::MetricType::Histogram};
    for (int op = 1; op <= kMaxOp; ++op) {
      const PerOp& p = ops[static_cast<size_t>(op)];
      prometheus::ClientMetric m;
      m.label = {{"op", std::string(kOpNames[op])}};
      uint64_t cumulative = 0;
      for (size_t b = 0; b <= kBuckets.size(); ++b) {
        cumulative += p.buckets[b].load(std::memory_order_relaxed);
        const double le =
            b < kBuckets.size() ? kBuckets[b] : std::numeric_limits<double>::infinity();
        m.histogram.bucket.push_back({.cumulative_count = cumulative, .upper_bound = le});
      }
      m.histogram.sample_count = cumulative;
      m.histogram.sample_sum = p.sum.load(std::memory_order_relaxed);
      family.metric.push_back(std::move(m));
    }
    return family;
  }
};

WorkerMetrics::WorkerMetrics(const std::string& worker_name)
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_family_(&prometheus::BuildCounter()
                            .Name("attic_worker_requests_total")
                            .Help("Requests answered, by method and status code.")
                            .Register(*registry_)),
      errors_family_(&prometheus::BuildCounter()
                          .Name("attic_worker_request_errors_total")
                          .Help("Requests answered with a non-OK status, by method and code.")
                          .Register(*registry_)),
      durations_(std::make_unique<Durations>()),
      bytes_received_(AddCounter(*registry_, "attic_worker_bytes_received_total",
                                 "Request bytes received (headers and payloads).")),
      bytes_sent_(AddCounter(*registry_, "attic_worker_bytes_sent_total",
                             "Reply bytes sent (headers and payloads).")),
      keys_scanned_(AddCounter(*registry_, "attic_worker_attend_keys_scanned_total",
                               "Keys that attention read, over all heads.")),
      prefix_hits_(AddCounter(*registry_, "attic_worker_prefix_hits_total",
                              "Prompt blocks (all layers and heads) found in the prefix cache.")),
      handshakes_refused_(AddCounter(*registry_, "attic_worker_handshakes_refused_total",
                                     "Hello handshakes refused (token, protocol or model).")),
      queue_depth_(AddGauge(*registry_, "attic_worker_compute_queue_depth",
                            "Attention tasks waiting for a compute thread.")),
      connections_(AddGauge(*registry_, "attic_worker_connections", "Open client connections.")),
      sequences_(AddGauge(*registry_, "attic_worker_sequences", "Open sequences.")) {
  auto& phases = prometheus::BuildCounter()
                     .Name("attic_worker_attend_phase_seconds_total")
                     .Help("Attend service time by phase: prepare (read the batch, append, "
                           "gather block views), compute (kernels), reply (merge, encode).")
                     .Register(*registry_);
  attend_phases_ = {&phases.Add({{"phase", "prepare"}}), &phases.Add({{"phase", "compute"}}),
                    &phases.Add({{"phase", "reply"}})};
  // The OK series of every op exist from the start, so rates begin at zero.
  for (int op = 1; op <= kMaxOp; ++op) RequestCounter(op, static_cast<int>(StatusCode::kOk));

  auto& blocks = prometheus::BuildGauge()
                     .Name("attic_worker_kv_blocks")
                     .Help("KV pool blocks (one block holds B tokens of one layer and KV head).")
                     .Register(*registry_);
  auto& bytes = prometheus::BuildGauge()
                    .Name("attic_worker_kv_bytes")
                    .Help("KV pool bytes.")
                    .Register(*registry_);
  size_t i = 0;
  for (const char* pool : {"k", "v"}) {
    for (const char* state : {"used", "capacity"}) {
      kv_blocks_[i] = &blocks.Add({{"pool", pool}, {"state", state}});
      kv_bytes_[i] = &bytes.Add({{"pool", pool}, {"state", state}});
      ++i;
    }
  }
  auto& prefix = prometheus::BuildGauge()
                     .Name("attic_worker_prefix_cache_blocks")
                     .Help(
                         "Prefix-cache blocks: cached (unpinned), shared (pinned by two or "
                         "more sequences), total.")
                     .Register(*registry_);
  prefix_cache_blocks_ = {&prefix.Add({{"state", "cached"}}), &prefix.Add({{"state", "shared"}}),
                          &prefix.Add({{"state", "total"}})};
  auto& heads = prometheus::BuildCounter()
                    .Name("attic_worker_attend_heads_total")
                    .Help("KV heads of sparse Attend requests: answered from a retrieval index "
                          "(sparse) or densely (diffuse head, index not ready, short context).")
                    .Register(*registry_);
  attend_heads_ = {&heads.Add({{"mode", "sparse"}}), &heads.Add({{"mode", "dense"}})};
  dense_fallbacks_ = AddCounter(*registry_, "attic_worker_retrieval_dense_fallbacks_total",
                                "Sparse heads answered densely because a fold held the index.");
  stand_in_heads_ =
      AddCounter(*registry_, "attic_worker_retrieval_stand_in_heads_total",
                 "Sparse heads searched through the stand-in index (retrieval.stand_in) while "
                 "the index asked for was being built.");
  recall_counters_ = {
      AddCounter(*registry_, "attic_worker_retrieval_recall_checks_total",
                 "Sparse heads also searched exactly (online recall, one in "
                 "retrieval.recall_sample_every)."),
      AddCounter(*registry_, "attic_worker_retrieval_recall_exact_total",
                 "Keys of the checked heads' exact top-k."),
      AddCounter(*registry_, "attic_worker_retrieval_recall_hits_total",
                 "Keys of the checked heads' exact top-k that the index retrieved.")};
  recall_ = AddGauge(*registry_, "attic_worker_retrieval_recall",
                     "Online recall@k of the retrieval indexes, a moving average over the last "
                     "checks (about 32); -1 before the first.");
  recall_->Set(-1.0);
  retrieval_gauges_ = {
      AddGauge(*registry_, "attic_worker_retrieval_indexes",
               "Retrieval indexes built (sequence, layer, KV head, kind)."),
      AddGauge(*registry_, "attic_worker_retrieval_index_bytes",
               "Memory of the retrieval indexes' own structures."),
      AddGauge(*registry_, "attic_worker_retrieval_dense_heads",
               "(sequence, layer, KV head)s whose prefill queries showed diffuse attention."),
      AddGauge(*registry_, "attic_worker_retrieval_queued_jobs",
               "Index builds and folds waiting for the build threads.")};
  retrieval_counters_ = {
      AddCounter(*registry_, "attic_worker_retrieval_builds_total", "Index builds finished."),
      AddCounter(*registry_, "attic_worker_retrieval_folds_total",
                 "Folds of decode keys into an index."),
      AddCounter(*registry_, "attic_worker_retrieval_build_seconds_total",
                 "Time the build threads spent building indexes.")};
  auto& fallbacks = prometheus::BuildCounter()
                        .Name("attic_worker_retrieval_recall_fallbacks_total")
                        .Help("Heads whose index missed its recall check on held-out prefill "
                              "queries at build, by what serves them instead (the 4-bit scan, "
                              "or dense attention).")
                        .Register(*registry_);
  recall_fallbacks_ = {&fallbacks.Add({{"to", "scan"}}), &fallbacks.Add({{"to", "dense"}})};
  auto& guard = prometheus::BuildCounter()
                    .Name("attic_worker_retrieval_recall_guard_total")
                    .Help("Recall guard actions: a head whose sampled decode recall fell below "
                          "retrieval.recall_target had its search effort raised, was served by "
                          "the 4-bit scan once its graph was at the largest beam, or was "
                          "answered densely once the scan missed too.")
                    .Register(*registry_);
  recall_guard_ = {&guard.Add({{"action", "raise"}}), &guard.Add({{"action", "scan"}}),
                   &guard.Add({{"action", "dense"}})};
  AddSsdSeries();
  AddGauge(*registry_, "attic_worker_up", "1 while the worker runs.")->Set(1);
  prometheus::BuildGauge()
      .Name("attic_worker_build_info")
      .Help("Build and protocol of the running worker; the value is 1.")
      .Register(*registry_)
      .Add({{"version", ATTIC_VERSION},
            {"protocol", std::to_string(transport::kProtocolVersion)},
            {"worker", worker_name}})
      .Set(1);
}

WorkerMetrics::~WorkerMetrics() = default;

void WorkerMetrics::AddSsdSeries() {
  prometheus::Registry& r = *registry_;
  auto& files = prometheus::BuildGauge()
                    .Name("attic_worker_ssd_file_bytes")
                    .Help("Bytes of the SSD tier's live files: blob files (block bytes) and SST "
                          "files (indexes, records).")
                    .Register(r);
  ssd_gauges_ = {
      AddGauge(r, "attic_worker_ssd_tier", "1 when the worker has an SSD tier (data_dir)."),
      AddGauge(r, "attic_worker_kv_value_dram_blocks", "The values' DRAM budget, blocks."),
      AddGauge(r, "attic_worker_kv_resident_value_blocks",
               "V blocks in use whose bytes are in DRAM."),
      AddGauge(r, "attic_worker_kv_spilled_value_blocks",
               "V blocks in use whose bytes are only on SSD."),
      AddGauge(r, "attic_worker_kv_pending_durable_blocks",
               "Sealed blocks not yet written to SSD (retried between requests)."),
      AddGauge(r, "attic_worker_recovered_sequences",
               "Sequences recovered from the SSD tier at start."),
      AddGauge(r, "attic_worker_ssd_prefix_entries", "Prefix-cache entries known on SSD."),
      &files.Add({{"kind", "blob"}}),
      &files.Add({{"kind", "sst"}}),
      AddGauge(r, "attic_worker_ssd_write_amplification",
               "Bytes RocksDB wrote to files per block byte written."),
      AddGauge(r, "attic_worker_ssd_direct_io", "1 while the SSD tier uses direct I/O."),
      AddGauge(r, "attic_worker_ssd_capacity_bytes",
               "The SSD tier's capacity (ssd.capacity_mb); 0 = no limit but the disk."),
      AddGauge(r, "attic_worker_ssd_used_bytes",
               "Block bytes on the SSD tier: open sequences' own blocks and prefix entries."),
      AddGauge(r, "attic_worker_ssd_full",
               "1 while the SSD tier has no room: the last write needing space got none.")};
  auto& writes = prometheus::BuildCounter()
                     .Name("attic_worker_ssd_writes_total")
                     .Help("Atomic writes to the SSD tier, by result.")
                     .Register(r);
  ssd_counters_ = {
      AddCounter(r, "attic_worker_kv_spilled_blocks_total", "Values spilled from DRAM to SSD."),
      AddCounter(r, "attic_worker_kv_reloaded_blocks_total",
                 "Spilled values made resident again."),
      AddCounter(r, "attic_worker_kv_streamed_blocks_total",
                 "Spilled values read from SSD without being made resident."),
      AddCounter(r, "attic_worker_kv_durable_retries_total",
                 "Sealed blocks written to SSD after an earlier failed write-through."),
      AddCounter(r, "attic_worker_ssd_bytes_read_total", "Block bytes read from SSD."),
      AddCounter(r, "attic_worker_ssd_bytes_written_total", "Block bytes written to SSD."),
      &writes.Add({{"result", "ok"}}),
      &writes.Add({{"result", "error"}}),
      AddCounter(r, "attic_worker_durability_errors_total",
                 "Write-throughs to SSD that failed (the data stayed in DRAM only)."),
      AddCounter(r, "attic_worker_ssd_checksum_failures_total",
                 "Block reads from SSD whose checksum did not match."),
      AddCounter(r, "attic_worker_ssd_flushes_total", "Memtable flushes large writes forced."),
      AddCounter(r, "attic_worker_ssd_prefix_hits_total",
                 "Prompt blocks LookupPrefix found only on SSD."),
      AddCounter(r, "attic_worker_query_sample_store_errors_total",
                 "Query samples that could not be stored on SSD (their indexes are not rebuilt "
                 "after a restart)."),
      AddCounter(r, "attic_worker_ssd_reclaimed_bytes_total",
                 "Bytes of prefix entries reclaimed from the SSD tier to stay under its "
                 "capacity."),
      AddCounter(r, "attic_worker_ssd_full_refusals_total",
                 "Write-throughs refused because the SSD tier had no room.")};
}

prometheus::Counter* WorkerMetrics::RequestCounter(int op, int code) {
  std::atomic<prometheus::Counter*>& slot =
      requests_[static_cast<size_t>(op)][static_cast<size_t>(code)];
  prometheus::Counter* c = slot.load(std::memory_order_acquire);
  if (c != nullptr) return c;
  // Family::Add returns the existing series for equal labels, so racing creators agree.
  c = &requests_family_->Add(
      {{"op", std::string(kOpNames[op])},
       {"code", std::string(StatusCodeName(static_cast<StatusCode>(code)))}});
  slot.store(c, std::memory_order_release);
  return c;
}

prometheus::Counter* WorkerMetrics::ErrorCounter(int op, int code) {
  std::atomic<prometheus::Counter*>& slot =
      errors_[static_cast<size_t>(op)][static_cast<size_t>(code)];
  prometheus::Counter* c = slot.load(std::memory_order_acquire);
  if (c != nullptr) return c;
  c = &errors_family_->Add({{"op", std::string(kOpNames[op])},
                            {"code", std::string(StatusCodeName(static_cast<StatusCode>(code)))}});
  slot.store(c, std::memory_order_release);
  return c;
}

void WorkerMetrics::ObserveRequest(int op, StatusCode code, double seconds) {
  const int o = OpIndex(op);
  const int c = CodeIndex(code);
  RequestCounter(o, c)->Increment();
  if (c != static_cast<int>(StatusCode::kOk)) ErrorCounter(o, c)->Increment();
  if (o != 0) durations_->Observe(o, std::isfinite(seconds) && seconds > 0 ? seconds : 0.0);
}

void WorkerMetrics::AddBytes(uint64_t received, uint64_t sent) {
  bytes_received_->Increment(static_cast<double>(received));
  bytes_sent_->Increment(static_cast<double>(sent));
}

void WorkerMetrics::AddKeysScanned(uint64_t n) { keys_scanned_->Increment(static_cast<double>(n)); }

void WorkerMetrics::AddAttendPhases(double prepare, double compute, double reply) {
  attend_phases_[0]->Increment(prepare);
  attend_phases_[1]->Increment(compute);
  attend_phases_[2]->Increment(reply);
}

void WorkerMetrics::SetQueueDepth(int64_t depth) { queue_depth_->Set(NonNegative(depth)); }

void WorkerMetrics::AddAttendHeads(uint64_t sparse, uint64_t dense) {
  if (sparse > 0) attend_heads_[0]->Increment(static_cast<double>(sparse));
  if (dense > 0) attend_heads_[1]->Increment(static_cast<double>(dense));
}

void WorkerMetrics::AddStandInHeads(uint64_t heads) {
  if (heads > 0) stand_in_heads_->Increment(static_cast<double>(heads));
}

void WorkerMetrics::AddRetrievalChecks(uint64_t fallbacks, uint64_t heads, uint64_t exact,
                                       uint64_t hits) {
  if (fallbacks > 0) dense_fallbacks_->Increment(static_cast<double>(fallbacks));
  if (heads == 0 || exact == 0) return;
  recall_counters_[0]->Increment(static_cast<double>(heads));
  recall_counters_[1]->Increment(static_cast<double>(exact));
  recall_counters_[2]->Increment(static_cast<double>(hits));
  const double recall = static_cast<double>(hits) / static_cast<double>(exact);
  MutexLock lock(&recall_mu_);
  // Each check weighs 1/32: the gauge follows the last few dozen.
  const double w = 1.0 - std::pow(1.0 - 1.0 / 32.0, static_cast<double>(heads));
  recall_average_ = recall_average_ < 0 ? recall : recall_average_ + w * (recall - recall_average_);
  recall_->Set(recall_average_);
}

void WorkerMetrics::SetRetrieval(const RetrievalFigures& r) {
  retrieval_gauges_[0]->Set(NonNegative(r.indexes));
  retrieval_gauges_[1]->Set(NonNegative(r.index_bytes));
  retrieval_gauges_[2]->Set(NonNegative(r.dense_heads));
  retrieval_gauges_[3]->Set(NonNegative(r.queued));
  SetTotal(retrieval_counters_[0], &last_builds_, r.builds);
  SetTotal(retrieval_counters_[1], &last_folds_, r.folds);
  SetTotal(recall_fallbacks_[0], &last_served_by_scan_, r.served_by_scan);
  SetTotal(recall_fallbacks_[1], &last_served_dense_, r.served_dense);
  SetTotal(recall_guard_[0], &last_guard_raised_, r.guard_raised);
  SetTotal(recall_guard_[1], &last_guard_scan_, r.guard_scan);
  SetTotal(recall_guard_[2], &last_guard_dense_, r.guard_dense);
  MutexLock lock(&build_seconds_mu_);
  if (r.build_seconds > last_build_seconds_) {
    retrieval_counters_[2]->Increment(r.build_seconds - last_build_seconds_);
    last_build_seconds_ = r.build_seconds;
  }
}

void WorkerMetrics::SetTotal(prometheus::Counter* counter, std::atomic<uint64_t>* last,
                             uint64_t total) {
  const uint64_t previous = last->exchange(total, std::memory_order_relaxed);
  if (total > previous) counter->Increment(static_cast<double>(total - previous));
}

void WorkerMetrics::SetKv(const KvFigures& kv) {
  const double block_bytes = static_cast<double>(kv.block_bytes);
  const int64_t blocks[4] = {kv.k_used_blocks, kv.k_capacity_blocks, kv.v_used_blocks,
                             kv.v_capacity_blocks};
  for (size_t i = 0; i < 4; ++i) {
    kv_blocks_[i]->Set(NonNegative(blocks[i]));
    kv_bytes_[i]->Set(NonNegative(blocks[i]) * block_bytes);
  }
  sequences_->Set(NonNegative(kv.sequences));
  prefix_cache_blocks_[0]->Set(NonNegative(kv.cached_blocks));
  prefix_cache_blocks_[1]->Set(NonNegative(kv.shared_blocks));
  prefix_cache_blocks_[2]->Set(NonNegative(kv.prefix_blocks));
  SetTotal(prefix_hits_, &last_prefix_hits_,
           kv.prefix_hits > 0 ? static_cast<uint64_t>(kv.prefix_hits) : 0);
}

void WorkerMetrics::SetSsd(const SsdFigures& f) {
  const double gauges[] = {f.tier ? 1.0 : 0.0,
                           NonNegative(f.value_dram_blocks),
                           NonNegative(f.v_resident_blocks),
                           NonNegative(f.v_spilled_blocks),
                           NonNegative(f.pending_durable_blocks),
                           NonNegative(f.recovered_sequences),
                           NonNegative(f.prefix_entries),
                           static_cast<double>(f.live_blob_bytes),
                           static_cast<double>(f.sst_bytes),
                           std::isfinite(f.write_amplification) ? f.write_amplification : 0.0,
                           f.direct_io ? 1.0 : 0.0,
                           static_cast<double>(f.capacity_bytes),
                           static_cast<double>(f.used_bytes),
                           f.full ? 1.0 : 0.0};
  static_assert(std::size(gauges) == std::tuple_size_v<decltype(ssd_gauges_)>);
  for (size_t i = 0; i < ssd_gauges_.size(); ++i) ssd_gauges_[i]->Set(gauges[i]);
  const uint64_t totals[] = {f.spilled,      f.reloaded,          f.streamed,
                             f.durable_retries, f.bytes_read,     f.bytes_written,
                             f.writes,       f.write_errors,      f.durability_errors,
                             f.checksum_failures, f.flushes,      f.prefix_hits,
                             f.sample_store_errors, f.reclaimed_bytes, f.full_refusals};
  static_assert(std::size(totals) == kSsdCounters);
  for (size_t i = 0; i < kSsdCounters; ++i) SetTotal(ssd_counters_[i], &last_ssd_[i], totals[i]);
}

void WorkerMetrics::SetConnections(int64_t open, uint64_t handshakes_refused_total) {
  connections_->Set(NonNegative(open));
  SetTotal(handshakes_refused_, &last_handshakes_refused_, handshakes_refused_total);
}

std::string WorkerMetrics::Serialize() const {
  try {
    std::vector<prometheus::MetricFamily> families = registry_->Collect();
    families.push_back(durations_->Collect());
    return prometheus::TextSerializer().Serialize(families);
  } catch (const std::exception& e) {
    return std::string("# attic_worker metrics unavailable: ") + e.what() + "\n";
  }
}

std::vector<uint64_t> WorkerMetrics::DurationCounts(int op) const {
  const Durations::PerOp& p = durations_->ops[static_cast<size_t>(OpIndex(op))];
  std::vector<uint64_t> counts(p.buckets.size());
  for (size_t b = 0; b < counts.size(); ++b) {
    counts[b] = p.buckets[b].load(std::memory_order_relaxed);
  }
  return counts;
}

std::span<const double> WorkerMetrics::DurationBuckets() { return kBuckets; }

std::string_view WorkerMetrics::OpName(int op) { return kOpNames[OpIndex(op)]; }

}  // namespace attic
