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
// Background work runs on the state's own threads, never on the attention pool (its
// ParallelFor runs one batch at a time, so a build sharing it would hold decode steps back for
// the length of a build phase): slow builds and folds on config.build_threads at a lower
// scheduling priority than the pool; stand-in builds and folds on one thread at the pool's
// priority (they take milliseconds and each turns a dense head sparse).
// Decode keeps reading the sequence while a build reads its first `length` keys: rows below
// the length a build captured are never written again, and Forget waits for a build in flight
// before the store may free the blocks.
//
// Stand-in: a graph or cluster index takes seconds per head on a busy node, a 4-bit scan
// (IndexKind::kQuantized) milliseconds. A build request of a slow kind first builds the
// stand-in for every head of the layer, on a queue served before the slow builds, and sparse
// requests search it until the index asked for is installed (the stand-in is then dropped).
// Stand-in builds and folds run on a thread of their own, so a slow build in flight does not
// hold them back either.
// The stand-in reads more bytes per search (every key's code), but the head is sparse from
// the first steps of decode instead of dense for the length of the build queue.
//
// A head whose prefill queries show diffuse attention (retrieval/head_profile.h) is marked
// dense at build: sparse requests answer it with dense attention, and it is counted and
// reported (Stats, attic_worker_retrieval_heads{state="dense"}).
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "attention_workers/retrieval/head_profile.h"
#include "attention_workers/retrieval/key_index.h"
#include "attention_workers/thread_pool.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "attention_workers/retrieval/recall_guard.h"
#include "common/thread_annotations.h"
#include "kvstore/kv_store.h"

namespace attic::worker_internal {

struct RetrievalConfig {
  // Index built when a request names none.
  IndexKind kind = IndexKind::kGraph;
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
  // The fast index searched while a slower kind is being built (see above); nullopt = none
  // (heads run dense until their index is built).
  std::optional<IndexKind> stand_in = IndexKind::kQuantized;
  // Tests: called on the build thread before each build or fold of a kind asked for (not the
  // stand-in's), so a test can hold slow work back.
  std::function<void()> before_slow_job;
  // Decide per (layer, head) at build whether the head is diffuse (answered densely), from
  // the prefill query sample; profile's scale and selection are filled from the model and
  // the fields above.
  bool profile_heads = true;
  retrieval::ProfileOptions profile;
  // Sparse fetch from the SSD tier: most value blocks read per (item, head) and step
  // (0 = no limit), and the preference for resident values (LocalityParams::score_slack).
  int fetch_budget = 0;
  float score_slack = 0.02f;
  // Online recall: one sparse head in this many is also searched exactly; 0 = never.
  int recall_sample_every = 64;
  // The recall@top_k a sparse head's index must reach on held-out prefill queries at build
  // (retrieval/serving_index.h): a graph that misses it gives way to the 4-bit scan, a scan
  // that misses it to dense attention.
  float recall_target = 0.96f;
  // The recall guard (retrieval/recall_guard.h): after this many sampled checks of a head
  // pooled below recall_target, its search effort is raised by half, up to the largest its
  // build check tried; below target there, a graph is replaced by the 4-bit scan (re-rank
  // 800), and a scan below target leaves the head dense. 0 = off.
  int recall_guard_checks = 4;
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
                 std::vector<int32_t> positions) EXCLUDES(mu_);
  // Queues a build of `kind` for every held head of (seq, layer), over the keys it holds when
  // the build starts. A kind already built or queued is not built twice.
  void RequestBuild(uint64_t seq, int layer, int heads, IndexKind kind) EXCLUDES(mu_);

  // What a sparse request does with one head now. Queues the build when none is there yet,
  // and a fold when `length` has run fold_tokens past the index. force: a head profiled as
  // diffuse is answered sparse too (its index is built on first demand).
  HeadPlan Plan(uint64_t seq, int layer, int head, int heads, IndexKind kind, int64_t length,
                bool force = false) EXCLUDES(mu_);

  // The index of (seq, layer, head, kind), read-locked until the lease is destroyed; index is
  // null when there is none (then run the head densely). Waits while a finished build or fold
  // is being installed (folds grow a copy, so searches go on meanwhile).
  // stand_in: index is the stand-in, not a `kind` index (its search effort is its own).
  // guard: the recall guard of a served (not stand-in) index, when it has one; its effort()
  // replaces a request's effort 0.
  struct Lease {
    std::shared_lock<SharedMutex> lock;
    const retrieval::KeyIndex* index = nullptr;
    bool stand_in = false;
    std::shared_ptr<retrieval::RecallGuard> guard;
  };
  Lease Acquire(uint64_t seq, int layer, int head, IndexKind kind) EXCLUDES(mu_);

  // A sampled recall check of (seq, layer, head)'s `kind` search through lease.guard: feeds
  // the guard. Once the guard is out of effort, a graph is replaced by the 4-bit scan at its
  // deepest re-rank (built in the background; the graph serves at its largest beam
  // meanwhile), and a scan that misses too leaves the head dense from then on.
  void ReportRecall(uint64_t seq, int layer, int head, IndexKind kind,
                    retrieval::RecallGuard& guard, int64_t exact, int64_t hits) EXCLUDES(mu_);

  // Whether this sparse head is one of the 1 in recall_sample_every checked exactly.
  bool SampleRecall() {
    const int every = config_.recall_sample_every;
    return every > 0 && recall_counter_.fetch_add(1, std::memory_order_relaxed) % every == 0;
  }

  // Drops everything about seq, after waiting for a build or fold of it in flight.
  void Forget(uint64_t seq) EXCLUDES(mu_);

