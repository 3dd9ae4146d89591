#include "services/worker/attend_executor.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>

#include "common/lse_merge.h"
#include "attention_workers/retrieval/locality.h"

namespace attic::worker_internal {

using worker_codec::PayloadSlice;
using transport::OutgoingMessage;

struct AttendExecutor::Item {
  // From the request.
  uint64_t id = 0;
  DType q_dtype = DType::kFloat32;
  uint64_t q_offset = 0;
  bool append = false;
  DType kv_dtype = DType::kFloat32;
  uint64_t k_offset = 0;
  uint64_t v_offset = 0;
  uint64_t token_begin = 0;  // sparse: the shard's place in the sequence
  uint64_t tokens_after = 0;
  retrieval::SelectionParams selection;  // sparse: sinks and window placed in this shard
  // Filled by Prepare.
  Status status;
  int kv_head_begin = 0;
  int heads = 0;          // h
  int length = 0;         // tokens after the append
  int durable = 0;        // of them, on the SSD tier
  size_t q_index = 0;     // first float of this item's queries in q_ ([G * h, D] fp32)
  size_t slot_begin = 0;  // first of its h slots
  size_t out_index = 0;   // first float of its o in the reply payload (lse follows o)
  // Filled by Prepare on a pool thread, then moved into the shared arrays by Gather.
  std::vector<KvRun> runs;           // every head's blocks, head after head
  std::vector<size_t> head_runs;     // [h]: runs of each head
  std::vector<int64_t> head_tokens;  // [h]
  std::vector<BlockView> blocks;     // ReadBlocks scratch
};

struct AttendExecutor::Slot {
  size_t item = 0;  // index into items_
  size_t run_begin = 0;
  size_t run_end = 0;
  int64_t tokens = 0;
  size_t first_task = 0;
  size_t num_tasks = 0;
  bool dense_in_sparse = false;  // a sparse request's head planned dense
};

struct AttendExecutor::Task {
  size_t item = 0;
  int head = 0;  // within the item's heads
  size_t run_begin = 0;
  size_t run_end = 0;
  bool sparse = false;
  // Filled by Compute.
  uint64_t keys = 0;       // exact dot products
  uint64_t selected = 0;   // tokens attended
  uint64_t bytes = 0;      // K, V and index bytes read
  uint64_t ssd_bytes = 0;  // values read from the SSD tier
  bool fell_back = false;  // sparse task answered densely (index busy or gone)
};

struct AttendExecutor::SparseScratch {
  std::vector<const std::byte*> key_blocks;
  std::vector<KvRun> fallback_runs;
  std::vector<KvRun> fetched_runs;  // the runs with reloaded values filled in
  std::vector<int32_t> fixed;       // sinks + window + unfolded keys
  std::vector<int> fetch;
  std::vector<const std::byte*> values;
  retrieval::SearchResult result;
  std::vector<int32_t> selection;
};

AttendExecutor::AttendExecutor(KvStore* store, ThreadPool* pool, const ModelSpec& spec,
                               RetrievalState* retrieval)
    : store_(store),
      pool_(pool),
      spec_(spec),
      group_(spec.group_size()),
      retrieval_(retrieval),
      reply_buffers_(std::make_shared<ReplyBuffers>()) {
  locality_.block_size = spec.block_size;
  locality_.fetch_budget = retrieval->config().fetch_budget;
  locality_.score_slack = retrieval->config().score_slack;
}

std::shared_ptr<std::vector<float>> AttendExecutor::ReplyBuffers::Get(size_t floats) {
  std::vector<float>* buffer = nullptr;
  {
    MutexLock lock(&mu_);
    if (!free_.empty()) {
      buffer = free_.back().release();
      free_.pop_back();
    }
  }
  if (buffer == nullptr) buffer = new std::vector<float>();
  buffer->resize(floats);
  // Returned when the transport has sent the reply (it drops the keepalive then), unless the
  // executor is gone or enough buffers wait already.
  std::weak_ptr<ReplyBuffers> home = weak_from_this();
  return std::shared_ptr<std::vector<float>>(buffer, [home](std::vector<float>* b) {
    std::unique_ptr<std::vector<float>> owned(b);
    if (std::shared_ptr<ReplyBuffers> pool = home.lock()) {
      MutexLock lock(&pool->mu_);
      if (pool->free_.size() < kMaxFree) pool->free_.push_back(std::move(owned));
    }
  });
}

AttendExecutor::~AttendExecutor() = default;

namespace {

// A sparse request's parameters, the worker's retrieval settings filling what it leaves out.
AttendExecutor::SparseRun ResolveSparse(const worker_codec::SparseCall& p,
                                        const RetrievalConfig& config) {
  AttendExecutor::SparseRun run;
  run.active = true;
  run.selection.sinks = p.sinks < 0 ? config.sinks : p.sinks;
  run.selection.window = p.window < 0 ? config.window : p.window;
  run.selection.top_k = p.top_k < 0 ? config.top_k : p.top_k;
  run.selection.exclude_window = p.exclude_window;
  run.effort = std::max(0, p.effort);
  run.kind = p.index_kind.value_or(config.kind);
  return run;
}

}  // namespace

StatusOr<OutgoingMessage> AttendExecutor::Run(const worker_codec::AttendCall& call,
                                              std::span<const std::byte> payload,
                                              Figures* figures, Phases* phases) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  sparse_ = call.sparse ? ResolveSparse(*call.sparse, retrieval_->config()) : SparseRun{};
  layer_ = call.layer;
  // Items are reused across requests so their scratch keeps its capacity.
  if (items_.size() < call.items.size()) items_.resize(call.items.size());
  items_.resize(call.items.size());
  for (size_t i = 0; i < call.items.size(); ++i) {
    const worker_codec::AttendItemCall& c = call.items[i];
    Item& item = items_[i];
    item.status = c.status;
    item.id = c.id;
    item.q_dtype = c.q_dtype;
    item.q_offset = c.q_offset;
    item.append = c.append_kv;
    item.kv_dtype = c.kv_dtype;
    item.k_offset = c.k_offset;
    item.v_offset = c.v_offset;
    item.token_begin = c.token_begin;
    item.tokens_after = c.tokens_after;
    item.length = 0;
    item.heads = 0;
    // Each item converts its queries straight into its rows of q_: [Hq, D] per item.
    item.q_index = i * static_cast<size_t>(spec_.num_q_heads) * static_cast<size_t>(spec_.head_dim);
  }
  q_.resize(items_.size() * static_cast<size_t>(spec_.num_q_heads) *
            static_cast<size_t>(spec_.head_dim));
  // Items touch distinct sequences (the codec refuses duplicates), which the store serves
  // in parallel: appending each item's token and gathering its block views runs on the pool.
  pool_->ParallelFor(static_cast<int64_t>(items_.size()), [&](int64_t i) {
    Item& item = items_[static_cast<size_t>(i)];
    if (item.status.ok()) item.status = Prepare(payload, call.layer, item);
    if (!item.status.ok()) {
      item.status = item.status.WithContext("sequence " + std::to_string(item.id));
    }
  });
  Gather();
  const auto t1 = Clock::now();
  PlanTasks();
  Compute();
  const auto t2 = Clock::now();
  OutgoingMessage reply = BuildReply(figures);
  const auto t3 = Clock::now();
  phases->prepare = std::chrono::duration<double>(t1 - t0).count();
  phases->compute = std::chrono::duration<double>(t2 - t1).count();
  phases->reply = std::chrono::duration<double>(t3 - t2).count();
  return reply;
}

