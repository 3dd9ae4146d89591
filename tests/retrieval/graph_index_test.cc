#include "attention_workers/retrieval/graph_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "attention_workers/retrieval/exact_index.h"
#include "attention_workers/retrieval/internal/graph_build.h"
#include "attention_workers/retrieval/internal/graph_codes.h"
#include "attention_workers/thread_pool.h"
#include "common/npy.h"
#include "tests/retrieval/key_fixture.h"
#include "tests/testing/shared_data.h"

namespace attic::retrieval {
namespace {

// Queries out of the keys' distribution: a common offset along a few dimensions plus noise.
std::vector<float> OodQueries(int count, int group, int d, uint64_t seed) {
  std::vector<float> q = Gaussian(static_cast<int64_t>(count) * group, d, 0.0f, seed);
  for (size_t i = 0; i < q.size(); ++i) {
    if (i % static_cast<size_t>(d) < 8) q[i] += 3.0f;
  }
  return q;
}

QuerySample SampleOf(const std::vector<float>& q, int group, int d) {
  return {.q = q.data(),
          .num_queries = static_cast<int>(q.size()) / (group * d),
          .group_size = group,
          .head_dim = d};
}

double Recall(const KeyIndex& index, const KeyRows& keys, const std::vector<float>& queries,
              int group, int top_k, int effort) {
  const int d = keys.head_dim;
  const int n = static_cast<int>(queries.size()) / (group * d);
  double hits = 0;
  SearchResult got;
  for (int i = 0; i < n; ++i) {
    GroupScorer scorer({.q = queries.data() + static_cast<size_t>(i) * group * d,
                        .group_size = group,
                        .head_dim = d},
                       keys.dtype);
    std::vector<float> all(static_cast<size_t>(index.size()));
    scorer.ScoreRange(keys, 0, index.size(), all.data());
    const std::vector<int32_t> truth = TopKPositions(all, top_k);
    EXPECT_TRUE(index.Search(keys, scorer, {.top_k = top_k, .effort = effort}, &got).ok());
    const std::set<int32_t> want(truth.begin(), truth.end());
    for (int32_t p : got.positions) hits += want.count(p);
  }
  return hits / (static_cast<double>(n) * top_k);
}

TEST(GraphIndex, EveryKeyIsReachableFromTheEntries) {
  constexpr int kD = 64;
  const TestKeys keys = MakeTestKeys(Gaussian(3000, kD, 0.0f, 1), kD, DType::kBFloat16, 64);
  const std::vector<float> q = OodQueries(200, 2, kD, 2);
  ThreadPool pool(ThreadPoolOptions{.num_threads = 2});
  for (bool per_head : {true, false}) {
    GraphOptions options;
    options.max_degree = 6;  // sparse: pruning leaves many keys with few in-edges
    options.query_top_k = 20;
    options.per_head_links = per_head;
    internal::GraphData data(options.max_degree);
    ASSERT_TRUE(
        internal::BuildFromQueries(keys.rows, SampleOf(q, 2, kD), options, {.pool = &pool}, &data)
            .ok());
    std::vector<uint8_t> reached;
    EXPECT_EQ(internal::MarkReachable(data.graph, data.entries, &reached), keys.rows.count);
    for (int32_t u = 0; u < keys.rows.count; ++u) {
      EXPECT_LE(static_cast<int>(data.graph.regular(u).size()), options.max_degree);
    }
  }
}

TEST(GraphIndex, FindsTheExactTopKOfOutOfDistributionQueries) {
  constexpr int kD = 64;
  constexpr int kGroup = 4;
  const TestKeys keys = MakeTestKeys(Gaussian(4000, kD, 0.0f, 3), kD, DType::kBFloat16, 256);
  const std::vector<float> train = OodQueries(300, kGroup, kD, 4);
  const std::vector<float> test = OodQueries(40, kGroup, kD, 5);
  for (bool codes : {true, false}) {
    GraphOptions options;
    options.traverse_with_codes = codes;
    auto index = BuildGraphIndex(keys.rows, SampleOf(train, kGroup, kD), options);
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    EXPECT_GE(Recall(**index, keys.rows, test, kGroup, 10, 128), 0.9) << "codes " << codes;
    // The query-agnostic build is correct too, only costlier.
    auto plain = BuildGraphIndex(keys.rows, {}, options);
    ASSERT_TRUE(plain.ok());
    EXPECT_GE(Recall(**plain, keys.rows, test, kGroup, 10, 256), 0.8) << "codes " << codes;
  }
}

// The build's top lists (a blocked product over fp32 key panels, internal/graph_build.h)
// against an exact scan of every key with GroupScorer: per list, the same keys up to float
// rounding at the k-th score. Key counts off the panel width, query counts off the task size,
// paged keys, both dtypes, both list kinds, every ISA, with and without a pool.
TEST(GraphBuild, TopListsMatchAnExactScan) {
  constexpr int kD = 64;
  constexpr int kGroup = 4;
  constexpr int kTop = 25;
  ThreadPool pool({.num_threads = 2});
  const std::vector<float> q = OodQueries(37, kGroup, kD, 11);
  for (DType dtype : {DType::kBFloat16, DType::kFloat16}) {
    const TestKeys keys = MakeTestKeys(Gaussian(1000, kD, 0.0f, 12), kD, dtype, 96);
    for (IsaLevel isa : {IsaLevel::kScalar, IsaLevel::kAvx2, IsaLevel::kAvx512}) {
      if (!IsaSupported(isa)) continue;
      for (bool per_head : {true, false}) {
        for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
          int num_lists = 0;
          const std::vector<int32_t> lists = internal::QueryTopLists(
              keys.rows, SampleOf(q, kGroup, kD), kTop, per_head, isa, p, &num_lists);
          ASSERT_EQ(num_lists, 37 * (per_head ? kGroup : 1));
          int64_t same = 0;
          std::vector<float> all(1000);
          for (int l = 0; l < num_lists; ++l) {
            const float* qq = q.data() + static_cast<size_t>(per_head ? l : l * kGroup) * kD;
            GroupScorer scorer({.q = qq, .group_size = per_head ? 1 : kGroup, .head_dim = kD},
                               dtype);
            scorer.ScoreRange(keys.rows, 0, 1000, all.data());
            const std::vector<int32_t> truth = TopKPositions(all, kTop);
            const std::set<int32_t> want(truth.begin(), truth.end());
            const int32_t* got = lists.data() + static_cast<size_t>(l) * kTop;
            EXPECT_EQ(got[0], truth[0]) << "list " << l;
            const float kth = all[static_cast<size_t>(truth.back())];
            for (int i = 0; i < kTop; ++i) {
              if (want.count(got[i]) != 0) {
                ++same;
              } else {  // only a near-tie with the k-th score may differ
                EXPECT_NEAR(all[static_cast<size_t>(got[i])], kth, 1e-3f * (1 + std::fabs(kth)))
                    << "list " << l << " isa " << static_cast<int>(isa);
              }
            }
          }
          EXPECT_GE(static_cast<double>(same) / (num_lists * kTop), 0.995)
              << "dtype " << static_cast<int>(dtype) << " isa " << static_cast<int>(isa)
              << " per_head " << per_head;
        }
      }
    }
  }
}

// Top lists from a subsample of the prefill queries (train_queries) still find the exact top-k
// nearly as well as lists from every query; the exact scan is the reference.
TEST(GraphBuild, SubsampledTrainingQueriesKeepRecall) {
  constexpr int kD = 64;
  constexpr int kGroup = 4;
  const TestKeys keys = MakeTestKeys(Gaussian(4000, kD, 0.0f, 3), kD, DType::kBFloat16, 256);
  const std::vector<float> train = OodQueries(300, kGroup, kD, 4);
  const std::vector<float> test = OodQueries(40, kGroup, kD, 5);
  GraphOptions all;
  auto full = BuildGraphIndex(keys.rows, SampleOf(train, kGroup, kD), all);
  ASSERT_TRUE(full.ok());
  GraphOptions few;
  few.train_queries = 100;
  auto part = BuildGraphIndex(keys.rows, SampleOf(train, kGroup, kD), few);
  ASSERT_TRUE(part.ok());
  const double r_full = Recall(**full, keys.rows, test, kGroup, 10, 128);
  const double r_part = Recall(**part, keys.rows, test, kGroup, 10, 128);
  EXPECT_GE(r_full, 0.9);
  EXPECT_GE(r_part, 0.9);
  EXPECT_GE(r_part, r_full - 0.03);
  GraphOptions bad;
  bad.train_queries = -1;
  EXPECT_FALSE(BuildGraphIndex(keys.rows, SampleOf(train, kGroup, kD), bad).ok());
}

TEST(GraphIndex, SearchStatsCountKeysCodesAndAdjacency) {
  constexpr int kD = 64;
  const TestKeys keys = MakeTestKeys(Gaussian(1000, kD, 0.0f, 6), kD, DType::kBFloat16, 64);
  const std::vector<float> q = OodQueries(50, 1, kD, 7);
  for (bool codes : {true, false}) {
    GraphOptions options;
    options.traverse_with_codes = codes;
    options.rerank = 30;
    auto index = BuildGraphIndex(keys.rows, SampleOf(q, 1, kD), options);
    ASSERT_TRUE(index.ok());
    GroupScorer scorer({.q = q.data(), .group_size = 1, .head_dim = kD}, DType::kBFloat16);
    SearchResult r;
    ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 20, .effort = 40}, &r).ok());
    ASSERT_EQ(r.positions.size(), 20u);
    EXPECT_TRUE(std::is_sorted(r.scores.begin(), r.scores.end(), std::greater<>()));
    for (size_t i = 0; i < r.positions.size(); ++i) {
      EXPECT_EQ(r.scores[i], scorer.ScoreRow(keys.rows.row(r.positions[i])));
    }
    const int64_t row = static_cast<int64_t>(keys.rows.row_bytes());
    if (codes) {
      EXPECT_EQ(r.stats.keys_scored, 30);  // the re-rank only
      EXPECT_GT(r.stats.bytes_read, 30 * row + 40 * kD / 2);
    } else {
      EXPECT_GE(r.stats.keys_scored, 40);
      EXPECT_GT(r.stats.bytes_read, r.stats.keys_scored * row);
    }
  }
}

