#include "bench/ssd/locality_eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "attention_workers/decode_attention.h"
#include "attention_workers/retrieval/key_index.h"
#include "bench/retrieval/metrics.h"

namespace attic::retrieval::eval {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kGraphSource = "attic-graph";
constexpr const char* kExactSource = "exact";

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// One head's keys and values as the kernels read them.
struct HeadView {
  KeyRows all;
  KeyRows indexed;
  KvRun block;  // every token of the head in one run
};

// Candidates of one step from one source, best first.
struct Candidates {
  std::vector<int32_t> positions;
  std::vector<float> scores;
};

// What the exact computation and the sources say about one decode step.
struct StepData {
  int32_t position = 0;
  const float* q = nullptr;         // [G, D]
  std::vector<int32_t> truth;       // exact group-max top_k of the indexed keys
  std::vector<float> lse_full;      // [G], dense attention over [0, position]
  std::vector<int32_t> fixed;       // sinks + window + unfolded keys
  std::vector<Candidates> sources;  // [source]
};

int64_t BlockBytes(int block_size, int head_dim) {
  return static_cast<int64_t>(block_size) * head_dim * kBytesPerElement;
}

Status ValidateOptions(const Dataset& ds, const LocalityEvalOptions& o) {
  RETURN_IF_ERROR(ValidateSelectionParams(o.selection));
  if (o.selection.top_k < 1) return InvalidArgumentError("locality eval: top_k must be >= 1");
  for (const LocalityParams& p : o.settings) {
    RETURN_IF_ERROR(ValidateLocalityParams(p));
    if (p.block_size != o.settings[0].block_size) {
      return InvalidArgumentError("locality eval: the settings' block sizes differ (" +
                                  std::to_string(o.settings[0].block_size) + " and " +
                                  std::to_string(p.block_size) + ")");
    }
  }
  for (int h : o.kv_heads) {
    if (h < 0 || h >= ds.kv_heads) {
      return InvalidArgumentError("locality eval: KV head " + std::to_string(h) + " not in [0, " +
                                  std::to_string(ds.kv_heads) + ")");
    }
  }
  if (o.layers.empty()) return InvalidArgumentError("locality eval: no layer to evaluate");
  return OkStatus();
}

StatusOr<const LayerData*> FindLayer(const Dataset& ds, int layer) {
  for (const LayerData& l : ds.layers) {
    if (l.layer == layer) return &l;
  }
  return InvalidArgumentError("locality eval: layer " + std::to_string(layer) +
                              " is not loaded from " + ds.dir);
}

Candidates ExactCandidates(std::span<const float> scores, int depth) {
  Candidates c;
  c.positions = TopKPositions(scores, depth);
  for (int32_t p : c.positions) c.scores.push_back(scores[static_cast<size_t>(p)]);
  return c;
}

StatusOr<std::vector<float>> DenseLse(const Dataset& ds, const HeadView& v, const float* q,
                                      int32_t position) {
  std::vector<float> out(static_cast<size_t>(ds.group_size) * ds.head_dim);
  std::vector<float> lse(static_cast<size_t>(ds.group_size));
  const KvRun run{.k = v.block.k, .v = v.block.v, .num_tokens = position + 1};
  RETURN_IF_ERROR(DecodeAttention({.q = q,
                                   .group_size = ds.group_size,
                                   .head_dim = ds.head_dim,
                                   .dtype = v.all.dtype,
                                   .scale = ds.scale,
                                   .runs = std::span<const KvRun>(&run, 1),
                                   .out = out.data(),
                                   .lse = lse.data()}));
  return lse;
}

// Truth, fixed part and every source's candidates for each decode step of one head.
StatusOr<std::vector<StepData>> PrepareSteps(const Dataset& ds, const LayerData& layer,
                                             const ContextPlan& plan, const HeadView& v,
                                             const KeyIndex* graph, int depth,
                                             const LocalityEvalOptions& o, int kv_head) {
  int steps = static_cast<int>(plan.step_rows.size());
  if (o.max_steps > 0) steps = std::min(steps, o.max_steps);
  std::vector<StepData> out;
  std::vector<float> scores(static_cast<size_t>(v.indexed.count));
  for (int i = 0; i < steps; ++i) {
    StepData s;
    s.position = plan.step_positions[static_cast<size_t>(i)];
    s.q = StepQueries(ds, layer, plan, i, kv_head);
    const GroupScorer scorer({.q = s.q, .group_size = ds.group_size, .head_dim = ds.head_dim},
                             v.all.dtype);
    scorer.ScoreRange(v.indexed, 0, v.indexed.count, scores.data());
    s.truth = TopKPositions(scores, o.selection.top_k);
    ASSIGN_OR_RETURN(s.lse_full, DenseLse(ds, v, s.q, s.position));
    s.fixed = BuildSelection(
        {.length = s.position + 1, .indexed = v.indexed.count, .retrieved = {}}, o.selection);
    if (graph != nullptr) {
      SearchResult r;
      RETURN_IF_ERROR(graph->Search(v.indexed, scorer, {.top_k = depth}, &r));
      s.sources.push_back({std::move(r.positions), std::move(r.scores)});
    }
    if (o.exact_reference) s.sources.push_back(ExactCandidates(scores, depth));
    out.push_back(std::move(s));
  }
  return out;
}

size_t IntersectionSize(std::span<const int32_t> a, std::span<const int32_t> b) {
  size_t n = 0;
  for (size_t i = 0, j = 0; i < a.size() && j < b.size();) {
    if (a[i] < b[j]) {
      ++i;
    } else if (b[j] < a[i]) {
      ++j;
    } else {
      ++n, ++i, ++j;
    }
  }
  return n;
}

double Jaccard(std::span<const int32_t> a, std::span<const int32_t> b) {
  const size_t inter = IntersectionSize(a, b);
  const size_t uni = a.size() + b.size() - inter;
  return uni == 0 ? 1.0 : static_cast<double>(inter) / static_cast<double>(uni);
}

std::vector<int32_t> BlocksOf(std::span<const int32_t> sorted_positions, int block_size) {
  std::vector<int32_t> b;
  for (int32_t p : sorted_positions) {
    const int32_t blk = p / block_size;
    if (b.empty() || b.back() != blk) b.push_back(blk);
  }
  return b;
}

// Running sums of one selection rule over one head's steps.
class RuleAccum {
 public:
  RuleAccum(int block_size, int64_t block_bytes) : block_size_(block_size), bytes_(block_bytes) {}

