#include "services/worker/retrieval_state.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "common/log.h"

namespace attic::worker_internal {

using retrieval::KeyIndex;
using retrieval::KeyRows;

namespace {

// Background work yields to the attention pool: a positive nice value for the build threads.
constexpr int kBuildNice = 10;

int KindIndex(IndexKind kind) { return static_cast<int>(kind); }

}  // namespace

struct RetrievalState::Head {
  // Exclusive while an index is installed or folded; shared while a search uses it.
  SharedMutex mu;
  std::unique_ptr<KeyIndex> index[kKinds] GUARDED_BY(mu);
  // Read without mu by Plan and Stats.
  std::atomic<int64_t> indexed[kKinds] = {};  // index size, or -1 while none
  std::atomic<int64_t> index_bytes{0};
  std::atomic<bool> dense{false};
  std::atomic<bool> profiled{false};

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
  // Held by the build thread while it works on this sequence; Forget takes it to wait.
  Mutex busy;
  std::vector<std::unique_ptr<Layer>> layers;
};

RetrievalState::RetrievalState(KvStore* store, const ModelSpec& spec,
                               const RetrievalConfig& config)
    : store_(store), spec_(spec), config_(config) {
  builder_ = std::thread([this] { BuildLoop(); });
}

RetrievalState::~RetrievalState() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    jobs_.clear();
  }
  wake_.NotifyAll();
  builder_.join();
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
    for (LayerBook& l : entry.layers) l.fold_queued.resize(static_cast<size_t>(heads));
  }
  return entry;
}

RetrievalState::LayerBook* RetrievalState::Book(const Sequence& s, int layer) {
  auto it = seqs_.find(s.id);
  if (it == seqs_.end() || it->second.seq.get() != &s) return nullptr;
  return &it->second.layers[static_cast<size_t>(layer)];
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
    if (l.build_queued[KindIndex(kind)]) return;
    l.build_queued[KindIndex(kind)] = true;
    jobs_.push_back(Job{.seq = seq, .layer = layer, .head = -1, .kind = kind});
  }
  wake_.NotifyOne();
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
      plan = HeadPlan::kDenseNotReady;
      if (!l.build_queued[k]) {
        l.build_queued[k] = true;
        jobs_.push_back(Job{.seq = seq, .layer = layer, .head = -1, .kind = kind});
        notify = true;
      }
    } else if (length - indexed >= config_.fold_tokens && !fold_queued) {
      fold_queued = true;
      jobs_.push_back(Job{.seq = seq, .layer = layer, .head = head, .kind = kind});
      notify = true;
    }
  }
  if (notify) wake_.NotifyOne();
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
  if (lease.index != nullptr) lease.lock = std::move(lock);
  return lease;
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
  }
  // A build of this sequence in flight reads its blocks: wait for it before the store frees them.
  MutexLock wait(&s->busy);
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
      }
    }
  }
  st.queued = static_cast<int64_t>(jobs_.size());
  st.builds = builds_;
  st.folds = folds_;
  st.build_seconds = build_seconds_;
  return st;
}

void RetrievalState::WaitIdle() {
  MutexLock lock(&mu_);
  while (!jobs_.empty() || running_job_) idle_.Wait(&mu_);
}

void RetrievalState::BuildLoop() {
  // Build threads (this one and the pool it starts) run below the attention pool's priority.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), kBuildNice);
  pool_ = std::make_unique<ThreadPool>(
      ThreadPoolOptions{.num_threads = std::max(1, config_.build_threads)});
  for (;;) {
    Job job;
    {
      MutexLock lock(&mu_);
      while (!stop_ && jobs_.empty()) wake_.Wait(&mu_);
      if (stop_) break;
      job = jobs_.front();
      jobs_.pop_front();
      running_job_ = true;
    }
    Run(job);
    {
      MutexLock lock(&mu_);
      running_job_ = false;
    }
    idle_.NotifyAll();
  }
  pool_.reset();
}

