// WorkerMetrics: the Prometheus metrics of attic-worker, kept with prometheus-cpp's core
// registry and rendered in the text exposition format (0.0.4) for the control plane's /metrics.
//
//   WorkerMetrics metrics(config.name);
//   metrics.ObserveRequest(static_cast<int>(transport::Method::kAttend), StatusCode::kOk, 0.0012);
//   metrics.AddBytes(request_bytes, reply_bytes);
//   routes["/metrics"] = [&](const control::HttpRequest&) {
//     return control::HttpResponse{.content_type = WorkerMetrics::kContentType,
//                                  .body = metrics.Serialize()};
//   };
//
// Series (units in the names; `op` is the method name "Attend", "AppendKv", ..., `code` the
// UPPER_SNAKE status name "OK", "NOT_FOUND", ...):
//   attic_worker_requests_total{op,code}              counter
//   attic_worker_request_errors_total{op,code}        counter, non-OK codes only
//   attic_worker_request_duration_seconds{op}         histogram, 50 us doubling to 6.5536 s, 10 s
//   attic_worker_bytes_received_total, attic_worker_bytes_sent_total          counters
//   attic_worker_kv_blocks{pool="k|v",state="used|capacity"}, attic_worker_kv_bytes{pool,state}
//   attic_worker_sequences, attic_worker_compute_queue_depth, attic_worker_connections  gauges
//   attic_worker_prefix_cache_blocks{state="cached|shared|total"}                   gauge
//   attic_worker_prefix_hits_total, attic_worker_attend_keys_scanned_total,
//   attic_worker_handshakes_refused_total                                           counters
//   attic_worker_up, attic_worker_build_info{version,protocol,worker}               gauges (1)
//   attic_worker_attend_heads_total{mode="sparse|dense"}   counter: heads of sparse requests,
//                                                           answered from an index or densely
//   attic_worker_retrieval_indexes, attic_worker_retrieval_index_bytes,
//   attic_worker_retrieval_dense_heads, attic_worker_retrieval_queued_jobs            gauges
//   attic_worker_retrieval_builds_total, attic_worker_retrieval_folds_total,
//   attic_worker_retrieval_recall_fallbacks_total{to},
//   attic_worker_retrieval_recall_guard_total{action="raise|scan|dense"} (the recall guard),
//   attic_worker_retrieval_build_seconds_total                                     counters
//   attic_worker_retrieval_dense_fallbacks_total (sparse heads answered densely while a fold
//   held the index), attic_worker_retrieval_recall_checks_total,
//   attic_worker_retrieval_recall_exact_total, attic_worker_retrieval_recall_hits_total
//   (online recall: rate(hits) / rate(exact) is recall@k)                          counters
//   attic_worker_retrieval_recall      gauge: recall@k, moving average over recent checks
//   attic_worker_retrieval_stand_in_heads_total   counter: sparse heads searched through the
//                                                 stand-in while their index was being built
// The SSD tier (all 0 without one; docs/worker.md):
//   attic_worker_ssd_tier (1 with a tier), attic_worker_kv_value_dram_blocks (the values'
//   DRAM budget), attic_worker_kv_resident_value_blocks, attic_worker_kv_spilled_value_blocks,
//   attic_worker_kv_pending_durable_blocks, attic_worker_recovered_sequences,
//   attic_worker_ssd_prefix_entries, attic_worker_ssd_file_bytes{kind="blob|sst"},
//   attic_worker_ssd_capacity_bytes, attic_worker_ssd_used_bytes, attic_worker_ssd_full,
//   attic_worker_ssd_write_amplification, attic_worker_ssd_direct_io                gauges
//   attic_worker_kv_spilled_blocks_total, attic_worker_kv_reloaded_blocks_total,
//   attic_worker_kv_streamed_blocks_total, attic_worker_kv_durable_retries_total,
//   attic_worker_ssd_bytes_read_total, attic_worker_ssd_bytes_written_total,
//   attic_worker_ssd_writes_total{result="ok|error"}, attic_worker_durability_errors_total,
//   attic_worker_ssd_checksum_failures_total, attic_worker_ssd_flushes_total,
//   attic_worker_ssd_prefix_hits_total, attic_worker_query_sample_store_errors_total,
//   attic_worker_ssd_reclaimed_bytes_total, attic_worker_ssd_full_refusals_total      counters
//
// Thread safety: every method may be called from any thread. The hot path (ObserveRequest,
// AddBytes, AddKeysScanned, SetQueueDepth) takes no lock and does not allocate: counters are
// atomics reached through fixed arrays. The one exception is the first observation of an
// (op, code) pair other than OK, which creates its series under the family's lock, once.
// Serialize takes the registry's locks.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace prometheus {
class Counter;
class Gauge;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace attic {

class WorkerMetrics {
 public:
  // transport::Method numbers are 1..kMaxOp; other numbers are counted under op="Unknown".
  static constexpr int kMaxOp = 9;
  static constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

