// The build-time recall check (calibration.h), the position limit it searches with, and the
// serving policy built on it (serving_index.h): graph when it meets the target, else the 4-bit
// scan at the depth that meets it, else dense.
#include "attention_workers/retrieval/serving_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <numeric>
#include <vector>

#include "attention_workers/retrieval/calibration.h"
#include "attention_workers/retrieval/cluster_index.h"
#include "attention_workers/retrieval/exact_index.h"
#include "attention_workers/retrieval/graph_index.h"
#include "attention_workers/retrieval/quantized_scan.h"
#include "attention_workers/retrieval/recall_guard.h"
#include "attention_workers/thread_pool.h"
#include "tests/retrieval/key_fixture.h"

namespace attic::retrieval {
namespace {

constexpr int kD = 64;
constexpr int kGroup = 2;

// Queries out of the keys' distribution: a common offset along a few dimensions plus noise.
std::vector<float> OodQueries(int count, uint64_t seed) {
  std::vector<float> q = Gaussian(static_cast<int64_t>(count) * kGroup, kD, 0.0f, seed);
  for (size_t i = 0; i < q.size(); ++i) {
    if (i % kD < 8) q[i] += 3.0f;
  }
  return q;
}

QuerySample SampleOf(const std::vector<float>& q, std::span<const int32_t> positions = {}) {
  return {.q = q.data(),
          .num_queries = static_cast<int>(q.size()) / (kGroup * kD),
          .group_size = kGroup,
          .head_dim = kD,
          .positions = positions};
}

// The exact top k over keys [0, end).
std::vector<int32_t> ExactTop(const KeyRows& keys, const QueryGroup& q, int64_t end, int k) {
  const GroupScorer scorer(q, keys.dtype);
  std::vector<float> all(static_cast<size_t>(end));
  scorer.ScoreRange(keys, 0, end, all.data());
  return TopKPositions(all, k);
}

// An index over n keys whose answer is `search` (the positions, best first): a recall the
// test knows. Counts its searches.
class FakeIndex final : public KeyIndex {
 public:
  using SearchFn =
      std::function<std::vector<int32_t>(const KeyRows&, const GroupScorer&, const SearchParams&)>;
  FakeIndex(int64_t n, SearchFn search) : n_(n), search_(std::move(search)) {}
  IndexKind kind() const override { return IndexKind::kExact; }
  int64_t size() const override { return n_; }
  int64_t memory_bytes() const override { return 0; }
  Status Add(const KeyRows&) override { return OkStatus(); }
  Status Search(const KeyRows& keys, const GroupScorer& scorer, const SearchParams& params,
                SearchResult* out) const override {
    ++searches;
    out->positions = search_(keys, scorer, params);
    out->scores.clear();
    return OkStatus();
  }
  mutable std::atomic<int> searches{0};

 private:
  int64_t n_;
  SearchFn search_;
};

// The exact top k of the keys before end (the position limit, or every key); near >= 0: of
// the last `near` of them only.
std::vector<int32_t> TopOf(const KeyRows& keys, const GroupScorer& scorer,
                           const SearchParams& params, int64_t near = -1) {
  const int64_t end = params.position_limit > 0 ? params.position_limit : keys.count;
  const int64_t begin = near < 0 ? 0 : std::max<int64_t>(0, end - near);
  std::vector<float> all(static_cast<size_t>(end), -1e30f);
  scorer.ScoreRange(keys, begin, end, all.data() + begin);
  return TopKPositions(all, params.top_k);
}

TEST(CalibrateEffort, TakesTheCheapestEffortThatReachesTheTarget) {
  const TestKeys keys = MakeTestKeys(Gaussian(2000, kD, 0.0f, 1), kD, DType::kBFloat16);
  const std::vector<float> q = OodQueries(20, 2);
  // The exact top k at effort >= 300, nothing below.
  const FakeIndex index(keys.rows.count, [](const KeyRows& k, const GroupScorer& sc,
                                            const SearchParams& p) {
    return p.effort >= 300 ? TopOf(k, sc, p) : std::vector<int32_t>{};
  });
  const int efforts[] = {100, 200, 300, 400};
  auto c = CalibrateEffort(index, keys.rows, SampleOf(q), {.efforts = efforts, .target = 0.9f});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->met);
  EXPECT_EQ(c->effort, 300);
  EXPECT_DOUBLE_EQ(c->recall, 1.0);
  EXPECT_EQ(c->queries, 20);
  EXPECT_FLOAT_EQ(static_cast<float>(c->target), 0.9f);
  EXPECT_EQ(index.searches.load(), 3 * 20);  // stops at the first effort that meets the target