void RetrievalState::Run(const Job& job) {
  std::shared_ptr<Sequence> s = Find(job.seq);
  if (s == nullptr) return;
  MutexLock busy(&s->busy);
  {
    MutexLock lock(&mu_);
    if (Book(*s, job.layer) == nullptr) return;  // forgotten
  }
  const auto t0 = std::chrono::steady_clock::now();
  const Status status = job.head < 0  ? Build(*s, job.layer, job.kind)
                        : job.forced ? Build(*s, job.layer, job.kind, job.head)
                                     : Fold(*s, job.layer, job.head, job.kind);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MutexLock lock(&mu_);
  // Null once the sequence was forgotten meanwhile: nothing is left to mark.
  LayerBook* l = Book(*s, job.layer);
  if (job.head < 0) {
    ++builds_;
    build_seconds_ += seconds;
    // A failed build may be asked for again by the next sparse request.
    if (!status.ok() && l != nullptr) l->build_queued[KindIndex(job.kind)] = false;
  } else {
    ++folds_;
    if (l != nullptr) l->fold_queued[static_cast<size_t>(job.head)][KindIndex(job.kind)] = false;
  }
  if (!status.ok() && l != nullptr) {
    ATTIC_LOG(kWarn, "retrieval")
        << "sequence " << job.seq << " layer " << job.layer << ": index "
        << (job.head < 0 ? "build" : "fold") << " failed: " << status.ToString();
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

Status RetrievalState::Build(Sequence& seq, int layer, IndexKind kind, int only_head) {
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
    if (config_.profile_heads && n > 0 && !head.profiled.exchange(true)) {
      retrieval::ProfileOptions options = config_.profile;
      options.scale = spec_.EffectiveScale();
      options.selection = {.sinks = config_.sinks, .window = config_.window,
                           .top_k = config_.top_k};
      options.pool = pool_.get();
      ASSIGN_OR_RETURN(retrieval::HeadProfile profile, retrieval::ProfileHead(rows, qs, options));
      head.dense.store(profile.dense);
      ATTIC_LOG(kInfo, "retrieval") << "sequence " << seq.id << " layer " << layer << " head "
                                    << h << (profile.dense ? ": dense (diffuse attention), "
                                                           : ": sparse, ")
                                    << profile.ToString();
    }
    // A diffuse head is answered densely: no index is built for it unless asked for alone.
    if (head.dense.load() && only_head < 0) continue;
    ASSIGN_OR_RETURN(std::unique_ptr<KeyIndex> index,
                     retrieval::BuildKeyIndex(kind, rows, qs, {.pool = pool_.get()}));
    const int64_t size = index->size();
    const int64_t bytes = index->memory_bytes();
    WriterLock lock(&head.mu);
    head.index[KindIndex(kind)] = std::move(index);
    head.index_bytes += bytes;
    head.indexed[KindIndex(kind)].store(size);
  }
  return OkStatus();
}

Status RetrievalState::Fold(Sequence& seq, int layer, int head, IndexKind kind) {
  Head& h = *seq.layers[static_cast<size_t>(layer)]->heads[static_cast<size_t>(head)];
  std::vector<const std::byte*> blocks;
  KeyRows rows;
  RETURN_IF_ERROR(ReadKeys(seq.id, layer, head, &blocks, &rows));
  const int k = KindIndex(kind);
  // Copy on write: the keys are folded into a copy while the index keeps serving searches
  // (readers share h.mu), then the copy replaces it under a brief exclusive lock. Only this
  // job writes the index (jobs of one sequence run one at a time).
  std::unique_ptr<KeyIndex> next;
  int64_t before = 0;
  {
    ReaderLock lock(&h.mu);
    const KeyIndex* index = h.index[k].get();
    if (index == nullptr) return OkStatus();
    before = index->memory_bytes();
    ASSIGN_OR_RETURN(next, index->Clone());  // every kind can be copied
  }
  RETURN_IF_ERROR(next->Add(rows));
  const int64_t bytes = next->memory_bytes();
  const int64_t size = next->size();
  WriterLock lock(&h.mu);
  h.index[k] = std::move(next);
  h.index_bytes += bytes - before;
  h.indexed[k].store(size);
  return OkStatus();
}

}  // namespace attic::worker_internal
