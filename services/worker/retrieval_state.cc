#include "services/worker/retrieval_state.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "attention_workers/retrieval/quantized_scan.h"
#include "attention_workers/retrieval/serving_index.h"
#include "common/log.h"

namespace attic::worker_internal {

using retrieval::KeyIndex;
using retrieval::KeyRows;

namespace {

// Background work yields to the attention pool: a positive nice value for the build threads.
// Stand-in jobs take milliseconds and each one turns a head from dense to sparse, which saves
// the attention pool far more than the job costs: they run at the pool's own priority.
constexpr int kBuildNice = 10;
constexpr int kStandInNice = 0;

int KindIndex(IndexKind kind) { return static_cast<int>(kind); }

}  // namespace

struct RetrievalState::Head {
  // Exclusive while an index is installed or folded; shared while a search uses it.
  SharedMutex mu;
  std::unique_ptr<KeyIndex> index[kKinds] GUARDED_BY(mu);
  std::shared_ptr<retrieval::RecallGuard> guard[kKinds] GUARDED_BY(mu);  // null: unguarded
  // Read without mu by Plan and Stats.
  std::atomic<int64_t> indexed[kKinds] = {};  // index size, or -1 while none
  std::atomic<int64_t> index_bytes{0};
  std::atomic<bool> dense{false};
  // The profile is computed once, by whichever build comes first; the other waits for it.
  Mutex profile_mu;
  bool profiled GUARDED_BY(profile_mu) = false;
  // The stand-in (RetrievalConfig::stand_in) until an index of the kind asked for is built.
  std::unique_ptr<KeyIndex> stand_in GUARDED_BY(mu);
  int64_t stand_in_bytes GUARDED_BY(mu) = 0;
  std::atomic<int64_t> stand_in_indexed{-1};

  void DropStandIn() REQUIRES(mu) {
    if (stand_in == nullptr) return;
    stand_in.reset();
    index_bytes -= stand_in_bytes;
    stand_in_bytes = 0;
    stand_in_indexed.store(-1);
  }

  Head() {
    for (auto& n : indexed) n.store(-1);
  }
};

struct RetrievalState::Layer {
  std::vector<std::unique_ptr<Head>> heads;
};

// The indexes of a sequence; what RetrievalState::mu_ guards about it is in its Entry.
struct RetrievalState::Sequence {
  uint64_t id = 0;
  int heads = 0;
  // Shared by the build threads while they work on this sequence; Forget takes it to wait.
  SharedMutex busy;
  std::vector<std::unique_ptr<Layer>> layers;
};

RetrievalState::RetrievalState(KvStore* store, const ModelSpec& spec,
                               const RetrievalConfig& config)
    : store_(store), spec_(spec), config_(config) {
  builder_ = std::thread([this] { BuildLoop(false); });
  quick_builder_ = std::thread([this] { BuildLoop(true); });
}

RetrievalState::~RetrievalState() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    jobs_.clear();
    quick_jobs_.clear();
  }
  wake_.NotifyAll();
  builder_.join();
  quick_builder_.join();
}

std::shared_ptr<RetrievalState::Sequence> RetrievalState::Find(uint64_t seq) const {
  MutexLock lock(&mu_);
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? nullptr : it->second.seq;
}

RetrievalState::Entry& RetrievalState::FindOrAdd(uint64_t seq, int heads) {
  Entry& entry = seqs_[seq];
  if (entry.seq == nullptr) {
    entry.seq = std::make_shared<Sequence>();
    entry.seq->id = seq;
    entry.seq->heads = heads;
    for (int l = 0; l < spec_.num_layers; ++l) {
      auto layer = std::make_unique<Layer>();
      for (int h = 0; h < heads; ++h) layer->heads.push_back(std::make_unique<Head>());
      entry.seq->layers.push_back(std::move(layer));
    }
    entry.layers.resize(static_cast<size_t>(spec_.num_layers));
    for (LayerBook& l : entry.layers) {
      l.fold_queued.resize(static_cast<size_t>(heads));
      l.stand_in_fold_queued.resize(static_cast<size_t>(heads));
    }
  }
  return entry;
}

RetrievalState::LayerBook* RetrievalState::Book(const Sequence& s, int layer) {
  auto it = seqs_.find(s.id);
  if (it == seqs_.end() || it->second.seq.get() != &s) return nullptr;
  return &it->second.layers[static_cast<size_t>(layer)];
}