  // None reaches it: the last effort, not met, with the recall measured there.
  const int cheap[] = {100, 200};
  ThreadPool pool({.num_threads = 2});
  auto miss = CalibrateEffort(index, keys.rows, SampleOf(q),
                              {.efforts = cheap, .target = 0.5f, .pool = &pool});
  ASSERT_TRUE(miss.ok());
  EXPECT_FALSE(miss->met);
  EXPECT_EQ(miss->effort, 200);
  EXPECT_DOUBLE_EQ(miss->recall, 0.0);
}

TEST(CalibrateEffort, CausalWindowChecksOnlyTheKeysBeforeEachQuery) {
  const TestKeys keys = MakeTestKeys(Gaussian(2000, kD, 0.0f, 3), kD, DType::kBFloat16);
  const std::vector<float> q = OodQueries(10, 4);
  std::vector<int32_t> positions(10);
  for (int i = 0; i < 10; ++i) positions[static_cast<size_t>(i)] = 500 + 150 * i;
  // An index that ignores the position limit answers the top k over every key: against each
  // query's causal truth (keys before p + 1 - window) it scores below 1; one that honours the
  // limit scores 1.
  const int efforts[] = {1};
  const FakeIndex unlimited(keys.rows.count, [](const KeyRows& k, const GroupScorer& sc,
                                                const SearchParams& p) {
    return TopOf(k, sc, {.top_k = p.top_k});  // the limit ignored
  });
  auto optimistic = CalibrateEffort(unlimited, keys.rows, SampleOf(q, positions),
                                    {.efforts = efforts, .target = 0.99f, .top_k = 50,
                                     .causal_window = 64});
  ASSERT_TRUE(optimistic.ok());
  EXPECT_LT(optimistic->recall, 0.9);
  EXPECT_FALSE(optimistic->met);
  // Without the window (or without positions) the same index is checked over every key.
  auto all_keys = CalibrateEffort(unlimited, keys.rows, SampleOf(q, positions),
                                  {.efforts = efforts, .target = 0.99f, .top_k = 50});
  ASSERT_TRUE(all_keys.ok());
  EXPECT_DOUBLE_EQ(all_keys->recall, 1.0);

  auto exact = BuildExactIndex(keys.rows);
  ASSERT_TRUE(exact.ok());
  auto honest = CalibrateEffort(**exact, keys.rows, SampleOf(q, positions),
                                {.efforts = efforts, .target = 0.99f, .top_k = 50,
                                 .causal_window = 64});
  ASSERT_TRUE(honest.ok());
  EXPECT_DOUBLE_EQ(honest->recall, 1.0);
  EXPECT_TRUE(honest->met);
}

// An index that finds only the keys near each query: its overall recall can pass the target
// while the far keys, which a decode step quoting earlier text needs, are never found.
TEST(CalibrateEffort, FarKeysMustReachTheTargetToo) {
  constexpr int kNear = 1700;
  const TestKeys keys = MakeTestKeys(Gaussian(2000, kD, 0.0f, 30), kD, DType::kBFloat16);
  const std::vector<float> q = OodQueries(16, 31);
  const std::vector<int32_t> positions(16, 1900);  // limit 1837: keys [0, 137) are far
  const FakeIndex index(keys.rows.count, [](const KeyRows& k, const GroupScorer& sc,
                                            const SearchParams& p) {
    return TopOf(k, sc, p, kNear);  // only the kNear keys before the limit
  });
  const int efforts[] = {1};
  auto c = CalibrateEffort(index, keys.rows, SampleOf(q, positions),
                           {.efforts = efforts, .target = 0.85f, .top_k = 50,
                            .causal_window = 64, .far_distance = kNear});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_GT(c->far_share, 0.02);
  EXPECT_LT(c->far_share, 0.15);
  EXPECT_GE(c->recall, 0.85);
  EXPECT_DOUBLE_EQ(c->recall_far, 0.0);
  EXPECT_FALSE(c->met);
  // Without the far check the same index passes.
  auto unchecked = CalibrateEffort(index, keys.rows, SampleOf(q, positions),
                                   {.efforts = efforts, .target = 0.85f, .top_k = 50,
                                    .causal_window = 64, .far_distance = 0});
  ASSERT_TRUE(unchecked.ok());
  EXPECT_TRUE(unchecked->met);
  EXPECT_EQ(unchecked->recall_far, -1.0);
}

TEST(SplitHeldOut, SpreadsTheHeldOutQueriesOverTheSecondHalf) {
  std::vector<float> q(static_cast<size_t>(100) * kGroup * kD);
  std::vector<int32_t> positions(100);
  for (int i = 0; i < 100; ++i) {
    positions[static_cast<size_t>(i)] = 16 * i;
    std::fill_n(q.begin() + static_cast<ptrdiff_t>(i) * kGroup * kD, kGroup * kD,
                static_cast<float>(i));
  }
  const HeldOutSplit s = SplitHeldOut(SampleOf(q, positions), 10);
  const QuerySample train = s.train(), held = s.held_out();
  ASSERT_EQ(held.num_queries, 10);
  ASSERT_EQ(train.num_queries, 90);
  // Every 5th of queries [50, 100), from the last: 99, 94, ..., 54, in sample order.
  for (int i = 0; i < 10; ++i) {
    const int want = 54 + 5 * i;
    EXPECT_EQ(held.positions[static_cast<size_t>(i)], 16 * want);
    EXPECT_EQ(held.query(i).q[0], static_cast<float>(want));
    EXPECT_EQ(held.query(i).q[kGroup * kD - 1], static_cast<float>(want));
  }
  // The rest, in order, none twice.
  std::vector<int32_t> all(train.positions.begin(), train.positions.end());
  all.insert(all.end(), held.positions.begin(), held.positions.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, positions);
  for (int i = 0; i < train.num_queries; ++i) {
    EXPECT_EQ(train.query(i).q[0], static_cast<float>(train.positions[static_cast<size_t>(i)] / 16));
  }
  // More than the second half holds: all of it. None: nothing held.
  EXPECT_EQ(SplitHeldOut(SampleOf(q, positions), 80).held_out().num_queries, 50);
  EXPECT_EQ(SplitHeldOut(SampleOf(q, positions), 0).held_out().num_queries, 0);
  EXPECT_EQ(SplitHeldOut(SampleOf(q, positions), 0).train().num_queries, 100);
}

TEST(CalibrateEffort, RejectsInvalidArguments) {
  const TestKeys keys = MakeTestKeys(Gaussian(500, kD, 0.0f, 5), kD, DType::kBFloat16);
  const std::vector<float> q = OodQueries(4, 6);
  auto exact = BuildExactIndex(keys.rows);
  ASSERT_TRUE(exact.ok());
  const int efforts[] = {1};
  EXPECT_EQ(CalibrateEffort(**exact, keys.rows, SampleOf(q), {}).status().code(),
            StatusCode::kInvalidArgument);  // no efforts
  EXPECT_EQ(CalibrateEffort(**exact, keys.rows, SampleOf(q), {.efforts = efforts, .top_k = 0})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CalibrateEffort(**exact, keys.rows, QuerySample{}, {.efforts = efforts})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  QuerySample wrong = SampleOf(q);
  wrong.head_dim = kD / 2;
  EXPECT_EQ(CalibrateEffort(**exact, keys.rows, wrong, {.efforts = efforts}).status().code(),
            StatusCode::kInvalidArgument);
}

// Every kind that supports SearchParams::position_limit answers only positions below it, and
// the best of them; the cluster index refuses it; a negative limit is refused everywhere.
TEST(PositionLimit, SearchesOnlyThePrefix) {
  const TestKeys keys = MakeTestKeys(Gaussian(3000, kD, 0.0f, 7), kD, DType::kBFloat16);
  const std::vector<float> train = OodQueries(300, 8);
  const std::vector<float> test = OodQueries(10, 9);
  constexpr int64_t kLimit = 1200;
  constexpr int kTop = 20;
  std::vector<std::unique_ptr<KeyIndex>> indexes;
  indexes.push_back(*BuildExactIndex(keys.rows));
  indexes.push_back(*BuildQuantizedScan(keys.rows, {.bits = 4, .rerank = 400}));
  indexes.push_back(*BuildGraphIndex(keys.rows, SampleOf(train)));
  for (const auto& index : indexes) {
    double hits = 0;
    for (int i = 0; i < 10; ++i) {
      const QueryGroup qg = SampleOf(test).query(i);
      const GroupScorer scorer(qg, keys.rows.dtype);
      SearchResult r;
      ASSERT_TRUE(index->Search(keys.rows, scorer,
                                {.top_k = kTop, .effort = 400, .position_limit = kLimit}, &r)
                      .ok());
      ASSERT_EQ(r.positions.size(), static_cast<size_t>(kTop)) << IndexKindName(index->kind());
      for (int32_t p : r.positions) EXPECT_LT(p, kLimit) << IndexKindName(index->kind());
      hits += Recall(r.positions, ExactTop(keys.rows, qg, kLimit, kTop));
    }
    EXPECT_GE(hits / 10, 0.9) << IndexKindName(index->kind());
    SearchResult r;
    const GroupScorer scorer(SampleOf(test).query(0), keys.rows.dtype);
    EXPECT_EQ(index->Search(keys.rows, scorer, {.top_k = kTop, .position_limit = -1}, &r).code(),
              StatusCode::kInvalidArgument)
        << IndexKindName(index->kind());
  }
  auto cluster = BuildClusterIndex(keys.rows, SampleOf(train));
  ASSERT_TRUE(cluster.ok());
  SearchResult r;
  const GroupScorer scorer(SampleOf(test).query(0), keys.rows.dtype);
  EXPECT_EQ((*cluster)->Search(keys.rows, scorer, {.top_k = kTop, .position_limit = kLimit}, &r)
                .code(),
            StatusCode::kInvalidArgument);
}

TEST(GraphCalibration, HeldOutQueriesSetTheDefaultBeam) {
  const TestKeys keys = MakeTestKeys(Gaussian(3000, kD, 0.0f, 10), kD, DType::kBFloat16);
  const std::vector<float> train = OodQueries(300, 11);
  auto index = BuildGraphIndex(keys.rows, SampleOf(train));
  ASSERT_TRUE(index.ok());
  const std::optional<Calibration> c = (*index)->calibration();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->queries, GraphOptions{}.calibration_queries);
  EXPECT_FLOAT_EQ(static_cast<float>(c->target), GraphOptions{}.calibration_target);
  EXPECT_EQ(c->met, c->recall >= c->target);
  // Effort 0 searches at the calibrated beam: the same result as asking for it.
  const std::vector<float> test = OodQueries(5, 12);
  for (int i = 0; i < 5; ++i) {
    const GroupScorer scorer(SampleOf(test).query(i), keys.rows.dtype);
    SearchResult a, b;
    ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 100}, &a).ok());
    ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 100, .effort = c->effort}, &b).ok());
    EXPECT_EQ(a.positions, b.positions);
  }
  // Too few sample queries to hold any out (fewer than 4 x 64): no calibration.
  const std::vector<float> few = OodQueries(200, 13);
  auto small = BuildGraphIndex(keys.rows, SampleOf(few));
  ASSERT_TRUE(small.ok());
  EXPECT_FALSE((*small)->calibration().has_value());
  // Out-of-range calibration options are refused.
  GraphOptions bad;
  bad.calibration_target = 1.5f;
  EXPECT_EQ(BuildGraphIndex(keys.rows, SampleOf(train), bad).status().code(),
            StatusCode::kInvalidArgument);
}

