// Runs an AttendPlan (attend_plan.h) on the compute pool: each task's kernel, then each head's
// partial states merged by log-sum-exp straight into the caller's output rows (the worker
// passes rows of its reply payload). FlashInfer-style: a params struct, a caller-owned
// workspace sized before the run, no allocation inside it.
//
//   AttendWorkspace ws;                                // reused across requests
//   AttendRunParams p{.plan = &plan, .io = io, .group_size = 4, .head_dim = 128,
//                     .dtype = DType::kBFloat16, .scale = 0.0884f,
//                     .block_bytes = spec.block_bytes(), .values = &loader, .pool = &pool};
//   ws.Prepare(p);
//   RunAttend(p, &ws);
//   ws.head_status(h), ws.task_figures(t)              // per head, per task
//
// Dense tasks with spilled blocks (the plan lists them) load those values through the
// ValueLoader into a staging buffer of the workspace first; they are not made resident (a
// dense pass over a long spilled sequence would evict everything else), and one task's reads
// overlap the other tasks' kernels. Sparse tasks are handed to the SparseTaskRunner, which
// owns what retrieval needs (indexes, selection, locality-aware fetch).
//
// Thread safety: one RunAttend per workspace at a time; loaders and sparse runners are called
// from pool threads concurrently, for distinct tasks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "attention_workers/attend_plan.h"
#include "attention_workers/thread_pool.h"
#include "common/dtype.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace attic {

// Where one head of the plan reads its queries and writes its state.
struct AttendHeadIo {
  const float* q = nullptr;  // [G, D] fp32
  float* out = nullptr;      // [G, D] fp32, written
  float* lse = nullptr;      // [G] fp32, written
};

// What one task did.
struct TaskFigures {
  uint64_t keys = 0;       // exact dot products (tokens scored)
  uint64_t selected = 0;   // tokens attended
  uint64_t bytes = 0;      // K, V and index bytes read
  uint64_t ssd_bytes = 0;  // values read from the SSD tier
  bool fell_back = false;  // a sparse task answered densely
  bool stand_in = false;   // a sparse task searched a stand-in index (its own not built yet)
  // Online recall of a sparse task checked against an exact search: k of the exact top-k
  // (0: not checked), and how many of them the index retrieved.
  uint32_t recall_k = 0;
  uint32_t recall_hits = 0;
};

class ValueLoader {
 public:
  virtual ~ValueLoader() = default;
  // Reads the values of `blocks` (indices among head's blocks) into dst[i] (block_bytes
  // each), adding the bytes read to *ssd_bytes.
  virtual Status LoadValues(uint32_t head, std::span<const int32_t> blocks,
                            std::span<std::byte* const> dst, uint64_t* ssd_bytes) = 0;
};

struct AttendRunParams;

class SparseTaskRunner {
 public:
  virtual ~SparseTaskRunner() = default;
  // Answers sparse task `index` of params.plan: out [G, D], lse [G], *figures. May answer
  // densely with AttendDense (and set figures->fell_back).
  virtual Status RunSparse(const AttendRunParams& params, size_t index, const PlanTask& task,
                           const float* q, float* out, float* lse, TaskFigures* figures) = 0;
};

struct AttendRunParams {
  const AttendPlan* plan = nullptr;
  std::span<const AttendHeadIo> io;  // one per head of the plan
  int group_size = 0;
  int head_dim = 0;
  DType dtype = DType::kBFloat16;  // of K and V
  float scale = 0.0f;
  size_t block_bytes = 0;             // value bytes of one full block (staging)
  ValueLoader* values = nullptr;      // needed when the plan has spilled blocks
  SparseTaskRunner* sparse = nullptr; // needed when the plan has sparse tasks
  ThreadPool* pool = nullptr;
};

// Where a dense pass puts values it loads from SSD.
struct DenseStaging {
  std::vector<std::byte> values;  // [spilled blocks][block_bytes]
  std::vector<std::byte*> dst;
  std::vector<KvRun> runs;        // the runs with the loaded values filled in
};

// Dense attention over runs (blocks first_block.. of plan head `head`) into out / lse: the
// blocks listed in spilled (indices among the head's blocks, v == nullptr) are loaded through
// params.values into *staging first. Allocates only when staging is too small for them.
Status AttendDense(const AttendRunParams& params, uint32_t head, std::span<const KvRun> runs,
                   uint32_t first_block, std::span<const int32_t> spilled, DenseStaging* staging,
                   const float* q, float* out, float* lse, TaskFigures* figures);

class AttendWorkspace {
 public:
  AttendWorkspace() = default;
  AttendWorkspace(const AttendWorkspace&) = delete;
  AttendWorkspace& operator=(const AttendWorkspace&) = delete;

  // Sizes every buffer for params' plan (capacity is kept across requests).
  void Prepare(const AttendRunParams& params);

  const Status& head_status(size_t h) const { return head_status_[h]; }
  const TaskFigures& task_figures(size_t t) const { return figures_[t]; }

 private:
  friend void RunAttend(const AttendRunParams& params, AttendWorkspace* ws);
  DenseStaging* Claim();
  void Release(DenseStaging* s);

  std::vector<float> partial_o_;    // per task [G, D]; a head's first task writes to its io
  std::vector<float> partial_lse_;  // per task [G]
  std::vector<Status> task_status_;
  std::vector<Status> head_status_;
  std::vector<TaskFigures> figures_;
  std::vector<DenseStaging> staging_;  // at most one per thread is in use
  Mutex mu_;
  std::vector<DenseStaging*> free_ GUARDED_BY(mu_);
};

// Runs every task of params.plan, then merges each head's states into params.io[h].
// Arguments are trusted (the plan was made from the same heads); a task's error becomes its
// head's status (the first failing task's), and that head's output is left unspecified.
void RunAttend(const AttendRunParams& params, AttendWorkspace* ws);

}  // namespace attic