  // One step: the selection (sorted), the retrieved tokens, and the blocks read (with the
  // resident set; the rule without it reads every selected block).
  void Add(const std::vector<int32_t>& selection, const StepData& s,
           std::span<const int32_t> retrieved, double mass, const FetchPlan* plan) {
    std::vector<int32_t> blocks = BlocksOf(selection, block_size_);
    if (steps_ > 0) {
      sum_.token_jaccard += Jaccard(selection, prev_tokens_);
      sum_.block_jaccard += Jaccard(blocks, prev_blocks_);
    }
    const double selected = static_cast<double>(blocks.size());
    sum_.recall_at_100 += RecallAt(retrieved, s.truth);
    sum_.mass_recall += mass;
    sum_.blocks_selected += selected;
    sum_.bytes_without += selected * static_cast<double>(bytes_);
    if (plan != nullptr) {
      sum_.blocks_resident += static_cast<double>(plan->blocks_resident.size());
      sum_.blocks_fetched += static_cast<double>(plan->blocks_fetched.size());
      sum_.blocks_prefetched += static_cast<double>(plan->blocks_prefetched.size());
      sum_.dropped += plan->dropped;
      sum_.bytes_with +=
          static_cast<double>(plan->blocks_fetched.size() + plan->blocks_prefetched.size()) *
          static_cast<double>(bytes_);
    } else {
      sum_.blocks_fetched += selected;
      sum_.bytes_with += selected * static_cast<double>(bytes_);
    }
    prev_tokens_ = selection;
    prev_blocks_ = std::move(blocks);
    ++steps_;
  }

