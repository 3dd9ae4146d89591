// ClientImpl: shipping K/V to the workers (Prefill chunks block-major, decode tokens
// token-major).
#include <algorithm>
#include <string>
#include <utility>

#include "client/internal/client_impl.h"
#include "client/internal/fan_in.h"
#include "client/internal/kv_pack.h"
#include "client/internal/wire_codec.h"

namespace attic::client_internal {
namespace {

using transport::IncomingMessage;
using transport::Method;

// AppendKv requests of one shard, sent one after the other: each must start at the length the
// previous one left, and a worker may run requests of one connection concurrently.
struct AppendChain {
  WorkerLink link;
  std::shared_ptr<Counters> counters;
  std::vector<Request> requests;
  std::vector<int64_t> expected;  // shard-local length after each request
  size_t next = 0;
  transport::Deadline deadline;
  std::shared_ptr<SequenceState> seq;
  size_t shard = 0;
  int layer = 0;
  std::function<void(Status)> done;
};

void SendNext(const std::shared_ptr<AppendChain>& c) {
  const size_t i = c->next++;
  SendRequest(c->link, c->counters, std::move(c->requests[i]), c->deadline,
              [c, i](StatusOr<IncomingMessage> r) {
                StatusOr<AppendAck> ack = r.ok() ? ParseAppendKvReply(r->header()) : r.status();
                Status s = ack.status();
                if (ack.ok() && ack->length != c->expected[i]) {
                  s = InternalError("bad AppendKvReply: the worker holds " +
                                    std::to_string(ack->length) + " tokens of layer " +
                                    std::to_string(c->layer) + " after the append, the client " +
                                    "expected " + std::to_string(c->expected[i]));
                }
                if (s.ok()) {
                  MutexLock lock(&c->seq->mu);
                  NoteDurable(*c->seq, c->layer, c->shard, ack->durable);
                }
                if (!s.ok() || c->next == c->requests.size()) {
                  c->done(NameError(s, c->seq->id, c->link.label));
                  return;
                }
                SendNext(c);
              });
}

// Rows [t0, t1) of src ([n, Hkv, D]), heads [h0, h1), as [t1 - t0, h1 - h0, D] in `to`.
void PackTokenMajor(const TensorView& src, int64_t t0, int64_t t1, int h0, int h1, DType to,
                    std::byte* dst) {
  const size_t row_bytes =
      static_cast<size_t>(h1 - h0) * static_cast<size_t>(src.dim(2)) * DTypeSize(to);
  for (int64_t t = t0; t < t1; ++t) {
    const TensorView row(src.ElementPtr({t, 0, 0}), src.dtype(), {src.dim(1), src.dim(2)},
                         {src.stride(1), src.stride(2)});
    PackRows(row, h0, h1, to, dst + static_cast<size_t>(t - t0) * row_bytes);
  }
}

// An AppendKv request whose payload holds K in its first half and V in its second.
Request AppendRequest(uint64_t id, int layer, bool block_major, int64_t num_tokens, DType dtype,
                      std::shared_ptr<std::vector<std::byte>> payload) {
  const size_t half = payload->size() / 2;
  return Request{.method = Method::kAppendKv,
                 .header = EncodeAppendKv({.id = id,
                                           .layer = layer,
                                           .block_major = block_major,
                                           .num_tokens = num_tokens,
                                           .dtype = dtype,
                                           .k_offset = 0,
                                           .v_offset = half}),
                 .payload = std::move(payload)};
}

// Tokens [a, b) of the chunk (k, v holding tokens [first, ...)) for one shard, token-major in
// the storage dtype: what completes a partial last block.
Request TokenMajorRequest(const ModelSpec& spec, uint64_t id, int layer, const Shard& shard,
                          int64_t a, int64_t b, int64_t first, const TensorView& k,
                          const TensorView& v) {
  const size_t bytes = static_cast<size_t>(b - a) *
                       static_cast<size_t>(shard.kv_head_end - shard.kv_head_begin) *
                       static_cast<size_t>(spec.head_dim) * DTypeSize(spec.dtype);
  auto payload = std::make_shared<std::vector<std::byte>>(2 * bytes);
  PackTokenMajor(k, a - first, b - first, shard.kv_head_begin, shard.kv_head_end, spec.dtype,
                 payload->data());
  PackTokenMajor(v, a - first, b - first, shard.kv_head_begin, shard.kv_head_end, spec.dtype,
                 payload->data() + bytes);
  return AppendRequest(id, layer, /*block_major=*/false, b - a, spec.dtype, std::move(payload));
}

// The AppendKv requests carrying one shard's slice of a prefill chunk, at most
// kMaxAppendPayloadBytes each: the tokens completing a partial last block token-major, then
// whole blocks block-major. k, v: [n, Hkv, D] holding tokens [first, first + n).
std::vector<Request> PrefillRequests(const ModelSpec& spec, uint64_t id, int layer,
                                     const Shard& shard, const ShardSlice& slice, int64_t first,
                                     const TensorView& k, const TensorView& v,
                                     std::vector<int64_t>* expected) {
  const int heads = shard.kv_head_end - shard.kv_head_begin;
  const int64_t step =
      TokensPerMessage(heads, spec.block_size, spec.head_dim, spec.dtype, kMaxAppendPayloadBytes);
  std::vector<Request> requests;
  int64_t begin = slice.begin;
  const int64_t partial = (begin - shard.token_begin) % spec.block_size;
  if (partial != 0) {
    const int64_t end = std::min(slice.end, begin + spec.block_size - partial);
    requests.push_back(TokenMajorRequest(spec, id, layer, shard, begin, end, first, k, v));
    expected->push_back(end - shard.token_begin);
    begin = end;
  }
  for (int64_t a = begin; a < slice.end; a += step) {
    const int64_t b = std::min(slice.end, a + step);
    const size_t bytes = BlockMajorBytes(b - a, heads, spec.block_size, spec.head_dim, spec.dtype);
    auto payload = std::make_shared<std::vector<std::byte>>(2 * bytes);
    PackBlockMajor(k, a - first, b - first, shard.kv_head_begin, shard.kv_head_end, spec.block_size,
                   spec.dtype, payload->data());
    PackBlockMajor(v, a - first, b - first, shard.kv_head_begin, shard.kv_head_end, spec.block_size,
                   spec.dtype, payload->data() + bytes);
    requests.push_back(
        AppendRequest(id, layer, /*block_major=*/true, b - a, spec.dtype, std::move(payload)));
    expected->push_back(b - shard.token_begin);
  }
  return requests;
}

// One decode token for heads [h0, h1): k and v [h1 - h0, D], both in k's dtype.
Request DecodeRequest(uint64_t id, int layer, int h0, int h1, const TensorView& k,
                      const TensorView& v) {
  const size_t bytes =
      static_cast<size_t>(h1 - h0) * static_cast<size_t>(k.dim(1)) * DTypeSize(k.dtype());
  auto payload = std::make_shared<std::vector<std::byte>>(2 * bytes);
  PackRows(k, h0, h1, k.dtype(), payload->data());
  PackRows(v, h0, h1, k.dtype(), payload->data() + bytes);
  return AppendRequest(id, layer, /*block_major=*/false, 1, k.dtype(), std::move(payload));
}

}  // namespace

std::future<Status> ClientImpl::SendAppends(
    std::shared_ptr<SequenceState> seq, int layer,
    std::vector<std::pair<size_t, std::vector<Request>>> requests,
    std::vector<std::vector<int64_t>> expected_lengths) {
  auto promise = std::make_shared<std::promise<Status>>();
  std::future<Status> future = promise->get_future();
  auto fan = FanIn::Create(requests.size(), [seq, layer, promise](std::vector<Status> results) {
    Status first = FirstError(results);
    if (!first.ok()) {
      MutexLock lock(&seq->mu);
      Status& failed = seq->layer_error[static_cast<size_t>(layer)];
      if (failed.ok()) failed = first;
    }
    promise->set_value(std::move(first));
  });
  const transport::Deadline deadline = CallDeadline();
  for (size_t i = 0; i < requests.size(); ++i) {
    auto chain = std::make_shared<AppendChain>(
        AppendChain{.link = LinkOf(*seq, requests[i].first),
                    .counters = counters_,
                    .requests = std::move(requests[i].second),
                    .expected = std::move(expected_lengths[i]),
                    .deadline = deadline,
                    .seq = seq,
                    .shard = requests[i].first,
                    .layer = layer,
                    .done = [fan, i](Status s) { fan->Done(i, std::move(s)); }});
    SendNext(chain);
  }
  return future;
}

std::future<Status> ClientImpl::Prefill(uint64_t id, int layer, int64_t first_token,
                                        const TensorView& k, const TensorView& v) {
  const ModelSpec& spec = options_.spec;
  const std::string context = "sequence " + std::to_string(id);
  if (Status s = CheckLayer(context, layer); !s.ok()) return ReadyFuture(std::move(s));
  StatusOr<std::shared_ptr<SequenceState>> found = table_->FindOpen(id);
  if (!found.ok()) return ReadyFuture(found.status());
  std::shared_ptr<SequenceState> seq = *std::move(found);
  Status shape = CheckView("k", k, {-1, spec.num_kv_heads, spec.head_dim});
  if (shape.ok()) shape = CheckView("v", v, {k.dim(0), spec.num_kv_heads, spec.head_dim});
  if (shape.ok() && first_token < 0) shape = InvalidArgumentError("first_token is negative");
  if (!shape.ok()) return ReadyFuture(shape.WithContext(context));
  const int64_t n = k.dim(0);

  StatusOr<std::vector<ShardSlice>> slices = Status();
  {
    MutexLock lock(&seq->mu);
    const auto l = static_cast<size_t>(layer);
    Status s = CheckAppendable(*seq, layer);
    if (s.ok()) s = CheckPrefillStart(first_token, seq->length[l], seq->prefix_tokens);
    if (s.ok()) {
      slices = RoutePrefill(seq->plan, seq->local_len[l], first_token, n);
      s = slices.status();
    }
    if (!s.ok()) return ReadyFuture(s.WithContext(context + " layer " + std::to_string(layer)));
    for (const ShardSlice& slice : *slices)
      seq->local_len[l][slice.shard] += slice.end - slice.begin;
    seq->length[l] = std::max(seq->length[l], first_token + n);
  }
  // Packing happens here, on the caller's thread, so the views may go when the call returns.
  std::vector<std::pair<size_t, std::vector<Request>>> requests;
  std::vector<std::vector<int64_t>> expected(slices->size());
  for (size_t i = 0; i < slices->size(); ++i) {
    const ShardSlice& slice = (*slices)[i];
    requests.emplace_back(slice.shard,
                          PrefillRequests(spec, id, layer, seq->plan.shards[slice.shard], slice,
                                          first_token, k, v, &expected[i]));
  }
  return SendAppends(std::move(seq), layer, std::move(requests), std::move(expected));
}

std::future<Status> ClientImpl::BuildIndex(uint64_t id, int layer, const TensorView& q,
                                           std::span<const int64_t> positions,
                                           std::optional<IndexKind> kind) {
  const ModelSpec& spec = options_.spec;
  const std::string context = "sequence " + std::to_string(id);
  if (Status s = CheckLayer(context, layer); !s.ok()) return ReadyFuture(std::move(s));
  StatusOr<std::shared_ptr<SequenceState>> found = table_->FindOpen(id);
  if (!found.ok()) return ReadyFuture(found.status());
  std::shared_ptr<SequenceState> seq = *std::move(found);
  const bool empty = positions.empty() && (q.rank() == 0 || q.num_elements() == 0);
  Status shape = empty ? OkStatus()
                       : CheckView("q", q, {static_cast<int64_t>(positions.size()),
                                            spec.num_q_heads, spec.head_dim});
  if (!shape.ok()) return ReadyFuture(shape.WithContext(context));
  if (kind && !IndexKindFromNumber(static_cast<int>(*kind))) {
    return ReadyFuture(InvalidArgumentError(context + ": unknown index kind " +
                                            std::to_string(static_cast<int>(*kind))));
  }

  std::vector<std::pair<size_t, std::vector<Request>>> requests;
  std::vector<std::vector<int64_t>> expected;
  {
    MutexLock lock(&seq->mu);
    const auto l = static_cast<size_t>(layer);
    if (Status s = CheckAppendable(*seq, layer); !s.ok()) return ReadyFuture(std::move(s));
    for (size_t i = 0; i < positions.size(); ++i) {
      if (positions[i] < 0 || positions[i] >= seq->length[l] ||
          (i > 0 && positions[i] <= positions[i - 1])) {
        return ReadyFuture(InvalidArgumentError(
            context + " layer " + std::to_string(layer) + ": query sample positions must ascend "
            "within the layer's " + std::to_string(seq->length[l]) + " tokens"));
      }
    }
    const int g = spec.group_size();
    for (size_t s = 0; s < seq->plan.shards.size(); ++s) {
      const Shard& shard = seq->plan.shards[s];
      // The shard learns from the queries at or after its first token (they attend to it).
      AppendKvHeader h{.id = id,
                       .layer = layer,
                       .block_major = true,
                       .num_tokens = 0,
                       .dtype = spec.dtype,
                       .sample_dtype = q.dtype(),
                       .build_index = true,
                       .index_kind = kind};
      std::vector<size_t> rows;
      for (size_t i = 0; i < positions.size(); ++i) {
        if (positions[i] < shard.token_begin) continue;
        rows.push_back(i);
        h.sample_positions.push_back(positions[i] - shard.token_begin);
      }
      const size_t heads = static_cast<size_t>(shard.kv_head_end - shard.kv_head_begin) * g;
      const size_t row_bytes = heads * static_cast<size_t>(spec.head_dim) * DTypeSize(q.dtype());
      auto payload = std::make_shared<std::vector<std::byte>>(rows.size() * row_bytes);
      for (size_t r = 0; r < rows.size(); ++r) {
        const auto i = static_cast<int64_t>(rows[r]);
        const TensorView row(q.ElementPtr({i, 0, 0}), q.dtype(), {q.dim(1), q.dim(2)},
                             {q.stride(1), q.stride(2)});
        PackRows(row, static_cast<int64_t>(shard.kv_head_begin) * g,
                 static_cast<int64_t>(shard.kv_head_end) * g, q.dtype(),
                 payload->data() + r * row_bytes);
      }
      requests.emplace_back(s, std::vector<Request>{});
      requests.back().second.push_back(Request{.method = Method::kAppendKv,
                                               .header = EncodeAppendKv(h),
                                               .payload = std::move(payload)});
      expected.push_back({seq->local_len[l][s]});
    }
  }
  return SendAppends(std::move(seq), layer, std::move(requests), std::move(expected));
}

std::future<Status> ClientImpl::Append(uint64_t id, int layer, const TensorView& k,
                                       const TensorView& v) {
  const ModelSpec& spec = options_.spec;
  const std::string context = "sequence " + std::to_string(id);
  if (Status s = CheckLayer(context, layer); !s.ok()) return ReadyFuture(std::move(s));
  StatusOr<std::shared_ptr<SequenceState>> found = table_->FindOpen(id);
  if (!found.ok()) return ReadyFuture(found.status());
  std::shared_ptr<SequenceState> seq = *std::move(found);
  Status shape = CheckView("k", k, {spec.num_kv_heads, spec.head_dim});
  if (shape.ok()) shape = CheckView("v", v, {spec.num_kv_heads, spec.head_dim});
  if (!shape.ok()) return ReadyFuture(shape.WithContext(context));

  std::vector<std::pair<size_t, std::vector<Request>>> requests;
  std::vector<std::vector<int64_t>> expected;
  std::vector<const HeadRange*> ranges;
  {
    MutexLock lock(&seq->mu);
    const auto l = static_cast<size_t>(layer);
    if (Status s = CheckAppendable(*seq, layer); !s.ok()) return ReadyFuture(std::move(s));
    // Decode tokens go to each head range's open-ended shard, unless it holds the token
    // already (after a Resume, shards that lost less than others).
    for (const HeadRange& range : seq->ranges) {
      const size_t shard = OpenEndedShard(seq->plan, range);
      if (HoldsToken(*seq, layer, shard, seq->length[l])) continue;
      expected.push_back({++seq->local_len[l][shard]});
      requests.emplace_back(shard, std::vector<Request>{});
      ranges.push_back(&range);
    }
    seq->length[l] += 1;
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].second.push_back(
        DecodeRequest(id, layer, ranges[i]->kv_head_begin, ranges[i]->kv_head_end, k, v));
  }
  return SendAppends(std::move(seq), layer, std::move(requests), std::move(expected));
}

}  // namespace attic::client_internal