TEST(GraphIndex, AddedKeysAreSearchable) {
  constexpr int kD = 64;
  std::vector<float> f = Gaussian(2500, kD, 0.0f, 8);
  // The last key, added after the build, has by far the best score for an all-ones query.
  for (int i = 0; i < kD; ++i) f[static_cast<size_t>(2499) * kD + i] = 4.0f;
  const TestKeys keys = MakeTestKeys(f, kD, DType::kBFloat16, 100);
  const std::vector<float> q = OodQueries(100, 2, kD, 9);
  for (bool with_sample : {true, false}) {
    auto index = BuildGraphIndex(keys.rows.prefix(2000),
                                 with_sample ? SampleOf(q, 2, kD) : QuerySample{}, {});
    ASSERT_TRUE(index.ok());
    ASSERT_TRUE((*index)->Add(keys.rows.prefix(2200)).ok());
    ASSERT_TRUE((*index)->Add(keys.rows).ok());
    EXPECT_EQ((*index)->size(), 2500);
    const std::vector<float> ones(kD, 1.0f);
    GroupScorer scorer({.q = ones.data(), .group_size = 1, .head_dim = kD}, DType::kBFloat16);
    SearchResult r;
    ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 10}, &r).ok());
    ASSERT_FALSE(r.positions.empty());
    EXPECT_EQ(r.positions[0], 2499);
    // Every added key is reachable: a search for its own direction returns it.
    int found = 0;
    for (int32_t p = 2000; p < 2500; p += 25) {
      std::vector<float> x(kD);
      ConvertToFloat(DType::kBFloat16, keys.rows.row(p), x.data(), kD);
      for (float& v : x) v *= 10.0f;
      GroupScorer self({.q = x.data(), .group_size = 1, .head_dim = kD}, DType::kBFloat16);
      ASSERT_TRUE((*index)->Search(keys.rows, self, {.top_k = 20, .effort = 128}, &r).ok());
      found += std::find(r.positions.begin(), r.positions.end(), p) != r.positions.end();
    }
    EXPECT_GE(found, 18) << "with sample " << with_sample;
  }
}

