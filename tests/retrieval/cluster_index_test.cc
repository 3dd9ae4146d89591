#include "attention_workers/retrieval/cluster_index.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "attention_workers/retrieval/selection.h"
#include "attention_workers/thread_pool.h"
#include "common/npy.h"
#include "tests/retrieval/key_fixture.h"
#include "tests/testing/shared_data.h"

namespace attic::retrieval {
namespace {

// Keys around a few random centres, so that clusters exist.
TestKeys ClusteredKeys(int64_t n, int d, DType dtype, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist;
  std::vector<float> centres(16 * static_cast<size_t>(d));
  for (float& x : centres) x = 3.0f * dist(rng);
  std::vector<float> f(static_cast<size_t>(n) * d);
  for (int64_t i = 0; i < n; ++i) {
    const size_t c = static_cast<size_t>(rng() % 16);
    for (int j = 0; j < d; ++j) f[i * d + j] = centres[c * d + j] + dist(rng);
  }
  return MakeTestKeys(std::move(f), d, dtype);
}

TEST(ClusterIndex, EveryKeyIsFindable) {
  const int d = 128;
  // Any one key made the query's clear best match (a huge score) is found within the default
  // budget, wherever k-means put it.
  for (int p : {0, 17, 999, 1999}) {
    TestKeys keys = ClusteredKeys(2000, d, DType::kBFloat16, 1);
    const std::vector<float> q = Gaussian(1, d, 0.0f, 100 + p);
    for (int j = 0; j < d; ++j) keys.f[static_cast<size_t>(p) * d + j] = 6.0f * q[j];
    keys = MakeTestKeys(std::move(keys.f), d, DType::kBFloat16);
    auto index = BuildClusterIndex(keys.rows, {}, {}, {});
    ASSERT_TRUE(index.ok());
    EXPECT_EQ((*index)->kind(), IndexKind::kCluster);
    EXPECT_EQ((*index)->size(), 2000);
    const GroupScorer scorer({.q = q.data(), .group_size = 1, .head_dim = d}, DType::kBFloat16);
    SearchResult r;
    ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 1}, &r).ok());
    ASSERT_EQ(r.positions.size(), 1u);
    EXPECT_EQ(r.positions[0], p);
  }
}

TEST(ClusterIndex, RecallGrowsToOneWithTheBudget) {
  const TestKeys keys = ClusteredKeys(3000, 128, DType::kFloat16, 2);
  std::vector<float> sample_q = Gaussian(50 * 4, 128, 0.0f, 3);
  const QuerySample sample{
      .q = sample_q.data(), .num_queries = 50, .group_size = 4, .head_dim = 128};
  ThreadPool pool({.num_threads = 2});
  auto index = BuildClusterIndex(keys.rows, sample, {}, {.pool = &pool});
  ASSERT_TRUE(index.ok());
  const std::vector<float> q = Gaussian(4, 128, 0.0f, 4);
  const GroupScorer scorer({.q = q.data(), .group_size = 4, .head_dim = 128}, DType::kFloat16);
  std::vector<float> exact(3000);
  scorer.ScoreRange(keys.rows, 0, 3000, exact.data());
  const std::vector<int32_t> truth = TopKPositions(exact, 50);
  SearchResult r;
  ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 50, .effort = 3000}, &r).ok());
  EXPECT_EQ(r.positions, truth);  // every cluster probed, the best 150 re-ranked exactly
  ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 50, .effort = 1000}, &r).ok());
  EXPECT_GE(Recall(r.positions, truth), 0.5);
}

TEST(ClusterIndex, AddMakesNewKeysSearchable) {
  TestKeys keys = ClusteredKeys(1500, 128, DType::kFloat32, 5);
  auto index = BuildClusterIndex(keys.rows.prefix(1000), {}, {}, {});
  ASSERT_TRUE(index.ok());
  const std::vector<float> q = Gaussian(4, 128, 0.0f, 6);
  // Key 1400 becomes the best match of the query, far from every centroid.
  for (int j = 0; j < 128; ++j) keys.f[1400 * 128 + j] = 20.0f * q[j];
  std::memcpy(keys.data.data() + 1400 * 128 * 4, keys.f.data() + 1400 * 128, 128 * 4);
  ASSERT_TRUE((*index)->Add(keys.rows).ok());
  EXPECT_EQ((*index)->size(), 1500);
  const GroupScorer scorer({.q = q.data(), .group_size = 4, .head_dim = 128}, DType::kFloat32);
  SearchResult r;
  ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 10, .effort = 200}, &r).ok());
  ASSERT_FALSE(r.positions.empty());
  EXPECT_EQ(r.positions[0], 1400);
  for (int32_t p : r.positions) EXPECT_LT(p, 1500);
}

