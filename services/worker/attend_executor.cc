#include "services/worker/attend_executor.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

namespace attic::worker_internal {

using transport::OutgoingMessage;
using worker_codec::PayloadSlice;

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
  // Filled by Prepare.
  Status status;
  int kv_head_begin = 0;
  int heads = 0;          // h
  int length = 0;         // tokens after the append
  int durable = 0;        // of them, on the SSD tier
  size_t q_index = 0;     // first float of this item's queries in q_ ([G * h, D] fp32)
  std::vector<KvRun> runs;           // every head's blocks, head after head
  std::vector<size_t> head_runs;     // [h]: runs of each head
  std::vector<int64_t> head_tokens;  // [h]
  std::vector<BlockView> blocks;     // ReadBlocks scratch
  // Filled by PlanHeads and PlaceOutputs.
  size_t head_begin = 0;  // first of its h heads in heads_
  size_t out_index = 0;   // first float of its o in the reply payload (lse follows o)
};

AttendExecutor::AttendExecutor(KvStore* store, ThreadPool* pool, const ModelSpec& spec,
                               RetrievalState* retrieval)
    : store_(store),
      pool_(pool),
      spec_(spec),
      group_(spec.group_size()),
      retrieval_(retrieval),
      sparse_attend_(store, spec, retrieval),
      reply_buffers_(std::make_shared<ReplyBuffers>()) {}

AttendExecutor::~AttendExecutor() = default;

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

namespace {

// A sparse request's parameters, the worker's retrieval settings filling what it leaves out.
SparseRequest ResolveSparse(const worker_codec::SparseCall& p, const RetrievalConfig& config) {
  SparseRequest run;
  run.active = true;
  run.selection.sinks = p.sinks < 0 ? config.sinks : p.sinks;
  run.selection.window = p.window < 0 ? config.window : p.window;
  run.selection.top_k = p.top_k < 0 ? config.top_k : p.top_k;
  run.selection.exclude_window = p.exclude_window;
  run.effort = std::max(0, p.effort);
  run.kind = p.index_kind.value_or(config.kind);
  run.force = p.force_sparse;
  return run;
}

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

}  // namespace

StatusOr<OutgoingMessage> AttendExecutor::Run(const worker_codec::AttendCall& call,
                                              std::span<const std::byte> payload,
                                              Figures* figures, Phases* phases) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  TakeCall(call);
  // Items touch distinct sequences (the codec refuses duplicates), which the store serves
  // in parallel: appending each item's token and gathering its block views runs on the pool.
  pool_->ParallelFor(static_cast<int64_t>(items_.size()), [&](int64_t i) {
    Item& item = items_[static_cast<size_t>(i)];
    if (item.status.ok()) item.status = Prepare(payload, call.layer, item);
    if (!item.status.ok()) {
      item.status = item.status.WithContext("sequence " + std::to_string(item.id));
    }
  });
  const auto t1 = Clock::now();
  PlanHeads();
  PlaceOutputs();
  const AttendRunParams params{.plan = &plan_,
                               .io = io_,
                               .group_size = group_,
                               .head_dim = spec_.head_dim,
                               .dtype = spec_.dtype,
                               .scale = spec_.EffectiveScale(),
                               .block_bytes = spec_.block_bytes(),
                               .values = this,
                               .sparse = &sparse_attend_,
                               .pool = pool_};
  sparse_attend_.Reset(layer_, sparse_, plan_heads_, plan_.tasks.size());
  workspace_.Prepare(params);
  RunAttend(params, &workspace_);
  const auto t2 = Clock::now();
  OutgoingMessage reply = BuildReply(figures);
  const auto t3 = Clock::now();
  phases->prepare = std::chrono::duration<double>(t1 - t0).count();
  phases->compute = std::chrono::duration<double>(t2 - t1).count();
  phases->reply = std::chrono::duration<double>(t3 - t2).count();
  return reply;
}

void AttendExecutor::TakeCall(const worker_codec::AttendCall& call) {
  sparse_ = call.sparse ? ResolveSparse(*call.sparse, retrieval_->config()) : SparseRequest{};
  layer_ = call.layer;
  // Items are reused across requests so their scratch keeps its capacity.
  if (items_.size() < call.items.size()) items_.resize(call.items.size());
  items_.resize(call.items.size());
  const size_t q_floats =
      static_cast<size_t>(spec_.num_q_heads) * static_cast<size_t>(spec_.head_dim);
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
    item.q_index = i * q_floats;
  }
  q_.resize(items_.size() * q_floats);
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

void AttendExecutor::PlanHeads() {
  heads_.clear();
  plan_heads_.clear();
  dense_in_sparse_.clear();
  for (Item& item : items_) {
    if (!item.status.ok()) continue;
    item.head_begin = heads_.size();
    const retrieval::SelectionParams selection =
        sparse_.active ? PlaceSelection(sparse_.selection, item.token_begin, item.tokens_after)
                       : retrieval::SelectionParams{};
    size_t run = 0;
    for (int h = 0; h < item.heads; ++h) {
      const size_t n = item.head_runs[static_cast<size_t>(h)];
      const int64_t tokens = item.head_tokens[static_cast<size_t>(h)];
      AttendHead head{.runs = std::span<const KvRun>(item.runs.data() + run, n)};
      run += n;
      bool dense_in_sparse = false;
      if (sparse_.active) {
        // Short contexts, diffuse heads and heads whose index is not built yet run dense,
        // without the window when the caller attends that itself.
        const bool long_enough = tokens >= retrieval_->config().min_tokens;
        const HeadPlan mode = long_enough ? retrieval_->Plan(item.id, layer_, h, item.heads,
                                                             sparse_.kind, tokens, sparse_.force)
                                          : HeadPlan::kDenseNotReady;
        if (mode == HeadPlan::kSparse) {
          head.mode = HeadMode::kSparse;
        } else {
          dense_in_sparse = true;
          if (selection.exclude_window) {
            head.dense_tokens = std::max<int64_t>(0, tokens - selection.window);
          }
        }
      }
      heads_.push_back(head);
      plan_heads_.push_back(PlanHead{.sequence = item.id,
                                     .kv_head = item.kv_head_begin + h,
                                     .local_head = h,
                                     .selection = selection});
      dense_in_sparse_.push_back(dense_in_sparse ? 1 : 0);
    }
  }
  PlanAttend(heads_, {.threads = pool_->num_threads()}, &plan_);
}

