// The sparse tasks of an Attend request (retrieval attention, docs/retrieval.md): for one
// (sequence, KV head) whose index is ready, search the index with the head's GQA group, build
// the selection (sinks + window + retrieved) and attend to it exactly. Over values spilled to
// SSD, the search returns more candidates and the locality plan chooses the top k preferring
// resident blocks, then fetches the rest (docs/retrieval-locality.md). When a fold holds the
// index, the head is answered densely instead.
//
// The plan/run split: the executor plans which heads are sparse (RetrievalState::Plan); the
// run (attention_workers/attend_run.h) calls RunSparse for each of them on a pool thread.
//
// Thread safety: RunSparse is called concurrently for distinct tasks; Reset between runs.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "attention_workers/attend_run.h"
#include "attention_workers/retrieval/key_index.h"
#include "attention_workers/retrieval/locality.h"
#include "attention_workers/retrieval/selection.h"
#include "common/index_kind.h"
#include "common/model_spec.h"
#include "kvstore/kv_store.h"
#include "services/worker/retrieval_state.h"

namespace attic::worker_internal {

// A sparse request's parameters, defaults resolved.
struct SparseRequest {
  bool active = false;
  retrieval::SelectionParams selection;
  IndexKind kind = IndexKind::kGraph;
  int effort = 0;
  bool force = false;  // heads profiled as diffuse answered sparse too
};

// One head of the plan, as the sparse tasks and the SSD loads see it.
struct PlanHead {
  uint64_t sequence = 0;
  int kv_head = 0;     // the model's KV head (for the store)
  int local_head = 0;  // among the sequence's held heads (for the retrieval state)
  // The sinks and window as they fall in this shard of the sequence.
  retrieval::SelectionParams selection;
};

class SparseAttend final : public SparseTaskRunner {
 public:
  // Not owned.
  SparseAttend(KvStore* store, const ModelSpec& spec, RetrievalState* retrieval);
  ~SparseAttend() override;

  // For the next run: the request and the plan's heads (indexed like the plan's).
  void Reset(int layer, const SparseRequest& request, std::span<const PlanHead> heads,
             size_t num_tasks);

  Status RunSparse(const AttendRunParams& params, size_t index, const PlanTask& task,
                   const float* q, float* out, float* lse, TaskFigures* figures) override;

 private:
  struct Scratch;  // per task, reused across requests

  Status RunDenseFallback(const AttendRunParams& params, const PlanTask& task, const float* q,
                          float* out, float* lse, Scratch& scratch, TaskFigures* figures);
  void CountSelection(const Scratch& scratch, TaskFigures* figures) const;
  Status CheckRecall(const retrieval::KeyRows& indexed_keys, const retrieval::GroupScorer& scorer,
                     int top_k, Scratch& scratch, TaskFigures* figures) const;
  // Over spilled values: the locality plan's top k, the blocks it needs reloaded, and
  // scratch.selection / scratch.fetched_runs filled.
  Status FetchSelection(const PlanHead& head, std::span<const KvRun> runs, int64_t tokens,
                        int64_t indexed, Scratch& scratch, TaskFigures* figures);

  KvStore* const store_;
  const ModelSpec spec_;
  RetrievalState* const retrieval_;
  retrieval::LocalityParams locality_;
  int layer_ = 0;
  SparseRequest request_;
  std::span<const PlanHead> heads_;
  std::vector<std::unique_ptr<Scratch>> scratch_;
};

}  // namespace attic::worker_internal