Status AttendExecutor::Prepare(std::span<const std::byte> payload, int layer, Item& item) {
  ASSIGN_OR_RETURN(SequenceInfo info, store_->GetSequence(item.id));
  item.kv_head_begin = info.kv_head_begin;
  item.heads = info.kv_head_end - info.kv_head_begin;
  const int64_t d = spec_.head_dim;
  const size_t q_count = static_cast<size_t>(group_) * static_cast<size_t>(item.heads * d);
  ASSIGN_OR_RETURN(const std::byte* q, PayloadSlice(payload, item.q_offset,
                                                    q_count * DTypeSize(item.q_dtype), "q"));
  if (item.append) {
    const uint64_t kv_bytes = static_cast<uint64_t>(item.heads * d) * DTypeSize(item.kv_dtype);
    ASSIGN_OR_RETURN(const std::byte* k,
                     PayloadSlice(payload, item.k_offset, kv_bytes, "k_new"));
    ASSIGN_OR_RETURN(const std::byte* v,
                     PayloadSlice(payload, item.v_offset, kv_bytes, "v_new"));
    RETURN_IF_ERROR(store_->AppendDecodeToken(item.id, layer,
                                              TensorView(k, item.kv_dtype, {item.heads, d}),
                                              TensorView(v, item.kv_dtype, {item.heads, d})));
  }
  ASSIGN_OR_RETURN(item.length, store_->Length(item.id, layer));
  item.durable = 0;
  if (store_->has_ssd_tier()) {
    ASSIGN_OR_RETURN(item.durable, store_->DurableLength(item.id, layer));
  }
  item.runs.clear();
  item.head_runs.assign(static_cast<size_t>(item.heads), 0);
  item.head_tokens.assign(static_cast<size_t>(item.heads), 0);
  for (int h = 0; h < item.heads; ++h) {
    // Dense passes use every resident value now; sparse steps mark what they select.
    RETURN_IF_ERROR(store_->ReadBlocks(item.id, layer, item.kv_head_begin + h, &item.blocks,
                                       /*touch_values=*/!sparse_.active));
    for (const BlockView& b : item.blocks) {
      item.runs.push_back(KvRun{b.k, b.v, b.num_tokens});
      item.head_tokens[static_cast<size_t>(h)] += b.num_tokens;
    }
    item.head_runs[static_cast<size_t>(h)] = item.blocks.size();
  }
  ConvertToFloat(item.q_dtype, q, q_.data() + item.q_index, q_count);
  return OkStatus();
}