TEST(GraphIndex, DuplicateKeys) {
  constexpr int kD = 32;
  // 300 copies of 3 distinct keys, interleaved.
  const std::vector<float> distinct = Gaussian(3, kD, 0.0f, 10);
  std::vector<float> f;
  for (int i = 0; i < 900; ++i) {
    const float* src = distinct.data() + static_cast<size_t>(i % 3) * kD;
    f.insert(f.end(), src, src + kD);
  }
  const TestKeys keys = MakeTestKeys(f, kD, DType::kFloat32, 64);
  const std::vector<float> q = OodQueries(30, 2, kD, 11);
  for (bool with_sample : {true, false}) {
    GraphOptions options;
    options.max_degree = 4;
    internal::GraphData data(options.max_degree);
    if (with_sample) {
      ASSERT_TRUE(
          internal::BuildFromQueries(keys.rows, SampleOf(q, 2, kD), options, {}, &data).ok());
      std::vector<uint8_t> reached;
      EXPECT_EQ(internal::MarkReachable(data.graph, data.entries, &reached), 900);
    }
    auto index =
        BuildGraphIndex(keys.rows, with_sample ? SampleOf(q, 2, kD) : QuerySample{}, options);
    ASSERT_TRUE(index.ok());
    GroupScorer scorer({.q = q.data(), .group_size = 2, .head_dim = kD}, DType::kFloat32);
    SearchResult r;
    ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 50, .effort = 400}, &r).ok());
    ASSERT_EQ(r.positions.size(), 50u);
    EXPECT_EQ(std::set<int32_t>(r.positions.begin(), r.positions.end()).size(), 50u);
    // Every returned key has the best score (300 keys share it).
    const float best = r.scores[0];
    for (float s : r.scores) EXPECT_EQ(s, best);
  }
}

