// The plan of one Attend request: which (sequence, KV head) pairs are attended how, and how
// their blocks are cut into tasks for the compute pool. Pure: the inputs are plain structs (the
// blocks' views, each head's mode), nothing is read from the store and nothing runs. The run
// (attend_run.h) executes a plan; the worker's executor builds the inputs and encodes the reply.
//
//   std::vector<AttendHead> heads = ...;   // per (sequence, KV head): its blocks and mode
//   AttendPlan plan;                        // reused across requests: keeps its capacity
//   PlanAttend(heads, {.threads = pool.num_threads()}, &plan);
//   for (const PlanTask& t : plan.tasks) ...   // one dense chunk, or one sparse head
//
// Split-K: a dense head is cut into chunks of consecutive blocks so that every thread has work
// even when a batch has fewer heads than threads (as flash-decoding does); the chunks' partial
// states are merged by log-sum-exp afterwards. A sparse head (retrieval attention) is one task:
// search, select and attend run together on one thread.
//
// Tiers: a block whose values are on the SSD tier only has v == nullptr. The plan lists them
// per dense task (PlanTask::spilled_*), so the run loads exactly those before the kernel.
// Sparse tasks decide what to fetch after their search (locality-aware fetch), at run time.
//
// Thread safety: PlanAttend is stateless; a plan is read-only while it runs.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "attention_workers/decode_attention.h"

namespace attic {

enum class HeadMode : uint8_t {
  kDense,   // exact attention over every block (split into chunks)
  kSparse,  // retrieval attention: one task that searches, selects and attends
};

// One (sequence, KV head) of a request.
struct AttendHead {
  std::span<const KvRun> runs;  // the head's blocks in token order; v == nullptr: on SSD only
  HeadMode mode = HeadMode::kDense;
  // Dense heads: attend to the first dense_tokens tokens only (the caller keeps the rest, e.g.
  // a retrieval window it attends itself); -1 = every token.
  int64_t dense_tokens = -1;
};

struct PlanParams {
  int threads = 1;  // compute threads the tasks run on, >= 1
  // Threads sharing DRAM bandwidth do not progress evenly, so a batch ends with its slowest
  // thread's last task: several small tasks per thread keep that tail short.
  int tasks_per_thread = 16;
  // Smaller chunks cost more in merging and prefetch ramp-up than they win in balance.
  int min_chunk_tokens = 1024;
};

struct PlanTask {
  uint32_t head = 0;             // index into the heads the plan was made from
  std::span<const KvRun> runs;   // dense: the chunk's blocks; sparse: all the head's blocks
  uint32_t first_block = 0;      // index of runs[0] among the head's blocks
  bool sparse = false;
  // Dense: blocks of this chunk without values in DRAM, as indices among the head's blocks,
  // in AttendPlan::spilled[spilled_begin, spilled_end).
  uint32_t spilled_begin = 0;
  uint32_t spilled_end = 0;

  uint32_t num_spilled() const { return spilled_end - spilled_begin; }
};

struct AttendPlan {
  std::vector<PlanTask> tasks;
  // The tasks of head h are tasks[head_tasks[h], head_tasks[h + 1]), in token order; every
  // head has at least one (an empty dense chunk answers lse = -inf).
  std::vector<uint32_t> head_tasks;
  std::vector<int32_t> spilled;  // see PlanTask::spilled_begin
  std::vector<KvRun> cut;        // heads with dense_tokens set: their runs, cut short
  int64_t chunk_tokens = 0;      // the chunk length dense heads were cut at
  int64_t dense_tokens = 0;      // tokens the dense tasks cover, over all heads
  uint32_t max_task_spilled = 0; // the most spilled blocks of one task
  size_t max_task_runs = 0;      // the most runs of one dense task

  size_t num_heads() const { return head_tasks.empty() ? 0 : head_tasks.size() - 1; }
  std::span<const PlanTask> HeadTasks(size_t h) const {
    return {tasks.data() + head_tasks[h], tasks.data() + head_tasks[h + 1]};
  }
};

// Appends to *out the runs holding the first `keep` tokens of runs (the last one cut short).
void AppendRunsCut(std::span<const KvRun> runs, int64_t keep, std::vector<KvRun>* out);

// Replaces *plan with the plan of heads. Spans in the plan point into heads' runs and into the
// plan itself: they stay valid while both do and the plan is not planned again.
void PlanAttend(std::span<const AttendHead> heads, const PlanParams& params, AttendPlan* plan);

}  // namespace attic