void AttendExecutor::Gather() {
  runs_.clear();
  slots_.clear();
  for (size_t i = 0; i < items_.size(); ++i) {
    Item& item = items_[i];
    if (!item.status.ok()) continue;
    item.slot_begin = slots_.size();
    size_t run = runs_.size();
    runs_.insert(runs_.end(), item.runs.begin(), item.runs.end());
    for (int h = 0; h < item.heads; ++h) {
      Slot slot;
      slot.item = i;
      slot.run_begin = run;
      run += item.head_runs[static_cast<size_t>(h)];
      slot.run_end = run;
      slot.tokens = item.head_tokens[static_cast<size_t>(h)];
      slots_.push_back(slot);
    }
  }
}

namespace {

// Sinks are the sequence's first tokens and the window its last: a token shard of the
// sequence gets the part of each that lies in its range.
retrieval::SelectionParams PlaceSelection(retrieval::SelectionParams p, uint64_t token_begin,
                                          uint64_t tokens_after) {
  const auto shrink = [](int n, uint64_t by) {
    return by >= static_cast<uint64_t>(n) ? 0 : n - static_cast<int>(by);
  };
  p.sinks = shrink(p.sinks, token_begin);
  p.window = shrink(p.window, tokens_after);
  return p;
}

// Appends the first `keep` tokens of runs to *out (the last run kept may be cut short).
void AppendCut(std::span<const KvRun> runs, int64_t keep, std::vector<KvRun>* out) {
  for (const KvRun& r : runs) {
    if (keep <= 0) break;
    KvRun cut = r;
    cut.num_tokens = static_cast<int>(std::min<int64_t>(cut.num_tokens, keep));
    keep -= cut.num_tokens;
    out->push_back(cut);
  }
}

}  // namespace