  void AddPlanTime(double us) { sum_.plan_us += us; }

  SelectionStats Mean() const {
    SelectionStats m = sum_;
    const double n = std::max(1, steps_);
    const double pairs = std::max(1, steps_ - 1);
    for (double* f : {&m.recall_at_100, &m.mass_recall, &m.blocks_selected, &m.blocks_resident,
                      &m.blocks_fetched, &m.blocks_prefetched, &m.dropped, &m.bytes_without,
                      &m.bytes_with, &m.plan_us}) {
      *f /= n;
    }
    m.token_jaccard /= pairs;
    m.block_jaccard /= pairs;
    return m;
  }

 private:
  int block_size_;
  int64_t bytes_;
  int steps_ = 0;
  SelectionStats sum_;
  std::vector<int32_t> prev_tokens_, prev_blocks_;
};

// Mass recall of exact attention over the selection.
StatusOr<double> SelectionMass(const Dataset& ds, const HeadView& v, const StepData& s,
                               std::span<const int32_t> selection) {
  std::vector<float> out(static_cast<size_t>(ds.group_size) * ds.head_dim);
  std::vector<float> lse(static_cast<size_t>(ds.group_size));
  RETURN_IF_ERROR(SparseDecodeAttention({.q = s.q,
                                         .group_size = ds.group_size,
                                         .head_dim = ds.head_dim,
                                         .dtype = v.all.dtype,
                                         .scale = ds.scale,
                                         .blocks = std::span<const KvRun>(&v.block, 1),
                                         .block_size = static_cast<int>(v.all.count),
                                         .positions = selection,
                                         .out = out.data(),
                                         .lse = lse.data()}));
  return MassRecall(lse, s.lse_full);
}

std::span<const int32_t> Prefix(const std::vector<int32_t>& v, size_t n) {
  return {v.data(), std::min(v.size(), n)};
}
std::span<const float> Prefix(const std::vector<float>& v, size_t n) {
  return {v.data(), std::min(v.size(), n)};
}

// The no-budget selection: the first top_k candidates of the source.
StatusOr<SelectionStats> RunBaseline(const Dataset& ds, const HeadView& v,
                                     const std::vector<StepData>& steps, size_t source,
                                     const LocalityEvalOptions& o, int block_size) {
  RuleAccum acc(block_size, BlockBytes(block_size, ds.head_dim));
  const size_t k = static_cast<size_t>(o.selection.top_k);
  for (const StepData& s : steps) {
    const std::span<const int32_t> retrieved = Prefix(s.sources[source].positions, k);
    const std::vector<int32_t> sel = BuildSelection(
        {.length = s.position + 1, .indexed = v.indexed.count, .retrieved = retrieved},
        o.selection);
    ASSIGN_OR_RETURN(double mass, SelectionMass(ds, v, s, sel));
    acc.Add(sel, s, retrieved, mass, nullptr);
  }
  return acc.Mean();
}

// One locality setting over the steps, the resident set carried from step to step.
StatusOr<SelectionStats> RunLocality(const Dataset& ds, const HeadView& v,
                                     const std::vector<StepData>& steps, size_t source,
                                     const LocalityEvalOptions& o, const LocalityParams& p) {
  RuleAccum acc(p.block_size, BlockBytes(p.block_size, ds.head_dim));
  ResidentSet resident(p.resident_blocks);
  const size_t depth = static_cast<size_t>(CandidateDepth(p, o.selection.top_k));
  for (const StepData& s : steps) {
    const Candidates& c = s.sources[source];
    const auto t0 = Clock::now();
    const FetchPlan plan = PlanLocalityFetch({.length = s.position + 1,
                                              .fixed = s.fixed,
                                              .candidates = Prefix(c.positions, depth),
                                              .scores = Prefix(c.scores, depth),
                                              .top_k = o.selection.top_k},
                                             p, resident);
    ApplyFetchPlan(plan, &resident);
    acc.AddPlanTime(Seconds(t0, Clock::now()) * 1e6);
    const std::vector<int32_t> sel = BuildSelection(
        {.length = s.position + 1, .indexed = v.indexed.count, .retrieved = plan.retrieved},
        o.selection);
    ASSIGN_OR_RETURN(double mass, SelectionMass(ds, v, s, sel));
    acc.Add(sel, s, plan.retrieved, mass, &plan);
  }
  return acc.Mean();
}

HeadView MakeHeadView(const LayerData& layer, int kv_head, int64_t indexed) {
  HeadView v;
  v.all = layer.key_rows(kv_head);
  v.indexed = v.all.prefix(indexed);
  v.block = {.k = v.all.blocks[0],
             .v = layer.values_or_keys(kv_head),
             .num_tokens = static_cast<int>(v.all.count)};
  return v;
}

int MaxDepth(const LocalityEvalOptions& o) {
  int depth = o.selection.top_k;
  for (const LocalityParams& p : o.settings) {
    depth = std::max(depth, CandidateDepth(p, o.selection.top_k));
  }
  return depth;
}

// Every source and setting on one (layer, KV head): appends one row per (source, setting).
Status EvaluateHead(const Dataset& ds, const LayerData& layer, const ContextPlan& plan, int kv_head,
                    const LocalityEvalOptions& o, LocalityReport* report) {
  const HeadView v = MakeHeadView(layer, kv_head, plan.indexed);
  const SampleBuffer sample = GatherSample(ds, layer, plan.sample_rows, kv_head);
  RETURN_IF_ERROR(CheckNoLeakage(sample.sample, plan.indexed));
  const auto t0 = Clock::now();
  ASSIGN_OR_RETURN(std::unique_ptr<KeyIndex> graph,
                   BuildKeyIndex(IndexKind::kGraph, v.indexed, sample.sample));
  report->build_ms += Seconds(t0, Clock::now()) * 1000.0;
  ASSIGN_OR_RETURN(std::vector<StepData> steps,
                   PrepareSteps(ds, layer, plan, v, graph.get(), MaxDepth(o), o, kv_head));
  std::vector<std::string> sources = {kGraphSource};
  if (o.exact_reference) sources.push_back(kExactSource);
  for (size_t src = 0; src < sources.size(); ++src) {
    ASSIGN_OR_RETURN(SelectionStats base,
                     RunBaseline(ds, v, steps, src, o, o.settings[0].block_size));
    for (size_t i = 0; i < o.settings.size(); ++i) {
      LocalityRow row{.source = sources[src],
                      .layer = layer.layer,
                      .kv_head = kv_head,
                      .context = plan.context,
                      .steps = static_cast<int>(steps.size()),
                      .setting = static_cast<int>(i),
                      .base = base};
      ASSIGN_OR_RETURN(row.loc, RunLocality(ds, v, steps, src, o, o.settings[i]));
      report->rows.push_back(std::move(row));
    }
  }
  return OkStatus();
}

SelectionStats MeanStats(const std::vector<const SelectionStats*>& parts) {
  SelectionStats m;
  for (const SelectionStats* s : parts) {
    m.recall_at_100 += s->recall_at_100;
    m.mass_recall += s->mass_recall;
    m.token_jaccard += s->token_jaccard;
    m.block_jaccard += s->block_jaccard;
    m.blocks_selected += s->blocks_selected;
    m.blocks_resident += s->blocks_resident;
    m.blocks_fetched += s->blocks_fetched;
    m.blocks_prefetched += s->blocks_prefetched;
    m.dropped += s->dropped;
    m.bytes_without += s->bytes_without;
    m.bytes_with += s->bytes_with;
    m.plan_us += s->plan_us;
  }
  const double n = std::max<size_t>(1, parts.size());
  for (double* f : {&m.recall_at_100, &m.mass_recall, &m.token_jaccard, &m.block_jaccard,
                    &m.blocks_selected, &m.blocks_resident, &m.blocks_fetched, &m.blocks_prefetched,
                    &m.dropped, &m.bytes_without, &m.bytes_with, &m.plan_us}) {
    *f /= n;
  }
  return m;
}

// The all-heads rows of one (source, layer): the heads' means, setting by setting.
void AddAllHeadsRows(const std::string& source, int layer, LocalityReport* r) {
  const size_t per_head_end = r->rows.size();
  for (size_t i = 0; i < r->settings.size(); ++i) {
    std::vector<const SelectionStats*> base, loc;
    LocalityRow all;
    for (size_t j = 0; j < per_head_end; ++j) {
      const LocalityRow& h = r->rows[j];
      if (h.source != source || h.layer != layer || h.kv_head < 0 ||
          h.setting != static_cast<int>(i)) {
        continue;
      }
      base.push_back(&h.base);
      loc.push_back(&h.loc);
      all = h;
    }
    if (base.empty()) continue;
    all.kv_head = -1;
    all.base = MeanStats(base);
    all.loc = MeanStats(loc);
    r->rows.push_back(std::move(all));
  }
}

// The all-heads row of setting i of (source, layer) if the setting meets the requirement on
// every head and on the mean; nullptr otherwise.
const LocalityRow* Qualifying(const LocalityReport& r, const std::string& source, int layer,
                              int i) {
  const LocalityRow* all = nullptr;
  for (const LocalityRow& row : r.rows) {
    if (row.source != source || row.layer != layer || row.setting != i) continue;
    if (!row.Within(r.max_recall_loss)) return nullptr;
    if (row.kv_head < 0) all = &row;
  }
  return all;
}

// The qualifying setting of (source, layer) with the largest reduction, among those of
// resident_blocks when >= 0, otherwise among those smaller than the context (a set holding
// the whole context is a reference, not a cache).
int BestSetting(const LocalityReport& r, const std::string& source, int layer,
                int resident_blocks = -1) {
  int best = -1;
  double best_reduction = 0.0;
  for (size_t i = 0; i < r.settings.size(); ++i) {
    const int res = r.settings[i].resident_blocks;
    if (resident_blocks >= 0 ? res != resident_blocks : res >= r.context_blocks) continue;
    const LocalityRow* all = Qualifying(r, source, layer, static_cast<int>(i));
    if (all != nullptr && all->reduction() > best_reduction) {
      best = static_cast<int>(i);
      best_reduction = all->reduction();
    }
  }
  return best;
}

// The qualifying setting reaching the target reduction with the fewest resident blocks (the
// largest reduction among those).
int SmallestSetting(const LocalityReport& r, const std::string& source, int layer, double target) {
  int best = -1;
  for (size_t i = 0; i < r.settings.size(); ++i) {
    const LocalityRow* all = Qualifying(r, source, layer, static_cast<int>(i));
    if (all == nullptr || all->reduction() < target) continue;
    const LocalityRow* b = best < 0 ? nullptr : r.Find(source, layer, -1, best);
    const int res = r.settings[i].resident_blocks;
    if (b == nullptr || res < r.settings[static_cast<size_t>(best)].resident_blocks ||
        (res == r.settings[static_cast<size_t>(best)].resident_blocks &&
         all->reduction() > b->reduction())) {
      best = static_cast<int>(i);
    }
  }
  return best;
}

std::string SettingText(const LocalityParams& p) {
  const std::string res =
      p.resident_blocks == kUnboundedResident ? "inf" : std::to_string(p.resident_blocks);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "res=%s budget=%d slack=%.2f%s", res.c_str(), p.fetch_budget,
                p.score_slack, p.prefetch_neighbours ? " prefetch" : "");
  return buf;
}

