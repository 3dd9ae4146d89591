// WorkerService: what an attention worker does with a request — the KV store, the compute
// pool and one handler per method of proto/attic.capnp. attic-worker (worker_main.cc) puts
// it behind a transport::RpcServer; tests may call Handle() directly.
//
//   ASSIGN_OR_RETURN(auto service, WorkerService::Create(options, &metrics));
//   RpcServer::Start(server_options, [&](IncomingMessage req, Responder resp) {
//     service->Submit(std::move(req), std::move(resp));   // queued, never blocks
//   });
//
// Execution: Submit decodes the request's header (services/worker/codec: nothing past it
// sees Cap'n Proto) and hands it to the request queue (request_queue.h), which admits it or
// refuses it at once with RESOURCE_EXHAUSTED, and runs requests of different sequences
// concurrently on its runner threads; requests that share a sequence run in arrival order, so
// an append never races a read of the same sequence. Each Attend spreads its (sequence, KV
// head, token chunk) tasks over the compute pool, which serves several requests' batches at
// once. CloseSequence is never refused by admission. A request whose deadline passed while it
// was queued is answered DEADLINE_EXCEEDED without running.
//
// With an SSD tier (options.ssd.path, docs/worker.md "Durability and restart"): Create
// recovers the directory's sequences and prefix cache and hands each recovered layer's stored
// query sample to the retrieval state, whose indexes then rebuild in the background; AppendKv
// and Attend replies carry each layer's durable length; OpenSequence with `resume` takes over
// a recovered sequence; and when the store's upkeep is due (KvStore::Maintain: spilling
// values, retrying failed write-throughs) it runs alone between requests, as the queue's
// exclusive job, since a spill drops value pages a running Attend may read.
//
// Thread safety: Submit and Handle may be called from any thread (Handle runs the request on
// the caller's thread, outside the queue's ordering: tests use it while no queued request
// touches the same sequence).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "attention_workers/thread_pool.h"
#include "common/dtype.h"
#include "common/index_kind.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "kvstore/kv_store.h"
#include "services/worker/codec/worker_codec.h"
#include "services/worker/request_queue.h"
#include "services/worker/retrieval_state.h"
#include "transport/message.h"
#include "transport/rpc_server.h"

namespace attic {

class WorkerMetrics;

namespace worker_internal {
class AttendExecutor;
}

struct WorkerServiceOptions {
  // Names the worker in the Hello reply, logs and error messages.
  std::string name = "attic-worker";
  // The one model this worker serves; OpenSequence must carry the same spec.
  ModelSpec spec;
  // Fingerprint announced in the Hello reply; 0 = spec.Fingerprint().
  uint64_t model_fingerprint = 0;
  // DRAM for the K and V pools together, split evenly.
  uint64_t kv_memory_bytes = uint64_t{1} << 30;
  // Prefault the pools at start.
  bool populate = false;
  // Threads that compute attention; 0 = one per core.
  int compute_threads = 0;
  // Compute threads poll for the next batch this long before sleeping, us; 0 = sleep at once.
  int compute_spin_us = 0;
  // Requests run at once (each spreads over the compute pool); 0 = min(4, compute threads).
  int max_concurrent_requests = 0;
  // Requests waiting at most; beyond it admission refuses with RESOURCE_EXHAUSTED.
  int max_queued_requests = 1024;
  // Retrieval attention: index kind, default selection, background builds.
  worker_internal::RetrievalConfig retrieval;
  // The SSD tier; an empty ssd.path = DRAM only. With a tier the K pool keeps its half of
  // kv_memory_bytes, the V pool gets as many block ids, and value_dram_fraction of them (or
  // value_dram_bytes when nonzero) keep their bytes in DRAM; the rest spill to SSD between the
  // watermarks (KvStoreOptions).
  SsdTierOptions ssd;
  double value_dram_fraction = 1.0;
  uint64_t value_dram_bytes = 0;
  double spill_high_watermark = 0.9;
  double spill_low_watermark = 0.75;
  // The tier's capacity in bytes; 0 = no limit but the disk (KvStoreOptions).
  uint64_t ssd_capacity_bytes = 0;
};

// What Create recovered from the SSD tier.
struct RecoveryReport {
  int64_t sequences = 0;
  int64_t tokens = 0;           // over every layer of every recovered sequence
  int64_t sample_layers = 0;    // layers whose query sample was restored (indexes rebuilding)
  double seconds = 0;           // opening the store (its recovery included) and the samples
};

class WorkerService {
 public:
  // INVALID_ARGUMENT for a bad spec or a pool too small to hold one block per KV head;
  // RESOURCE_EXHAUSTED if the pools cannot be allocated; the SSD tier's error when its
  // directory cannot be opened or recovered. metrics may be null; not owned.
  static StatusOr<std::unique_ptr<WorkerService>> Create(const WorkerServiceOptions& options,
                                                         WorkerMetrics* metrics);
  // Stops the runners after the requests running now; queued ones are answered UNAVAILABLE.
  ~WorkerService();
  WorkerService(const WorkerService&) = delete;
  WorkerService& operator=(const WorkerService&) = delete;

  // Decodes a request and queues it, or answers it at once: the codec's error for a malformed
  // one, RESOURCE_EXHAUSTED when admission refuses it. Called on the transport's progress
  // thread; never blocks.
  void Submit(transport::IncomingMessage request, transport::Responder responder);

  // Decodes and runs one request on the calling thread: the reply on success, or the error
  // to send back.
  StatusOr<transport::OutgoingMessage> Handle(const transport::IncomingMessage& request);