// The dense answer of a request that leaves the window to its caller: the slot's runs end
// `window` tokens early (a copy of the runs, cut, is appended to runs_).
void AttendExecutor::TrimSlot(Slot& slot, int window) {
  const size_t begin = runs_.size();
  // No reallocation while the span below reads runs_.
  runs_.reserve(begin + (slot.run_end - slot.run_begin));
  AppendCut({runs_.data() + slot.run_begin, slot.run_end - slot.run_begin}, slot.tokens - window,
            &runs_);
  slot.run_begin = begin;
  slot.run_end = runs_.size();
  slot.tokens = std::max<int64_t>(0, slot.tokens - window);
}

void AttendExecutor::PlanTasks() {
  tasks_.clear();
  int64_t total = 0;
  for (const Slot& s : slots_) total += s.tokens;
  const int64_t threads = pool_->num_threads();
  // Threads sharing DRAM bandwidth do not progress evenly, so the batch ends with its slowest
  // thread's last task: kTasksPerThread small tasks keep that tail short. Never below
  // kMinChunkTokens, where the per-task merge and prefetch ramp-up would start to show.
  const int64_t target = threads * kTasksPerThread;
  const int64_t chunk = std::max<int64_t>(kMinChunkTokens, (total + target - 1) / target);
  for (size_t i = 0; i < items_.size(); ++i) {
    Item& item = items_[i];
    if (!item.status.ok()) continue;
    if (sparse_.active) {
      item.selection = PlaceSelection(sparse_.selection, item.token_begin, item.tokens_after);
    }
    for (int h = 0; h < item.heads; ++h) {
      Slot& slot = slots_[item.slot_begin + static_cast<size_t>(h)];
      slot.first_task = tasks_.size();
      slot.dense_in_sparse = false;
      if (sparse_.active) {
        // Short contexts, diffuse heads and heads whose index is not built yet run dense.
        const bool long_enough = slot.tokens >= retrieval_->config().min_tokens;
        const HeadPlan plan = long_enough ? retrieval_->Plan(item.id, layer_, h, item.heads,
                                                             sparse_.kind, slot.tokens)
                                          : HeadPlan::kDenseNotReady;
        if (plan == HeadPlan::kSparse) {
          tasks_.push_back(Task{.item = i,
                                .head = h,
                                .run_begin = slot.run_begin,
                                .run_end = slot.run_end,
                                .sparse = true});
          slot.num_tasks = 1;
          continue;
        }
        slot.dense_in_sparse = true;
        if (item.selection.exclude_window) TrimSlot(slot, item.selection.window);
      }
      size_t begin = slot.run_begin;
      int64_t acc = 0;
      for (size_t r = slot.run_begin; r < slot.run_end; ++r) {
        acc += runs_[r].num_tokens;
        if (acc >= chunk && r + 1 < slot.run_end) {
          tasks_.push_back(Task{.item = i, .head = h, .run_begin = begin, .run_end = r + 1});
          begin = r + 1;
          acc = 0;
        }
      }
      // Possibly empty: lse = -inf.
      tasks_.push_back(Task{.item = i, .head = h, .run_begin = begin, .run_end = slot.run_end});
      slot.num_tasks = tasks_.size() - slot.first_task;
    }
  }
}

void AttendExecutor::Compute() {
  const size_t gd = static_cast<size_t>(group_) * static_cast<size_t>(spec_.head_dim);
  partial_o_.resize(tasks_.size() * gd);
  partial_lse_.resize(tasks_.size() * static_cast<size_t>(group_));
  task_status_.assign(tasks_.size(), OkStatus());
  while (sparse_scratch_.size() < tasks_.size()) {
    sparse_scratch_.push_back(std::make_unique<SparseScratch>());
  }
  pool_->ParallelFor(static_cast<int64_t>(tasks_.size()), [&](int64_t t) {
    Task& task = tasks_[static_cast<size_t>(t)];
    float* out = partial_o_.data() + static_cast<size_t>(t) * gd;
    float* lse = partial_lse_.data() + static_cast<size_t>(t) * static_cast<size_t>(group_);
    const Slot& slot = slots_[items_[task.item].slot_begin + static_cast<size_t>(task.head)];
    task_status_[static_cast<size_t>(t)] =
        task.sparse ? RunSparse(static_cast<size_t>(t), out, lse)
                    : RunDense(task,
                               std::span<const KvRun>(runs_.data() + task.run_begin,
                                                      task.run_end - task.run_begin),
                               static_cast<int>(task.run_begin - slot.run_begin), out, lse);
  });
  for (size_t t = 0; t < tasks_.size(); ++t) {
    Item& item = items_[tasks_[t].item];
    if (!task_status_[t].ok() && item.status.ok()) item.status = task_status_[t];
  }
}

