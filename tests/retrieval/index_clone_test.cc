// KeyIndex::Clone: the copy the worker folds decode keys into while the original serves. A
// clone grown with Add answers as the original grown in place would, and growing it leaves the
// original untouched.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "attention_workers/retrieval/key_index.h"
#include "attention_workers/retrieval/scoring.h"
#include "tests/retrieval/key_fixture.h"

namespace attic::retrieval {
namespace {

constexpr int kD = 64;
constexpr int kG = 2;

std::vector<int32_t> Top(const KeyIndex& index, const KeyRows& rows, const float* q) {
  const GroupScorer scorer({.q = q, .group_size = kG, .head_dim = kD}, DType::kBFloat16);
  SearchResult r;
  EXPECT_TRUE(index.Search(rows, scorer, {.top_k = 20}, &r).ok());
  return r.positions;
}

class IndexClone : public ::testing::TestWithParam<IndexKind> {};

TEST_P(IndexClone, GrowsApartFromTheOriginal) {
  const int64_t n = 3000, built = 2500;
  TestKeys keys = MakeTestKeys(Gaussian(n, kD, 0.0f, 7), kD, DType::kBFloat16);
  KeyRows first = keys.rows;
  first.count = built;
  const std::vector<float> sample_q = Gaussian(64 * kG, kD, 0.0f, 8);
  std::vector<int32_t> positions;
  for (int i = 0; i < 64; ++i) positions.push_back(i * 32);
  const QuerySample sample{.q = sample_q.data(), .num_queries = 64, .group_size = kG,
                           .head_dim = kD, .positions = positions};
  StatusOr<std::unique_ptr<KeyIndex>> a = BuildKeyIndex(GetParam(), first, sample, {});
  ASSERT_TRUE(a.ok()) << a.status();
  StatusOr<std::unique_ptr<KeyIndex>> b = BuildKeyIndex(GetParam(), first, sample, {});
  ASSERT_TRUE(b.ok()) << b.status();
  const std::vector<float> q = Gaussian(kG, kD, 0.0f, 9);
  const std::vector<int32_t> before = Top(**a, first, q.data());

  StatusOr<std::unique_ptr<KeyIndex>> copy = (*a)->Clone();
  ASSERT_TRUE(copy.ok()) << copy.status();
  ASSERT_TRUE((*copy)->Add(keys.rows).ok());
  EXPECT_EQ((*copy)->size(), n);
  EXPECT_EQ((*copy)->kind(), GetParam());
  // The original is as built.
  EXPECT_EQ((*a)->size(), built);
  EXPECT_EQ(Top(**a, first, q.data()), before);
  // The clone answers as an identical index grown in place.
  ASSERT_TRUE((*b)->Add(keys.rows).ok());
  EXPECT_EQ(Top(**copy, keys.rows, q.data()), Top(**b, keys.rows, q.data()));
}

INSTANTIATE_TEST_SUITE_P(EveryKind, IndexClone,
                         ::testing::Values(IndexKind::kExact, IndexKind::kGraph,
                                           IndexKind::kCluster, IndexKind::kQuantized),
                         [](const auto& p) { return std::string(IndexKindName(p.param)); });

}  // namespace
}  // namespace attic::retrieval
