#include "services/worker/sparse_attend.h"

#include <algorithm>
#include <string>

#include "attention_workers/retrieval/exact_index.h"

namespace attic::worker_internal {

struct SparseAttend::Scratch {
  std::vector<const std::byte*> key_blocks;
  std::vector<KvRun> fallback_runs;
  std::vector<int32_t> fallback_spilled;
  DenseStaging fallback_staging;
  std::vector<KvRun> fetched_runs;  // the runs with reloaded values filled in
  std::vector<int32_t> fixed;       // sinks + window + unfolded keys
  std::vector<int> fetch;
  std::vector<int> used;
  std::vector<const std::byte*> values;
  retrieval::SearchResult result;
  std::vector<int32_t> selection;
  std::vector<int32_t> retrieved;  // what the index retrieved, sorted (online recall)
  retrieval::SearchResult exact;
};

SparseAttend::SparseAttend(KvStore* store, const ModelSpec& spec, RetrievalState* retrieval)
    : store_(store), spec_(spec), retrieval_(retrieval) {
  locality_.block_size = spec.block_size;
  locality_.fetch_budget = retrieval->config().fetch_budget;
  locality_.score_slack = retrieval->config().score_slack;
}

SparseAttend::~SparseAttend() = default;

// A fold holds the index right now: the head is answered densely, over the runs without the
// caller's window when it keeps that itself.
Status SparseAttend::RunDenseFallback(const AttendRunParams& params, const PlanTask& task,
                                      const float* q, float* out, float* lse, Scratch& scratch,
                                      TaskFigures* figures) {
  const PlanHead& head = heads_[task.head];
  figures->fell_back = true;
  int64_t keep = 0;
  for (const KvRun& r : task.runs) keep += r.num_tokens;
  if (head.selection.exclude_window) keep -= head.selection.window;
  scratch.fallback_runs.clear();
  AppendRunsCut(task.runs, keep, &scratch.fallback_runs);
  scratch.fallback_spilled.clear();
  for (size_t b = 0; b < scratch.fallback_runs.size(); ++b) {
    const KvRun& r = scratch.fallback_runs[b];
    if (r.v == nullptr && r.num_tokens > 0) {
      scratch.fallback_spilled.push_back(static_cast<int32_t>(b));
    }
  }
  return AttendDense(params, task.head, scratch.fallback_runs, 0, scratch.fallback_spilled,
                     &scratch.fallback_staging, q, out, lse, figures);
}

// recall@k as the retrieval benchmark defines it: of the exact top k of the indexed keys (by
// the group's best score), the share the index retrieved.
Status SparseAttend::CheckRecall(const retrieval::KeyRows& indexed_keys,
                                 const retrieval::GroupScorer& scorer, int top_k,
                                 Scratch& scratch, TaskFigures* figures) const {
  ASSIGN_OR_RETURN(std::unique_ptr<retrieval::KeyIndex> exact,
                   retrieval::BuildExactIndex(indexed_keys));
  RETURN_IF_ERROR(exact->Search(indexed_keys, scorer, {.top_k = top_k}, &scratch.exact));
  std::sort(scratch.retrieved.begin(), scratch.retrieved.end());
  uint32_t hits = 0;
  for (int32_t p : scratch.exact.positions) {
    hits += std::binary_search(scratch.retrieved.begin(), scratch.retrieved.end(), p) ? 1 : 0;
  }
  figures->recall_k = static_cast<uint32_t>(scratch.exact.positions.size());
  figures->recall_hits = hits;
  return OkStatus();
}

// Keys of the selection that the search did not score exactly are read once more.
void SparseAttend::CountSelection(const Scratch& scratch, TaskFigures* figures) const {
  const uint64_t row_bytes = static_cast<uint64_t>(spec_.head_dim) * DTypeSize(spec_.dtype);
  const uint64_t selected = scratch.selection.size();
  uint64_t scored_selected = 0;
  for (int32_t p : scratch.result.positions) {
    scored_selected += std::binary_search(scratch.selection.begin(), scratch.selection.end(), p);
  }
  figures->keys =
      static_cast<uint64_t>(scratch.result.stats.keys_scored) + selected - scored_selected;
  figures->selected = selected;
  figures->bytes = static_cast<uint64_t>(scratch.result.stats.bytes_read) +
                   (2 * selected - scored_selected) * row_bytes;
}

void SparseAttend::Reset(int layer, const SparseRequest& request, std::span<const PlanHead> heads,
                         size_t num_tasks) {
  layer_ = layer;
  request_ = request;
  heads_ = heads;
  while (scratch_.size() < num_tasks) scratch_.push_back(std::make_unique<Scratch>());
}

Status SparseAttend::RunSparse(const AttendRunParams& params, size_t index, const PlanTask& task,
                               const float* q, float* out, float* lse, TaskFigures* figures) {
  const PlanHead& head = heads_[task.head];
  Scratch& scratch = *scratch_[index];
  const std::span<const KvRun> runs = task.runs;
  RetrievalState::Lease lease =
      retrieval_->Acquire(head.sequence, layer_, head.local_head, request_.kind);
  if (lease.index == nullptr) {
    return RunDenseFallback(params, task, q, out, lse, scratch, figures);
  }
  scratch.key_blocks.clear();
  int64_t tokens = 0;
  for (const KvRun& r : runs) {
    scratch.key_blocks.push_back(static_cast<const std::byte*>(r.k));
    tokens += r.num_tokens;
  }
  const retrieval::KeyRows keys{.blocks = scratch.key_blocks,
                                .block_size = spec_.block_size,
                                .head_dim = spec_.head_dim,
                                .dtype = spec_.dtype,
                                .count = tokens};
  const retrieval::GroupScorer scorer(
      {.q = q, .group_size = params.group_size, .head_dim = spec_.head_dim}, spec_.dtype);
  scratch.result.positions.clear();
  scratch.result.stats = {};
  const bool spilled =
      std::any_of(runs.begin(), runs.end(), [](const KvRun& r) { return r.v == nullptr; });
  const int top_k = request_.selection.top_k;
  // With values on SSD, the search returns more candidates for the locality plan to choose
  // the top k from.
  const int depth = spilled ? retrieval::CandidateDepth(locality_, top_k) : top_k;
  if (top_k > 0) {
    // A request's effort is in the unit of the kind it asked for, not the stand-in's nor that
    // of the 4-bit scan the serving policy put in its place (serving_index.h).
    int effort = lease.stand_in || lease.index->kind() != request_.kind ? 0 : request_.effort;
    // The recall guard's raised effort replaces the index's own (recall_guard.h).
    if (effort == 0 && lease.guard != nullptr) effort = lease.guard->effort();
    RETURN_IF_ERROR(
        lease.index->Search(keys, scorer, {.top_k = depth, .effort = effort}, &scratch.result));
  }
  const int64_t indexed = lease.index->size();
  figures->stand_in = lease.stand_in;
  const std::shared_ptr<retrieval::RecallGuard> guard = std::move(lease.guard);
  lease = {};  // the index is not needed past the search
  std::span<const KvRun> attend_runs = runs;
  if (!spilled) {
    scratch.selection = retrieval::BuildSelection(
        {.length = tokens, .indexed = indexed, .retrieved = scratch.result.positions},
        head.selection);
    if (store_->has_ssd_tier()) {
      // Mark the selected values used, so that the spill order keeps what sparse steps read.
      scratch.fetch.clear();
      for (int32_t p : scratch.selection) {
        const int b = p / spec_.block_size;
        if (scratch.fetch.empty() || scratch.fetch.back() != b) scratch.fetch.push_back(b);
      }
      RETURN_IF_ERROR(store_->FetchValues(head.sequence, layer_, head.kv_head, scratch.fetch,
                                          &scratch.values, nullptr));
    }
  } else {
    RETURN_IF_ERROR(FetchSelection(head, runs, tokens, indexed, scratch, figures));
    attend_runs = scratch.fetched_runs;
  }
  if (top_k > 0 && indexed > 0 && retrieval_->SampleRecall()) {
    if (!spilled) scratch.retrieved = scratch.result.positions;
    RETURN_IF_ERROR(CheckRecall({.blocks = scratch.key_blocks,
                                 .block_size = spec_.block_size,
                                 .head_dim = spec_.head_dim,
                                 .dtype = spec_.dtype,
                                 .count = indexed},
                                scorer, top_k, scratch, figures));
    if (guard != nullptr) {
      retrieval_->ReportRecall(head.sequence, layer_, head.local_head, request_.kind, *guard,
                               figures->recall_k, figures->recall_hits);
    }
  }
  RETURN_IF_ERROR(SparseDecodeAttention({.q = q,
                                         .group_size = params.group_size,
                                         .head_dim = spec_.head_dim,
                                         .dtype = spec_.dtype,
                                         .scale = params.scale,
                                         .blocks = attend_runs,
                                         .block_size = spec_.block_size,
                                         .positions = scratch.selection,
                                         .out = out,
                                         .lse = lse}));
  CountSelection(scratch, figures);
  return OkStatus();
}

Status SparseAttend::FetchSelection(const PlanHead& head, std::span<const KvRun> runs,
                                    int64_t tokens, int64_t indexed, Scratch& scratch,
                                    TaskFigures* figures) {
  const int top_k = request_.selection.top_k;
  scratch.fixed = retrieval::BuildSelection({.length = tokens, .indexed = indexed, .retrieved = {}},
                                            head.selection);
  // The store's DRAM is the resident set: a block is available when its value is resident.
  const retrieval::FetchPlan plan = retrieval::PlanLocalityFetch(
      {.length = tokens,
       .fixed = scratch.fixed,
       .candidates = scratch.result.positions,
       .scores = scratch.result.scores,
       .top_k = std::min<int>(top_k, static_cast<int>(scratch.result.positions.size()))},
      locality_, [&](int b) { return runs[static_cast<size_t>(b)].v != nullptr; });
  scratch.fetch.assign(plan.blocks_fetched.begin(), plan.blocks_fetched.end());
  scratch.fetch.insert(scratch.fetch.end(), plan.blocks_prefetched.begin(),
                       plan.blocks_prefetched.end());
  scratch.fetched_runs.assign(runs.begin(), runs.end());
  if (!scratch.fetch.empty()) {
    FetchStats fs;
    RETURN_IF_ERROR(store_->FetchValues(head.sequence, layer_, head.kv_head, scratch.fetch,
                                        &scratch.values, &fs));
    figures->ssd_bytes += fs.bytes_read;
    for (size_t i = 0; i < scratch.fetch.size(); ++i) {
      scratch.fetched_runs[static_cast<size_t>(scratch.fetch[i])].v = scratch.values[i];
    }
  }
  // The blocks used from DRAM are marked used too, so the spill order keeps them.
  scratch.used.assign(plan.blocks_resident.begin(), plan.blocks_resident.end());
  if (!scratch.used.empty()) {
    RETURN_IF_ERROR(store_->FetchValues(head.sequence, layer_, head.kv_head, scratch.used,
                                        &scratch.values, nullptr));
  }
  scratch.selection = retrieval::BuildSelection(
      {.length = tokens, .indexed = indexed, .retrieved = plan.retrieved}, head.selection);
  scratch.retrieved.assign(plan.retrieved.begin(), plan.retrieved.end());
  for (int32_t p : scratch.selection) {
    if (scratch.fetched_runs[static_cast<size_t>(p / spec_.block_size)].v == nullptr) {
      return InternalError("sparse fetch: selected token " + std::to_string(p) +
                           " has no value in DRAM after the fetch");
    }
  }
  return OkStatus();
}

}  // namespace attic::worker_internal