TEST(GraphIndex, TinyInputs) {
  constexpr int kD = 32;
  const std::vector<float> q = OodQueries(4, 2, kD, 12);
  for (int n : {0, 1, 5}) {
    const TestKeys keys =
        MakeTestKeys(Gaussian(std::max(n, 1), kD, 0.0f, 13 + n), kD, DType::kBFloat16, 4);
    const KeyRows rows = keys.rows.prefix(n);
    for (bool with_sample : {true, false}) {
      auto index = BuildGraphIndex(rows, with_sample ? SampleOf(q, 2, kD) : QuerySample{});
      ASSERT_TRUE(index.ok()) << n;
      EXPECT_EQ((*index)->size(), n);
      GroupScorer scorer({.q = q.data(), .group_size = 2, .head_dim = kD}, DType::kBFloat16);
      SearchResult r;
      ASSERT_TRUE((*index)->Search(rows, scorer, {.top_k = 3}, &r).ok());
      EXPECT_EQ(r.positions.size(), static_cast<size_t>(std::min(n, 3)));
      auto exact = BuildExactIndex(rows);
      SearchResult want;
      ASSERT_TRUE((*exact)->Search(rows, scorer, {.top_k = 3}, &want).ok());
      EXPECT_EQ(r.positions, want.positions);
    }
  }
  // Growing from nothing.
  const TestKeys keys = MakeTestKeys(Gaussian(5, kD, 0.0f, 14), kD, DType::kBFloat16, 2);
  auto index = BuildGraphIndex(keys.rows.prefix(0), {});
  ASSERT_TRUE(index.ok());
  for (int64_t n = 1; n <= 5; ++n) ASSERT_TRUE((*index)->Add(keys.rows.prefix(n)).ok());
  GroupScorer scorer({.q = q.data(), .group_size = 1, .head_dim = kD}, DType::kBFloat16);
  SearchResult r;
  ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 5}, &r).ok());
  EXPECT_EQ(std::set<int32_t>(r.positions.begin(), r.positions.end()).size(), 5u);
}

