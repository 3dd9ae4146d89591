// Partial-state merge: associativity, commutativity, identity, extreme values, and agreement
// with attention over the union of the parts.
#include "common/lse_merge.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "attention_workers/decode_attention.h"
#include "attention_workers/reference_attention.h"
#include "tests/attention_workers/kv_fixture.h"

namespace attic {
namespace {

using testing::RandomNormal;

struct State {
  std::vector<float> o;
  float lse;
};

State Merge(State a, const State& b) {
  MergeStateInto(a.o.data(), &a.lse, b.o.data(), b.lse, static_cast<int>(a.o.size()));
  return a;
}

void ExpectNear(const State& a, const State& b, float tol) {
  ASSERT_EQ(a.o.size(), b.o.size());
  EXPECT_NEAR(a.lse, b.lse, tol);
  for (size_t i = 0; i < a.o.size(); ++i) EXPECT_NEAR(a.o[i], b.o[i], tol) << i;
}

State RandomState(int d, uint64_t seed, float lse) { return {RandomNormal(static_cast<size_t>(d), seed), lse}; }

TEST(Merge, AssociativeAndCommutative) {
  const int d = 64;
  const State a = RandomState(d, 1, 3.0f), b = RandomState(d, 2, -1.5f), c = RandomState(d, 3, 7.25f);
  ExpectNear(Merge(Merge(a, b), c), Merge(a, Merge(b, c)), 1e-5f);
  ExpectNear(Merge(a, b), Merge(b, a), 1e-6f);
  ExpectNear(Merge(Merge(a, c), b), Merge(Merge(c, b), a), 1e-5f);
}

TEST(Merge, EmptyPartIsIdentity) {
  const int d = 32;
  const State a = RandomState(d, 1, 2.0f);
  const State empty{std::vector<float>(static_cast<size_t>(d), 123.0f), -INFINITY};
  ExpectNear(Merge(a, empty), a, 0.0f);
  ExpectNear(Merge(empty, a), a, 0.0f);
  const State both = Merge(empty, empty);
  EXPECT_EQ(both.lse, -INFINITY);
}

TEST(Merge, ExtremeLseValues) {
  const int d = 16;
  const State big = RandomState(d, 1, 1e4f), small = RandomState(d, 2, -1e4f);
  // The tiny part's weight underflows to exactly zero: the result is the big part.
  ExpectNear(Merge(big, small), big, 0.0f);
  ExpectNear(Merge(small, big), big, 0.0f);
  // Equal large lse: the average, lse + ln 2, no overflow.
  const State x = RandomState(d, 3, 3e30f), y = RandomState(d, 4, 3e30f);
  const State m = Merge(x, y);
  EXPECT_TRUE(std::isfinite(m.lse));
  for (int i = 0; i < d; ++i) EXPECT_NEAR(m.o[static_cast<size_t>(i)], 0.5f * (x.o[static_cast<size_t>(i)] + y.o[static_cast<size_t>(i)]), 1e-6f);
  const State z1 = RandomState(d, 5, -3e30f), z2 = RandomState(d, 6, -3e30f);
  EXPECT_TRUE(std::isfinite(Merge(z1, z2).lse));
}

TEST(Merge, ShardsMergeToFullAttention) {
  // Token-range sharding: attention over 4 shards, merged, equals attention over the whole.
  const int d = 128, g = 4, tokens = 900;
  const auto kv = testing::RandomBlockedKv(tokens, d, 64, DType::kBFloat16, 21);
  const auto q = RandomNormal(static_cast<size_t>(g) * d, 22, 2.0f);
  std::vector<float> full(static_cast<size_t>(g) * d), full_lse(static_cast<size_t>(g));
  ASSERT_TRUE(DecodeAttention({.q = q.data(), .group_size = g, .head_dim = d,
                               .dtype = DType::kBFloat16, .scale = 0.0884f, .runs = kv.runs,
                               .out = full.data(), .lse = full_lse.data()})
                  .ok());
  std::vector<float> acc(static_cast<size_t>(g) * d, 0.0f), acc_lse(static_cast<size_t>(g), -INFINITY);
  const std::span<const KvRun> all(kv.runs);
  const size_t cuts[] = {0, 3, 4, 11, all.size()};
  for (int s = 0; s < 4; ++s) {
    std::vector<float> o(static_cast<size_t>(g) * d), lse(static_cast<size_t>(g));
    ASSERT_TRUE(DecodeAttention({.q = q.data(), .group_size = g, .head_dim = d,
                                 .dtype = DType::kBFloat16, .scale = 0.0884f,
                                 .runs = all.subspan(cuts[s], cuts[s + 1] - cuts[s]),
                                 .out = o.data(), .lse = lse.data()})
                    .ok());
    MergeStatesInto(acc.data(), acc_lse.data(), o.data(), lse.data(), g, d);
  }
  for (int h = 0; h < g; ++h) {
    EXPECT_NEAR(acc_lse[static_cast<size_t>(h)], full_lse[static_cast<size_t>(h)], 1e-4);
    for (int i = 0; i < d; ++i) {
      EXPECT_NEAR(acc[static_cast<size_t>(h * d + i)], full[static_cast<size_t>(h * d + i)], 1e-5);
    }
  }
}

}  // namespace
}  // namespace attic