std::string HeadText(int kv_head) { return kv_head < 0 ? "all" : std::to_string(kv_head); }

void PrintBaselines(std::FILE* out, const LocalityReport& r) {
  std::fprintf(out,
               "no-budget selection (sinks %d, window %d, top_k %d), every selected block "
               "read each step:\n",
               r.selection.sinks, r.selection.window, r.selection.top_k);
  std::fprintf(out, "%-12s %5s %4s %9s %9s %9s %9s %8s %10s\n", "source", "layer", "head", "recall",
               "mass", "jac_tok", "jac_blk", "blocks", "KiB/step");
  for (const LocalityRow& row : r.rows) {
    if (row.setting != 0) continue;
    std::fprintf(out, "%-12s %5d %4s %9.4f %9.4f %9.3f %9.3f %8.1f %10.1f\n", row.source.c_str(),
                 row.layer, HeadText(row.kv_head).c_str(), row.base.recall_at_100,
                 row.base.mass_recall, row.base.token_jaccard, row.base.block_jaccard,
                 row.base.blocks_selected, row.base.bytes_without / 1024.0);
  }
}

void PrintRowHeader(std::FILE* out) {
  std::fprintf(out, "%-12s %5s %4s %-34s %5s %5s %6s %5s %5s %7s %7s %6s %8s %8s %7s %5s %3s\n",
               "source", "layer", "head", "setting", "sel", "res", "fetch", "pref", "drop",
               "jac_blk", "KiB/st", "reduct", "d_recall", "d_mass", "recall", "us", "ok");
}

