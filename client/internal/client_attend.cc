// ClientImpl::Attend: one decode step of one layer for a batch, one request per worker, the
// workers' partial states merged by LSE into each item's out / lse.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <unordered_set>
#include <utility>

#include "client/internal/client_impl.h"
#include "client/internal/fan_in.h"
#include "client/internal/kv_pack.h"
#include "common/lse_merge.h"
#include "client/internal/wire_codec.h"

namespace attic::client_internal {
namespace {

using transport::IncomingMessage;
using transport::Method;
using Result = StatusOr<AttendStats>;

bool IsEmpty(const TensorView& t) { return t.rank() == 0 || t.num_elements() == 0; }
bool HasKv(const AttendItem& item) { return !IsEmpty(item.k_new); }

// One item of one worker's request: the item and the shard of its sequence on that worker.
struct Entry {
  size_t item = 0;
  size_t shard = 0;       // index into the sequence's plan
  int kv_head_begin = 0;  // the shard's KV heads [kv_head_begin, kv_head_end)
  int kv_head_end = 0;
  int q_head_begin = 0;    // kv_head_begin * G
  int num_q_heads = 0;     // (kv_head_end - kv_head_begin) * G
  bool append_kv = false;  // the shard is open-ended and the item has k_new / v_new
  uint64_t token_begin = 0;   // the shard's first global token
  uint64_t tokens_after = 0;  // sequence tokens after the shard's, once the step is appended
};

// The merged state of one batch item until every worker has answered.
struct ItemState {
  uint64_t id = 0;
  float* out = nullptr;
  float* lse = nullptr;
  Status* status_out = nullptr;  // the caller's per-item result, if it asked for one
  std::shared_ptr<SequenceState> seq;
  bool appends = false;
  Status status;  // the item's first error
};

// The shared state of one Attend call; the last worker's reply finishes it.
class AttendCall {
 public:
  AttendCall(int layer, int head_dim, size_t workers, std::vector<ItemState> items,
             std::shared_ptr<Counters> counters)
      : layer_(layer),
        head_dim_(head_dim),
        counters_(std::move(counters)),
        ids_(Ids(items)),
        seqs_(Seqs(items)),
        items_(std::move(items)),
        remaining_(workers) {}

  std::future<Result> future() { return promise_.get_future(); }

  // One worker's reply (or its transport error) for the entries of its request.
  void OnReply(const std::vector<Entry>& entries, const std::string& label,
               StatusOr<IncomingMessage> reply) EXCLUDES(mu_) {
    std::vector<AttendExpect> expected;
    for (const Entry& e : entries) {
      expected.push_back({.id = ids_[e.item], .num_q_heads = e.num_q_heads});
    }
    StatusOr<std::vector<AttendPart>> parts =
        reply.ok() ? ParseAttendReply(reply->header(), reply->payload(), expected, head_dim_)
                   : StatusOr<std::vector<AttendPart>>(reply.status());
    if (parts.ok()) NoteDurable(entries, *parts);
    {
      MutexLock lock(&mu_);
      for (size_t i = 0; i < entries.size(); ++i) {
        MergeEntry(entries[i], label, parts.ok() ? &(*parts)[i] : nullptr, parts.status());
      }
      if (--remaining_ != 0) return;
    }
    Finish();
  }

 private:
  void MergeEntry(const Entry& e, const std::string& label, const AttendPart* part,
                  const Status& request_error) REQUIRES(mu_) {
    ItemState& item = items_[e.item];
    const Status& error = part ? part->status : request_error;
    if (!error.ok()) {
      if (part) counters_->errors.fetch_add(1, std::memory_order_relaxed);
      if (item.status.ok()) item.status = NameError(error, item.id, label);
      return;
    }
    stats_.keys_scanned += part->keys_scanned;
    stats_.selected_tokens += part->selected_tokens;
    stats_.bytes_read += part->bytes_read;
    stats_.dense_heads += part->dense_heads;
    stats_.ssd_bytes_read += part->ssd_bytes_read;
    stats_.recall_heads += part->recall_heads;
    stats_.recall_exact += part->recall_exact;
    stats_.recall_hits += part->recall_hits;
    stats_.stand_in_heads += part->stand_in_heads;
    const size_t row = static_cast<size_t>(e.q_head_begin);
    // Straight from the reply's payload into the caller's buffers, which start as the empty
    // state (0, -inf): one copy for an unsharded sequence.
    MergeStatesInto(item.out + row * static_cast<size_t>(head_dim_), item.lse + row,
                    part->o.data(), part->lse.data(), e.num_q_heads, head_dim_);
  }

