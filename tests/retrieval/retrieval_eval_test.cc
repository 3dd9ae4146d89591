// The retrieval evaluation's parts on data with known answers: the metrics, the dump loader
// (values or prefill queries absent, malformed files), the context plan and the leakage guard.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench/retrieval/dataset.h"
#include "bench/retrieval/evaluator.h"
#include "bench/retrieval/methods.h"
#include "bench/retrieval/metrics.h"
#include "bench/retrieval/synthetic_dump.h"

namespace attic::retrieval::eval {
namespace {
namespace fs = std::filesystem;

// A fresh directory under the test's temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("attic_eval_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

TEST(MetricsTest, RecallCountsTheOverlapWithTheTruth) {
  const std::vector<int32_t> retrieved = {1, 2, 3, 4};
  const std::vector<int32_t> truth = {2, 4, 6, 8};
  EXPECT_DOUBLE_EQ(RecallAt(retrieved, truth), 0.5);
  EXPECT_DOUBLE_EQ(RecallAt({}, truth), 0.0);
  EXPECT_DOUBLE_EQ(RecallAt(retrieved, {}), 1.0);
}

TEST(MetricsTest, MassRecallIsTheMeanSoftmaxMassOnTheSelection) {
  const std::vector<float> full = {1.0f, 2.0f};
  const std::vector<float> half = {1.0f - std::log(2.0f), 2.0f};  // heads: 0.5 and 1.0
  EXPECT_NEAR(MassRecall(half, full), 0.75, 1e-6);
  EXPECT_NEAR(MassRecall(full, full), 1.0, 1e-12);
}

TEST(MetricsTest, OutputErrorIsNormwisePerHeadAveraged) {
  const std::vector<float> full = {3.0f, 4.0f, 1.0f, 0.0f};      // two heads, D = 2
  const std::vector<float> sparse = {3.3f, 4.4f, 1.0f, 0.0f};    // head 0 off by 10 %
  EXPECT_NEAR(OutputRelErr(sparse.data(), full.data(), 2, 2), 0.05, 1e-6);
  EXPECT_DOUBLE_EQ(OutputRelErr(full.data(), full.data(), 2, 2), 0.0);
}

TEST(MetricsTest, StepBytesCountSearchValuesAndUnscoredKeys) {
  const SearchStats search{.keys_scored = 10, .bytes_read = 1000};
  // 10 selected, 4 of them scored by the search: 10 values + 6 keys of 128 bf16 elements.
  EXPECT_EQ(StepBytesRead(search, 10, 4, 128), 1000 + 10 * 256 + 6 * 256);
  EXPECT_DOUBLE_EQ(DenseBytes(100, 128), 100.0 * 512.0);
}

TEST(DatasetTest, LoadsShapesPositionsAndMeta) {
  TempDir dir;
  ASSERT_TRUE(WriteSyntheticDump(dir.str(), {.tokens = 512, .kv_heads = 2, .group_size = 3,
                                             .head_dim = 64, .decode_rows = 32,
                                             .layers = {2, 5}})
                  .ok());
  auto ds = LoadDataset(dir.str(), {});
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_EQ(ds->num_tokens, 512);
  EXPECT_EQ(ds->q_heads, 6);
  EXPECT_EQ(ds->kv_heads, 2);
  EXPECT_EQ(ds->group_size, 3);
  EXPECT_EQ(ds->head_dim, 64);
  EXPECT_EQ(ds->first_decode, 480);
  EXPECT_EQ(ds->prefill_stride, 16);
  EXPECT_NEAR(ds->scale, 0.125f, 1e-6);
  ASSERT_EQ(ds->layers.size(), 2u);
  EXPECT_EQ(ds->layers[0].layer, 2);
  EXPECT_EQ(ds->layers[1].layer, 5);
  EXPECT_TRUE(ds->layers[0].has_values());
  EXPECT_TRUE(ds->layers[0].has_prefill());
  EXPECT_EQ(ds->layers[0].decode_positions.front(), 480);
  EXPECT_EQ(ds->layers[0].prefill_positions[3], 48);

  const std::vector<int> only = {5};
  auto one = LoadDataset(dir.str(), only);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->layers.size(), 1u);
  const std::vector<int> absent = {7};
  EXPECT_EQ(LoadDataset(dir.str(), absent).status().code(), StatusCode::kNotFound);
}

TEST(DatasetTest, ValuesAndPrefillMayBeAbsentAndMetaFallsBack) {
  TempDir dir;
  ASSERT_TRUE(WriteSyntheticDump(dir.str(), {.tokens = 256, .decode_rows = 16, .values = false,
                                             .prefill = false, .meta = false})
                  .ok());
  auto ds = LoadDataset(dir.str(), {});
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  const LayerData& l = ds->layers[0];
  EXPECT_FALSE(l.has_values());
  EXPECT_FALSE(l.has_prefill());
  EXPECT_EQ(ds->first_decode, 240);  // the last T positions
  EXPECT_NEAR(ds->scale, 1.0f / 8.0f, 1e-6);
  // Only the full context can be planned: shorter ones need prefill queries as steps.
  EXPECT_EQ(PlanContext(*ds, l, 128).status().code(), StatusCode::kFailedPrecondition);
  auto plan = PlanContext(*ds, l, 256);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->indexed, 240);
  EXPECT_EQ(plan->sample_rows, 0);