void PrintRow(std::FILE* out, const LocalityReport& r, const LocalityRow& row) {
  const SelectionStats& l = row.loc;
  std::fprintf(out,
               "%-12s %5d %4s %-34s %5.1f %5.1f %6.2f %5.2f %5.2f %7.3f %7.1f %6.2f %+8.4f "
               "%+8.4f %7.4f %5.1f %3s\n",
               row.source.c_str(), row.layer, HeadText(row.kv_head).c_str(),
               SettingText(r.settings[static_cast<size_t>(row.setting)]).c_str(), l.blocks_selected,
               l.blocks_resident, l.blocks_fetched, l.blocks_prefetched, l.dropped, l.block_jaccard,
               l.bytes_with / 1024.0, row.reduction(), row.recall_delta(), row.mass_recall_delta(),
               l.recall_at_100, l.plan_us, row.Within(r.max_recall_loss) ? "yes" : "no");
}

// Per resident set size, the best setting's all-heads row: the DRAM / SSD-read trade-off.
void PrintBestPerCapacity(std::FILE* out, const LocalityReport& r) {
  std::fprintf(out, "\nbest setting per resident set size (all heads):\n");
  PrintRowHeader(out);
  for (const LocalityBest& b : r.best) {
    std::vector<int> sizes;
    for (const LocalityParams& p : r.settings) sizes.push_back(p.resident_blocks);
    std::sort(sizes.begin(), sizes.end());
    sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
    for (int size : sizes) {
      const int i = BestSetting(r, b.source, b.layer, size);
      if (i < 0) continue;
      if (const LocalityRow* row = r.Find(b.source, b.layer, -1, i)) PrintRow(out, r, *row);
    }
  }
}

