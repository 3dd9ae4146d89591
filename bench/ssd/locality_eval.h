// The offline evaluation of locality-aware sparse fetch (attention_workers/retrieval/
// locality.h) on real activation dumps: how many value bytes a sparse decode step reads from
// SSD with a per-head resident set, against reading every selected block, and what the
// locality preference costs in recall.
//
//   ASSIGN_OR_RETURN(Dataset ds, LoadDataset(dir, std::vector<int>{4}));
//   ASSIGN_OR_RETURN(LocalityReport r, EvaluateLocality(ds, {}));
//   PrintLocalityTable(stdout, r);
//   bench::BenchReport report("ssd");
//   AddLocalityRows(r, &report);
//
// Protocol, per (layer, KV head), at one context (PlanContext: keys [0, plan.indexed) indexed,
// the decode steps at positions [indexed, context)):
//  - The candidates of a step come from a source: "attic-graph", the graph index with the
//    worker's defaults (BuildKeyIndex(kGraph) over the indexed keys, learning from the prefill
//    queries before them; effort 0), searched CandidateDepth deep; or "exact", the exact
//    top candidates by group score — what locality gives with a perfect index.
//  - The no-budget selection takes the first top_k candidates (what the worker attends to now);
//    the locality selection runs PlanLocalityFetch with a ResidentSet carried across the steps,
//    empty at the first step (so its cold reads are counted).
//  - Both selections are sinks + window + retrieved (BuildSelection). Recall@100 compares the
//    retrieved tokens with the exact group-max top 100 of the indexed keys; mass recall is
//    exp(lse_selected - lse_full) of exact attention over the selection (SparseDecodeAttention
//    against DecodeAttention over [0, p]), mean over the group's heads.
//  - Value bytes per step: without the resident set, every selected block is read
//    (blocks_selected x block bytes); with it, the blocks fetched and prefetched. A block is
//    block_size x head_dim values of 2 bytes (bf16), 16 KiB at 64 x 128.
//  - Jaccard of consecutive selections |S_t ∩ S_t-1| / |S_t ∪ S_t-1|, over tokens and over
//    blocks, for both selections.
// A setting meets the requirement when, on every head and on the heads' mean, neither
// recall@100 nor mass recall is lower than the no-budget selection's by more than
// max_recall_loss. Of those, per (source, layer), the best is the one with the largest bytes
// reduction whose resident set is smaller than the context, and the smallest the one reaching
// target_reduction with the fewest resident blocks.
// Thread safety: EvaluateLocality is stateless; it runs on the calling thread.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "attention_workers/retrieval/locality.h"
#include "attention_workers/retrieval/selection.h"
#include "bench/bench_report.h"
#include "bench/retrieval/dataset.h"
#include "common/status.h"