  // `worker_name` becomes the `worker` label of attic_worker_build_info. Creates every series
  // except the non-OK (op, code) pairs. Cannot fail: the names are constants.
  explicit WorkerMetrics(const std::string& worker_name);
  ~WorkerMetrics();
  WorkerMetrics(const WorkerMetrics&) = delete;
  WorkerMetrics& operator=(const WorkerMetrics&) = delete;

  // One finished request: `op` is the transport::Method number, `seconds` its service time.
  void ObserveRequest(int op, StatusCode code, double seconds);
  void AddBytes(uint64_t received, uint64_t sent);
  void AddKeysScanned(uint64_t n);
  // Where one Attend's service time went: reading the batch, appending tokens and gathering
  // block views (prepare), the attention kernels on the pool (compute), merging chunks and
  // building the reply (reply). Seconds, added to attic_worker_attend_phase_seconds_total.
  void AddAttendPhases(double prepare, double compute, double reply);
  void SetQueueDepth(int64_t depth);
  // Heads of sparse Attend requests answered from an index, and answered densely.
  void AddAttendHeads(uint64_t sparse, uint64_t dense);
  // Sparse heads answered densely while a fold held their index; online recall checks: heads
  // checked, the sum of their k, hits among those.
  void AddRetrievalChecks(uint64_t fallbacks, uint64_t heads, uint64_t exact, uint64_t hits);
  void AddStandInHeads(uint64_t heads);

  // Retrieval figures (worker_internal::RetrievalState::Stats), copied before each scrape; the
  // counters advance by the running totals' growth since the previous call.
  struct RetrievalFigures {
    int64_t indexes = 0, index_bytes = 0, dense_heads = 0, queued = 0;
    uint64_t builds = 0, folds = 0;
    double build_seconds = 0;
    uint64_t served_by_scan = 0, served_dense = 0;  // heads whose index missed its recall check
    uint64_t guard_raised = 0, guard_scan = 0, guard_dense = 0;  // recall guard actions
  };
  void SetRetrieval(const RetrievalFigures& r) EXCLUDES(build_seconds_mu_);

  // The KV store's figures (KvStoreStats), copied before each scrape. prefix_hits is the store's
  // running total; the counter advances by its growth since the previous call.
  struct KvFigures {
    int64_t k_used_blocks = 0, k_capacity_blocks = 0, v_used_blocks = 0, v_capacity_blocks = 0;
    size_t block_bytes = 0;  // bytes of one K (or V) block
    int64_t sequences = 0, cached_blocks = 0, shared_blocks = 0, prefix_blocks = 0, prefix_hits = 0;
  };
  void SetKv(const KvFigures& kv);

  // The SSD tier's figures (KvStoreStats and its SsdTierStats, and the worker's own totals),
  // copied before each scrape; each *_total counter advances by its running total's growth.
  struct SsdFigures {
    bool tier = false;
    int64_t value_dram_blocks = 0, v_resident_blocks = 0, v_spilled_blocks = 0;
    int64_t pending_durable_blocks = 0, recovered_sequences = 0, prefix_entries = 0;
    uint64_t live_blob_bytes = 0, sst_bytes = 0;
    double write_amplification = 0;
    bool direct_io = false;
    uint64_t capacity_bytes = 0, used_bytes = 0;  // ssd.capacity_mb (0 = none); in use
    bool full = false;                            // the last write needing room got none
    // Running totals.
    uint64_t spilled = 0, reloaded = 0, streamed = 0, durable_retries = 0;
    uint64_t bytes_read = 0, bytes_written = 0, writes = 0, write_errors = 0;
    uint64_t durability_errors = 0, checksum_failures = 0, flushes = 0, prefix_hits = 0;
    uint64_t sample_store_errors = 0;
    uint64_t reclaimed_bytes = 0, full_refusals = 0;
  };
  void SetSsd(const SsdFigures& ssd);
  // Open connections, and the transport's running total of refused handshakes (the counter
  // advances by its growth since the previous call).
  void SetConnections(int64_t open, uint64_t handshakes_refused_total);