bool RetrievalState::UsesStandIn(IndexKind kind) const {
  return config_.stand_in.has_value() && *config_.stand_in != kind && kind != IndexKind::kExact;
}

bool RetrievalState::QueueBuild(LayerBook& book, uint64_t seq, int layer, IndexKind kind) {
  if (book.build_queued[KindIndex(kind)]) return false;
  book.build_queued[KindIndex(kind)] = true;
  if (UsesStandIn(kind) && !book.stand_in_queued) {
    book.stand_in_queued = true;
    quick_jobs_.push_back(
        Job{.seq = seq, .layer = layer, .head = -1, .kind = *config_.stand_in, .stand_in = true});
  }
  jobs_.push_back(Job{.seq = seq, .layer = layer, .head = -1, .kind = kind});
  return true;
}

void RetrievalState::AddSample(uint64_t seq, int layer, int heads, std::vector<float> q,
                               std::vector<int32_t> positions) {
  MutexLock lock(&mu_);
  LayerBook& l = FindOrAdd(seq, heads).layers[static_cast<size_t>(layer)];
  l.sample_q.insert(l.sample_q.end(), q.begin(), q.end());
  l.sample_positions.insert(l.sample_positions.end(), positions.begin(), positions.end());
}

void RetrievalState::RequestBuild(uint64_t seq, int layer, int heads, IndexKind kind) {
  {
    MutexLock lock(&mu_);
    LayerBook& l = FindOrAdd(seq, heads).layers[static_cast<size_t>(layer)];
    if (!QueueBuild(l, seq, layer, kind)) return;
  }
  wake_.NotifyAll();
}

HeadPlan RetrievalState::Plan(uint64_t seq, int layer, int head, int heads, IndexKind kind,
                              int64_t length, bool force) {
  bool notify = false;
  HeadPlan plan = HeadPlan::kSparse;
  {
    MutexLock lock(&mu_);
    Entry& e = FindOrAdd(seq, heads);
    LayerBook& l = e.layers[static_cast<size_t>(layer)];
    Head& h = *e.seq->layers[static_cast<size_t>(layer)]->heads[static_cast<size_t>(head)];
    const int k = KindIndex(kind);
    const int64_t indexed = h.indexed[k].load();
    auto& fold_queued = l.fold_queued[static_cast<size_t>(head)][k];
    if (h.dense.load() && !force) {
      plan = HeadPlan::kDenseDiffuse;
    } else if (h.dense.load() && indexed < 0) {
      // A forced request over a diffuse head: its own index, built once.
      plan = HeadPlan::kDenseNotReady;
      if (!fold_queued) {
        fold_queued = true;
        jobs_.push_back(
            Job{.seq = seq, .layer = layer, .head = head, .kind = kind, .forced = true});
        notify = true;
      }
    } else if (indexed < 0) {
      notify = QueueBuild(l, seq, layer, kind);
      const int64_t stand_in = UsesStandIn(kind) ? h.stand_in_indexed.load() : -1;
      plan = stand_in >= 0 ? HeadPlan::kSparse : HeadPlan::kDenseNotReady;
      auto& stand_in_fold = l.stand_in_fold_queued[static_cast<size_t>(head)];
      if (stand_in >= 0 && length - stand_in >= config_.fold_tokens && stand_in_fold == 0) {
        stand_in_fold = 1;
        quick_jobs_.push_back(Job{.seq = seq,
                                  .layer = layer,
                                  .head = head,
                                  .kind = *config_.stand_in,
                                  .stand_in = true});
        notify = true;
      }
    } else if (length - indexed >= config_.fold_tokens && !fold_queued) {
      fold_queued = true;
      jobs_.push_back(Job{.seq = seq, .layer = layer, .head = head, .kind = kind});
      notify = true;
    }
  }
  if (notify) wake_.NotifyAll();
  return plan;
}