  // Blocks until nothing is queued or running, or the deadline passes (false then).
  bool WaitIdle(transport::Deadline deadline);
  int64_t queue_depth() const;

  // The Hello reply header (wire::HelloReply) the RpcServer sends on accepted handshakes.
  std::string HelloReplyHeader() const;
  uint64_t model_fingerprint() const { return fingerprint_; }
  const ModelSpec& spec() const { return options_.spec; }
  // The KV pools, for the transport to register.
  std::vector<std::span<std::byte>> memory_regions() const;
  const KvStore& store() const { return *store_; }
  worker_internal::RetrievalState& retrieval() { return *retrieval_; }
  // Copies the store's figures into the metrics (called before each scrape).
  void RefreshMetrics() const;
  const RecoveryReport& recovery() const { return recovery_; }
  // Threads computing attention.
  int compute_threads() const { return pool_->num_threads(); }
  // The first global token position of this worker's shard of sequence `id`, as its
  // OpenSequence said (token-range sharding); 0 for a sequence opened without one, recovered
  // and not yet resumed, or not open. Any thread (the scheduler agent reads it).
  uint64_t TokenBegin(uint64_t id) const;

 private:
  explicit WorkerService(const WorkerServiceOptions& options, WorkerMetrics* metrics);
  // Runs a decoded request on the calling thread.
  StatusOr<transport::OutgoingMessage> Dispatch(transport::Method method,
                                                const worker_codec::WorkerCall& call,
                                                std::span<const std::byte> payload);
  // Runs a queued request and answers it.
  void Serve(const transport::IncomingMessage& request, const worker_codec::WorkerCall& call,
             transport::Responder& responder);

  StatusOr<transport::OutgoingMessage> OpenSequence(const worker_codec::OpenSequenceCall& c);
  StatusOr<transport::OutgoingMessage> LookupPrefix(const worker_codec::LookupPrefixCall& c);
  StatusOr<transport::OutgoingMessage> AppendKv(const worker_codec::AppendKvCall& c,
                                                std::span<const std::byte> payload);
  StatusOr<transport::OutgoingMessage> Attend(const worker_codec::AttendCall& c,
                                              std::span<const std::byte> payload);
  StatusOr<transport::OutgoingMessage> CloseSequence(const worker_codec::CloseSequenceCall& c);
  StatusOr<transport::OutgoingMessage> Stats();

  // The SSD tier's side (tier_handlers.cc). Resume answers OpenSequence with `resume`.
  Status Recover();
  Status RestoreSamples(const SequenceInfo& info, int layer, std::string blob);
  StatusOr<transport::OutgoingMessage> Resume(const SequenceOptions& seq);
  // ALREADY_EXISTS for a plain OpenSequence of a recovered sequence.
  Status CheckNotRecovered(uint64_t id) const;
  // Records (or, with 0, forgets) the token begin of sequence `id`'s shard.
  void SetTokenBegin(uint64_t id, uint64_t token_begin);
  // A query sample (q [n, G * heads, D] in dtype at `q`, n = positions.size()) and/or a build
  // request for (id, layer): to the retrieval state, and with a tier appended to the layer's
  // stored sample.
  void AcceptSample(uint64_t id, int layer, int heads, DType dtype, const std::byte* q,
                    std::vector<int32_t> positions, bool build, std::optional<IndexKind> kind);
  void FeedRetrieval(uint64_t id, int layer, int heads, DType dtype, const std::byte* q,
                     std::vector<int32_t> positions, bool build, std::optional<IndexKind> kind);
  void LogRecovery(const std::string& path) const;
  // Asks the queue for the store's upkeep when it is due (after a request).
  void ScheduleUpkeep();
  // KvStore::Maintain, alone (the queue's exclusive job).
  void MaintainTier();
  // An executor for one Attend (one per request running at once), and its return.
  std::unique_ptr<worker_internal::AttendExecutor> TakeExecutor();
  void ReturnExecutor(std::unique_ptr<worker_internal::AttendExecutor> executor);

  const WorkerServiceOptions options_;
  uint64_t fingerprint_ = 0;
  WorkerMetrics* const metrics_;
  std::unique_ptr<KvStore> store_;
  std::unique_ptr<ThreadPool> pool_;
  // Reads the store from its build threads: destroyed (joined) before the store.
  std::unique_ptr<worker_internal::RetrievalState> retrieval_;
  RecoveryReport recovery_;  // written by Create only
  worker_codec::CodecContext codec_;

  Mutex executors_mu_;
  std::vector<std::unique_ptr<worker_internal::AttendExecutor>> executors_
      GUARDED_BY(executors_mu_);

  // Each (sequence, layer)'s encoded query sample as stored (query_sample_codec.h).
  Mutex samples_mu_;
  std::map<std::pair<uint64_t, int>, std::string> samples_ GUARDED_BY(samples_mu_);
  // Whether write-throughs are failing (logged once per episode): written by MaintainTier.
  std::atomic<bool> durability_failing_{false};
  std::atomic<bool> upkeep_asked_{false};
  // Read by RefreshMetrics on the control plane's thread.
  std::atomic<uint64_t> sample_store_errors_{0};
  std::atomic<uint64_t> durable_retries_{0};

  // Nonzero token begins of open shards: written by requests, read by the agent.
  mutable Mutex token_begins_mu_;
  std::map<uint64_t, uint64_t> token_begins_ GUARDED_BY(token_begins_mu_);

  // Last: destroyed first, so no request runs while the rest goes.
  std::unique_ptr<worker_internal::RequestQueue> queue_;
};

}  // namespace attic