TEST(GraphIndex, InvalidArguments) {
  constexpr int kD = 32;
  const TestKeys keys = MakeTestKeys(Gaussian(100, kD, 0.0f, 15), kD, DType::kBFloat16, 64);
  const std::vector<float> q = OodQueries(10, 2, kD, 16);
  GraphOptions bad;
  bad.max_degree = 1;
  EXPECT_EQ(BuildGraphIndex(keys.rows, {}, bad).status().code(), StatusCode::kInvalidArgument);
  bad = {};
  bad.prune_alpha = 0.5f;
  EXPECT_EQ(BuildGraphIndex(keys.rows, {}, bad).status().code(), StatusCode::kInvalidArgument);
  bad = {};
  bad.rerank = 0;
  EXPECT_EQ(BuildGraphIndex(keys.rows, {}, bad).status().code(), StatusCode::kInvalidArgument);
  QuerySample wrong = SampleOf(q, 2, kD);
  wrong.head_dim = 64;
  EXPECT_EQ(BuildGraphIndex(keys.rows, wrong).status().code(), StatusCode::kInvalidArgument);
  KeyRows odd = keys.rows;
  odd.head_dim = 40;
  EXPECT_EQ(BuildGraphIndex(odd, {}).status().code(), StatusCode::kInvalidArgument);

  auto index = BuildGraphIndex(keys.rows, SampleOf(q, 2, kD));
  ASSERT_TRUE(index.ok());
  GroupScorer scorer({.q = q.data(), .group_size = 2, .head_dim = kD}, DType::kBFloat16);
  SearchResult r;
  EXPECT_EQ((*index)->Search(keys.rows, scorer, {.top_k = 0}, &r).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ((*index)->Search(keys.rows.prefix(50), scorer, {.top_k = 5}, &r).code(),
            StatusCode::kInvalidArgument);
  GroupScorer fp32({.q = q.data(), .group_size = 2, .head_dim = kD}, DType::kFloat32);
  EXPECT_EQ((*index)->Search(keys.rows, fp32, {.top_k = 5}, &r).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ((*index)->Add(keys.rows.prefix(50)).code(), StatusCode::kInvalidArgument);
}

TEST(GraphCodes, EveryIsaScoresAlike) {
  constexpr int kD = 128;
  const TestKeys keys = MakeTestKeys(Gaussian(300, kD, 0.5f, 17), kD, DType::kFloat16, 300);
  internal::KeyCodes codes;
  codes.Train(keys.rows);
  codes.Append(keys.rows, 0, 300);
  const std::vector<float> q = Gaussian(11, kD, 0.0f, 18);
  std::vector<int32_t> ids(300);
  for (int i = 0; i < 300; ++i) ids[static_cast<size_t>(i)] = (i * 7) % 300;
  for (int g : {1, 4, 11}) {
    GroupScorer exact({.q = q.data(), .group_size = g, .head_dim = kD}, DType::kFloat16);
    std::vector<float> want(300), ref(300), got(300);
    exact.ScorePositions(keys.rows, ids, want.data());
    internal::CodeQuery scalar;
    scalar.Prepare(codes, q.data(), g, IsaLevel::kScalar);
    scalar.Score(codes, ids, ref.data());
    for (IsaLevel isa : SupportedIsaLevels()) {
      internal::CodeQuery cq;
      cq.Prepare(codes, q.data(), g, isa);
      cq.Score(codes, ids, got.data());
      double squared = 0;
      for (size_t i = 0; i < ids.size(); ++i) {
        ASSERT_NEAR(got[i], ref[i], 1e-3f * (1 + std::abs(ref[i]))) << IsaName(isa) << " g " << g;
        squared += (got[i] - want[i]) * (got[i] - want[i]);
      }
      // 4-bit codes of N(0.5, 1) keys (step ~0.45): per-dimension error ~0.13, so ~1.5 on a
      // 128-dimensional dot product with N(0, 1) queries.
      EXPECT_LT(std::sqrt(squared / static_cast<double>(ids.size())), 2.5) << IsaName(isa);
    }
  }
}

// The real activations (layer 4, the retrieval target): recall@100 at 16K with the default
// options, against the cost of a dense pass.
TEST(GraphIndex, RealKeysLayer4) {
  const auto dir = attic::testing::QkvDir();
  if (!dir) GTEST_SKIP() << attic::testing::kNoSharedDataMessage;
  auto k = ReadNpy(*dir + "/L4_k.npy");
  auto qp = ReadNpy(*dir + "/L4_q_prefill.npy");
  auto qd = ReadNpy(*dir + "/L4_q_decode.npy");
  ASSERT_TRUE(k.ok() && qp.ok() && qd.ok());
  constexpr int kN = 16384, kIndexed = 16128, kD = 128, kG = 4, kHq = 8;
  std::vector<float> prefill(static_cast<size_t>(qp->num_elements()));
  std::vector<float> decode(static_cast<size_t>(qd->num_elements()));
  ConvertToFloat(qp->dtype, qp->data.data(), prefill.data(), prefill.size());
  ConvertToFloat(qd->dtype, qd->data.data(), decode.data(), decode.size());
  ThreadPool pool(ThreadPoolOptions{.num_threads = 2});
  for (int h = 0; h < 2; ++h) {
    std::vector<std::byte> kh(static_cast<size_t>(kN) * kD * 2);
    for (int p = 0; p < kN; ++p) {
      std::memcpy(kh.data() + static_cast<size_t>(p) * kD * 2,
                  k->data.data() + (static_cast<size_t>(p) * 2 + h) * kD * 2, kD * 2);
    }
    const std::byte* block = kh.data();
    const KeyRows keys{.blocks = {&block, 1},
                       .block_size = kN,
                       .head_dim = kD,
                       .dtype = DType::kFloat16,
                       .count = kIndexed};
    // Prefill rows 0..1007 (positions < 16128), the group of KV head h.
    std::vector<float> sample;
    for (int r = 0; r < kIndexed / 16; ++r) {
      const float* src = prefill.data() + (static_cast<size_t>(r) * kHq + kG * h) * kD;
      sample.insert(sample.end(), src, src + kG * kD);
    }
    auto index = BuildGraphIndex(keys, SampleOf(sample, kG, kD), {}, {.pool = &pool});
    ASSERT_TRUE(index.ok());
    double recall = 0, fraction = 0;
    int steps = 0;
    SearchResult r;
    std::vector<float> all(kIndexed);
    for (int t = 0; t < 256; t += 4, ++steps) {
      const float* q = decode.data() + (static_cast<size_t>(t) * kHq + kG * h) * kD;
      GroupScorer scorer({.q = q, .group_size = kG, .head_dim = kD}, DType::kFloat16);
      scorer.ScoreRange(keys, 0, kIndexed, all.data());
      const std::vector<int32_t> truth = TopKPositions(all, 100);
      ASSERT_TRUE((*index)->Search(keys, scorer, {.top_k = 100}, &r).ok());
      const std::set<int32_t> want(truth.begin(), truth.end());
      for (int32_t p : r.positions) recall += want.count(p) / 100.0;
      // The step reads the search's bytes plus keys and values of the selection: 4 sinks
      // and a 64-token window (keys and values) and the values of the retrieved keys.
      const double step_bytes = static_cast<double>(r.stats.bytes_read) +
                                (68.0 * 2 + static_cast<double>(r.positions.size())) * kD * 2;
      fraction += step_bytes / ((kIndexed + t + 1.0) * 512);
    }
    EXPECT_GE(recall / steps, 0.9) << "KV head " << h;
    EXPECT_LE(fraction / steps, 0.15) << "KV head " << h;
  }
}

}  // namespace
}  // namespace attic::retrieval
