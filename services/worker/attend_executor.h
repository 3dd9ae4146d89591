// AttendExecutor: runs one Attend request (one layer of one decode step for a batch of
// sequences) and builds its reply. The glue between the codec, the store and the plan/run of
// attention_workers/ (attend_plan.h, attend_run.h):
//
//   1. Prepare, one pool task per item: append the item's token, read its blocks' views from
//      the store, convert its queries into the item's rows of the workspace.
//   2. Plan: each (item, KV head) becomes an AttendHead (its blocks, dense or sparse from the
//      retrieval state, the window left out where the caller keeps it); PlanAttend cuts them
//      into tasks (split-K chunks, one task per sparse head, spilled blocks listed).
//   3. Run: RunAttend on the pool writes each head's merged state straight into its rows of
//      the reply payload; sparse tasks run in SparseAttend, spilled values load through this
//      executor (a ValueLoader over the store).
//   4. Reply: per-item figures and the header, through the codec.
//
// Each item succeeds or fails on its own; a failed item carries its code in the reply and does
// not fail the batch (its rows of the payload are zeroed).
//
// Thread safety: not thread-safe; one Run at a time. The worker keeps one executor per request
// runner (requests of different sequences run concurrently on the shared pool). Items, the
// plan, the workspace and reply payloads are reused across requests, so the steady state
// allocates little beyond the reply's header.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "attention_workers/attend_plan.h"
#include "attention_workers/attend_run.h"
#include "attention_workers/thread_pool.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "kvstore/kv_store.h"
#include "services/worker/codec/worker_codec.h"
#include "services/worker/retrieval_state.h"
#include "services/worker/sparse_attend.h"
#include "transport/message.h"

namespace attic::worker_internal {

class AttendExecutor final : private ValueLoader {
 public:
  // retrieval serves sparse requests; not owned.
  AttendExecutor(KvStore* store, ThreadPool* pool, const ModelSpec& spec,
                 RetrievalState* retrieval);
  ~AttendExecutor() override;
  AttendExecutor(const AttendExecutor&) = delete;
  AttendExecutor& operator=(const AttendExecutor&) = delete;

  // Seconds one Run spent in each phase (see WorkerMetrics::AddAttendPhases).
  struct Phases {
    double prepare = 0.0;  // store reads and query conversion
    double compute = 0.0;  // plan and run
    double reply = 0.0;
  };
  // What one Run did, over all items and heads.
  struct Figures {
    uint64_t keys_scanned = 0;
    uint64_t selected_tokens = 0;
    uint64_t bytes_read = 0;
    uint64_t sparse_heads = 0;  // answered from an index
    uint64_t dense_heads = 0;   // sparse requests' heads answered densely
    uint64_t ssd_bytes_read = 0;  // values read from the SSD tier (dense streams, sparse fetches)
    uint64_t stand_in_heads = 0;  // sparse heads searched through a stand-in index
    uint64_t fallback_heads = 0;  // sparse heads answered densely because a fold held the index
    uint64_t recall_heads = 0;    // online recall: sparse heads checked exactly,
    uint64_t recall_exact = 0;    // the sum of their k,
    uint64_t recall_hits = 0;     // and how many of those the index retrieved
  };
  // The reply to an Attend request; call was decoded and checked by the codec, payload is the
  // request's. Request-level errors are returned; item errors travel inside the reply.
  StatusOr<transport::OutgoingMessage> Run(const worker_codec::AttendCall& call,
                                           std::span<const std::byte> payload, Figures* figures,
                                           Phases* phases);

 private:
  struct Item;  // one sequence of the request

  void TakeCall(const worker_codec::AttendCall& call);
  Status Prepare(std::span<const std::byte> payload, int layer, Item& item);
  // The plan's heads of every prepared item, then the plan.
  void PlanHeads();
  // The reply payload and each head's rows in it.
  void PlaceOutputs();
  transport::OutgoingMessage BuildReply(Figures* figures);
  Status LoadValues(uint32_t head, std::span<const int32_t> blocks,
                    std::span<std::byte* const> dst, uint64_t* ssd_bytes) override;

  KvStore* const store_;
  ThreadPool* const pool_;
  const ModelSpec spec_;
  const int group_;
  RetrievalState* const retrieval_;
  int layer_ = 0;
  SparseRequest sparse_;

  std::vector<Item> items_;
  std::vector<float> q_;             // fp32 queries, [items][Hq][D] (an item's first G * h rows)
  std::vector<AttendHead> heads_;    // every ok item's heads, item after item
  std::vector<PlanHead> plan_heads_; // the same heads as the sparse tasks and loads see them
  std::vector<uint8_t> dense_in_sparse_;  // per head: a sparse request's head planned dense
  std::vector<AttendHeadIo> io_;
  AttendPlan plan_;
  AttendWorkspace workspace_;
  SparseAttend sparse_attend_;
  std::vector<worker_codec::AttendItemReply> replies_;
  std::shared_ptr<std::vector<float>> payload_;  // the reply being built

  // Reply payloads, reused: a fresh buffer of a few hundred KB per reply costs page faults
  // (glibc maps large allocations anew each time). Shared with the buffers' deleters, which
  // run on the transport thread once a reply has been sent.
  class ReplyBuffers : public std::enable_shared_from_this<ReplyBuffers> {
   public:
    std::shared_ptr<std::vector<float>> Get(size_t floats);

   private:
    static constexpr size_t kMaxFree = 8;
    Mutex mu_;
    std::vector<std::unique_ptr<std::vector<float>>> free_ GUARDED_BY(mu_);
  };
  std::shared_ptr<ReplyBuffers> reply_buffers_;
};

}  // namespace attic::worker_internal
