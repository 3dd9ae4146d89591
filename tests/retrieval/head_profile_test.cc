#include "attention_workers/retrieval/head_profile.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "attention_workers/thread_pool.h"
#include "common/npy.h"
#include "tests/testing/shared_data.h"

namespace attic::retrieval {
namespace {

struct Head {
  std::vector<float> k;  // [n, d] fp32 keys
  std::vector<const std::byte*> blocks;
  KeyRows rows;
  std::vector<float> q;  // [m, g, d]
  std::vector<int32_t> positions;
  QuerySample sample;
};

// n random keys; m queries (group of g) at positions n-1, n-1-16, ... Each query is `peak`
// times one earlier key (a sharp match) plus noise; peak = 0 gives flat attention.
void MakeHead(Head* h, int n, int d, int m, int g, float peak, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist;
  h->k.resize(static_cast<size_t>(n) * d);
  for (float& x : h->k) x = 0.05f * dist(rng);
  h->q.resize(static_cast<size_t>(m) * g * d);
  for (int i = 0; i < m; ++i) {
    h->positions.push_back(n - 1 - 16 * (m - 1 - i));
    for (int head = 0; head < g; ++head) {
      const size_t target = rng() % static_cast<size_t>(n / 2);
      for (int j = 0; j < d; ++j) {
        h->k[target * d + j] = dist(rng);
        h->q[(static_cast<size_t>(i) * g + head) * d + j] = peak * h->k[target * d + j];
      }
    }
  }
  h->blocks = {reinterpret_cast<const std::byte*>(h->k.data())};
  h->rows = {.blocks = h->blocks, .block_size = n, .head_dim = d, .dtype = DType::kFloat32,
             .count = n};
  h->sample = {.q = h->q.data(), .num_queries = m, .group_size = g, .head_dim = d,
               .positions = h->positions};
}

TEST(HeadProfile, PeakedHeadIsSparseUniformHeadIsDense) {
  Head peaked, flat;
  MakeHead(&peaked, 4096, 64, 8, 4, 4.0f, 1);
  MakeHead(&flat, 4096, 64, 8, 4, 0.0f, 2);
  auto p = ProfileHead(peaked.rows, peaked.sample, {.min_position = 0});
  auto f = ProfileHead(flat.rows, flat.sample, {.min_position = 0});
  ASSERT_TRUE(p.ok() && f.ok());
  EXPECT_TRUE(p->has_evidence);
  EXPECT_EQ(p->queries, 8);
  EXPECT_FALSE(p->dense) << p->ToString();
  EXPECT_GT(p->oracle_mass, 0.9);
  EXPECT_LT(p->key_fraction, 0.05);
  EXPECT_TRUE(f->dense) << f->ToString();
  EXPECT_LT(f->oracle_mass, 0.2);  // 168 of ~4000 keys at equal weight
  EXPECT_GT(f->key_fraction, 0.8);
}

// The selection gives the sort's answer: the fewest largest probabilities reaching the mass.
TEST(HeadProfile, KeyFractionForMassMatchesASort) {
  std::mt19937 rng(3);
  for (int n : {1, 7, 64, 65, 1000, 16384}) {
    for (int shape = 0; shape < 3; ++shape) {
      std::vector<float> p(static_cast<size_t>(n));
      std::exponential_distribution<float> e(1.0f);
      for (float& x : p) x = shape == 0 ? 1.0f : std::pow(e(rng), shape == 1 ? 1.0f : 8.0f);
      double sum = 0;
      for (float x : p) sum += x;
      for (float& x : p) x = static_cast<float>(x / sum);
      for (double target : {0.1, 0.5, 0.9, 0.999}) {
        std::vector<float> sorted = p;
        std::sort(sorted.begin(), sorted.end(), std::greater<>());
        double mass = 0;
        size_t want = 0;
        while (want < sorted.size() && mass < target) mass += sorted[want++];
        const double got = KeyFractionForMass(p, target) * n;
        // Sums in another order may cross the target one key apart.
        EXPECT_NEAR(got, static_cast<double>(want), 1.0)
            << "n " << n << " shape " << shape << " target " << target;
      }
    }
  }
  EXPECT_EQ(KeyFractionForMass({}, 0.9), 0.0);
}

TEST(HeadProfile, EmptySampleIsNoEvidence) {
  Head h;
  MakeHead(&h, 256, 64, 1, 4, 1.0f, 3);
  auto p = ProfileHead(h.rows, {}, {});
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->dense);
  EXPECT_FALSE(p->has_evidence);
  EXPECT_EQ(p->queries, 0);
  // Every query before min_position is skipped: no evidence either.
  p = ProfileHead(h.rows, h.sample, {.min_position = 1000});
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->has_evidence);
}