Status AttendExecutor::RunDense(Task& task, std::span<const KvRun> runs, int first_block,
                               float* out, float* lse) {
  const Item& item = items_[task.item];
  const size_t gd = static_cast<size_t>(group_) * static_cast<size_t>(spec_.head_dim);
  // Values spilled to SSD are streamed into this thread's staging buffer for the task (not
  // made resident: a dense pass over a long spilled sequence would evict everything else).
  // Tasks are chunks of the sequence on the pool's threads, so one task's reads overlap the
  // others' kernels.
  thread_local std::vector<KvRun> streamed;
  thread_local std::vector<std::byte> staging;
  thread_local std::vector<int> spilled;
  thread_local std::vector<std::byte*> dst;
  spilled.clear();
  for (size_t r = 0; r < runs.size(); ++r) {
    if (runs[r].v == nullptr) spilled.push_back(first_block + static_cast<int>(r));
  }
  if (!spilled.empty()) {
    const size_t block_bytes = spec_.block_bytes();
    staging.resize(spilled.size() * block_bytes);
    dst.clear();
    for (size_t i = 0; i < spilled.size(); ++i) dst.push_back(staging.data() + i * block_bytes);
    FetchStats fs;
    RETURN_IF_ERROR(store_->LoadValues(item.id, layer_, item.kv_head_begin + task.head, spilled,
                                       dst, &fs));
    task.ssd_bytes += fs.bytes_read;
    streamed.assign(runs.begin(), runs.end());
    for (size_t i = 0; i < spilled.size(); ++i) {
      streamed[static_cast<size_t>(spilled[i] - first_block)].v = dst[i];
    }
    runs = streamed;
  }
  uint64_t tokens = 0;
  for (const KvRun& r : runs) tokens += static_cast<uint64_t>(r.num_tokens);
  task.keys = tokens;
  task.selected = tokens;
  task.bytes = 2 * tokens * static_cast<uint64_t>(spec_.head_dim) * DTypeSize(spec_.dtype);
  return DecodeAttention({.q = q_.data() + item.q_index + static_cast<size_t>(task.head) * gd,
                          .group_size = group_,
                          .head_dim = spec_.head_dim,
                          .dtype = spec_.dtype,
                          .scale = spec_.EffectiveScale(),
                          .runs = runs,
                          .out = out,
                          .lse = lse});
}

