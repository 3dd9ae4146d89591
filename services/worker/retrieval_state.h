// RetrievalState: the worker's retrieval indexes (docs/retrieval.md). Per (sequence, layer,
// KV head) it keeps an index of each kind asked for, built in the background from the
// sequence's keys and the prefill query sample that travelled with the prefill, and folded
// forward as decode appends keys; per (sequence, layer) it keeps that sample, because a restart
// rebuilds indexes from it.
//
//   RetrievalState state(store, spec, config);
//   state.AddSample(seq, layer, std::move(q), std::move(positions));   // AppendKv's sample
//   state.RequestBuild(seq, layer, IndexKind::kGraph);                  // prompt complete
//   // Attend, per held head: Plan on the dispatcher, then Acquire on the pool thread.
//   if (state.Plan(seq, layer, h, kind, length) == HeadPlan::kSparse) {
//     RetrievalState::Lease lease = state.Acquire(seq, layer, h, kind);
//     if (lease.index != nullptr) { ... lease.index->Search(...) ... }   // else: run dense
//   }
//   state.Forget(seq);                                                  // before CloseSequence
//
// Background work runs on the state's own build threads (config.build_threads), at a lower
// scheduling priority than the attention pool: the pool's ParallelFor runs one batch at a time,
// so a build sharing it would hold decode steps back for the length of a build phase.
// Decode keeps reading the sequence while a build reads its first `length` keys: rows below
// the length a build captured are never written again, and Forget waits for a build in flight
// before the store may free the blocks.
//
// A head whose prefill queries show diffuse attention (retrieval/head_profile.h) is marked
// dense at build: sparse requests answer it with dense attention, and it is counted and
// reported (Stats, attic_worker_retrieval_heads{state="dense"}).
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "attention_workers/retrieval/head_profile.h"
#include "attention_workers/retrieval/key_index.h"
#include "attention_workers/thread_pool.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "kvstore/kv_store.h"

namespace attic::worker_internal {

struct RetrievalConfig {
  // Index built when a request names none.
  retrieval::IndexKind kind = retrieval::IndexKind::kGraph;
  // Default selection of a sparse Attend that leaves a field unset.
  int sinks = 4;
  int window = 64;
  int top_k = 100;
  // Contexts shorter than this are answered densely: below it a dense pass costs about as
  // much as a search.
  int min_tokens = 1024;
  // Keys appended past an index's end that trigger a background fold; until then the
  // selection's window covers them.
  int fold_tokens = 256;
  // Threads that build and fold indexes.
  int build_threads = 1;
  // Decide per (layer, head) at build whether the head is diffuse (answered densely), from
  // the prefill query sample; profile's scale and selection are filled from the model and
  // the fields above.
  bool profile_heads = true;
  retrieval::ProfileOptions profile;
  // Sparse fetch from the SSD tier: most value blocks read per (item, head) and step
  // (0 = no limit), and the preference for resident values (LocalityParams::score_slack).
  int fetch_budget = 0;
  float score_slack = 0.02f;
};

enum class HeadPlan {
  kSparse,         // an index is ready: search and attend to the selection
  kDenseDiffuse,   // the head's profile says its attention is diffuse
  kDenseNotReady,  // no index of this kind yet (a build is queued or running)
};

class RetrievalState {
 public:
  RetrievalState(KvStore* store, const ModelSpec& spec, const RetrievalConfig& config);
  // Cancels queued work and waits for the work in flight.
  ~RetrievalState();
  RetrievalState(const RetrievalState&) = delete;
  RetrievalState& operator=(const RetrievalState&) = delete;

  const RetrievalConfig& config() const { return config_; }

  // Adds prefill queries of (seq, layer): q [positions.size(), G * h, D] fp32 for the held
  // heads, at shard-local positions. Successive samples accumulate.
  void AddSample(uint64_t seq, int layer, int heads, std::vector<float> q,
                 std::vector<int32_t> positions);
  // Queues a build of `kind` for every held head of (seq, layer), over the keys it holds when
  // the build starts. A kind already built or queued is not built twice.
  void RequestBuild(uint64_t seq, int layer, int heads, retrieval::IndexKind kind);

  // What a sparse request does with one head now. Queues the build when none is there yet,
  // and a fold when `length` has run fold_tokens past the index.
  HeadPlan Plan(uint64_t seq, int layer, int head, int heads, retrieval::IndexKind kind,
                int64_t length);

  // The index of (seq, layer, head, kind), read-locked until the lease is destroyed; index is
  // null when there is none or a fold holds it right now (then run the head densely).
  struct Lease {
    std::shared_lock<std::shared_mutex> lock;
    const retrieval::KeyIndex* index = nullptr;
  };
  Lease Acquire(uint64_t seq, int layer, int head, retrieval::IndexKind kind);

  // Drops everything about seq, after waiting for a build or fold of it in flight.
  void Forget(uint64_t seq);

  struct Stats {
    int64_t indexes = 0;       // built (sequence, layer, head, kind) indexes
    int64_t dense_heads = 0;   // (sequence, layer, head)s profiled as diffuse
    int64_t queued = 0;        // builds and folds waiting
    int64_t index_bytes = 0;   // memory of every index
    int64_t sample_bytes = 0;  // prefill query samples kept
    uint64_t builds = 0;       // finished builds since start
    uint64_t folds = 0;
    double build_seconds = 0;  // spent building, since start
  };
  Stats stats() const;

  // Blocks until no build or fold is queued or running (tests).
  void WaitIdle();

 private:
  struct Head;
  struct Layer;
  struct Sequence;
  struct Job {
    uint64_t seq = 0;
    int layer = 0;
    int head = -1;  // -1: build every head of the layer; else fold this head
    retrieval::IndexKind kind = retrieval::IndexKind::kGraph;
  };

  std::shared_ptr<Sequence> Find(uint64_t seq) const;
  std::shared_ptr<Sequence> FindOrAdd(uint64_t seq, int heads);
  void BuildLoop();
  void Run(const Job& job);
  Status Build(Sequence& seq, int layer, retrieval::IndexKind kind);
  Status Fold(Sequence& seq, int layer, int head, retrieval::IndexKind kind);
  Status ReadKeys(uint64_t seq, int layer, int head, std::vector<const std::byte*>* blocks,
                  retrieval::KeyRows* rows) const;

  KvStore* const store_;
  const ModelSpec spec_;
  const RetrievalConfig config_;
  std::unique_ptr<ThreadPool> pool_;  // the build threads

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::map<uint64_t, std::shared_ptr<Sequence>> seqs_;  // guarded by mu_
  std::deque<Job> jobs_;                                 // guarded by mu_
  bool running_job_ = false;                             // guarded by mu_
  bool stop_ = false;                                    // guarded by mu_
  uint64_t builds_ = 0;                                  // guarded by mu_
  uint64_t folds_ = 0;                                   // guarded by mu_
  double build_seconds_ = 0;                             // guarded by mu_
  std::thread builder_;
};

}  // namespace attic::worker_internal