RetrievalState::Lease RetrievalState::Acquire(uint64_t seq, int layer, int head,
                                              IndexKind kind) {
  Lease lease;
  std::shared_ptr<Sequence> s = Find(seq);
  if (s == nullptr) return lease;
  Head& h = *s->layers[static_cast<size_t>(layer)]->heads[static_cast<size_t>(head)];
  // The lock travels with the lease, out of this scope: a std::shared_lock, which the analysis
  // does not follow, so it is told the lock is held. Writers hold it only to install a built
  // or folded index (folds grow a copy), so waiting for it is brief.
  std::shared_lock<SharedMutex> lock(h.mu);
  h.mu.AssertReaderHeld();
  lease.index = h.index[KindIndex(kind)].get();
  if (lease.index != nullptr) lease.guard = h.guard[KindIndex(kind)];
  if (lease.index == nullptr && UsesStandIn(kind) && h.stand_in != nullptr) {
    lease.index = h.stand_in.get();
    lease.stand_in = true;
  }
  if (lease.index != nullptr) lease.lock = std::move(lock);
  return lease;
}

void RetrievalState::ReportRecall(uint64_t seq, int layer, int head, IndexKind kind,
                                  retrieval::RecallGuard& guard, int64_t exact, int64_t hits) {
  const retrieval::RecallGuard::Action action = guard.Report(exact, hits);
  if (action == retrieval::RecallGuard::Action::kNone) return;
  if (action == retrieval::RecallGuard::Action::kRaised) {
    guard_raised_.fetch_add(1);
    ATTIC_LOG(kInfo, "retrieval") << "sequence " << seq << " layer " << layer << " head " << head
                                  << ": sampled recall below "
                                  << config_.recall_target << ", search effort raised to "
                                  << guard.effort();
    return;
  }
  // Out of effort: the scan is built in the background (GuardScan); this guard stays spent, so
  // the search goes on at its largest effort until the scan replaces it.
  {
    MutexLock lock(&mu_);
    const auto it = seqs_.find(seq);
    if (it == seqs_.end() || Book(*it->second.seq, layer) == nullptr) return;  // forgotten
    jobs_.push_back(
        Job{.seq = seq, .layer = layer, .head = head, .kind = kind, .guard_scan = true});
  }
  wake_.NotifyAll();
}

std::shared_ptr<retrieval::RecallGuard> RetrievalState::MakeGuard(int base_effort,
                                                                  int max_effort) const {
  if (config_.recall_guard_checks <= 0) return nullptr;
  return std::make_shared<retrieval::RecallGuard>(
      retrieval::RecallGuardOptions{.target = config_.recall_target,
                                    .checks = config_.recall_guard_checks,
                                    .base_effort = base_effort,
                                    .max_effort = max_effort});
}

Status RetrievalState::GuardScan(Sequence& seq, int layer, int head, IndexKind kind) {
  Head& h = *seq.layers[static_cast<size_t>(layer)]->heads[static_cast<size_t>(head)];
  const int k = KindIndex(kind);
  bool scan_already = false;
  {
    ReaderLock lock(&h.mu);
    if (h.index[k] == nullptr) return OkStatus();
    scan_already = h.index[k]->kind() == IndexKind::kQuantized;
  }
  if (scan_already) {
    guard_dense_.fetch_add(1);
    h.dense.store(true);
    ATTIC_LOG(kWarn, "retrieval") << "sequence " << seq.id << " layer " << layer << " head "
                                  << head << ": sampled recall below " << config_.recall_target
                                  << " with the 4-bit scan too, answered densely from now on";
    return OkStatus();
  }
  std::vector<const std::byte*> blocks;
  KeyRows rows;
  RETURN_IF_ERROR(ReadKeys(seq.id, layer, head, &blocks, &rows));
  const int depth = retrieval::ServingOptions{}.scan_depths.back();
  ASSIGN_OR_RETURN(std::unique_ptr<KeyIndex> scan,
                   retrieval::BuildQuantizedScan(rows, {.bits = 4, .rerank = depth}));
  const int64_t bytes = scan->memory_bytes();
  const int64_t size = scan->size();
  WriterLock lock(&h.mu);
  if (h.index[k] == nullptr) return OkStatus();
  h.index_bytes += bytes - h.index[k]->memory_bytes();
  h.index[k] = std::move(scan);
  h.indexed[k].store(size);
  h.guard[k] = MakeGuard(depth, depth);
  guard_scan_.fetch_add(1);
  ATTIC_LOG(kWarn, "retrieval") << "sequence " << seq.id << " layer " << layer << " head "
                                << head << ": sampled recall below " << config_.recall_target
                                << " at the largest beam, served by the 4-bit scan (re-rank "
                                << depth << ") from now on";
  return OkStatus();
}