Status AttendExecutor::RunSparse(size_t t, float* out, float* lse) {
  Task& task = tasks_[t];
  const Item& item = items_[task.item];
  SparseScratch& scratch = *sparse_scratch_[t];
  RetrievalState::Lease lease = retrieval_->Acquire(item.id, layer_, task.head, sparse_.kind);
  const std::span<const KvRun> runs(runs_.data() + task.run_begin, task.run_end - task.run_begin);
  if (lease.index == nullptr) {
    // A fold holds the index right now: the head is answered densely, over the runs without
    // the caller's window when it keeps that itself.
    task.fell_back = true;
    int64_t keep = 0;
    for (const KvRun& r : runs) keep += r.num_tokens;
    if (item.selection.exclude_window) keep -= item.selection.window;
    scratch.fallback_runs.clear();
    AppendCut(runs, keep, &scratch.fallback_runs);
    return RunDense(task, scratch.fallback_runs, 0, out, lse);
  }
  const size_t gd = static_cast<size_t>(group_) * static_cast<size_t>(spec_.head_dim);
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
  const float* q = q_.data() + item.q_index + static_cast<size_t>(task.head) * gd;
  const retrieval::GroupScorer scorer({.q = q, .group_size = group_, .head_dim = spec_.head_dim},
                                      spec_.dtype);
  scratch.result.positions.clear();
  scratch.result.stats = {};
  const bool spilled = std::any_of(runs.begin(), runs.end(),
                                   [](const KvRun& r) { return r.v == nullptr; });
  // With values on SSD, the search returns more candidates for the locality plan to choose
  // the top k from (docs/retrieval-locality.md).
  const int depth = spilled ? retrieval::CandidateDepth(locality_, sparse_.selection.top_k)
                            : sparse_.selection.top_k;
  if (sparse_.selection.top_k > 0) {
    RETURN_IF_ERROR(lease.index->Search(keys, scorer, {.top_k = depth, .effort = sparse_.effort},
                                        &scratch.result));
  }
  const int64_t indexed = lease.index->size();
  lease = {};  // the index is not needed past the search
  std::span<const KvRun> attend_runs = runs;
  if (!spilled) {
    scratch.selection = retrieval::BuildSelection(
        {.length = tokens, .indexed = indexed, .retrieved = scratch.result.positions},
        item.selection);
    if (store_->has_ssd_tier()) {
      // Mark the selected values used, so that the spill order keeps what sparse steps read.
      scratch.fetch.clear();
      for (int32_t p : scratch.selection) {
        const int b = p / spec_.block_size;
        if (scratch.fetch.empty() || scratch.fetch.back() != b) scratch.fetch.push_back(b);
      }
      RETURN_IF_ERROR(store_->FetchValues(item.id, layer_, item.kv_head_begin + task.head,
                                          scratch.fetch, &scratch.values, nullptr));
    }
  } else {
    RETURN_IF_ERROR(FetchSelection(task, runs, tokens, indexed, scratch));
    attend_runs = scratch.fetched_runs;
  }
  RETURN_IF_ERROR(SparseDecodeAttention({.q = q,
                                         .group_size = group_,
                                         .head_dim = spec_.head_dim,
                                         .dtype = spec_.dtype,
                                         .scale = spec_.EffectiveScale(),
                                         .blocks = attend_runs,
                                         .block_size = spec_.block_size,
                                         .positions = scratch.selection,
                                         .out = out,
                                         .lse = lse}));
  // Keys of the selection that the search did not score exactly are read once more.
  const uint64_t row_bytes = static_cast<uint64_t>(spec_.head_dim) * DTypeSize(spec_.dtype);
  const uint64_t selected = scratch.selection.size();
  uint64_t scored_selected = 0;
  for (int32_t p : scratch.result.positions) {
    scored_selected += std::binary_search(scratch.selection.begin(), scratch.selection.end(), p);
  }
  task.keys = static_cast<uint64_t>(scratch.result.stats.keys_scored) + selected - scored_selected;
  task.selected = selected;
  task.bytes = static_cast<uint64_t>(scratch.result.stats.bytes_read) +
               (2 * selected - scored_selected) * row_bytes;
  return OkStatus();
}

Status AttendExecutor::FetchSelection(Task& task, std::span<const KvRun> runs, int64_t tokens,
                                      int64_t indexed, SparseScratch& scratch) {
  const Item& item = items_[task.item];
  const int top_k = sparse_.selection.top_k;
  scratch.fixed = retrieval::BuildSelection({.length = tokens, .indexed = indexed, .retrieved = {}},
                                            item.selection);
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
    RETURN_IF_ERROR(store_->FetchValues(item.id, layer_, item.kv_head_begin + task.head,
                                        scratch.fetch, &scratch.values, &fs));
    task.ssd_bytes += fs.bytes_read;
    for (size_t i = 0; i < scratch.fetch.size(); ++i) {
      scratch.fetched_runs[static_cast<size_t>(scratch.fetch[i])].v = scratch.values[i];
    }
  }
  // The blocks used from DRAM are marked used too, so the spill order keeps them.
  std::vector<int> used(plan.blocks_resident.begin(), plan.blocks_resident.end());
  if (!used.empty()) {
    RETURN_IF_ERROR(store_->FetchValues(item.id, layer_, item.kv_head_begin + task.head, used,
                                        &scratch.values, nullptr));
  }
  scratch.selection = retrieval::BuildSelection(
      {.length = tokens, .indexed = indexed, .retrieved = plan.retrieved}, item.selection);
  for (int32_t p : scratch.selection) {
    if (scratch.fetched_runs[static_cast<size_t>(p / spec_.block_size)].v == nullptr) {
      return InternalError("sparse fetch: selected token " + std::to_string(p) +
                           " has no value in DRAM after the fetch");
    }
  }
  return OkStatus();
}