namespace attic::retrieval::eval {

struct LocalityEvalOptions {
  // Layers of the dataset to evaluate; each must have been loaded. Layer 4 is the sparse one
  // of the reference dump (layer 1 is served densely by the worker).
  std::vector<int> layers = {4};
  // KV heads; empty = all.
  std::vector<int> kv_heads;
  // Tokens of context; 0 = the dump's N.
  int64_t context = 0;
  // The worker's default selection.
  SelectionParams selection = {.sinks = 4, .window = 64, .top_k = 100};
  // Decode steps per head; 0 = every step of the context.
  int max_steps = 0;
  // The settings swept; empty = LocalitySweep(). They share one block_size. The search runs
  // once per step, as deep as the deepest setting's CandidateDepth; a shallower setting uses a
  // prefix of its result.
  std::vector<LocalityParams> settings;
  // Also evaluate with exact candidates (the perfect-index reference).
  bool exact_reference = true;
  // The accuracy requirement: the most recall@100 / mass recall a setting may lose.
  double max_recall_loss = 0.01;
  // The bytes reduction the smallest resident set must reach (LocalityBest::smallest).
  double target_reduction = 5.0;
};

// resident_blocks of the sweep's reference setting: a set that never evicts.
inline constexpr int kUnboundedResident = 1 << 30;

// The default sweep: resident_blocks {32, 48, 64, 96, 128} x fetch_budget {0, 4, 8, 16} x
// score_slack {0, 0.05, 0.1, 0.2}, two settings with prefetch, and the unbounded set without
// slack (every distinct block read once).
std::vector<LocalityParams> LocalitySweep();

// Means over the decode steps of one selection rule.
struct SelectionStats {
  double recall_at_100 = 0.0;
  double mass_recall = 0.0;
  double token_jaccard = 0.0;  // consecutive steps
  double block_jaccard = 0.0;
  double blocks_selected = 0.0;  // per step
  double blocks_resident = 0.0;
  double blocks_fetched = 0.0;
  double blocks_prefetched = 0.0;
  double dropped = 0.0;        // candidates passed over for the budget, per step
  double bytes_without = 0.0;  // value bytes per step, every selected block read
  double bytes_with = 0.0;     // value bytes per step, fetched + prefetched blocks
  double plan_us = 0.0;        // PlanLocalityFetch + ApplyFetchPlan per step, one thread
};

// One (source, layer, KV head or all heads, setting).
struct LocalityRow {
  std::string source;  // "attic-graph" or "exact"
  int layer = 0;
  int kv_head = -1;  // -1: mean over the evaluated heads
  int64_t context = 0;
  int steps = 0;        // per head
  int setting = 0;      // index into LocalityReport::settings
  SelectionStats base;  // the no-budget selection
  SelectionStats loc;   // the locality selection

  double reduction() const { return loc.bytes_with > 0 ? base.bytes_without / loc.bytes_with : 0; }
  double recall_delta() const { return loc.recall_at_100 - base.recall_at_100; }
  double mass_recall_delta() const { return loc.mass_recall - base.mass_recall; }
  bool Within(double max_loss) const {
    return recall_delta() >= -max_loss && mass_recall_delta() >= -max_loss;
  }
};

// Settings of one (source, layer) that meet the requirement; -1 where none does.
struct LocalityBest {
  std::string source;
  int layer = 0;
  // The largest reduction among settings whose resident set is smaller than the context.
  int setting = -1;
  // The fewest resident blocks reaching target_reduction (then the largest reduction): the
  // least DRAM for the target.
  int smallest = -1;
};

struct LocalityReport {
  std::vector<LocalityParams> settings;
  SelectionParams selection;
  double max_recall_loss = 0.0;
  double target_reduction = 0.0;
  int64_t block_bytes = 0;  // value bytes per block
  int64_t context_blocks = 0;
  std::vector<LocalityRow> rows;  // per head, then all heads, per (source, layer, setting)
  std::vector<LocalityBest> best;
  double seconds = 0.0;   // the whole evaluation
  double build_ms = 0.0;  // graph index builds, summed

  // The row of (source, layer, kv_head, setting), or nullptr.
  const LocalityRow* Find(const std::string& source, int layer, int kv_head, int setting) const;
};

// InvalidArgument for bad options (settings, or settings of different block sizes, selection,
// a layer not in ds, a KV head out of range); FailedPrecondition when the context cannot be
// planned (PlanContext).
StatusOr<LocalityReport> EvaluateLocality(const Dataset& ds, const LocalityEvalOptions& options);

// The no-budget selections' figures, the sweep (all-heads rows), the best setting per resident
// set size, and the chosen settings (best, smallest) per head.
void PrintLocalityTable(std::FILE* out, const LocalityReport& report);

// Rows of each (source, layer)'s best setting (or, when none met the requirement, the one
// losing the least recall; choice=best) and, when it differs, its smallest (choice=smallest),
// per head and for all heads (kv_head=all): locality_bytes_reduction (limit target_reduction,
// "target"), locality_bytes_per_step_with / _without, locality_recall_delta,
// locality_mass_recall_delta; and, for the best, selection_jaccard of the no-budget selection
// (granularity block and token). Params: source, layer, kv_head, context, resident_blocks,
// fetch_budget, slack, prefetch, choice, meets_requirement.
void AddLocalityRows(const LocalityReport& report, bench::BenchReport* out);

}  // namespace attic::retrieval::eval
