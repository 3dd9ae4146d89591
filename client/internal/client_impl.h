// ClientImpl: Client (client/client.h) over one transport::RpcClient with a Connection per
// worker. Calls validate on the caller's thread, update the sequence's bookkeeping, copy the
// caller's tensors into request payloads, and send; replies complete the futures on the
// transport's callback thread (merging an Attend's partial states there: a few KB per item).
//
// Split over files by concept: client_impl.cc (connect, open, lookup, close, queries),
// client_kv.cc (Prefill, BuildIndex, Append), client_attend.cc (Attend); Resume's bookkeeping
// is in sequence.cc.
//
// Thread safety: every method may be called from any thread; state lives in the
// SequenceTable and the SequenceStates (sequence.h), each with its own mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "client/client.h"
#include "client/internal/scheduler_link.h"
#include "client/internal/sequence.h"
#include "client/internal/worker_link.h"
#include "common/thread_annotations.h"
#include "transport/rpc_client.h"

namespace attic::client_internal {

// Largest payload of one AppendKv request; bigger prefill chunks are split at block
// boundaries so no single message monopolizes a connection or a worker's receive buffers.
inline constexpr size_t kMaxAppendPayloadBytes = size_t{64} << 20;

class ClientImpl final : public Client {
 public:
  static StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  ClientImpl(const ClientImpl&) = delete;
  ClientImpl& operator=(const ClientImpl&) = delete;

  std::future<Status> Open(const OpenOptions& options) override;
  std::future<StatusOr<ResumeInfo>> Resume(const OpenOptions& options) override;
  std::future<StatusOr<PrefixMatch>> LookupPrefix(uint64_t id,
                                                  std::span<const uint64_t> hashes) override;
  std::future<Status> Prefill(uint64_t id, int layer, int64_t first_token, const TensorView& k,
                              const TensorView& v) override;
  std::future<Status> BuildIndex(uint64_t id, int layer, const TensorView& q,
                                 std::span<const int64_t> positions,
                                 std::optional<IndexKind> kind) override;
  std::future<Status> Append(uint64_t id, int layer, const TensorView& k,
                             const TensorView& v) override;
  std::future<StatusOr<AttendStats>> Attend(AttendBatch batch) override;
  std::future<StatusOr<Placement>> Place(const PlaceOptions& options) override;
  std::future<StatusOr<Placement>> Locate(uint64_t id) override;
  std::future<Status> Close(uint64_t id) override;
  StatusOr<int64_t> Length(uint64_t id, int layer) const override;
  StatusOr<int64_t> DurableLength(uint64_t id, int layer) const override;
  ClientStats Stats() const override;
  const ClientOptions& options() const override { return options_; }

 private:
  ClientImpl(const ClientOptions& options, std::unique_ptr<transport::RpcClient> rpc,
             std::vector<WorkerLink> workers);

  size_t NumWorkers() const EXCLUDES(links_mu_) {
    MutexLock lock(&links_mu_);
    return workers_.size();
  }
  // The index of the worker at data address `address`, connecting to it (and adding it at the
  // next index) when the client does not know it yet.
  StatusOr<int> WorkerIndex(const std::string& address) EXCLUDES(links_mu_, connect_mu_);
  // A scheduler's placement as a plan over the client's worker indices.
  StatusOr<Placement> ToPlacement(const scheduler::Placement& placed)
      EXCLUDES(links_mu_, connect_mu_);
  // Tells the scheduler, from the release thread, that sequence `id` was closed.
  void QueueRelease(uint64_t id) EXCLUDES(release_mu_);
  void ReleaseLoop() EXCLUDES(release_mu_);

  transport::Deadline CallDeadline() const { return transport::DeadlineAfter(options_.timeout); }
  // The current link to a worker (a copy: links are replaced when a worker is reconnected).
  WorkerLink Link(size_t worker) const EXCLUDES(links_mu_) {
    MutexLock lock(&links_mu_);
    return workers_[worker];
  }
  WorkerLink LinkOf(const SequenceState& seq, size_t shard) const EXCLUDES(links_mu_) {
    return Link(static_cast<size_t>(seq.plan.shards[shard].worker));
  }
  // Connects again to every worker of `plan` whose connection has failed (a restarted
  // worker), within connect_timeout. The first failure, naming the worker.
  Status ReconnectFailed(const ShardPlan& plan) EXCLUDES(links_mu_);
  // INVALID_ARGUMENT "<context>: layer ... is not in [0, L)" unless 0 <= layer < L.
  Status CheckLayer(std::string_view context, int layer) const;
  // Sends each shard's AppendKv requests (shard -> requests and the shard-local length the
  // worker must report after each) and completes the future; a failure marks the layer.
  std::future<Status> SendAppends(std::shared_ptr<SequenceState> seq, int layer,
                                  std::vector<std::pair<size_t, std::vector<Request>>> requests,
                                  std::vector<std::vector<int64_t>> expected_lengths);

  // Shared with callbacks, which may outlive the client.
  const std::shared_ptr<Counters> counters_ = std::make_shared<Counters>();
  const std::shared_ptr<SequenceTable> table_ = std::make_shared<SequenceTable>();
  const ClientOptions options_;
  const uint64_t fingerprint_;
  // Destroyed after the connections: it fails whatever is still pending.
  const std::unique_ptr<transport::RpcClient> rpc_;
  mutable Mutex links_mu_;
  std::vector<WorkerLink> workers_ GUARDED_BY(links_mu_);
  std::vector<std::string> addresses_ GUARDED_BY(links_mu_);  // data address of each worker
  // Serializes connecting to workers met in placements (one connection per address).
  Mutex connect_mu_;

  // Releases for the scheduler, sent by one thread so Close never waits on it.
  Mutex release_mu_;
  CondVar release_cv_;
  std::vector<uint64_t> releases_ GUARDED_BY(release_mu_);
  bool stopping_ GUARDED_BY(release_mu_) = false;
  std::thread release_thread_;

 public:
  ~ClientImpl() override;
};

}  // namespace attic::client_internal