class ServingIndexTest : public ::testing::Test {
 protected:
  ServingIndexTest()
      : keys_(MakeTestKeys(Gaussian(3000, kD, 0.0f, 20), kD, DType::kBFloat16)),
        train_(OodQueries(300, 21)) {}
  TestKeys keys_;
  std::vector<float> train_;
};

TEST_F(ServingIndexTest, GraphServesWhenItMeetsTheTarget) {
  ServingOptions options;
  options.graph.calibration_target = 0.5f;
  auto s = BuildServingIndex(IndexKind::kGraph, keys_.rows, SampleOf(train_), options);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_NE(s->index, nullptr);
  EXPECT_FALSE(s->dense);
  EXPECT_FALSE(s->replaced);
  EXPECT_EQ(s->index->kind(), IndexKind::kGraph);
  ASSERT_TRUE(s->calibration.has_value());
  EXPECT_TRUE(s->calibration->met);
  EXPECT_FALSE(s->fallback_calibration.has_value());
  EXPECT_NE(s->ToString().find("graph, beam"), std::string::npos) << s->ToString();
}

// A graph whose beams are all too narrow for the target (every beam is raised to top_k = 100,
// far below what recall 1 needs on out-of-distribution queries) gives way to the 4-bit scan,
// which serves at the re-rank depth that met the target.
TEST_F(ServingIndexTest, ScanReplacesAGraphThatMissesTheTarget) {
  ServingOptions options;
  options.graph.default_beam = 8;
  options.graph.calibration_target = 1.0f;
  options.scan_depths = {100, 3000};  // 3000: every key re-ranked, recall 1
  auto s = BuildServingIndex(IndexKind::kGraph, keys_.rows, SampleOf(train_), options);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_TRUE(s->calibration.has_value());
  EXPECT_FALSE(s->calibration->met) << s->ToString();
  EXPECT_TRUE(s->replaced);
  EXPECT_FALSE(s->dense);
  ASSERT_NE(s->index, nullptr);
  EXPECT_EQ(s->index->kind(), IndexKind::kQuantized);
  ASSERT_TRUE(s->fallback_calibration.has_value());
  EXPECT_TRUE(s->fallback_calibration->met);
  EXPECT_EQ(s->fallback_calibration->effort, 3000);
  EXPECT_DOUBLE_EQ(s->fallback_calibration->recall, 1.0);
  // Effort 0 of the scan re-ranks at that depth.
  const GroupScorer scorer(SampleOf(train_).query(0), keys_.rows.dtype);
  SearchResult r;
  ASSERT_TRUE(s->index->Search(keys_.rows, scorer, {.top_k = 100}, &r).ok());
  EXPECT_EQ(r.stats.keys_scored, 3000);
  EXPECT_NE(s->ToString().find("4-bit scan"), std::string::npos) << s->ToString();
}