OutgoingMessage AttendExecutor::BuildReply(Figures* figures) {
  const size_t d = static_cast<size_t>(spec_.head_dim);
  const size_t g = static_cast<size_t>(group_);
  size_t floats = 0;
  for (Item& item : items_) {
    if (!item.status.ok()) continue;
    item.out_index = floats;
    floats += static_cast<size_t>(item.heads) * g * (d + 1);
  }
  std::shared_ptr<std::vector<float>> payload = reply_buffers_->Get(floats);
  // Merging a slot's chunk partials reads what other cores wrote: spread over the pool, the
  // cache-line transfers overlap instead of queueing behind one thread.
  pool_->ParallelFor(static_cast<int64_t>(slots_.size()), [&](int64_t si) {
    const Slot& slot = slots_[static_cast<size_t>(si)];
    const Item& item = items_[slot.item];
    if (!item.status.ok()) return;
    const size_t h = static_cast<size_t>(si) - item.slot_begin;
    float* o_h = payload->data() + item.out_index + h * g * d;
    float* lse_h =
        payload->data() + item.out_index + static_cast<size_t>(item.heads) * g * d + h * g;
    std::memcpy(o_h, partial_o_.data() + slot.first_task * g * d, g * d * sizeof(float));
    std::memcpy(lse_h, partial_lse_.data() + slot.first_task * g, g * sizeof(float));
    for (size_t t = slot.first_task + 1; t < slot.first_task + slot.num_tasks; ++t) {
      MergeStatesInto(o_h, lse_h, partial_o_.data() + t * g * d, partial_lse_.data() + t * g,
                      group_, spec_.head_dim);
    }
  });
  replies_.resize(items_.size());
  *figures = Figures{};
  for (size_t i = 0; i < items_.size(); ++i) {
    const Item& item = items_[i];
    worker_codec::AttendItemReply& r = replies_[i];
    r = worker_codec::AttendItemReply{.id = item.id, .status = item.status};
    if (!item.status.ok()) continue;
    uint32_t dense_heads = 0;
    for (int h = 0; h < item.heads; ++h) {
      const Slot& slot = slots_[item.slot_begin + static_cast<size_t>(h)];
      bool dense = slot.dense_in_sparse;
      for (size_t t = slot.first_task; t < slot.first_task + slot.num_tasks; ++t) {
        r.keys_scanned += tasks_[t].keys;
        r.selected_tokens += tasks_[t].selected;
        r.bytes_read += tasks_[t].bytes;
        figures->ssd_bytes_read += tasks_[t].ssd_bytes;
        dense = dense || tasks_[t].fell_back;
      }
      dense_heads += dense ? 1 : 0;
      if (sparse_.active && !dense) ++figures->sparse_heads;
    }
    figures->keys_scanned += r.keys_scanned;
    figures->selected_tokens += r.selected_tokens;
    figures->bytes_read += r.bytes_read;
    figures->dense_heads += dense_heads;
    r.out_offset = item.out_index * sizeof(float);
    r.num_q_heads = item.heads * group_;
    r.length = item.length;
    r.dense_heads = static_cast<int>(dense_heads);
    r.durable_tokens = item.durable;
  }
  OutgoingMessage reply;
  reply.method = transport::Method::kAttend;
  reply.header = worker_codec::EncodeAttendReply(replies_);
  reply.payload.push_back(std::as_bytes(std::span<const float>(*payload)));
  reply.keepalive = std::move(payload);
  return reply;
}

}  // namespace attic::worker_internal