// The setting reported for (source, layer): the best, or when none met the requirement the
// one losing the least recall.
int ReportedSetting(const LocalityReport& r, const LocalityBest& b) {
  if (b.setting >= 0) return b.setting;
  int chosen = 0;
  double least = -1e9;
  for (const LocalityRow& row : r.rows) {
    if (row.source != b.source || row.layer != b.layer || row.kv_head >= 0) continue;
    const double loss = std::min(row.recall_delta(), row.mass_recall_delta());
    if (loss > least) least = loss, chosen = row.setting;
  }
  return chosen;
}

// The bench rows of one setting of (source, layer), per head and for all heads.
void AddSettingRows(const LocalityReport& r, const LocalityBest& b, int setting, const char* choice,
                    bool meets, bench::BenchReport* out) {
  const LocalityParams& p = r.settings[static_cast<size_t>(setting)];
  char slack[16];
  std::snprintf(slack, sizeof(slack), "%.2f", p.score_slack);
  for (const LocalityRow& row : r.rows) {
    if (row.source != b.source || row.layer != b.layer || row.setting != setting) continue;
    const std::vector<bench::Param> where = {{"source", row.source},
                                             {"layer", std::to_string(row.layer)},
                                             {"kv_head", HeadText(row.kv_head)},
                                             {"context", std::to_string(row.context)}};
    std::vector<bench::Param> params = where;
    params.insert(params.end(), {{"resident_blocks", std::to_string(p.resident_blocks)},
                                 {"fetch_budget", std::to_string(p.fetch_budget)},
                                 {"slack", slack},
                                 {"prefetch", p.prefetch_neighbours ? "1" : "0"},
                                 {"choice", choice},
                                 {"meets_requirement", meets ? "1" : "0"}});
    out->AddRow({.name = "locality_bytes_reduction",
                 .params = params,
                 .value = row.reduction(),
                 .unit = "x",
                 .limit = r.target_reduction,
                 .limit_source = "target",
                 .better = "higher"});
    out->AddRow({.name = "locality_bytes_per_step_with",
                 .params = params,
                 .value = row.loc.bytes_with,
                 .unit = "B",
                 .better = "lower"});
    out->AddRow({.name = "locality_bytes_per_step_without",
                 .params = params,
                 .value = row.base.bytes_without,
                 .unit = "B",
                 .better = "lower"});
    out->AddRow({.name = "locality_recall_delta",
                 .params = params,
                 .value = row.recall_delta(),
                 .unit = "",
                 .better = "higher"});
    out->AddRow({.name = "locality_mass_recall_delta",
                 .params = params,
                 .value = row.mass_recall_delta(),
                 .unit = "",
                 .better = "higher"});
    if (std::string_view(choice) != "best") continue;
    for (const char* g : {"block", "token"}) {
      std::vector<bench::Param> jp = where;
      jp.push_back({"granularity", g});
      out->AddRow({.name = "selection_jaccard",
                   .params = jp,
                   .value = g[0] == 'b' ? row.base.block_jaccard : row.base.token_jaccard,
                   .unit = "",
                   .better = "higher"});
    }
  }
}

}  // namespace