  struct Stats {
    int64_t indexes = 0;       // built (sequence, layer, head, kind) indexes
    int64_t dense_heads = 0;   // (sequence, layer, head)s profiled as diffuse
    int64_t stand_ins = 0;     // (sequence, layer, head)s searched through a stand-in now
    int64_t queued = 0;        // builds and folds waiting
    int64_t index_bytes = 0;   // memory of every index
    int64_t sample_bytes = 0;  // prefill query samples kept
    uint64_t builds = 0;       // finished builds since start
    uint64_t folds = 0;
    double build_seconds = 0;  // spent building, since start
    // Heads whose index missed its recall check at build (serving_index.h), since start:
    // served by the 4-bit scan instead, or densely.
    uint64_t served_by_scan = 0;
    uint64_t served_dense = 0;
    // Recall guard actions since start: efforts raised, graphs replaced by the scan, heads
    // sent dense.
    uint64_t guard_raised = 0;
    uint64_t guard_scan = 0;
    uint64_t guard_dense = 0;
  };
  Stats stats() const EXCLUDES(mu_);

  // Blocks until no build or fold is queued or running (tests).
  void WaitIdle() EXCLUDES(mu_);

 private:
  static constexpr int kKinds = 4;  // IndexKind values

  struct Head;
  struct Layer;
  struct Sequence;
  // What mu_ guards about one layer of a sequence (its indexes are in Sequence, each under
  // its head's own lock).
  struct LayerBook {
    std::vector<float> sample_q;  // [n, G * h, D]
    std::vector<int32_t> sample_positions;
    std::array<bool, kKinds> build_queued = {};
    std::vector<std::array<bool, kKinds>> fold_queued;  // [heads]
    bool stand_in_queued = false;
    std::vector<char> stand_in_fold_queued;  // [heads]
  };
  struct Entry {
    std::shared_ptr<Sequence> seq;
    std::vector<LayerBook> layers;  // [num_layers]
  };
  struct Job {
    uint64_t seq = 0;
    int layer = 0;
    int head = -1;  // -1: build every head of the layer; else fold this head
    IndexKind kind = IndexKind::kGraph;
    bool forced = false;  // with head >= 0: build that diffuse head's index (forced requests)
    bool stand_in = false;  // build (head -1) or fold the stand-in; kind is the stand-in's
    bool guard_scan = false;  // with head >= 0: the recall guard's scan for that head's kind
  };

  std::shared_ptr<Sequence> Find(uint64_t seq) const EXCLUDES(mu_);
  Entry& FindOrAdd(uint64_t seq, int heads) REQUIRES(mu_);
  // The book of s's layer while s is the live sequence of its id; null once it was forgotten.
  LayerBook* Book(const Sequence& s, int layer) REQUIRES(mu_);
  // Whether a request for kind is served by the stand-in until its index is built.
  bool UsesStandIn(IndexKind kind) const;
  // Queues the build of kind for a layer (its stand-in first, on the quick queue) unless it is
  // queued already. Returns whether anything was queued.
  bool QueueBuild(LayerBook& book, uint64_t seq, int layer, IndexKind kind) REQUIRES(mu_);
  // quick: the stand-in thread (quick_jobs_), else the build thread (jobs_, on its pool of
  // config.build_threads).
  void BuildLoop(bool quick) EXCLUDES(mu_);
  void Run(const Job& job, ThreadPool* pool) EXCLUDES(mu_);
  // Every head of the layer but the diffuse ones; only_head >= 0: that head alone, diffuse
  // or not.
  // stand_in: build the stand-in (kind) of every head that has no index yet.
  Status Build(Sequence& seq, int layer, IndexKind kind, int only_head, bool stand_in,
               ThreadPool* pool) EXCLUDES(mu_);
  Status Fold(Sequence& seq, int layer, int head, IndexKind kind, bool stand_in = false);
  // The recall guard's last resort for a head (ReportRecall).
  Status GuardScan(Sequence& seq, int layer, int head, IndexKind kind);
  // A guard for an index served at base_effort (config's target and checks); null when the
  // guard is off.
  std::shared_ptr<retrieval::RecallGuard> MakeGuard(int base_effort, int max_effort) const;
  Status ReadKeys(uint64_t seq, int layer, int head, std::vector<const std::byte*>* blocks,
                  retrieval::KeyRows* rows) const;

  KvStore* const store_;
  const ModelSpec spec_;
  const RetrievalConfig config_;
  std::atomic<uint64_t> recall_counter_{0};
  std::atomic<uint64_t> served_by_scan_{0};
  std::atomic<uint64_t> served_dense_{0};
  std::atomic<uint64_t> guard_raised_{0};
  std::atomic<uint64_t> guard_scan_{0};
  std::atomic<uint64_t> guard_dense_{0};

  mutable Mutex mu_;
  CondVar wake_;  // both build threads wait on it: notify all
  CondVar idle_;
  std::map<uint64_t, Entry> seqs_ GUARDED_BY(mu_);
  std::deque<Job> quick_jobs_ GUARDED_BY(mu_);  // stand-in builds and folds, served first
  std::deque<Job> jobs_ GUARDED_BY(mu_);
  int running_jobs_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;
  uint64_t builds_ GUARDED_BY(mu_) = 0;
  uint64_t folds_ GUARDED_BY(mu_) = 0;
  double build_seconds_ GUARDED_BY(mu_) = 0;
  std::thread builder_;
  std::thread quick_builder_;
};

}  // namespace attic::worker_internal