  // No values: the evaluation still runs, output error is absent.
  std::vector<MethodSpec> exact = RetrievalMethods({.only = {"attic-exact"}});
  auto r = EvaluateHead(*ds, l, 0, *plan, exact, {.selection = {.sinks = 4, .window = 8, .top_k = 10}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->rows.size(), 1u);
  EXPECT_FALSE(r->rows[0].output_rel_err.has_value());
  EXPECT_DOUBLE_EQ(r->rows[0].recall_at_100, 1.0);
}

TEST(DatasetTest, MalformedFilesAreErrorsNamingTheFile) {
  TempDir dir;
  ASSERT_TRUE(WriteSyntheticDump(dir.str(), {.tokens = 128, .decode_rows = 8}).ok());
  {
    std::ofstream bad(dir.file("L3_q_decode.npy"), std::ios::binary | std::ios::trunc);
    bad << "\x93NUMPY\x01\x00" << '\x10' << '\0' << "{'descr': '<f2', 'shape': (8, x)}";
  }
  auto ds = LoadDataset(dir.str(), {});
  ASSERT_FALSE(ds.ok());
  EXPECT_NE(ds.status().message().find("L3_q_decode.npy"), std::string::npos) << ds.status().ToString();

  TempDir dir2;
  ASSERT_TRUE(WriteSyntheticDump(dir2.str(), {.tokens = 128, .decode_rows = 8}).ok());
  ASSERT_TRUE(WriteNpyFp16(dir2.file("L3_v.npy"), {128, 2, 32}, std::vector<float>(128 * 64)).ok());
  ds = LoadDataset(dir2.str(), {});
  ASSERT_FALSE(ds.ok());
  EXPECT_NE(ds.status().message().find("L3_v.npy"), std::string::npos) << ds.status().ToString();

  TempDir dir3;
  ASSERT_TRUE(WriteSyntheticDump(dir3.str(), {.tokens = 128, .decode_rows = 8}).ok());
  std::ofstream(dir3.file("meta.json"), std::ios::trunc) << "{\"decode_positions\": [0, 3]}";
  ds = LoadDataset(dir3.str(), {});
  ASSERT_FALSE(ds.ok());
  EXPECT_NE(ds.status().message().find("meta.json"), std::string::npos) << ds.status().ToString();
}

TEST(DatasetTest, ShorterContextsDecodeWithPrefillQueriesAndLearnOnlyBeforeThem) {
  TempDir dir;
  ASSERT_TRUE(WriteSyntheticDump(dir.str(), {.tokens = 512, .decode_rows = 32}).ok());
  auto ds = LoadDataset(dir.str(), {});
  ASSERT_TRUE(ds.ok());
  const LayerData& l = ds->layers[0];
  auto plan = PlanContext(*ds, l, 256);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->indexed, 224);
  EXPECT_TRUE(plan->steps_from_prefill);
  EXPECT_EQ(plan->step_positions, (std::vector<int32_t>{224, 240}));
  EXPECT_EQ(plan->sample_rows, 14);  // positions 0, 16, ..., 208
  const SampleBuffer s = GatherSample(*ds, l, plan->sample_rows, 1);
  EXPECT_TRUE(CheckNoLeakage(s.sample, plan->indexed).ok());
  EXPECT_EQ(s.sample.q[0], l.q_prefill[static_cast<size_t>(ds->group_size) * ds->head_dim]);
}

