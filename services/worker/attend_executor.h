// AttendExecutor: runs one Attend request (one layer of one decode step for a batch of
// sequences) on the compute pool and builds its reply.
//
// A request's work is split into tasks of (item, KV head, token chunk): chunks keep every
// thread busy even when a batch has fewer (sequence, head) pairs than threads (split-K, as
// flash-decoding does), and their partial states are merged by LSE afterwards. Each item
// succeeds or fails on its own; a failed item carries its code in the reply and does not
// fail the batch.
//
// Preparing the items (appending each sequence's token, gathering its block views, converting
// its queries) and merging the chunk partials run on the pool too, one task per item and per
// (item, head).
//
// Sparse mode (retrieval attention, docs/retrieval.md): each (item, KV head) whose index is
// ready is one task that searches the index with the head's GQA group, builds the selection
// (sinks + window + retrieved) and attends to it exactly; heads without an index, heads
// profiled as diffuse and short contexts run the dense tasks above. Per-request parameters
// default to the worker's retrieval settings.
//
// Thread safety: not thread-safe; one Run at a time. The worker keeps one executor per request
// runner (requests of different sequences run concurrently on the shared pool). Scratch
// buffers and reply payloads are reused across requests, so the steady state allocates little
// beyond the reply's header.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "attention_workers/decode_attention.h"
#include "attention_workers/retrieval/key_index.h"
#include "attention_workers/retrieval/locality.h"
#include "attention_workers/retrieval/selection.h"
#include "attention_workers/thread_pool.h"
#include "common/model_spec.h"
#include "common/thread_annotations.h"
#include "common/status.h"
#include "kvstore/kv_store.h"
#include "services/worker/codec/worker_codec.h"
#include "services/worker/retrieval_state.h"
#include "transport/message.h"

namespace attic::worker_internal {

class AttendExecutor {
 public:
  // retrieval serves sparse requests; not owned.
  AttendExecutor(KvStore* store, ThreadPool* pool, const ModelSpec& spec,
                 RetrievalState* retrieval);
  ~AttendExecutor();
  AttendExecutor(const AttendExecutor&) = delete;
  AttendExecutor& operator=(const AttendExecutor&) = delete;

  // The reply to an Attend request; *keys_scanned gets the keys (token x KV head) whose dot
  // products were computed. Request-level errors (an unreadable header) are returned; item
  // errors travel inside the reply.
  // Seconds one Run spent in each phase (see WorkerMetrics::AddAttendPhases).
  struct Phases {
    double prepare = 0.0;
    double compute = 0.0;
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
  };
  // call was decoded and checked by the codec; payload is the request's.
  StatusOr<transport::OutgoingMessage> Run(const worker_codec::AttendCall& call,
                                           std::span<const std::byte> payload, Figures* figures,
                                           Phases* phases);

  // The sparse request's parameters, defaults resolved.
  struct SparseRun {
    bool active = false;
    retrieval::SelectionParams selection;
    IndexKind kind = IndexKind::kGraph;
    int effort = 0;
  };

  // Minimum tokens per task: smaller chunks cost more in merging than they win in balance.
  static constexpr int kMinChunkTokens = 1024;
  // Tasks per compute thread a batch is cut into when it is long enough.
  static constexpr int kTasksPerThread = 16;

 private:
  struct Item;   // one sequence of the request
  struct Slot;   // one (item, KV head): its runs and token count
  struct Task;   // one (item, head, token chunk), or one sparse (item, head)
  struct SparseScratch;  // per sparse task, reused across requests


  // One item: appends its token, reads its block views and converts its queries into the
  // item's own scratch. Runs on a pool thread; items are distinct sequences.
  Status Prepare(std::span<const std::byte> payload, int layer, Item& item);
  // Moves the prepared items' runs into runs_ and slots_.
  void Gather();
  void PlanTasks();
  void TrimSlot(Slot& slot, int window);
  void Compute();
  // One sparse task: search, select, attend. Falls back to dense when the index is busy.
  Status RunSparse(size_t t, float* out, float* lse);
  // runs are consecutive blocks of the task's (item, head) starting at block first_block.
  Status RunDense(Task& task, std::span<const KvRun> runs, int first_block, float* out,
                  float* lse);
  // A sparse step over a sequence with spilled values: chooses the top k with the locality
  // plan, reloads the blocks it needs and fills scratch.selection and scratch.fetched_runs.
  Status FetchSelection(Task& task, std::span<const KvRun> runs, int64_t tokens, int64_t indexed,
                        SparseScratch& scratch);
  transport::OutgoingMessage BuildReply(Figures* figures);

  KvStore* const store_;
  ThreadPool* const pool_;
  const ModelSpec spec_;
  const int group_;
  RetrievalState* const retrieval_;
  int layer_ = 0;
  SparseRun sparse_;
  retrieval::LocalityParams locality_;  // sparse fetch from SSD (its defaults)

  std::vector<Item> items_;
  std::vector<Slot> slots_;
  std::vector<Task> tasks_;
  std::vector<Status> task_status_;
  std::vector<KvRun> runs_;            // every (item, head)'s blocks, concatenated
  std::vector<float> q_;               // fp32 queries, [items][Hq][D] (an item's first G * h rows)
  std::vector<float> partial_o_;       // per task [G, D]
  std::vector<float> partial_lse_;     // per task [G]
  std::vector<std::unique_ptr<SparseScratch>> sparse_scratch_;  // per task
  std::vector<worker_codec::AttendItemReply> replies_;

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
