#include "attention_workers/retrieval/scoring.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "attention_workers/retrieval/exact_index.h"
#include "tests/retrieval/key_fixture.h"

namespace attic::retrieval {
namespace {

double ReferenceScore(const std::vector<float>& q, int g, int d, const KeyRows& keys, int64_t p) {
  std::vector<float> row(static_cast<size_t>(d));
  ConvertToFloat(keys.dtype, keys.row(p), row.data(), row.size());
  double best = -INFINITY;
  for (int h = 0; h < g; ++h) {
    double s = 0;
    for (int i = 0; i < d; ++i)
      s += static_cast<double>(q[static_cast<size_t>(h) * d + i]) * row[i];
    best = std::max(best, s);
  }
  return best;
}

TEST(GroupScorer, EveryIsaMatchesTheReference) {
  for (DType dtype : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
    for (int g : {1, 3, 4, 8, 17}) {
      for (int d : {32, 128, 160}) {
        const TestKeys keys = MakeTestKeys(Gaussian(200, d, 0.0f, 7 + g + d), d, dtype, 16);
        std::mt19937_64 rng(g * 31 + d);
        std::normal_distribution<float> dist;
        std::vector<float> q(static_cast<size_t>(g) * d);
        for (float& x : q) x = dist(rng);
        for (IsaLevel isa : SupportedIsaLevels()) {
          GroupScorer scorer({.q = q.data(), .group_size = g, .head_dim = d}, dtype, isa);
          std::vector<float> out(200);
          scorer.ScoreRange(keys.rows, 0, 200, out.data());
          for (int64_t p = 0; p < 200; ++p) {
            const double ref = ReferenceScore(q, g, d, keys.rows, p);
            ASSERT_NEAR(out[static_cast<size_t>(p)], ref, 1e-4 * std::sqrt(d) * 4)
                << "isa " << IsaName(isa) << " dtype " << DTypeName(dtype) << " g " << g << " d "
                << d << " p " << p;
          }
          const std::vector<int32_t> some = {199, 0, 17, 17, 64};
          std::vector<float> picked(some.size());
          scorer.ScorePositions(keys.rows, some, picked.data());
          for (size_t i = 0; i < some.size(); ++i) {
            EXPECT_EQ(picked[i], out[static_cast<size_t>(some[i])]);
          }
        }
      }
    }
  }
}

TEST(GroupScorer, ValidatesTheQueryGroup) {
  float q[128] = {};
  EXPECT_TRUE(ValidateQueryGroup({.q = q, .group_size = 1, .head_dim = 128}).ok());
  EXPECT_EQ(ValidateQueryGroup({.q = nullptr, .group_size = 1, .head_dim = 128}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateQueryGroup({.q = q, .group_size = 0, .head_dim = 128}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateQueryGroup({.q = q, .group_size = 1, .head_dim = 100}).code(),
            StatusCode::kInvalidArgument);
}

TEST(TopKPositions, BestFirstTiesToLowerPosition) {
  const std::vector<float> s = {1.0f, 5.0f, 3.0f, 5.0f, -2.0f};
  EXPECT_EQ(TopKPositions(s, 3), (std::vector<int32_t>{1, 3, 2}));
  EXPECT_EQ(TopKPositions(s, 10, 100), (std::vector<int32_t>{101, 103, 102, 100, 104}));
  EXPECT_TRUE(TopKPositions(s, 0).empty());
}

TEST(ExactIndex, FindsTheTrueTopKAndCountsEveryKey) {
  const TestKeys keys = MakeTestKeys(Gaussian(1000, 128, 0.0f, 3), 128, DType::kBFloat16, 64);
  std::vector<float> q(4 * 128, 0.1f);
  GroupScorer scorer({.q = q.data(), .group_size = 4, .head_dim = 128}, DType::kBFloat16);
  auto index = BuildKeyIndex(IndexKind::kExact, keys.rows.prefix(900), {});
  ASSERT_TRUE(index.ok()) << index.status();
  SearchResult r;
  ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 10}, &r).ok());
  ASSERT_EQ(r.positions.size(), 10u);
  EXPECT_EQ(r.stats.keys_scored, 900);
  EXPECT_EQ(r.stats.bytes_read, 900 * 256);
  std::vector<float> all(900);
  scorer.ScoreRange(keys.rows, 0, 900, all.data());
  EXPECT_EQ(r.positions, TopKPositions(all, 10));
  // Folding the remaining keys makes them searchable.
  ASSERT_TRUE((*index)->Add(keys.rows).ok());
  EXPECT_EQ((*index)->size(), 1000);
  ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 1000}, &r).ok());
  EXPECT_EQ(r.positions.size(), 1000u);
  // A scorer of another dtype is refused.
  GroupScorer wrong({.q = q.data(), .group_size = 4, .head_dim = 128}, DType::kFloat16);
  EXPECT_EQ((*index)->Search(keys.rows, wrong, {}, &r).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*index)->Search(keys.rows, scorer, {.top_k = 0}, &r).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace attic::retrieval