void RetrievalState::Forget(uint64_t seq) {
  std::shared_ptr<Sequence> s;
  {
    MutexLock lock(&mu_);
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) return;
    s = it->second.seq;
    seqs_.erase(it);
    std::erase_if(jobs_, [seq](const Job& j) { return j.seq == seq; });
    std::erase_if(quick_jobs_, [seq](const Job& j) { return j.seq == seq; });
  }
  // A build of this sequence in flight reads its blocks: wait for it before the store frees them.
  WriterLock wait(&s->busy);
  idle_.NotifyAll();
}

RetrievalState::Stats RetrievalState::stats() const {
  Stats st;
  MutexLock lock(&mu_);
  for (const auto& [id, e] : seqs_) {
    for (const LayerBook& l : e.layers) {
      st.sample_bytes += static_cast<int64_t>(l.sample_q.size() * sizeof(float) +
                                              l.sample_positions.size() * sizeof(int32_t));
    }
    for (const auto& l : e.seq->layers) {
      for (const auto& h : l->heads) {
        for (const auto& n : h->indexed) st.indexes += n.load() >= 0 ? 1 : 0;
        st.index_bytes += h->index_bytes.load();
        st.dense_heads += h->dense.load() ? 1 : 0;
        st.stand_ins += h->stand_in_indexed.load() >= 0 ? 1 : 0;
      }
    }
  }
  st.queued = static_cast<int64_t>(jobs_.size() + quick_jobs_.size());
  st.builds = builds_;
  st.folds = folds_;
  st.build_seconds = build_seconds_;
  st.served_by_scan = served_by_scan_.load();
  st.served_dense = served_dense_.load();
  st.guard_raised = guard_raised_.load();
  st.guard_scan = guard_scan_.load();
  st.guard_dense = guard_dense_.load();
  return st;
}

void RetrievalState::WaitIdle() {
  MutexLock lock(&mu_);
  while (!jobs_.empty() || !quick_jobs_.empty() || running_jobs_ > 0) idle_.Wait(&mu_);
}

void RetrievalState::BuildLoop(bool quick) {
  // Build threads (these and the pool one starts) run below the attention pool's priority.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)),
              quick ? kStandInNice : kBuildNice);
  // Stand-ins build in milliseconds on their own thread; the slow kinds get the pool.
  std::unique_ptr<ThreadPool> pool;
  if (!quick) {
    pool = std::make_unique<ThreadPool>(
        ThreadPoolOptions{.num_threads = std::max(1, config_.build_threads)});
  }
  for (;;) {
    Job job;
    {
      MutexLock lock(&mu_);
      std::deque<Job>& queue = quick ? quick_jobs_ : jobs_;
      while (!stop_ && queue.empty()) wake_.Wait(&mu_);
      if (stop_) break;
      job = queue.front();
      queue.pop_front();
      ++running_jobs_;
    }
    const auto t0 = std::chrono::steady_clock::now();
    if (!quick && config_.before_slow_job) config_.before_slow_job();
    Run(job, pool.get());
    ATTIC_LOG(kDebug, "retrieval")
        << "sequence " << job.seq << " layer " << job.layer << ": "
        << (job.stand_in ? "stand-in " : "") << (job.head < 0 ? "build" : "fold") << " took "
        << std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()
        << " ms";
    {
      MutexLock lock(&mu_);
      --running_jobs_;
    }
    idle_.NotifyAll();
  }
}

