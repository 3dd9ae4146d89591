// Locality-aware sparse fetch: the resident set's LRU order, the fetch plan's rules (slack
// preference, budget, fixed part, prefetch), and the offline evaluation on a synthetic dump
// (and on the real activations when shared/data is present).
#include "attention_workers/retrieval/locality.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "bench/bench_report.h"
#include "bench/retrieval/synthetic_dump.h"
#include "bench/ssd/locality_eval.h"
#include "tests/testing/shared_data.h"

namespace attic::retrieval {
namespace {

using V = std::vector<int32_t>;
using Blocks = std::vector<int>;

constexpr int kB = 64;

ResidencyFn ResidentBlocks(std::set<int> blocks) {
  return [blocks = std::move(blocks)](int b) { return blocks.count(b) != 0; };
}

ResidencyFn NothingResident() {
  return [](int) { return false; };
}

// One candidate per block b (position b * 64 + 1), scores 100 - rank.
struct Cands {
  V positions;
  std::vector<float> scores;
};
Cands OnePerBlock(const Blocks& blocks) {
  Cands c;
  for (size_t i = 0; i < blocks.size(); ++i) {
    c.positions.push_back(blocks[i] * kB + 1);
    c.scores.push_back(100.0f - static_cast<float>(i));
  }
  return c;
}

TEST(ResidentSet, EvictsLeastRecentlyUsed) {
  ResidentSet s(3);
  EXPECT_TRUE(s.Insert(1).empty());
  EXPECT_TRUE(s.Insert(2).empty());
  EXPECT_TRUE(s.Insert(3).empty());
  EXPECT_EQ(s.size(), 3);
  EXPECT_TRUE(s.Touch(1));  // order now 1, 3, 2
  EXPECT_FALSE(s.Touch(9));
  EXPECT_EQ(s.Insert(4), Blocks{2});
  EXPECT_FALSE(s.Contains(2));
  EXPECT_TRUE(s.Contains(1));
  EXPECT_TRUE(s.Insert(3).empty());  // held: touched, nothing evicted
  EXPECT_EQ(s.Blocks(), (Blocks{3, 4, 1}));
  EXPECT_EQ(s.Insert(5), Blocks{1});
  EXPECT_EQ(s.size(), 3);
}

TEST(ResidentSet, ZeroCapacityHoldsNothing) {
  ResidentSet s(0);
  EXPECT_EQ(s.Insert(7), Blocks{7});
  EXPECT_EQ(s.size(), 0);
  EXPECT_FALSE(s.Contains(7));
}

TEST(LocalityParams, ValidationNamesTheField) {
  EXPECT_TRUE(ValidateLocalityParams({}).ok());
  EXPECT_FALSE(ValidateLocalityParams({.block_size = 0}).ok());
  EXPECT_FALSE(ValidateLocalityParams({.fetch_budget = -1}).ok());
  const Status s = ValidateLocalityParams({.score_slack = -0.5f});
  EXPECT_NE(s.message().find("score_slack"), std::string::npos) << s.ToString();
  EXPECT_FALSE(ValidateLocalityParams({.score_slack = std::nanf("")}).ok());
  EXPECT_EQ(CandidateDepth({.candidates = 0}, 100), 200);
  EXPECT_EQ(CandidateDepth({.candidates = 50}, 100), 100);
  EXPECT_EQ(CandidateDepth({.candidates = 300}, 100), 300);
}

TEST(PlanLocalityFetch, EverythingResidentFetchesNothing) {
  const Cands c = OnePerBlock({5, 9, 2, 7, 11});
  const V fixed = {0, 1, 2, 3, 1000};
  const FetchPlan plan = PlanLocalityFetch(
      {.length = 1024, .fixed = fixed, .candidates = c.positions, .scores = c.scores, .top_k = 3},
      {.score_slack = 0.2f, .prefetch_neighbours = true}, [](int) { return true; });
  EXPECT_EQ(plan.retrieved, (V{5 * kB + 1, 9 * kB + 1, 2 * kB + 1}));
  EXPECT_TRUE(plan.blocks_fetched.empty());
  EXPECT_TRUE(plan.blocks_prefetched.empty());
  EXPECT_EQ(plan.blocks_selected, (Blocks{0, 2, 5, 9, 15}));
  EXPECT_EQ(plan.blocks_resident, plan.blocks_selected);
  EXPECT_EQ(plan.dropped, 0);
}

TEST(PlanLocalityFetch, NoSlackNoBudgetTakesTheFirstTopK) {
  const Cands c = OnePerBlock({5, 9, 2, 7, 11, 3});
  const FetchPlan plan =
      PlanLocalityFetch({.length = 1024, .candidates = c.positions, .scores = c.scores, .top_k = 4},
                        {.score_slack = 0.0f}, ResidentBlocks({7, 11, 3}));
  EXPECT_EQ(plan.retrieved, (V(c.positions.begin(), c.positions.begin() + 4)));
  EXPECT_EQ(plan.blocks_fetched, (Blocks{2, 5, 9}));
  EXPECT_EQ(plan.blocks_resident, (Blocks{7}));
}

TEST(PlanLocalityFetch, BudgetIsRespected) {
  const Cands c = OnePerBlock({1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  const V fixed = {0};  // block 0: one read of the budget
  const FetchPlan plan = PlanLocalityFetch(
      {.length = 1024, .fixed = fixed, .candidates = c.positions, .scores = c.scores, .top_k = 5},
      {.fetch_budget = 3, .score_slack = 0.0f, .prefetch_neighbours = true}, NothingResident());
  EXPECT_EQ(plan.blocks_fetched.size() + plan.blocks_prefetched.size(), 3u);
  EXPECT_EQ(plan.blocks_fetched, (Blocks{0, 1, 2}));
  EXPECT_EQ(plan.retrieved, (V{1 * kB + 1, 2 * kB + 1}));
  EXPECT_EQ(plan.dropped, 8);  // every other candidate's block was past the budget
}

TEST(PlanLocalityFetch, TightBudgetReplacesUnfetchedCandidatesWithResidentOnes) {
  // Ranks 0..5 in blocks 10..15 (not resident), then ranks 6..9 in resident blocks 1..4.
  const Cands c = OnePerBlock({10, 11, 12, 13, 14, 15, 1, 2, 3, 4});
  const FetchPlan plan =
      PlanLocalityFetch({.length = 2048, .candidates = c.positions, .scores = c.scores, .top_k = 5},
                        {.fetch_budget = 2, .score_slack = 0.0f}, ResidentBlocks({1, 2, 3, 4}));
  EXPECT_EQ(plan.blocks_fetched, (Blocks{10, 11}));
  EXPECT_EQ(plan.retrieved, (V{10 * kB + 1, 11 * kB + 1, 1 * kB + 1, 2 * kB + 1, 3 * kB + 1}));
  EXPECT_EQ(plan.dropped, 4);  // blocks 12..15
  EXPECT_EQ(plan.blocks_resident, (Blocks{1, 2, 3}));
}

TEST(PlanLocalityFetch, ResidentCandidateWithinSlackDisplacesABetterMissingOne) {
  // top_k 2: s_1 = 10, s_k = 5, gap 5; slack 0.1 -> bonus 0.5.
  const V pos = {1 * kB, 2 * kB, 3 * kB};
  const LocalityParams params{.score_slack = 0.1f};
  {
    const std::vector<float> scores = {10.0f, 5.0f, 4.8f};  // 4.8 + 0.5 > 5
    const FetchPlan plan =
        PlanLocalityFetch({.length = 1024, .candidates = pos, .scores = scores, .top_k = 2}, params,
                          ResidentBlocks({3}));
    EXPECT_EQ(plan.retrieved, (V{1 * kB, 3 * kB}));
    EXPECT_EQ(plan.blocks_fetched, (Blocks{1}));
  }
  {
    const std::vector<float> scores = {10.0f, 5.0f, 4.4f};  // 4.4 + 0.5 < 5: outside the slack
    const FetchPlan plan =
        PlanLocalityFetch({.length = 1024, .candidates = pos, .scores = scores, .top_k = 2}, params,
                          ResidentBlocks({3}));
    EXPECT_EQ(plan.retrieved, (V{1 * kB, 2 * kB}));
    EXPECT_EQ(plan.blocks_fetched, (Blocks{1, 2}));
  }
}

TEST(PlanLocalityFetch, FixedBlocksCountAsAvailableForTheSlack) {
  // Candidate 2 lies in the window's block 15, which the step reads anyway.
  const V pos = {1 * kB, 2 * kB, 15 * kB + 3};
  const std::vector<float> scores = {10.0f, 5.0f, 4.9f};
  const V fixed = {15 * kB + 60, 15 * kB + 61};
  const FetchPlan plan = PlanLocalityFetch(
      {.length = 16 * kB, .fixed = fixed, .candidates = pos, .scores = scores, .top_k = 2},
      {.score_slack = 0.1f}, NothingResident());
  EXPECT_EQ(plan.retrieved, (V{1 * kB, 15 * kB + 3}));
  EXPECT_EQ(plan.blocks_fetched, (Blocks{1, 15}));
}

TEST(PlanLocalityFetch, FixedPositionsAreAlwaysReadEvenPastTheBudget) {
  const V fixed = {0, 1, 5 * kB, 9 * kB + 4};
  const Cands c = OnePerBlock({20, 21});
  const FetchPlan plan = PlanLocalityFetch({.length = 32 * kB,
                                            .fixed = fixed,
                                            .candidates = c.positions,
                                            .scores = c.scores,
                                            .top_k = 2},
                                           {.fetch_budget = 1}, NothingResident());
  EXPECT_EQ(plan.blocks_fetched, (Blocks{0, 5, 9}));
  EXPECT_EQ(plan.blocks_selected, (Blocks{0, 5, 9}));
  EXPECT_TRUE(plan.retrieved.empty());
  EXPECT_EQ(plan.dropped, 2);
}

TEST(PlanLocalityFetch, NoDuplicatesAndOutOfRangeIgnored) {
  const V pos = {70, 70, 5, 65, 5000, -3, 71, 130};
  const std::vector<float> scores = {9, 9, 8, 7, 6, 5, 4, 3};
  const V fixed = {0, 1, 2, 3, 70};
  const FetchPlan plan = PlanLocalityFetch(
      {.length = 192, .fixed = fixed, .candidates = pos, .scores = scores, .top_k = 10},
      {.score_slack = 0.5f, .prefetch_neighbours = true}, ResidentBlocks({1}));
  const std::set<int32_t> distinct(plan.retrieved.begin(), plan.retrieved.end());
  EXPECT_EQ(distinct.size(), plan.retrieved.size());
  EXPECT_EQ(distinct, (std::set<int32_t>{5, 65, 70, 71, 130}));
  EXPECT_EQ(plan.blocks_selected, (Blocks{0, 1, 2}));
  EXPECT_EQ(plan.blocks_resident, (Blocks{1}));
  EXPECT_EQ(plan.blocks_fetched, (Blocks{0, 2}));
  EXPECT_TRUE(plan.blocks_prefetched.empty());  // block 3 would lie past length 192
}

TEST(PlanLocalityFetch, PrefetchesNeighboursOfCandidateBlocksWithinBudget) {
  const Cands c = OnePerBlock({5, 9});
  const LocalityStepInput in{
      .length = 64 * kB, .candidates = c.positions, .scores = c.scores, .top_k = 2};
  const FetchPlan all = PlanLocalityFetch(in, {.prefetch_neighbours = true}, ResidentBlocks({4}));
  EXPECT_EQ(all.blocks_fetched, (Blocks{5, 9}));
  EXPECT_EQ(all.blocks_prefetched, (Blocks{6, 8, 10}));
  const FetchPlan budget =
      PlanLocalityFetch(in, {.fetch_budget = 3, .prefetch_neighbours = true}, ResidentBlocks({4}));
  EXPECT_EQ(budget.blocks_prefetched, (Blocks{6}));
}

TEST(ApplyFetchPlan, StepBlocksEndMostRecentAndOldOnesGo) {
  ResidentSet set(4);
  for (int b : {1, 2, 3, 4}) set.Insert(b);  // recency: 4 3 2 1
  FetchPlan plan;
  plan.blocks_resident = {1};
  plan.blocks_fetched = {7};
  plan.blocks_prefetched = {8};
  const Blocks evicted = ApplyFetchPlan(plan, &set);
  EXPECT_EQ(evicted, (Blocks{2, 3}));
  EXPECT_EQ(set.Blocks(), (Blocks{1, 7, 8, 4}));
}

TEST(ApplyFetchPlan, ConsecutiveStepsReuseTheirBlocks) {
  ResidentSet set(8);
  const Cands c = OnePerBlock({3, 4, 5});
  const LocalityStepInput in{
      .length = 16 * kB, .candidates = c.positions, .scores = c.scores, .top_k = 3};
  const FetchPlan first = PlanLocalityFetch(in, {}, set);
  EXPECT_EQ(first.blocks_fetched, (Blocks{3, 4, 5}));
  ApplyFetchPlan(first, &set);
  const FetchPlan second = PlanLocalityFetch(in, {}, set);
  EXPECT_TRUE(second.blocks_fetched.empty());
  EXPECT_EQ(second.blocks_resident, (Blocks{3, 4, 5}));
}

// The offline evaluation.

namespace fs = std::filesystem;
using eval::LocalityEvalOptions;
using eval::LocalityReport;
using eval::LocalityRow;

class TempDir {
 public:
  TempDir()
      : path_(fs::temp_directory_path() /
              ("attic_locality_" + std::to_string(::getpid()) + "_" + std::to_string(next_++))) {
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }

 private:
  static inline int next_ = 0;
  fs::path path_;
};

StatusOr<eval::Dataset> SyntheticDataset(const TempDir& dir) {
  RETURN_IF_ERROR(eval::WriteSyntheticDump(dir.str(), {.tokens = 2048,
                                                       .kv_heads = 2,
                                                       .group_size = 2,
                                                       .head_dim = 64,
                                                       .decode_rows = 48,
                                                       .layers = {4},
                                                       .values = true}));
  const std::vector<int> layers = {4};
  return eval::LoadDataset(dir.str(), layers);
}

bool Finite(const eval::SelectionStats& s) {
  for (double v : {s.recall_at_100, s.mass_recall, s.token_jaccard, s.block_jaccard,
                   s.blocks_selected, s.blocks_fetched, s.bytes_without, s.bytes_with}) {
    if (!std::isfinite(v)) return false;
  }
  return true;
}

TEST(EvaluateLocality, SyntheticDumpGivesFiniteFiguresAndBenchRows) {
  TempDir dir;
  auto ds = SyntheticDataset(dir);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  const LocalityEvalOptions options{
      .settings = {{.resident_blocks = 16, .fetch_budget = 0, .score_slack = 0.1f},
                   {.resident_blocks = 8,
                    .fetch_budget = 2,
                    .score_slack = 0.2f,
                    .prefetch_neighbours = true}}};
  auto r = eval::EvaluateLocality(*ds, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // 2 sources x (2 heads + all) x 2 settings.
  ASSERT_EQ(r->rows.size(), 12u);
  for (const LocalityRow& row : r->rows) {
    EXPECT_EQ(row.layer, 4);
    EXPECT_EQ(row.steps, 48);
    EXPECT_TRUE(Finite(row.base)) << row.source;
    EXPECT_TRUE(Finite(row.loc)) << row.source;
    EXPECT_GT(row.base.blocks_selected, 0.0);
    EXPECT_GT(row.loc.bytes_with, 0.0);
    EXPECT_LE(row.loc.bytes_with, row.loc.bytes_without + 1e-9);
    EXPECT_GE(row.loc.recall_at_100, 0.0);
    EXPECT_LE(row.loc.mass_recall, 1.0 + 1e-4);
  }
  const LocalityRow* budget = r->Find("exact", 4, -1, 1);
  ASSERT_NE(budget, nullptr);
  EXPECT_LE(budget->loc.blocks_fetched + budget->loc.blocks_prefetched, 2.0 + 3.0)
      << "the budget bounds reads beyond the fixed part's";
  ASSERT_EQ(r->best.size(), 2u);
  EXPECT_EQ(r->block_bytes, 64 * 64 * 2);

  bench::BenchReport report("ssd");
  eval::AddLocalityRows(*r, &report);
  std::set<std::string> names;
  for (const bench::BenchRow& row : report.rows()) {
    names.insert(row.name);
    if (row.name == "locality_bytes_reduction") {
      ASSERT_TRUE(row.limit.has_value());
      EXPECT_EQ(*row.limit, 5.0);
      EXPECT_EQ(row.limit_source, "target");
    }
  }
  EXPECT_EQ(names,
            (std::set<std::string>{"locality_bytes_reduction", "locality_bytes_per_step_with",
                                   "locality_bytes_per_step_without", "selection_jaccard",
                                   "locality_recall_delta", "locality_mass_recall_delta"}));
  eval::PrintLocalityTable(stdout, *r);
}

TEST(EvaluateLocality, UnboundedResidentSetWithoutBudgetOrSlackKeepsRecallExactly) {
  TempDir dir;
  auto ds = SyntheticDataset(dir);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  const LocalityEvalOptions options{
      .settings = {
          {.resident_blocks = eval::kUnboundedResident, .fetch_budget = 0, .score_slack = 0.0f}}};
  auto r = eval::EvaluateLocality(*ds, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (const LocalityRow& row : r->rows) {
    EXPECT_EQ(row.loc.recall_at_100, row.base.recall_at_100) << row.source << " " << row.kv_head;
    EXPECT_EQ(row.loc.mass_recall, row.base.mass_recall);
    EXPECT_EQ(row.loc.block_jaccard, row.base.block_jaccard);
    EXPECT_EQ(row.loc.dropped, 0.0);
    // Every block is read once, when first selected.
    EXPECT_LT(row.loc.bytes_with, row.base.bytes_without);
  }
}

TEST(EvaluateLocality, RefusesBadOptions) {
  TempDir dir;
  auto ds = SyntheticDataset(dir);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_FALSE(eval::EvaluateLocality(*ds, {.layers = {7}}).ok());
  EXPECT_FALSE(eval::EvaluateLocality(*ds, {.kv_heads = {2}}).ok());
  EXPECT_FALSE(eval::EvaluateLocality(*ds, {.settings = {{.score_slack = -1.0f}}}).ok());
  EXPECT_FALSE(
      eval::EvaluateLocality(*ds, {.settings = {{.block_size = 64}, {.block_size = 32}}}).ok());
}

// The measurement of docs/retrieval-locality.md: layer 4 of the reference dump, both heads,
// 16K context, 256 decode steps, the default sweep. Prints the table.
TEST(EvaluateLocalityReal, Layer4MeetsTheTarget) {
  const auto dir = attic::testing::QkvDir();
  if (!dir) GTEST_SKIP() << attic::testing::kNoSharedDataMessage;
  const std::vector<int> layers = {4};
  auto ds = eval::LoadDataset(*dir, layers);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  auto r = eval::EvaluateLocality(*ds, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  eval::PrintLocalityTable(stdout, *r);
  bench::BenchReport report("ssd");
  eval::AddLocalityRows(*r, &report);
  report.PrintTable(stdout);
  for (const eval::LocalityBest& best : r->best) {
    for (int setting : {best.setting, best.smallest}) {
      ASSERT_GE(setting, 0) << best.source << ": no setting met the requirement";
      for (int head = -1; head < ds->kv_heads; ++head) {
        const LocalityRow* row = r->Find(best.source, 4, head, setting);
        ASSERT_NE(row, nullptr);
        EXPECT_GE(row->reduction(), 5.0) << best.source << " head " << head;
        EXPECT_GE(row->recall_delta(), -0.01) << best.source << " head " << head;
        EXPECT_GE(row->mass_recall_delta(), -0.01) << best.source << " head " << head;
      }
    }
  }
}

}  // namespace
}  // namespace attic::retrieval
