#include "bench/retrieval/evaluator.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "attention_workers/decode_attention.h"
#include "bench/retrieval/dense_reference.h"
#include "bench/retrieval/metrics.h"

namespace attic::retrieval::eval {
namespace {

using Clock = std::chrono::steady_clock;

double Micros(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

// What exact computation says about one decode step.
struct StepTruth {
  int32_t position = 0;
  QueryGroup group;
  GroupScorer scorer;
  std::vector<int32_t> top_group;               // best top_k by group-max score
  std::vector<std::vector<int32_t>> top_head;   // [G] best top_k by each head's own score
  std::vector<float> out;                       // [G, D] dense attention over [0, position]
  std::vector<float> lse;                       // [G]
};

// Everything one head's steps read: keys (indexed prefix and all), values, the kernel's view.
struct HeadView {
  KeyRows all;
  KeyRows indexed;
  KvRun block;  // every token of the head, for SparseDecodeAttention
  const std::byte* values;
};

StatusOr<StepTruth> ComputeTruth(const Dataset& ds, const HeadView& v, const float* q,
                                 int32_t position, int top_k) {
  const int g_size = ds.group_size, d = ds.head_dim;
  StepTruth t{.position = position,
              .group = {.q = q, .group_size = g_size, .head_dim = d},
              .scorer = GroupScorer({.q = q, .group_size = g_size, .head_dim = d}, v.all.dtype)};
  std::vector<float> scores(static_cast<size_t>(v.indexed.count));
  t.scorer.ScoreRange(v.indexed, 0, v.indexed.count, scores.data());
  t.top_group = TopKPositions(scores, top_k);
  for (int g = 0; g < g_size; ++g) {
    GroupScorer head({.q = q + static_cast<size_t>(g) * d, .group_size = 1, .head_dim = d},
                     v.all.dtype);
    head.ScoreRange(v.indexed, 0, v.indexed.count, scores.data());
    t.top_head.push_back(TopKPositions(scores, top_k));
  }
  t.out.resize(static_cast<size_t>(g_size) * d);
  t.lse.resize(static_cast<size_t>(g_size));
  const KvRun run{.k = v.block.k, .v = v.block.v, .num_tokens = position + 1};
  RETURN_IF_ERROR(DecodeAttention({.q = q, .group_size = g_size, .head_dim = d,
                                   .dtype = v.all.dtype, .scale = ds.scale,
                                   .runs = std::span<const KvRun>(&run, 1),
                                   .out = t.out.data(), .lse = t.lse.data()}));
  return t;
}

// Running sums of one (method, setting).
struct Accum {
  double recall = 0, mass = 0, err = 0, keys = 0, bytes = 0;
  std::vector<double> recall_head;
  std::vector<double> latency_us;
};

struct StepScratch {
  SearchResult result;
  std::vector<float> out, lse;
  std::unique_ptr<CacheEvictor> evictor;  // cold steps only
};

Status RunStep(const Dataset& ds, const HeadView& v, const StepTruth& t, Searcher& searcher,
               const SearchParams& params, const SelectionParams& selection, StepScratch* s,
               Accum* acc) {
  if (s->evictor != nullptr) s->evictor->Evict();
  const auto t0 = Clock::now();
  RETURN_IF_ERROR(searcher.Search(v.indexed, t.group, t.scorer, params, &s->result));
  const std::vector<int32_t> sel = BuildSelection(
      {.length = t.position + 1, .indexed = v.indexed.count, .retrieved = s->result.positions},
      selection);
  RETURN_IF_ERROR(SparseDecodeAttention({.q = t.group.q, .group_size = ds.group_size,
                                         .head_dim = ds.head_dim, .dtype = v.all.dtype,
                                         .scale = ds.scale,
                                         .blocks = std::span<const KvRun>(&v.block, 1),
                                         .block_size = static_cast<int>(v.all.count),
                                         .positions = sel, .out = s->out.data(),
                                         .lse = s->lse.data()}));
  acc->latency_us.push_back(Micros(t0, Clock::now()));
  acc->recall += RecallAt(s->result.positions, t.top_group);
  for (size_t g = 0; g < t.top_head.size(); ++g) {
    acc->recall_head[g] += RecallAt(s->result.positions, t.top_head[g]);
  }
  acc->mass += MassRecall(s->lse, t.lse);
  acc->err += OutputRelErr(s->out.data(), t.out.data(), ds.group_size, ds.head_dim);
  acc->keys += static_cast<double>(s->result.stats.keys_scored) / v.indexed.count;
  const int64_t bytes = StepBytesRead(s->result.stats, static_cast<int64_t>(sel.size()),
                                      static_cast<int64_t>(s->result.positions.size()),
                                      ds.head_dim);
  acc->bytes += bytes / DenseBytes(t.position + 1, ds.head_dim);
  return OkStatus();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

EvalRow Finish(const Accum& acc, int steps, bool has_values) {
  EvalRow r;
  const double n = std::max(1, steps);
  r.steps = steps;
  r.recall_at_100 = acc.recall / n;
  for (double h : acc.recall_head) r.recall_per_head.push_back(h / n);
  r.mass_recall = acc.mass / n;
  if (has_values) r.output_rel_err = acc.err / n;
  r.keys_scanned_fraction = acc.keys / n;
  r.bytes_fraction = acc.bytes / n;
  r.latency_us = Median(acc.latency_us);
  return r;
}

std::string Setting(const MethodSpec& m, int effort, bool no_sample) {
  std::string s = m.build_params;
  if (m.efforts.size() > 1 || effort != 0) {
    if (!s.empty()) s += " ";
    s += m.effort_name + "=" + (effort == 0 ? std::string("default") : std::to_string(effort));
  }
  if (s.empty()) s = "default";
  if (no_sample && m.learns_from_queries) s += " no-prefill-sample";
  return s;
}

// One method over every step: build, then each effort of its sweep.
Status EvaluateMethod(const Dataset& ds, const LayerData& layer, int kv_head,
                      const ContextPlan& plan, const HeadView& v, const QuerySample& sample,
                      const std::vector<StepTruth>& truth, const MethodSpec& m,
                      const EvalOptions& options, HeadResult* result) {
  const auto t0 = Clock::now();
  auto searcher = m.build(v.indexed, sample);
  const double build_ms = Micros(t0, Clock::now()) / 1000.0;
  if (!searcher.ok()) {
    if (searcher.status().code() == StatusCode::kUnimplemented) {
      result->notes.push_back(m.name + ": skipped (" + std::string(searcher.status().message()) + ")");
      return OkStatus();
    }
    return Status(searcher.status().code(),
                  m.name + " build, layer " + std::to_string(layer.layer) + " head " +
                      std::to_string(kv_head) + ": " + std::string(searcher.status().message()));
  }
  const std::string detail = (*searcher)->detail();
  if (!detail.empty()) {
    result->notes.push_back(m.name + ", layer " + std::to_string(layer.layer) + " head " +
                            std::to_string(kv_head) + " context " + std::to_string(plan.context) +
                            ": " + detail);
  }
  if ((*searcher)->serves_dense()) {
    EvalRow row = DenseRow(layer, kv_head, plan.context, ds.group_size);
    row.method = m.name;
    row.setting = "dense (" + Setting(m, 0, sample.empty()) + ")";
    row.steps = static_cast<int>(truth.size());
    row.build_ms = build_ms;
    row.build_threads = m.build_threads;
    result->rows.push_back(std::move(row));
    return OkStatus();
  }
  StepScratch scratch;
  if (options.cold_steps) scratch.evictor = std::make_unique<CacheEvictor>();
  scratch.out.resize(static_cast<size_t>(ds.group_size) * ds.head_dim);
  scratch.lse.resize(static_cast<size_t>(ds.group_size));
  for (int effort : m.efforts) {
    Accum acc;
    acc.recall_head.assign(static_cast<size_t>(ds.group_size), 0.0);
    for (const StepTruth& t : truth) {
      RETURN_IF_ERROR(RunStep(ds, v, t, **searcher,
                              {.top_k = options.selection.top_k, .effort = effort},
                              options.selection, &scratch, &acc));
    }
    EvalRow row = Finish(acc, static_cast<int>(truth.size()), layer.has_values());
    row.method = m.name;
    const std::string chosen = (*searcher)->chosen_setting();
    row.setting = chosen.empty() ? Setting(m, effort, sample.empty()) : chosen;
    row.layer = layer.layer;
    row.kv_head = kv_head;
    row.context = plan.context;
    row.build_ms = build_ms;
    row.build_threads = m.build_threads;
    row.build_keys_per_s_per_core =
        build_ms > 0 ? static_cast<double>(v.indexed.count) / (build_ms / 1000.0) / m.build_threads
                     : 0.0;
    row.index_bytes_per_key =
        static_cast<double>((*searcher)->memory_bytes()) / static_cast<double>(v.indexed.count);
    result->rows.push_back(std::move(row));
  }
  return OkStatus();
}

}  // namespace

StatusOr<HeadResult> EvaluateHead(const Dataset& ds, const LayerData& layer, int kv_head,
                                  const ContextPlan& plan, const std::vector<MethodSpec>& methods,
                                  const EvalOptions& options) {
  RETURN_IF_ERROR(ValidateSelectionParams(options.selection));
  HeadView v;
  v.all = layer.key_rows(kv_head);
  v.indexed = v.all.prefix(plan.indexed);
  v.values = layer.values_or_keys(kv_head);
  v.block = {.k = v.all.blocks[0], .v = v.values, .num_tokens = static_cast<int>(v.all.count)};

  const SampleBuffer sample = GatherSample(ds, layer, plan.sample_rows, kv_head);
  RETURN_IF_ERROR(CheckNoLeakage(sample.sample, plan.indexed));

  int steps = static_cast<int>(plan.step_rows.size());
  if (options.max_steps > 0) steps = std::min(steps, options.max_steps);
  std::vector<StepTruth> truth;
  for (int i = 0; i < steps; ++i) {
    ASSIGN_OR_RETURN(StepTruth t, ComputeTruth(ds, v, StepQueries(ds, layer, plan, i, kv_head),
                                               plan.step_positions[static_cast<size_t>(i)],
                                               options.selection.top_k));
    truth.push_back(std::move(t));
  }
  HeadResult result;
  for (const MethodSpec& m : methods) {
    RETURN_IF_ERROR(
        EvaluateMethod(ds, layer, kv_head, plan, v, sample.sample, truth, m, options, &result));
  }
  return result;
}

EvalRow DenseRow(const LayerData& layer, int kv_head, int64_t context, int group_size) {
  EvalRow r;
  r.method = "attic-dense";
  r.setting = "per-head dense decision";
  r.layer = layer.layer;
  r.kv_head = kv_head;
  r.context = context;
  r.recall_at_100 = 1.0;
  r.recall_per_head.assign(static_cast<size_t>(group_size), 1.0);
  r.mass_recall = 1.0;
  if (layer.has_values()) r.output_rel_err = 0.0;
  r.keys_scanned_fraction = 1.0;
  r.bytes_fraction = 1.0;
  return r;
}

}  // namespace attic::retrieval::eval