void AttendExecutor::PlaceOutputs() {
  const size_t gd = static_cast<size_t>(group_) * static_cast<size_t>(spec_.head_dim);
  const auto g = static_cast<size_t>(group_);
  size_t floats = 0;
  for (Item& item : items_) {
    if (!item.status.ok()) continue;
    item.out_index = floats;
    floats += static_cast<size_t>(item.heads) * (gd + g);
  }
  payload_ = reply_buffers_->Get(floats);
  io_.resize(heads_.size());
  for (const Item& item : items_) {
    if (!item.status.ok()) continue;
    float* o = payload_->data() + item.out_index;
    float* lse = o + static_cast<size_t>(item.heads) * gd;
    for (int h = 0; h < item.heads; ++h) {
      const auto hs = static_cast<size_t>(h);
      io_[item.head_begin + hs] = AttendHeadIo{.q = q_.data() + item.q_index + hs * gd,
                                               .out = o + hs * gd,
                                               .lse = lse + hs * g};
    }
  }
}

Status AttendExecutor::LoadValues(uint32_t head, std::span<const int32_t> blocks,
                                  std::span<std::byte* const> dst, uint64_t* ssd_bytes) {
  const PlanHead& h = plan_heads_[head];
  FetchStats fs;
  RETURN_IF_ERROR(store_->LoadValues(h.sequence, layer_, h.kv_head, blocks, dst, &fs));
  *ssd_bytes += fs.bytes_read;
  return OkStatus();
}

OutgoingMessage AttendExecutor::BuildReply(Figures* figures) {
  const size_t gd = static_cast<size_t>(group_) * static_cast<size_t>(spec_.head_dim);
  replies_.resize(items_.size());
  *figures = Figures{};
  for (size_t i = 0; i < items_.size(); ++i) {
    Item& item = items_[i];
    if (item.status.ok()) {
      // The first failing head fails the item; its rows of the payload are zeroed (they
      // hold whatever the reused buffer held before).
      for (int h = 0; h < item.heads && item.status.ok(); ++h) {
        const Status& s = workspace_.head_status(item.head_begin + static_cast<size_t>(h));
        if (!s.ok()) item.status = s.WithContext("sequence " + std::to_string(item.id));
      }
      if (!item.status.ok()) {
        std::memset(payload_->data() + item.out_index, 0,
                    static_cast<size_t>(item.heads) * (gd + static_cast<size_t>(group_)) *
                        sizeof(float));
      }
    }
    worker_codec::AttendItemReply& r = replies_[i];
    r = worker_codec::AttendItemReply{.id = item.id, .status = item.status};
    if (!item.status.ok()) continue;
    uint32_t dense_heads = 0;
    for (int h = 0; h < item.heads; ++h) {
      const size_t head = item.head_begin + static_cast<size_t>(h);
      bool dense = dense_in_sparse_[head] != 0;
      bool stand_in = false;
      for (uint32_t t = plan_.head_tasks[head]; t < plan_.head_tasks[head + 1]; ++t) {
        const TaskFigures& f = workspace_.task_figures(t);
        r.keys_scanned += f.keys;
        r.selected_tokens += f.selected;
        r.bytes_read += f.bytes;
        r.ssd_bytes_read += f.ssd_bytes;
        r.recall_heads += f.recall_k > 0 ? 1 : 0;
        r.recall_exact += f.recall_k;
        r.recall_hits += f.recall_hits;
        figures->fallback_heads += f.fell_back ? 1 : 0;
        dense = dense || f.fell_back;
        stand_in = stand_in || f.stand_in;
      }
      dense_heads += dense ? 1 : 0;
      if (sparse_.active && !dense && stand_in) ++r.stand_in_heads;
      if (sparse_.active && !dense) ++figures->sparse_heads;
    }
    figures->keys_scanned += r.keys_scanned;
    figures->selected_tokens += r.selected_tokens;
    figures->bytes_read += r.bytes_read;
    figures->dense_heads += dense_heads;
    figures->ssd_bytes_read += r.ssd_bytes_read;
    figures->recall_heads += static_cast<uint64_t>(r.recall_heads);
    figures->recall_exact += r.recall_exact;
    figures->recall_hits += r.recall_hits;
    figures->stand_in_heads += static_cast<uint64_t>(r.stand_in_heads);
    r.out_offset = item.out_index * sizeof(float);
    r.num_q_heads = item.heads * group_;
    r.length = item.length;
    r.dense_heads = static_cast<int>(dense_heads);
    r.durable_tokens = item.durable;
  }
  OutgoingMessage reply;
  reply.method = transport::Method::kAttend;
  reply.header = worker_codec::EncodeAttendReply(replies_);
  reply.payload.push_back(std::as_bytes(std::span<const float>(*payload_)));
  reply.keepalive = std::move(payload_);
  return reply;
}

}  // namespace attic::worker_internal