  // Runs once, after the last reply: no other thread touches the items any more.
  void Finish() NO_THREAD_SAFETY_ANALYSIS {
    Status first;
    for (ItemState& item : items_) {
      if (item.status_out != nullptr) *item.status_out = item.status;
      if (item.status.ok()) continue;
      if (first.ok()) first = item.status;
      if (item.appends) {
        // The step's k/v may or may not have landed: the layer's length is unknown now.
        MutexLock lock(&item.seq->mu);
        Status& failed = item.seq->layer_error[static_cast<size_t>(layer_)];
        if (failed.ok()) failed = item.status;
      }
    }
    promise_.set_value(first.ok() ? Result(stats_) : Result(first));
  }

  static std::vector<uint64_t> Ids(const std::vector<ItemState>& items) {
    std::vector<uint64_t> ids;
    for (const ItemState& item : items) ids.push_back(item.id);
    return ids;
  }
  static std::vector<std::shared_ptr<SequenceState>> Seqs(const std::vector<ItemState>& items) {
    std::vector<std::shared_ptr<SequenceState>> seqs;
    seqs.reserve(items.size());
    for (const ItemState& item : items) seqs.push_back(item.seq);
    return seqs;
  }

  // The shards' durable lengths, from the items they answered.
  void NoteDurable(const std::vector<Entry>& entries, const std::vector<AttendPart>& parts)
      EXCLUDES(mu_) {
    for (size_t i = 0; i < entries.size(); ++i) {
      if (!parts[i].status.ok()) continue;
      SequenceState& seq = *seqs_[entries[i].item];
      MutexLock lock(&seq.mu);
      client_internal::NoteDurable(seq, layer_, entries[i].shard, parts[i].durable_tokens);
    }
  }

  const int layer_;
  const int head_dim_;
  const std::shared_ptr<Counters> counters_;
  const std::vector<uint64_t> ids_;  // the items' sequence ids, read without the lock
  const std::vector<std::shared_ptr<SequenceState>> seqs_;  // the items' sequences, likewise
  std::promise<Result> promise_;
  Mutex mu_;
  std::vector<ItemState> items_ GUARDED_BY(mu_);
  size_t remaining_ GUARDED_BY(mu_);
  AttendStats stats_ GUARDED_BY(mu_);
};

// Shapes of one item: q [Hq, D]; k_new, v_new both empty or [Hkv, D]; out and lse set.
Status CheckItem(const ModelSpec& spec, const AttendItem& item) {
  RETURN_IF_ERROR(CheckView("q", item.q, {spec.num_q_heads, spec.head_dim}));
  if (IsEmpty(item.k_new) != IsEmpty(item.v_new)) {
    return InvalidArgumentError("k_new and v_new must both be given or both be empty");
  }
  if (HasKv(item)) {
    RETURN_IF_ERROR(CheckView("k_new", item.k_new, {spec.num_kv_heads, spec.head_dim}));
    RETURN_IF_ERROR(CheckView("v_new", item.v_new, {spec.num_kv_heads, spec.head_dim}));
  }
  if (item.out == nullptr || item.lse == nullptr) {
    return InvalidArgumentError("out and lse must not be null");
  }
  return OkStatus();
}

// One worker's AttendRequest: per entry q rows of the shard's query heads in q's dtype and,
// for the open-ended shard of an appending item, k_new and v_new rows in k_new's dtype.
Request BuildRequest(int layer, int head_dim, const AttendBatch& batch,
                     const std::vector<ItemState>& items, const std::vector<Entry>& entries) {
  std::vector<AttendWireItem> wire(entries.size());
  size_t size = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    const AttendItem& item = batch.items[e.item];
    const size_t q_bytes = static_cast<size_t>(e.num_q_heads) * static_cast<size_t>(head_dim) *
                           DTypeSize(item.q.dtype());
    wire[i] = {.id = items[e.item].id,
               .q_dtype = item.q.dtype(),
               .q_offset = size,
               .token_begin = e.token_begin,
               .tokens_after = e.tokens_after};
    size += q_bytes;
    if (!e.append_kv) continue;
    const size_t kv_bytes = static_cast<size_t>(e.kv_head_end - e.kv_head_begin) *
                            static_cast<size_t>(head_dim) * DTypeSize(item.k_new.dtype());
    wire[i].append_kv = true;
    wire[i].kv_dtype = item.k_new.dtype();
    wire[i].k_offset = size;
    wire[i].v_offset = size + kv_bytes;
    size += 2 * kv_bytes;
  }
  auto payload = std::make_shared<std::vector<std::byte>>(size);
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    const AttendItem& item = batch.items[e.item];
    PackRows(item.q, e.q_head_begin, e.q_head_begin + e.num_q_heads, item.q.dtype(),
             payload->data() + wire[i].q_offset);
    if (!e.append_kv) continue;
    PackRows(item.k_new, e.kv_head_begin, e.kv_head_end, wire[i].kv_dtype,
             payload->data() + wire[i].k_offset);
    PackRows(item.v_new, e.kv_head_begin, e.kv_head_end, wire[i].kv_dtype,
             payload->data() + wire[i].v_offset);
  }
  return Request{.method = Method::kAttend,
                 .header = EncodeAttend(layer, wire, batch.mode, batch.sparse),
                 .payload = std::move(payload)};
}

}  // namespace

