// WorkerService: what an attention worker does with a request — the KV store, the compute
// pool and one handler per method of proto/attic.capnp. attic-worker (worker_main.cc) puts
// it behind a transport::RpcServer; tests may call Handle() directly.
//
//   ASSIGN_OR_RETURN(auto service, WorkerService::Create(options, &metrics));
//   RpcServer::Start(server_options, [&](IncomingMessage req, Responder resp) {
//     service->Submit(std::move(req), std::move(resp));   // queued, never blocks
//   });
//
// Execution: one dispatcher thread takes requests in arrival order and runs each to
// completion; Attend spreads its (sequence, KV head, token chunk) tasks over the compute pool,
// the dispatcher included. Running one request at a time keeps every core on one batch (the
// step's latency is what the engine waits for) and means no append ever races a read of the
// same sequence. A request whose deadline passed while it was queued is answered
// DEADLINE_EXCEEDED without running.
//
// With an SSD tier (options.ssd.path, docs/worker.md "Durability and restart"): Create
// recovers the directory's sequences and prefix cache and hands each recovered layer's stored
// query sample to the retrieval state, whose indexes then rebuild in the background; AppendKv
// and Attend replies carry each layer's durable length; OpenSequence with `resume` takes over
// a recovered sequence; and after each request the dispatcher runs the store's upkeep
// (KvStore::Maintain: spilling values, retrying failed write-throughs), never while an
// Attend runs.
//
// Thread safety: Submit may be called from any thread; Handle only from one thread at a time
// (the dispatcher's, or a test's while no dispatcher runs requests).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "attention_workers/thread_pool.h"
#include "common/dtype.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "kvstore/kv_store.h"
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
  // Threads that compute attention (the dispatcher included); 0 = one per core.
  int compute_threads = 0;
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
  // Stops the dispatcher; queued requests are answered UNAVAILABLE.
  ~WorkerService();
  WorkerService(const WorkerService&) = delete;
  WorkerService& operator=(const WorkerService&) = delete;

  // Queues a request for the dispatcher. Called on the transport's progress thread.
  void Submit(transport::IncomingMessage request, transport::Responder responder);

  // Runs one request: the reply on success, or the error to send back.
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
  // Threads computing attention (the dispatcher included).
  int compute_threads() const { return pool_->num_threads(); }
  // The first global token position of this worker's shard of sequence `id`, as its
  // OpenSequence said (token-range sharding); 0 for a sequence opened without one, recovered
  // and not yet resumed, or not open. Any thread (the scheduler agent reads it).
  uint64_t TokenBegin(uint64_t id) const;

 private:
  struct Pending {
    transport::IncomingMessage request;
    transport::Responder responder;
  };

  explicit WorkerService(const WorkerServiceOptions& options, WorkerMetrics* metrics);
  void DispatchLoop();
  void Run(Pending pending);

  StatusOr<transport::OutgoingMessage> OpenSequence(const transport::IncomingMessage& req);
  StatusOr<transport::OutgoingMessage> LookupPrefix(const transport::IncomingMessage& req);
  StatusOr<transport::OutgoingMessage> AppendKv(const transport::IncomingMessage& req);
  StatusOr<transport::OutgoingMessage> CloseSequence(const transport::IncomingMessage& req);
  StatusOr<transport::OutgoingMessage> Stats(const transport::IncomingMessage& req);

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
                    std::vector<int32_t> positions, bool build, int kind_number);
  void FeedRetrieval(uint64_t id, int layer, int heads, DType dtype, const std::byte* q,
                     std::vector<int32_t> positions, bool build, int kind_number);
  // KvStore::Maintain between requests, on the dispatcher thread.
  void MaintainTier();

  const WorkerServiceOptions options_;
  uint64_t fingerprint_ = 0;
  WorkerMetrics* const metrics_;
  std::unique_ptr<KvStore> store_;
  std::unique_ptr<ThreadPool> pool_;
  // Reads the store from its build threads: destroyed (joined) before the store.
  std::unique_ptr<worker_internal::RetrievalState> retrieval_;
  std::unique_ptr<worker_internal::AttendExecutor> attend_;
  RecoveryReport recovery_;  // written by Create only

  // SSD tier state, touched by the dispatcher thread only (and by Create before it starts):
  // each (sequence, layer)'s encoded query sample as stored (query_sample_codec.h), and
  // whether write-throughs are failing (logged once per episode).
  std::map<std::pair<uint64_t, int>, std::string> samples_;
  bool durability_failing_ = false;
  // Read by RefreshMetrics on the control plane's thread.
  std::atomic<uint64_t> sample_store_errors_{0};
  std::atomic<uint64_t> durable_retries_{0};

  // Nonzero token begins of open shards: written by the dispatcher, read by the agent.
  mutable std::mutex token_begins_mu_;
  std::map<uint64_t, uint64_t> token_begins_;  // guarded by token_begins_mu_

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<Pending> queue_;  // guarded by mu_
  bool running_ = false;       // guarded by mu_: the dispatcher is inside Run
  bool stop_ = false;          // guarded by mu_
  std::thread dispatcher_;
};

}  // namespace attic