void PrintLocalityTable(std::FILE* out, const LocalityReport& r) {
  std::fprintf(out,
               "locality-aware sparse fetch: context %lld tokens = %lld blocks of %lld KiB "
               "values; requirement: recall@100 and mass recall within %.3f\n",
               static_cast<long long>(r.rows.empty() ? 0 : r.rows[0].context),
               static_cast<long long>(r.context_blocks),
               static_cast<long long>(r.block_bytes / 1024), r.max_recall_loss);
  PrintBaselines(out, r);
  std::fprintf(out,
               "\nlocality selection, mean over heads (KiB/st: value KiB read per step; "
               "reduct: without / with):\n");
  PrintRowHeader(out);
  for (const LocalityRow& row : r.rows) {
    if (row.kv_head < 0) PrintRow(out, r, row);
  }
  PrintBestPerCapacity(out, r);
  std::fprintf(out,
               "\nchosen settings per source (meeting the requirement on every head): "
               "best = largest reduction below the whole context, smallest = fewest resident "
               "blocks reaching %.1fx\n",
               r.target_reduction);
  PrintRowHeader(out);
  for (const LocalityBest& b : r.best) {
    for (const auto& [name, setting] : {std::pair{"best", b.setting}, {"smallest", b.smallest}}) {
      if (setting < 0) {
        std::fprintf(out, "%-12s %5d: %s: no setting\n", b.source.c_str(), b.layer, name);
        continue;
      }
      for (const LocalityRow& row : r.rows) {
        if (row.source == b.source && row.layer == b.layer && row.setting == setting) {
          PrintRow(out, r, row);
        }
      }
    }
  }
  std::fprintf(out, "graph builds %.0f ms, evaluation %.1f s\n", r.build_ms, r.seconds);
}