// Neither meets the target: the head is answered densely, with no index.
TEST_F(ServingIndexTest, DenseWhenNoIndexMeetsTheTarget) {
  ServingOptions options;
  options.graph.default_beam = 8;
  options.graph.calibration_target = 1.0f;
  options.scan_depths = {100};  // re-ranking only top_k: 4-bit order errors cost recall
  auto s = BuildServingIndex(IndexKind::kGraph, keys_.rows, SampleOf(train_), options);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(s->dense);
  EXPECT_EQ(s->index, nullptr);
  ASSERT_TRUE(s->fallback_calibration.has_value());
  EXPECT_FALSE(s->fallback_calibration->met);
  EXPECT_LT(s->fallback_calibration->recall, 1.0);
  EXPECT_EQ(s->ToString().rfind("dense", 0), 0u) << s->ToString();

  options.scan_depths.clear();
  EXPECT_EQ(BuildServingIndex(IndexKind::kGraph, keys_.rows, SampleOf(train_), options)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
}

// Kinds without a calibration serve as built.
TEST_F(ServingIndexTest, KindsWithoutACalibrationServeAsBuilt) {
  for (IndexKind kind : {IndexKind::kExact, IndexKind::kQuantized, IndexKind::kCluster}) {
    auto s = BuildServingIndex(kind, keys_.rows, SampleOf(train_));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_NE(s->index, nullptr);
    EXPECT_EQ(s->index->kind(), kind);
    EXPECT_FALSE(s->calibration.has_value());
    EXPECT_FALSE(s->dense);
    EXPECT_FALSE(s->replaced);
  }
}

TEST(RecallGuard, RaisesByHalfUpToTheLargestEffortThenSaysDense) {
  RecallGuard guard({.target = 0.95f, .checks = 3, .base_effort = 400, .max_effort = 1000});
  EXPECT_EQ(guard.effort(), 0);
  // Pooled over the checks: 99 + 93 + 93 of 300 hits is 0.95, at target.
  EXPECT_EQ(guard.Report(100, 99), RecallGuard::Action::kNone);
  EXPECT_EQ(guard.Report(100, 93), RecallGuard::Action::kNone);
  EXPECT_EQ(guard.Report(100, 93), RecallGuard::Action::kNone);
  EXPECT_EQ(guard.effort(), 0);
  // Below it: 400 -> 600 -> 900 -> 1000 (capped) -> dense.
  const int want[] = {600, 900, 1000};
  for (const int w : want) {
    EXPECT_EQ(guard.Report(100, 90), RecallGuard::Action::kNone);
    EXPECT_EQ(guard.Report(100, 90), RecallGuard::Action::kNone);
    EXPECT_EQ(guard.Report(100, 90), RecallGuard::Action::kRaised);
    EXPECT_EQ(guard.effort(), w);
    EXPECT_FALSE(guard.dense());
  }
  EXPECT_EQ(guard.Report(100, 0), RecallGuard::Action::kNone);
  EXPECT_EQ(guard.Report(100, 0), RecallGuard::Action::kNone);
  EXPECT_EQ(guard.Report(100, 0), RecallGuard::Action::kDense);
  EXPECT_TRUE(guard.dense());
  EXPECT_EQ(guard.Report(100, 0), RecallGuard::Action::kNone) << "dense is final";
  // Empty checks count for nothing; hits are clamped to the checked keys.
  RecallGuard other({.target = 0.95f, .checks = 1, .base_effort = 200, .max_effort = 800});
  EXPECT_EQ(other.Report(0, 0), RecallGuard::Action::kNone);
  EXPECT_EQ(other.Report(100, 250), RecallGuard::Action::kNone);
  EXPECT_EQ(other.effort(), 0);
  // No effort to raise from: straight to dense.
  RecallGuard unknown({.target = 0.95f, .checks = 1, .base_effort = 0, .max_effort = 0});
  EXPECT_EQ(unknown.Report(100, 10), RecallGuard::Action::kDense);
}

// The serving policy says where the guard starts and how far it may go.
TEST_F(ServingIndexTest, GuardEffortsFollowTheServedIndex) {
  ServingOptions options;
  options.graph.calibration_target = 0.5f;
  auto graph = BuildServingIndex(IndexKind::kGraph, keys_.rows, SampleOf(train_), options);
  ASSERT_TRUE(graph.ok());
  EXPECT_EQ(graph->base_effort, graph->calibration->effort);
  EXPECT_EQ(graph->max_effort, 4 * options.graph.default_beam);
  options.graph.default_beam = 8;
  options.graph.calibration_target = 1.0f;
  options.scan_depths = {100, 3000};
  auto scan = BuildServingIndex(IndexKind::kGraph, keys_.rows, SampleOf(train_), options);
  ASSERT_TRUE(scan.ok());
  ASSERT_TRUE(scan->replaced);
  EXPECT_EQ(scan->base_effort, 3000);
  EXPECT_EQ(scan->max_effort, 3000);
  auto plain = BuildServingIndex(IndexKind::kQuantized, keys_.rows, SampleOf(train_));
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->base_effort, 0);
}

}  // namespace
}  // namespace attic::retrieval