void RetrievalState::Run(const Job& job, ThreadPool* pool) {
  std::shared_ptr<Sequence> s = Find(job.seq);
  if (s == nullptr) return;
  ReaderLock busy(&s->busy);
  {
    MutexLock lock(&mu_);
    if (Book(*s, job.layer) == nullptr) return;  // forgotten
  }
  const auto t0 = std::chrono::steady_clock::now();
  const Status status = job.head < 0    ? Build(*s, job.layer, job.kind, -1, job.stand_in, pool)
                        : job.forced   ? Build(*s, job.layer, job.kind, job.head, false, pool)
                        : job.guard_scan ? GuardScan(*s, job.layer, job.head, job.kind)
                                       : Fold(*s, job.layer, job.head, job.kind, job.stand_in);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MutexLock lock(&mu_);
  // Null once the sequence was forgotten meanwhile: nothing is left to mark.
  LayerBook* l = Book(*s, job.layer);
  if (job.head < 0) {
    ++builds_;
    build_seconds_ += seconds;
    // A failed build may be asked for again by the next sparse request (a failed stand-in
    // is not retried: the head waits for its index).
    if (!status.ok() && l != nullptr && !job.stand_in) {
      l->build_queued[KindIndex(job.kind)] = false;
    }
  } else if (!job.guard_scan) {
    ++folds_;
    if (l != nullptr && job.stand_in) {
      l->stand_in_fold_queued[static_cast<size_t>(job.head)] = 0;
    } else if (l != nullptr) {
      l->fold_queued[static_cast<size_t>(job.head)][KindIndex(job.kind)] = false;
    }
  }
  if (!status.ok() && l != nullptr) {
    ATTIC_LOG(kWarn, "retrieval")
        << "sequence " << job.seq << " layer " << job.layer << ": index "
        << (job.stand_in ? "stand-in " : "") << (job.head < 0 ? "build" : "fold") << " failed: " << status.ToString();
  }
}

Status RetrievalState::ReadKeys(uint64_t seq, int layer, int head,
                                std::vector<const std::byte*>* blocks, KeyRows* rows) const {
  std::vector<BlockView> views;
  ASSIGN_OR_RETURN(SequenceInfo info, store_->GetSequence(seq));
  RETURN_IF_ERROR(store_->ReadBlocks(seq, layer, info.kv_head_begin + head, &views));
  blocks->clear();
  int64_t count = 0;
  for (const BlockView& v : views) {
    blocks->push_back(v.k);
    count += v.num_tokens;
  }
  *rows = KeyRows{.blocks = *blocks,
                  .block_size = spec_.block_size,
                  .head_dim = spec_.head_dim,
                  .dtype = spec_.dtype,
                  .count = count};
  return OkStatus();
}