TEST(HeadProfile, RejectsInvalidArguments) {
  Head h;
  MakeHead(&h, 256, 64, 2, 4, 1.0f, 4);
  QuerySample bad = h.sample;
  bad.head_dim = 32;
  EXPECT_FALSE(ProfileHead(h.rows, bad, {}).ok());
  EXPECT_FALSE(ProfileHead(h.rows, h.sample, {.scale = -1.0f}).ok());
  EXPECT_FALSE(ProfileHead(h.rows, h.sample, {.mass_target = 1.5}).ok());
}

// The reference activations: layer 1 is diffuse (dense), layer 4 concentrated (sparse), judged
// from prefill queries before the decode positions only.
TEST(HeadProfileRealData, Layer1IsDenseLayer4IsSparse) {
  const auto dir = attic::testing::QkvDir();
  if (!dir) GTEST_SKIP() << attic::testing::kNoSharedDataMessage;
  ThreadPool pool({.num_threads = 2});
  for (int layer : {1, 4}) {
    auto k = ReadNpy(*dir + "/L" + std::to_string(layer) + "_k.npy");
    auto qp = ReadNpy(*dir + "/L" + std::to_string(layer) + "_q_prefill.npy");
    ASSERT_TRUE(k.ok() && qp.ok());
    const int d = 128, indexed = 16128, train = indexed / 16;
    std::vector<float> kf(k->num_elements()), qpf(qp->num_elements());
    ConvertToFloat(k->dtype, k->data.data(), kf.data(), kf.size());
    ConvertToFloat(qp->dtype, qp->data.data(), qpf.data(), qpf.size());
    for (int h = 0; h < 2; ++h) {
      std::vector<float> head(static_cast<size_t>(indexed) * d);
      for (int t = 0; t < indexed; ++t) {
        std::memcpy(&head[static_cast<size_t>(t) * d], &kf[(static_cast<size_t>(t) * 2 + h) * d], d * 4);
      }
      std::vector<const std::byte*> blocks{reinterpret_cast<const std::byte*>(head.data())};
      const KeyRows rows{.blocks = blocks, .block_size = indexed, .head_dim = d,
                         .dtype = DType::kFloat32, .count = indexed};
      std::vector<float> q(static_cast<size_t>(train) * 4 * d);
      std::vector<int32_t> positions(train);
      for (int r = 0; r < train; ++r) {
        positions[r] = r * 16;
        std::memcpy(&q[static_cast<size_t>(r) * 4 * d], &qpf[(static_cast<size_t>(r) * 8 + 4 * h) * d], 4 * d * 4);
      }
      auto p = ProfileHead(rows,
                           {.q = q.data(), .num_queries = train, .group_size = 4, .head_dim = d,
                            .positions = positions},
                           {.scale = 0.08838834764831845f, .pool = &pool});
      ASSERT_TRUE(p.ok());
      EXPECT_TRUE(p->has_evidence);
      EXPECT_EQ(p->dense, layer == 1) << "layer " << layer << " head " << h << ": " << p->ToString();
    }
  }
}

}  // namespace
}  // namespace attic::retrieval
