#include "attention_workers/attend_run.h"

#include <algorithm>
#include <cstring>

#include "common/lse_merge.h"

namespace attic {
namespace {

size_t Gd(const AttendRunParams& p) {
  return static_cast<size_t>(p.group_size) * static_cast<size_t>(p.head_dim);
}

// The run's state the pool's tasks read through one pointer, so that the task functor fits
// std::function's inline storage (no allocation).
struct RunContext {
  const AttendRunParams* params;
  AttendWorkspace* ws;
};

}  // namespace

void AttendWorkspace::Prepare(const AttendRunParams& params) {
  const AttendPlan& plan = *params.plan;
  const size_t tasks = plan.tasks.size();
  const size_t gd = Gd(params);
  partial_o_.resize(tasks * gd);
  partial_lse_.resize(tasks * static_cast<size_t>(params.group_size));
  task_status_.assign(tasks, OkStatus());
  head_status_.assign(plan.num_heads(), OkStatus());
  figures_.assign(tasks, TaskFigures{});
  if (plan.max_task_spilled == 0) return;
  // A pool thread runs one task of a batch at a time, so no more stagings are in use at once.
  const size_t threads = static_cast<size_t>(params.pool->num_threads());
  if (staging_.size() < threads) staging_.resize(threads);
  MutexLock lock(&mu_);
  free_.clear();
  for (DenseStaging& s : staging_) {
    s.values.resize(std::max(s.values.size(), plan.max_task_spilled * params.block_bytes));
    s.dst.reserve(plan.max_task_spilled);
    s.runs.reserve(plan.max_task_runs);
    free_.push_back(&s);
  }
}

DenseStaging* AttendWorkspace::Claim() {
  MutexLock lock(&mu_);
  if (free_.empty()) return nullptr;
  DenseStaging* s = free_.back();
  free_.pop_back();
  return s;
}

void AttendWorkspace::Release(DenseStaging* s) {
  MutexLock lock(&mu_);
  free_.push_back(s);
}

Status AttendDense(const AttendRunParams& p, uint32_t head, std::span<const KvRun> runs,
                   uint32_t first_block, std::span<const int32_t> spilled, DenseStaging* staging,
                   const float* q, float* out, float* lse, TaskFigures* figures) {
  if (!spilled.empty()) {
    if (p.values == nullptr || staging == nullptr) {
      return InternalError("attend run: a task has spilled blocks and nothing to load them");
    }
    if (staging->values.size() < spilled.size() * p.block_bytes) {
      staging->values.resize(spilled.size() * p.block_bytes);
    }
    staging->dst.clear();
    for (size_t i = 0; i < spilled.size(); ++i) {
      staging->dst.push_back(staging->values.data() + i * p.block_bytes);
    }
    RETURN_IF_ERROR(p.values->LoadValues(head, spilled, staging->dst, &figures->ssd_bytes));
    staging->runs.assign(runs.begin(), runs.end());
    for (size_t i = 0; i < spilled.size(); ++i) {
      staging->runs[static_cast<size_t>(spilled[i]) - first_block].v = staging->dst[i];
    }
    runs = staging->runs;
  }
  uint64_t tokens = 0;
  for (const KvRun& r : runs) tokens += static_cast<uint64_t>(r.num_tokens);
  figures->keys = tokens;
  figures->selected = tokens;
  figures->bytes = 2 * tokens * static_cast<uint64_t>(p.head_dim) * DTypeSize(p.dtype);
  return DecodeAttention({.q = q,
                          .group_size = p.group_size,
                          .head_dim = p.head_dim,
                          .dtype = p.dtype,
                          .scale = p.scale,
                          .runs = runs,
                          .out = out,
                          .lse = lse});
}

void RunAttend(const AttendRunParams& params, AttendWorkspace* ws) {
  const AttendPlan& plan = *params.plan;
  const RunContext ctx{&params, ws};
  const RunContext* c = &ctx;
  params.pool->ParallelFor(static_cast<int64_t>(plan.tasks.size()), [c](int64_t ti) {
    const AttendRunParams& p = *c->params;
    AttendWorkspace& w = *c->ws;
    const auto t = static_cast<size_t>(ti);
    const PlanTask& task = p.plan->tasks[t];
    const AttendHeadIo& io = p.io[task.head];
    // A head's first task writes its state in place; the others merge into it afterwards.
    const bool first = p.plan->head_tasks[task.head] == t;
    float* out = first ? io.out : w.partial_o_.data() + t * Gd(p);
    float* lse = first ? io.lse : w.partial_lse_.data() + t * static_cast<size_t>(p.group_size);
    Status& status = w.task_status_[t];
    if (task.sparse) {
      status = p.sparse == nullptr
                   ? InternalError("attend run: a sparse task and no sparse runner")
                   : p.sparse->RunSparse(p, t, task, io.q, out, lse, &w.figures_[t]);
      return;
    }
    const std::span<const int32_t> spilled(p.plan->spilled.data() + task.spilled_begin,
                                           task.num_spilled());
    DenseStaging* staging = spilled.empty() ? nullptr : w.Claim();
    status = AttendDense(p, task.head, task.runs, task.first_block, spilled, staging, io.q, out,
                         lse, &w.figures_[t]);
    if (staging != nullptr) w.Release(staging);
  });

  // Each head's first failing task names its status; the others' states merge into the first's.
  // Merging reads what other cores wrote: spread over the pool, the cache-line transfers overlap.
  params.pool->ParallelFor(static_cast<int64_t>(plan.num_heads()), [c](int64_t hi) {
    const AttendRunParams& p = *c->params;
    AttendWorkspace& w = *c->ws;
    const auto h = static_cast<size_t>(hi);
    const uint32_t begin = p.plan->head_tasks[h];
    const uint32_t end = p.plan->head_tasks[h + 1];
    for (uint32_t t = begin; t < end; ++t) {
      if (!w.task_status_[t].ok()) {
        w.head_status_[h] = w.task_status_[t];
        return;
      }
    }
    const AttendHeadIo& io = p.io[h];
    const size_t gd = Gd(p);
    const auto g = static_cast<size_t>(p.group_size);
    for (uint32_t t = begin + 1; t < end; ++t) {
      MergeStatesInto(io.out, io.lse, w.partial_o_.data() + t * gd, w.partial_lse_.data() + t * g,
                      p.group_size, p.head_dim);
    }
  });
}

}  // namespace attic