TEST(LeakageTest, ASampleQueryAtOrAfterTheFirstDecodePositionIsRefused) {
  std::vector<float> q(3 * 2 * 64, 0.5f);
  std::vector<int32_t> positions = {0, 16, 224};
  QuerySample s{.q = q.data(), .num_queries = 3, .group_size = 2, .head_dim = 64,
                .positions = positions};
  EXPECT_TRUE(CheckNoLeakage(s, 225).ok());
  EXPECT_EQ(CheckNoLeakage(s, 224).code(), StatusCode::kFailedPrecondition);
  s.positions = {};
  EXPECT_EQ(CheckNoLeakage(s, 1000).code(), StatusCode::kFailedPrecondition);  // unknown positions
}

// A method that retrieves nothing: the selection is sinks + window only.
class NothingSearcher final : public Searcher {
 public:
  int64_t memory_bytes() const override { return 0; }
  Status Search(const KeyRows&, const QueryGroup&, const GroupScorer&, const SearchParams&,
                SearchResult* out) override {
    *out = SearchResult{};
    out->stats.bytes_read = 512;
    return OkStatus();
  }
};

TEST(EvaluatorTest, ExactIsPerfectAndRetrievingNothingIsPricedAsTheSelection) {
  TempDir dir;
  ASSERT_TRUE(WriteSyntheticDump(dir.str(), {.tokens = 512, .decode_rows = 4}).ok());
  auto ds = LoadDataset(dir.str(), {});
  ASSERT_TRUE(ds.ok());
  auto plan = PlanContext(*ds, ds->layers[0], 512);
  ASSERT_TRUE(plan.ok());
  std::vector<MethodSpec> methods = RetrievalMethods({.only = {"attic-exact"}});
  methods.push_back({.name = "nothing", .efforts = {0},
                     .build = [](const KeyRows&, const QuerySample&) {
                       return StatusOr<std::unique_ptr<Searcher>>(std::make_unique<NothingSearcher>());
                     }});
  const EvalOptions options{.selection = {.sinks = 4, .window = 16, .top_k = 20}};
  auto r = EvaluateHead(*ds, ds->layers[0], 1, *plan, methods, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->rows.size(), 2u);
  const EvalRow& exact = r->rows[0];
  EXPECT_EQ(exact.method, "attic-exact");
  EXPECT_EQ(exact.steps, 4);
  EXPECT_DOUBLE_EQ(exact.recall_at_100, 1.0);
  EXPECT_DOUBLE_EQ(exact.keys_scanned_fraction, 1.0);
  EXPECT_LE(exact.mass_recall, 1.0 + 1e-6);
  ASSERT_TRUE(exact.output_rel_err.has_value());
  const EvalRow& none = r->rows[1];
  EXPECT_DOUBLE_EQ(none.recall_at_100, 0.0);
  EXPECT_LT(none.mass_recall, exact.mass_recall);
  EXPECT_GT(*none.output_rel_err, *exact.output_rel_err);
  // Step at position 508 + i attends to 509 + i tokens: selection = 4 sinks + the keys from
  // the first decode position (508) on, which the window always covers (16 >= 1 + i).
  double bytes = 0.0;
  for (int i = 0; i < 4; ++i) {
    const int64_t selected = 4 + 16;
    bytes += (512.0 + 2.0 * selected * 64 * 2) / DenseBytes(509 + i, 64);
  }
  EXPECT_NEAR(none.bytes_fraction, bytes / 4, 1e-9);
}

}  // namespace
}  // namespace attic::retrieval::eval