  // Every series in the Prometheus text exposition format 0.0.4. On an unexpected failure of
  // the library, a comment line saying so (a scrape then sees no samples rather than a crash).
  std::string Serialize() const;

  // Observations of `op` per bucket of attic_worker_request_duration_seconds so far, not
  // cumulative: DurationBuckets().size() + 1 counts, the last one for +Inf. The scheduler
  // agent takes the difference of two calls for the latency between heartbeats.
  std::vector<uint64_t> DurationCounts(int op) const;

  // Upper bounds of attic_worker_request_duration_seconds, seconds, ascending (+Inf implied).
  static std::span<const double> DurationBuckets();
  // "Attend" for 5; "Unknown" outside 1..kMaxOp.
  static std::string_view OpName(int op);

 private:
  struct Durations;  // lock-free histogram per op, defined in worker_metrics.cc

  void AddSsdSeries();
  prometheus::Counter* RequestCounter(int op, int code);
  prometheus::Counter* ErrorCounter(int op, int code);
  void SetTotal(prometheus::Counter* counter, std::atomic<uint64_t>* last, uint64_t total);

  using CounterSlots =
      std::array<std::array<std::atomic<prometheus::Counter*>, kNumStatusCodes>, kMaxOp + 1>;

  const std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_family_;
  prometheus::Family<prometheus::Counter>* errors_family_;
  CounterSlots requests_{};  // [op][code]; null until the series exists
  CounterSlots errors_{};
  std::unique_ptr<Durations> durations_;
  prometheus::Counter* bytes_received_;
  prometheus::Counter* bytes_sent_;
  prometheus::Counter* keys_scanned_;
  std::array<prometheus::Counter*, 3> attend_phases_;  // prepare, compute, reply
  prometheus::Counter* prefix_hits_;
  prometheus::Counter* handshakes_refused_;
  prometheus::Gauge* queue_depth_;
  prometheus::Gauge* connections_;
  prometheus::Gauge* sequences_;
  std::array<prometheus::Gauge*, 4> kv_blocks_;  // k used, k capacity, v used, v capacity
  std::array<prometheus::Gauge*, 4> kv_bytes_;
  std::array<prometheus::Gauge*, 3> prefix_cache_blocks_;  // cached, shared, total
  std::array<prometheus::Counter*, 2> attend_heads_;  // sparse, dense
  prometheus::Counter* dense_fallbacks_;
  prometheus::Counter* stand_in_heads_;
  std::array<prometheus::Counter*, 3> recall_counters_;  // heads, exact, hits
  prometheus::Gauge* recall_;                             // moving average over checks
  Mutex recall_mu_;
  double recall_average_ GUARDED_BY(recall_mu_) = -1.0;
  std::array<prometheus::Gauge*, 4> retrieval_gauges_;  // indexes, bytes, dense heads, queued
  std::array<prometheus::Counter*, 3> retrieval_counters_;  // builds, folds, build seconds
  std::atomic<uint64_t> last_builds_{0};
  std::atomic<uint64_t> last_folds_{0};
  std::array<prometheus::Counter*, 2> recall_fallbacks_;  // to="scan", to="dense"
  std::atomic<uint64_t> last_served_by_scan_{0};
  std::atomic<uint64_t> last_served_dense_{0};
  std::array<prometheus::Counter*, 3> recall_guard_;  // action="raise", "scan", "dense"
  std::atomic<uint64_t> last_guard_raised_{0};
  std::atomic<uint64_t> last_guard_scan_{0};
  std::atomic<uint64_t> last_guard_dense_{0};
  Mutex build_seconds_mu_;
  double last_build_seconds_ GUARDED_BY(build_seconds_mu_) = 0;
  std::atomic<uint64_t> last_prefix_hits_{0};
  // SSD gauges: tier, value DRAM budget, resident, spilled, pending durable, recovered,
  // prefix entries, blob bytes, SST bytes, write amplification, direct I/O.
  std::array<prometheus::Gauge*, 14> ssd_gauges_;
  // SSD counters in SsdFigures' order of running totals, and their last totals.
  static constexpr size_t kSsdCounters = 15;
  std::array<prometheus::Counter*, kSsdCounters> ssd_counters_;
  std::array<std::atomic<uint64_t>, kSsdCounters> last_ssd_{};
  std::atomic<uint64_t> last_handshakes_refused_{0};
};

}  // namespace attic