TEST(ClusterIndex, TinyInputsAndDuplicates) {
  const std::vector<float> q = Gaussian(4, 64, 0.0f, 7);
  const GroupScorer scorer({.q = q.data(), .group_size = 4, .head_dim = 64}, DType::kBFloat16);
  for (int n : {0, 1, 5}) {
    const TestKeys keys = ClusteredKeys(n, 64, DType::kBFloat16, 8 + n);
    auto index = BuildClusterIndex(keys.rows, {}, {}, {});
    ASSERT_TRUE(index.ok()) << n;
    SearchResult r;
    ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 3}, &r).ok());
    EXPECT_EQ(r.positions.size(), static_cast<size_t>(std::min(n, 3))) << n;
  }
  // 300 copies of one key and one other key: all are kept, the search returns distinct positions.
  std::vector<float> f(301 * 64, 0.5f);
  for (int j = 0; j < 64; ++j) f[300 * 64 + j] = -0.5f;
  const TestKeys dup = MakeTestKeys(std::move(f), 64, DType::kBFloat16);
  auto index = BuildClusterIndex(dup.rows, {}, {}, {});
  ASSERT_TRUE(index.ok());
  SearchResult r;
  ASSERT_TRUE((*index)->Search(dup.rows, scorer, {.top_k = 301, .effort = 301}, &r).ok());
  EXPECT_EQ(std::set<int32_t>(r.positions.begin(), r.positions.end()).size(), 301u);
}

TEST(ClusterIndex, CountsTheBytesItReads) {
  const TestKeys keys = ClusteredKeys(1024, 128, DType::kBFloat16, 9);
  auto index = BuildClusterIndex(keys.rows, {}, {.clusters_per_sqrt_key = 2.0, .rerank = 100}, {});
  ASSERT_TRUE(index.ok());
  const std::vector<float> q = Gaussian(4, 128, 0.0f, 10);
  const GroupScorer scorer({.q = q.data(), .group_size = 4, .head_dim = 128}, DType::kBFloat16);
  SearchResult r;
  ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 10, .effort = 1024}, &r).ok());
  // 64 clusters: centroid rows (256 B) + 8 B each; every key's code (64 B, padded to blocks of
  // 16) and position (4 B); 100 re-ranked rows of 256 B.
  const int64_t fixed = 64 * (256 + 8) + 1024 * 4 + 100 * 256;
  EXPECT_EQ(r.stats.keys_scored, 100);
  EXPECT_GE(r.stats.bytes_read, fixed + 1024 * 64);
  EXPECT_LE(r.stats.bytes_read, fixed + (1024 + 64 * 15) * 64);
  ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 10, .effort = 100}, &r).ok());
  EXPECT_LT(r.stats.bytes_read, fixed + 1024 * 64);
  EXPECT_GT((*index)->memory_bytes(), 1024 * 68);
}

TEST(ClusterIndex, RejectsInvalidArguments) {
  const TestKeys keys = ClusteredKeys(100, 128, DType::kBFloat16, 11);
  EXPECT_FALSE(BuildClusterIndex(keys.rows, {}, {.bits = 3}, {}).ok());
  EXPECT_FALSE(BuildClusterIndex(keys.rows, {}, {.clusters_per_sqrt_key = 0}, {}).ok());
  EXPECT_FALSE(BuildClusterIndex(keys.rows, {}, {.rerank = 0}, {}).ok());
  std::vector<float> sq(4 * 64);
  EXPECT_FALSE(
      BuildClusterIndex(keys.rows,
                        {.q = sq.data(), .num_queries = 1, .group_size = 4, .head_dim = 64}, {}, {})
          .ok());
  auto index = BuildClusterIndex(keys.rows, {}, {}, {});
  ASSERT_TRUE(index.ok());
  EXPECT_FALSE((*index)->Add(keys.rows.prefix(50)).ok());
  const std::vector<float> q = Gaussian(4, 128, 0.0f, 12);
  const GroupScorer scorer({.q = q.data(), .group_size = 4, .head_dim = 128}, DType::kBFloat16);
  SearchResult r;
  EXPECT_FALSE((*index)->Search(keys.rows, scorer, {.top_k = 0}, &r).ok());
  EXPECT_FALSE((*index)->Search(keys.rows, scorer, {.top_k = 1, .effort = -1}, &r).ok());
  EXPECT_FALSE((*index)->Search(keys.rows.prefix(10), scorer, {.top_k = 1}, &r).ok());
}