Status RetrievalState::Build(Sequence& seq, int layer, IndexKind kind, int only_head,
                             bool stand_in, ThreadPool* pool) {
  const int g = spec_.group_size();
  const int d = spec_.head_dim;
  std::vector<float> sample;
  std::vector<int32_t> positions;
  {
    MutexLock lock(&mu_);
    // A sequence forgotten since Run looked (Forget waits for this build): its sample is gone.
    const LayerBook* l = Book(seq, layer);
    if (l == nullptr) return OkStatus();
    sample = l->sample_q;
    positions = l->sample_positions;
  }
  const size_t n = positions.size();
  const size_t row = static_cast<size_t>(seq.heads) * g * d;
  std::vector<float> head_q(n * static_cast<size_t>(g) * d);
  for (int h = 0; h < seq.heads; ++h) {
    if (only_head >= 0 && h != only_head) continue;
    Head& head = *seq.layers[static_cast<size_t>(layer)]->heads[static_cast<size_t>(h)];
    std::vector<const std::byte*> blocks;
    KeyRows rows;
    RETURN_IF_ERROR(ReadKeys(seq.id, layer, h, &blocks, &rows));
    // This head's G queries of every sample row, contiguous.
    for (size_t i = 0; i < n; ++i) {
      std::copy_n(sample.data() + i * row + static_cast<size_t>(h) * g * d,
                  static_cast<size_t>(g) * d, head_q.data() + i * static_cast<size_t>(g) * d);
    }
    const retrieval::QuerySample qs{.q = head_q.data(),
                                    .num_queries = static_cast<int>(n),
                                    .group_size = g,
                                    .head_dim = d,
                                    .positions = positions};
    if (config_.profile_heads && n > 0) {
      MutexLock profile_lock(&head.profile_mu);
      if (!head.profiled) {
        retrieval::ProfileOptions options = config_.profile;
        options.scale = spec_.EffectiveScale();
        options.selection = {.sinks = config_.sinks, .window = config_.window,
                             .top_k = config_.top_k};
        options.pool = pool;
        ASSIGN_OR_RETURN(retrieval::HeadProfile profile,
                         retrieval::ProfileHead(rows, qs, options));
        head.dense.store(profile.dense);
        head.profiled = true;
        ATTIC_LOG(kInfo, "retrieval") << "sequence " << seq.id << " layer " << layer << " head "
                                      << h << (profile.dense ? ": dense (diffuse attention), "
                                                             : ": sparse, ")
                                      << profile.ToString();
      }
    }
    // A diffuse head is answered densely: no index is built for it unless asked for alone.
    if (head.dense.load() && only_head < 0) continue;
    std::unique_ptr<KeyIndex> index;
    std::shared_ptr<retrieval::RecallGuard> guard;
    if (stand_in || only_head >= 0) {
      // A stand-in, or a head built alone for forced requests (which ask for retrieval on a
      // head the profile sent dense, to see what it would lose): the kind asked for, as built.
      ASSIGN_OR_RETURN(index, retrieval::BuildKeyIndex(kind, rows, qs, {.pool = pool}));
    } else {
      // The serving policy: the kind asked for when it reaches its recall target on held-out
      // sample queries, else the 4-bit scan, else dense.
      retrieval::ServingOptions serving_options;
      serving_options.graph.calibration_target = config_.recall_target;
      ASSIGN_OR_RETURN(retrieval::ServingIndex serving,
                       retrieval::BuildServingIndex(kind, rows, qs, serving_options,
                                                    {.pool = pool}));
      if (serving.calibration.has_value()) {
        ATTIC_LOG(kInfo, "retrieval") << "sequence " << seq.id << " layer " << layer << " head "
                                      << h << ": " << serving.ToString();
      }
      if (serving.replaced) served_by_scan_.fetch_add(1);
      if (serving.dense) {
        // No index reaches the target: exact rather than below it.
        served_dense_.fetch_add(1);
        head.dense.store(true);
        WriterLock lock(&head.mu);
        head.DropStandIn();
        continue;
      }
      if (serving.base_effort > 0) guard = MakeGuard(serving.base_effort, serving.max_effort);
      index = std::move(serving.index);
    }
    const int64_t size = index->size();
    const int64_t bytes = index->memory_bytes();
    WriterLock lock(&head.mu);
    if (stand_in) {
      // Not once an index it would stand in for is there.
      if (std::any_of(std::begin(head.index), std::end(head.index),
                      [](const auto& i) { return i != nullptr; })) {
        continue;
      }
      head.stand_in = std::move(index);
      head.stand_in_bytes = bytes;
      head.index_bytes += bytes;
      head.stand_in_indexed.store(size);
      continue;
    }
    head.index[KindIndex(kind)] = std::move(index);
    head.guard[KindIndex(kind)] = std::move(guard);
    head.index_bytes += bytes;
    head.indexed[KindIndex(kind)].store(size);
    // The index asked for replaces the stand-in.
    if (UsesStandIn(kind)) head.DropStandIn();
  }
  return OkStatus();
}

Status RetrievalState::Fold(Sequence& seq, int layer, int head, IndexKind kind, bool stand_in) {
  Head& h = *seq.layers[static_cast<size_t>(layer)]->heads[static_cast<size_t>(head)];
  std::vector<const std::byte*> blocks;
  KeyRows rows;
  RETURN_IF_ERROR(ReadKeys(seq.id, layer, head, &blocks, &rows));
  const int k = KindIndex(kind);
  // Copy on write: the keys are folded into a copy while the index keeps serving searches
  // (readers share h.mu), then the copy replaces it under a brief exclusive lock. Only this
  // job writes the index (jobs of one sequence run one at a time).
  // A stand-in dropped meanwhile (its index was installed) is not folded.
  std::unique_ptr<KeyIndex> next;
  int64_t before = 0;
  {
    ReaderLock lock(&h.mu);
    const KeyIndex* index = stand_in ? h.stand_in.get() : h.index[k].get();
    if (index == nullptr) return OkStatus();
    before = index->memory_bytes();
    ASSIGN_OR_RETURN(next, index->Clone());  // every kind can be copied
  }
  RETURN_IF_ERROR(next->Add(rows));
  const int64_t bytes = next->memory_bytes();
  const int64_t size = next->size();
  WriterLock lock(&h.mu);
  if (stand_in) {
    if (h.stand_in == nullptr) return OkStatus();  // dropped while this fold ran
    h.index_bytes += bytes - h.stand_in_bytes;
    h.stand_in = std::move(next);
    h.stand_in_bytes = bytes;
    h.stand_in_indexed.store(size);
    return OkStatus();
  }
  h.index_bytes += bytes - before;
  h.index[k] = std::move(next);
  h.indexed[k].store(size);
  return OkStatus();
}

}  // namespace attic::worker_internal