std::future<Result> ClientImpl::Attend(AttendBatch batch) {
  const ModelSpec& spec = options_.spec;
  const int layer = batch.layer;
  if (Status s = CheckLayer("Attend", layer); !s.ok()) return ReadyFuture(Result(s));

  // Everything is checked before any bookkeeping changes or anything is sent.
  std::vector<ItemState> items(batch.items.size());
  std::unordered_set<uint64_t> ids;
  for (size_t i = 0; i < batch.items.size(); ++i) {
    const AttendItem& item = batch.items[i];
    const std::string context = "sequence " + std::to_string(item.id);
    if (!ids.insert(item.id).second) {
      return ReadyFuture(Result(InvalidArgumentError(context + " appears twice in the batch")));
    }
    StatusOr<std::shared_ptr<SequenceState>> seq = table_->FindOpen(item.id);
    if (!seq.ok()) return ReadyFuture(Result(seq.status()));
    if (Status s = CheckItem(spec, item); !s.ok())
      return ReadyFuture(Result(s.WithContext(context)));
    if (HasKv(item)) {
      MutexLock lock(&(*seq)->mu);
      if (Status s = CheckAppendable(**seq, layer); !s.ok()) return ReadyFuture(Result(s));
    }
    items[i] = ItemState{
        .id = item.id,
        .out = item.out,
        .lse = item.lse,
        .status_out = item.status,
        .seq = *std::move(seq),
        .appends = HasKv(item)};
  }

  // Group by worker (one shard per worker and sequence) and count the appended tokens.
  const int g = spec.group_size();
  std::vector<std::vector<Entry>> by_worker(NumWorkers());
  for (size_t i = 0; i < items.size(); ++i) {
    SequenceState& seq = *items[i].seq;
    MutexLock lock(&seq.mu);
    const auto l = static_cast<size_t>(layer);
    // The shards that append the step's token: each head range's open-ended one, unless it
    // holds the token already (after a Resume, shards that lost less than others).
    std::vector<bool> appending(seq.plan.shards.size(), false);
    if (items[i].appends) {
      for (const HeadRange& range : seq.ranges) {
        const size_t shard = OpenEndedShard(seq.plan, range);
        if (HoldsToken(seq, layer, shard, seq.length[l])) continue;
        appending[shard] = true;
        ++seq.local_len[l][shard];
      }
      ++seq.length[l];
    }
    for (size_t s = 0; s < seq.plan.shards.size(); ++s) {
      const Shard& shard = seq.plan.shards[s];
      const int64_t held_end = shard.token_begin + seq.local_len[l][s];
      by_worker[static_cast<size_t>(shard.worker)].push_back(
          Entry{.item = i,
                .shard = s,
                .kv_head_begin = shard.kv_head_begin,
                .kv_head_end = shard.kv_head_end,
                .q_head_begin = shard.kv_head_begin * g,
                .num_q_heads = (shard.kv_head_end - shard.kv_head_begin) * g,
                .append_kv = appending[s],
                .token_begin = static_cast<uint64_t>(shard.token_begin),
                .tokens_after = static_cast<uint64_t>(
                    std::max<int64_t>(0, seq.length[l] - held_end))});
    }
  }

  std::vector<std::pair<size_t, Request>> requests;
  for (size_t w = 0; w < by_worker.size(); ++w) {
    if (by_worker[w].empty()) continue;
    requests.emplace_back(w, BuildRequest(layer, spec.head_dim, batch, items, by_worker[w]));
  }
  if (requests.empty()) return ReadyFuture(Result(AttendStats{}));
  // The requests hold their own copies of q and k/v now, so out may alias them: each item's
  // output starts as the empty state that the workers' parts merge into.
  const size_t out_floats = static_cast<size_t>(spec.num_q_heads) * static_cast<size_t>(spec.head_dim);
  for (const ItemState& item : items) {
    std::fill_n(item.out, out_floats, 0.0f);
    std::fill_n(item.lse, static_cast<size_t>(spec.num_q_heads), -INFINITY);
  }
  auto call = std::make_shared<AttendCall>(layer, spec.head_dim, requests.size(), std::move(items),
                                           counters_);
  std::future<Result> future = call->future();
  const transport::Deadline deadline = CallDeadline();
  for (auto& [w, request] : requests) {
    const WorkerLink link = Link(w);
    SendRequest(link, counters_, std::move(request), deadline,
                [call, entries = std::move(by_worker[w]), label = link.label](
                    StatusOr<IncomingMessage> r) { call->OnReply(entries, label, std::move(r)); });
  }
  return future;
}

}  // namespace attic::client_internal