// Layer 4 of the reference activations at 16K, both KV heads: the index learns from prefill
// queries before the decode positions only, and serves the 256 decode steps.
TEST(ClusterIndexRealData, Layer4RecallAtFewBytes) {
  const auto dir = attic::testing::QkvDir();
  if (!dir) GTEST_SKIP() << attic::testing::kNoSharedDataMessage;
  auto k = ReadNpy(*dir + "/L4_k.npy");
  auto qp = ReadNpy(*dir + "/L4_q_prefill.npy");
  auto qd = ReadNpy(*dir + "/L4_q_decode.npy");
  ASSERT_TRUE(k.ok() && qp.ok() && qd.ok());
  const int d = 128, indexed = 16128, train = indexed / 16;
  std::vector<float> kf(k->num_elements()), qpf(qp->num_elements()), qdf(qd->num_elements());
  ConvertToFloat(k->dtype, k->data.data(), kf.data(), kf.size());
  ConvertToFloat(qp->dtype, qp->data.data(), qpf.data(), qpf.size());
  ConvertToFloat(qd->dtype, qd->data.data(), qdf.data(), qdf.size());
  ThreadPool pool({.num_threads = 2});
  for (int h = 0; h < 2; ++h) {
    std::vector<float> head(static_cast<size_t>(16384) * d);
    for (int t = 0; t < 16384; ++t) {
      std::memcpy(&head[static_cast<size_t>(t) * d], &kf[(static_cast<size_t>(t) * 2 + h) * d],
                  d * 4);
    }
    const TestKeys keys = MakeTestKeys(std::move(head), d, DType::kBFloat16);
    const KeyRows rows = keys.rows.prefix(indexed);
    std::vector<float> sample_q(static_cast<size_t>(train) * 4 * d);
    std::vector<int32_t> positions(train);
    for (int r = 0; r < train; ++r) {
      positions[r] = r * 16;
      std::memcpy(&sample_q[static_cast<size_t>(r) * 4 * d],
                  &qpf[(static_cast<size_t>(r) * 8 + 4 * h) * d], 4 * d * 4);
    }
    auto index = BuildKeyIndex(IndexKind::kCluster, rows,
                               {.q = sample_q.data(),
                                .num_queries = train,
                                .group_size = 4,
                                .head_dim = d,
                                .positions = positions},
                               {.pool = &pool});
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    double recall = 0.0, bytes = 0.0;
    const int steps = 64;  // every 4th decode step keeps the test short
    for (int s = 0; s < 256; s += 256 / steps) {
      const float* q = &qdf[(static_cast<size_t>(s) * 8 + 4 * h) * d];
      const GroupScorer scorer({.q = q, .group_size = 4, .head_dim = d}, DType::kBFloat16);
      std::vector<float> exact(indexed);
      scorer.ScoreRange(rows, 0, indexed, exact.data());
      SearchResult r;
      ASSERT_TRUE((*index)->Search(rows, scorer, {.top_k = 100}, &r).ok());
      recall += Recall(r.positions, TopKPositions(exact, 100));
      const int64_t length = indexed + s + 1;
      const std::vector<int32_t> sel =
          BuildSelection({.length = length, .indexed = length - 64, .retrieved = r.positions}, {});
      const std::set<int32_t> got(r.positions.begin(), r.positions.end());
      int64_t unscored = 0;
      for (int32_t p : sel) unscored += got.count(p) == 0 ? 1 : 0;
      bytes += static_cast<double>(r.stats.bytes_read + (sel.size() + unscored) * d * 2) /
               (static_cast<double>(length) * 2 * d * 2);
    }
    recall /= steps;
    bytes /= steps;
    EXPECT_GE(recall, 0.9) << "head " << h;
    EXPECT_LE(bytes, 0.15) << "head " << h;
  }
}

}  // namespace
}  // namespace attic::retrieval
