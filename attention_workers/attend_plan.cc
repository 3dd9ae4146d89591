#include "attention_workers/attend_plan.h"

#include <algorithm>

namespace attic {
namespace {

int64_t CountTokens(std::span<const KvRun> runs) {
  int64_t n = 0;
  for (const KvRun& r : runs) n += r.num_tokens;
  return n;
}

// The runs a dense head covers: all of them, or a cut copy (appended to *cut, whose capacity
// was reserved so that earlier spans into it stay valid) ending after dense_tokens tokens.
std::span<const KvRun> DenseRuns(const AttendHead& head, std::vector<KvRun>* cut) {
  if (head.dense_tokens < 0) return head.runs;
  const size_t begin = cut->size();
  AppendRunsCut(head.runs, head.dense_tokens, cut);
  return {cut->data() + begin, cut->size() - begin};
}

}  // namespace

void AppendRunsCut(std::span<const KvRun> runs, int64_t keep, std::vector<KvRun>* out) {
  for (const KvRun& r : runs) {
    if (keep <= 0) break;
    KvRun c = r;
    c.num_tokens = static_cast<int>(std::min<int64_t>(c.num_tokens, keep));
    keep -= c.num_tokens;
    out->push_back(c);
  }
}

void PlanAttend(std::span<const AttendHead> heads, const PlanParams& params, AttendPlan* plan) {
  plan->tasks.clear();
  plan->head_tasks.clear();
  plan->spilled.clear();
  plan->cut.clear();
  plan->max_task_spilled = 0;
  plan->max_task_runs = 0;

  // The cut copies first, so that the tasks' spans into them never move.
  size_t cut_runs = 0;
  int64_t total = 0;
  for (const AttendHead& h : heads) {
    if (h.mode != HeadMode::kDense) continue;
    if (h.dense_tokens >= 0) cut_runs += h.runs.size();
    total += h.dense_tokens >= 0 ? std::min(h.dense_tokens, CountTokens(h.runs))
                                 : CountTokens(h.runs);
  }
  plan->cut.reserve(cut_runs);
  plan->dense_tokens = total;
  const int64_t target =
      std::max<int64_t>(1, int64_t{std::max(1, params.threads)} * params.tasks_per_thread);
  plan->chunk_tokens =
      std::max<int64_t>(std::max(1, params.min_chunk_tokens), (total + target - 1) / target);

  const auto add_dense = [&](uint32_t head, std::span<const KvRun> runs, size_t begin,
                             size_t end) {
    PlanTask task{.head = head,
                  .runs = runs.subspan(begin, end - begin),
                  .first_block = static_cast<uint32_t>(begin),
                  .spilled_begin = static_cast<uint32_t>(plan->spilled.size())};
    for (size_t r = begin; r < end; ++r) {
      if (runs[r].v == nullptr && runs[r].num_tokens > 0) {
        plan->spilled.push_back(static_cast<int32_t>(r));
      }
    }
    task.spilled_end = static_cast<uint32_t>(plan->spilled.size());
    plan->max_task_spilled = std::max(plan->max_task_spilled, task.num_spilled());
    plan->max_task_runs = std::max(plan->max_task_runs, end - begin);
    plan->tasks.push_back(task);
  };

  for (size_t hi = 0; hi < heads.size(); ++hi) {
    const AttendHead& head = heads[hi];
    const auto h = static_cast<uint32_t>(hi);
    plan->head_tasks.push_back(static_cast<uint32_t>(plan->tasks.size()));
    if (head.mode == HeadMode::kSparse) {
      plan->tasks.push_back(PlanTask{.head = h, .runs = head.runs, .sparse = true});
      continue;
    }
    const std::span<const KvRun> runs = DenseRuns(head, &plan->cut);
    size_t begin = 0;
    int64_t acc = 0;
    for (size_t r = 0; r < runs.size(); ++r) {
      acc += runs[r].num_tokens;
      if (acc >= plan->chunk_tokens && r + 1 < runs.size()) {
        add_dense(h, runs, begin, r + 1);
        begin = r + 1;
        acc = 0;
      }
    }
    add_dense(h, runs, begin, runs.size());  // possibly empty: lse = -inf
  }
  plan->head_tasks.push_back(static_cast<uint32_t>(plan->tasks.size()));
}

}  // namespace attic
