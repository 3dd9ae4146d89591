#include "bench/ssd/internal/head_step.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "attention_workers/retrieval/scoring.h"
#include "bench/ssd/internal/decode_store.h"

namespace attic::retrieval::eval::decode_internal {
namespace {

using Clock = std::chrono::steady_clock;

double Micros(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

}  // namespace

Status HeadStepper::ReadHead(KvStore& store, const HeadStepInput& in, bool touch_values) {
  RETURN_IF_ERROR(store.ReadBlocks(kSequenceId, 0, in.kv_head, &views_, touch_values));
  runs_.clear();
  key_blocks_.clear();
  int64_t left = in.length;
  for (const BlockView& b : views_) {
    if (left <= 0) break;
    const int n = static_cast<int>(std::min<int64_t>(b.num_tokens, left));
    runs_.push_back(KvRun{.k = b.k, .v = b.v, .num_tokens = n});
    key_blocks_.push_back(b.k);
    left -= n;
  }
  if (left > 0) {
    return FailedPreconditionError("decode step: the store holds fewer than " +
                                   std::to_string(in.length) + " tokens");
  }
  return OkStatus();
}

Status HeadStepper::Sparse(KvStore& store, const ModelSpec& spec, const HeadStepInput& in,
                           HeadStepResult* out) {
  RETURN_IF_ERROR(ReadHead(store, in, /*touch_values=*/false));
  const KeyRows keys{.blocks = key_blocks_,
                     .block_size = spec.block_size,
                     .head_dim = spec.head_dim,
                     .dtype = spec.dtype,
                     .count = in.length};
  const GroupScorer scorer({.q = in.q, .group_size = spec.group_size(), .head_dim = spec.head_dim},
                           spec.dtype);
  out->spilled =
      std::any_of(runs_.begin(), runs_.end(), [](const KvRun& r) { return r.v == nullptr; });
  const int top_k = in.selection.top_k;
  const int depth = out->spilled ? CandidateDepth(in.locality, top_k) : top_k;
  search_.positions.clear();
  search_.scores.clear();
  if (top_k > 0) RETURN_IF_ERROR(in.index->Search(keys, scorer, {.top_k = depth}, &search_));
  out->fetch = {};
  out->read_us = 0.0;
  out->dropped = 0;
  if (!out->spilled) {
    out->retrieved.assign(search_.positions.begin(), search_.positions.end());
    out->selection = BuildSelection(
        {.length = in.length, .indexed = in.index->size(), .retrieved = out->retrieved},
        in.selection);
  } else {
    RETURN_IF_ERROR(FetchSelection(store, in, in.index->size(), out));
  }
  out->blocks_selected = 0;
  for (size_t i = 0; i < out->selection.size(); ++i) {
    const int32_t b = out->selection[i] / spec.block_size;
    if (i == 0 || out->selection[i - 1] / spec.block_size != b) ++out->blocks_selected;
  }
  out->out.resize(static_cast<size_t>(spec.group_size()) * static_cast<size_t>(spec.head_dim));
  out->lse.resize(static_cast<size_t>(spec.group_size()));
  return SparseDecodeAttention({.q = in.q,
                                .group_size = spec.group_size(),
                                .head_dim = spec.head_dim,
                                .dtype = spec.dtype,
                                .scale = spec.EffectiveScale(),
                                .blocks = runs_,
                                .block_size = spec.block_size,
                                .positions = out->selection,
                                .out = out->out.data(),
                                .lse = out->lse.data()});
}

Status HeadStepper::FetchSelection(KvStore& store, const HeadStepInput& in, int64_t indexed,
                                   HeadStepResult* out) {
  const int top_k = in.selection.top_k;
  fixed_ = BuildSelection({.length = in.length, .indexed = indexed, .retrieved = {}}, in.selection);
  // The store's DRAM is the resident set: a block is available when its value is resident.
  const FetchPlan plan = PlanLocalityFetch(
      {.length = in.length,
       .fixed = fixed_,
       .candidates = search_.positions,
       .scores = search_.scores,
       .top_k = std::min<int>(top_k, static_cast<int>(search_.positions.size()))},
      in.locality, [&](int b) { return runs_[static_cast<size_t>(b)].v != nullptr; });
  fetch_.assign(plan.blocks_fetched.begin(), plan.blocks_fetched.end());
  fetch_.insert(fetch_.end(), plan.blocks_prefetched.begin(), plan.blocks_prefetched.end());
  if (!fetch_.empty()) {
    const auto t0 = Clock::now();
    RETURN_IF_ERROR(store.FetchValues(kSequenceId, 0, in.kv_head, fetch_, &values_, &out->fetch));
    out->read_us = Micros(t0, Clock::now());
    for (size_t i = 0; i < fetch_.size(); ++i) {
      const auto b = static_cast<size_t>(fetch_[i]);
      if (b < runs_.size()) runs_[b].v = values_[i];
    }
  }
  used_.assign(plan.blocks_resident.begin(), plan.blocks_resident.end());
  if (!used_.empty()) {
    RETURN_IF_ERROR(store.FetchValues(kSequenceId, 0, in.kv_head, used_, &values_, nullptr));
  }
  out->retrieved = plan.retrieved;
  out->dropped = plan.dropped;
  out->selection = BuildSelection(
      {.length = in.length, .indexed = indexed, .retrieved = plan.retrieved}, in.selection);
  for (int32_t p : out->selection) {
    if (runs_[static_cast<size_t>(p / in.locality.block_size)].v == nullptr) {
      return InternalError("decode step: selected token " + std::to_string(p) +
                           " has no value in DRAM after the fetch");
    }
  }
  return OkStatus();
}

Status HeadStepper::Dense(KvStore& store, const ModelSpec& spec, const HeadStepInput& in,
                          HeadStepResult* out) {
  RETURN_IF_ERROR(ReadHead(store, in, /*touch_values=*/true));
  std::vector<int>& spilled = fetch_;
  spilled.clear();
  for (size_t r = 0; r < runs_.size(); ++r) {
    if (runs_[r].v == nullptr) spilled.push_back(static_cast<int>(r));
  }
  out->spilled = !spilled.empty();
  out->fetch = {};
  out->read_us = 0.0;
  out->blocks_selected = static_cast<int>(runs_.size());
  if (!spilled.empty()) {
    const size_t block_bytes = spec.block_bytes();
    staging_.resize(spilled.size() * block_bytes);
    dst_.clear();
    for (size_t i = 0; i < spilled.size(); ++i) dst_.push_back(staging_.data() + i * block_bytes);
    const auto t0 = Clock::now();
    RETURN_IF_ERROR(store.LoadValues(kSequenceId, 0, in.kv_head, spilled, dst_, &out->fetch));
    out->read_us = Micros(t0, Clock::now());
    for (size_t i = 0; i < spilled.size(); ++i) {
      runs_[static_cast<size_t>(spilled[i])].v = dst_[i];
    }
  }
  out->out.resize(static_cast<size_t>(spec.group_size()) * static_cast<size_t>(spec.head_dim));
  out->lse.resize(static_cast<size_t>(spec.group_size()));
  return DecodeAttention({.q = in.q,
                          .group_size = spec.group_size(),
                          .head_dim = spec.head_dim,
                          .dtype = spec.dtype,
                          .scale = spec.EffectiveScale(),
                          .runs = runs_,
                          .out = out->out.data(),
                          .lse = out->lse.data()});
}

}  // namespace attic::retrieval::eval::decode_internal