void AddLocalityRows(const LocalityReport& r, bench::BenchReport* out) {
  for (const LocalityBest& b : r.best) {
    AddSettingRows(r, b, ReportedSetting(r, b), "best", b.setting >= 0, out);
    if (b.smallest >= 0 && b.smallest != b.setting) {
      AddSettingRows(r, b, b.smallest, "smallest", true, out);
    }
  }
}

std::vector<LocalityParams> LocalitySweep() {
  std::vector<LocalityParams> out;
  for (int resident : {32, 48, 64, 96, 128}) {
    for (int budget : {0, 4, 8, 16}) {
      for (float slack : {0.0f, 0.02f, 0.05f, 0.1f, 0.2f}) {
        out.push_back({.resident_blocks = resident, .fetch_budget = budget, .score_slack = slack});
      }
    }
  }
  for (int resident : {64, 128}) {
    out.push_back({.resident_blocks = resident,
                   .fetch_budget = 0,
                   .score_slack = 0.1f,
                   .prefetch_neighbours = true});
  }
  // Unbounded, no slack: each distinct block is read once, when first selected.
  out.push_back({.resident_blocks = kUnboundedResident, .fetch_budget = 0, .score_slack = 0.0f});
  return out;
}

const LocalityRow* LocalityReport::Find(const std::string& source, int layer, int kv_head,
                                        int setting) const {
  for (const LocalityRow& r : rows) {
    if (r.source == source && r.layer == layer && r.kv_head == kv_head && r.setting == setting) {
      return &r;
    }
  }
  return nullptr;
}

StatusOr<LocalityReport> EvaluateLocality(const Dataset& ds, const LocalityEvalOptions& options) {
  const auto t0 = Clock::now();
  LocalityEvalOptions o = options;
  if (o.settings.empty()) o.settings = LocalitySweep();
  RETURN_IF_ERROR(ValidateOptions(ds, o));
  LocalityReport report;
  report.settings = o.settings;
  report.selection = o.selection;
  report.max_recall_loss = o.max_recall_loss;
  report.target_reduction = o.target_reduction;
  report.block_bytes = BlockBytes(o.settings[0].block_size, ds.head_dim);
  const int64_t context = o.context > 0 ? o.context : ds.num_tokens;
  report.context_blocks = (context + o.settings[0].block_size - 1) / o.settings[0].block_size;
  std::vector<int> heads = o.kv_heads;
  if (heads.empty()) {
    for (int h = 0; h < ds.kv_heads; ++h) heads.push_back(h);
  }
  for (int layer_number : o.layers) {
    ASSIGN_OR_RETURN(const LayerData* layer, FindLayer(ds, layer_number));
    ASSIGN_OR_RETURN(ContextPlan plan, PlanContext(ds, *layer, context));
    for (int h : heads) RETURN_IF_ERROR(EvaluateHead(ds, *layer, plan, h, o, &report));
  }
  std::vector<std::string> sources = {kGraphSource};
  if (o.exact_reference) sources.push_back(kExactSource);
  for (int layer : o.layers) {
    for (const std::string& s : sources) AddAllHeadsRows(s, layer, &report);
  }
  for (int layer : o.layers) {
    for (const std::string& s : sources) {
      report.best.push_back({.source = s,
                             .layer = layer,
                             .setting = BestSetting(report, s, layer),
                             .smallest = SmallestSetting(report, s, layer, o.target_reduction)});
    }
  }
  report.seconds = Seconds(t0, Clock::now());
  return report;
}

}  // namespace attic::retrieval::eval
