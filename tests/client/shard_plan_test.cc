#include <gtest/gtest.h>

#include <string>

#include "client/client.h"

namespace attic {
namespace {

ModelSpec Spec() {
  return ModelSpec{.name = "m",
                   .num_layers = 2,
                   .num_q_heads = 16,
                   .num_kv_heads = 8,
                   .head_dim = 64,
                   .dtype = DType::kBFloat16,
                   .block_size = 64};
}

void ExpectInvalid(const ShardPlan& plan, int workers, const std::string& needle) {
  const Status s = plan.Validate(Spec(), workers);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(needle), std::string::npos) << s;
}

TEST(ShardPlanTest, SingleHoldsEverything) {
  const ShardPlan plan = ShardPlan::Single(Spec(), 2);
  ASSERT_EQ(plan.shards.size(), 1u);
  EXPECT_EQ(plan.shards[0].worker, 2);
  EXPECT_EQ(plan.shards[0].kv_head_begin, 0);
  EXPECT_EQ(plan.shards[0].kv_head_end, 8);
  EXPECT_EQ(plan.shards[0].token_begin, 0);
  EXPECT_EQ(plan.shards[0].token_end, -1);
  EXPECT_TRUE(plan.Validate(Spec(), 3).ok());
}

TEST(ShardPlanTest, SplitHeadsEvenAndUneven) {
  const ShardPlan even = ShardPlan::SplitHeads(Spec(), {0, 1});
  ASSERT_EQ(even.shards.size(), 2u);
  EXPECT_EQ(even.shards[0].kv_head_end, 4);
  EXPECT_EQ(even.shards[1].kv_head_begin, 4);
  EXPECT_TRUE(even.Validate(Spec(), 2).ok());

  const ShardPlan uneven = ShardPlan::SplitHeads(Spec(), {2, 0, 1});  // 3 + 3 + 2
  ASSERT_EQ(uneven.shards.size(), 3u);
  EXPECT_EQ(uneven.shards[0].worker, 2);
  EXPECT_EQ(uneven.shards[0].kv_head_end, 3);
  EXPECT_EQ(uneven.shards[1].kv_head_end, 6);
  EXPECT_EQ(uneven.shards[2].kv_head_end, 8);
  EXPECT_TRUE(uneven.Validate(Spec(), 3).ok());
}

TEST(ShardPlanTest, SplitHeadsOverMoreWorkersThanHeadsUsesOneHeadEach) {
  std::vector<int> workers;
  for (int i = 0; i < 10; ++i) workers.push_back(i);
  const ShardPlan plan = ShardPlan::SplitHeads(Spec(), workers);
  ASSERT_EQ(plan.shards.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(plan.shards[static_cast<size_t>(i)].kv_head_begin, i);
  EXPECT_TRUE(plan.Validate(Spec(), 10).ok());
  EXPECT_TRUE(ShardPlan::SplitHeads(Spec(), {}).shards.empty());
}

TEST(ShardPlanTest, SplitTokens) {
  const ShardPlan plan = ShardPlan::SplitTokens(Spec(), {1, 0}, {0, 1024});
  ASSERT_EQ(plan.shards.size(), 2u);
  EXPECT_EQ(plan.shards[0].token_end, 1024);
  EXPECT_EQ(plan.shards[1].token_begin, 1024);
  EXPECT_EQ(plan.shards[1].token_end, -1);
  EXPECT_EQ(plan.shards[1].kv_head_end, 8);
  EXPECT_TRUE(plan.Validate(Spec(), 2).ok());
  // A bounds list of the wrong size gives an empty plan.
  EXPECT_TRUE(ShardPlan::SplitTokens(Spec(), {0, 1}, {0}).shards.empty());
  ExpectInvalid(ShardPlan::SplitTokens(Spec(), {0, 1}, {0}), 2, "no shards");
  ExpectInvalid(ShardPlan::SplitTokens(Spec(), {0, 1}, {0, 100}), 2, "multiples of B");
  ExpectInvalid(ShardPlan::SplitTokens(Spec(), {0, 1}, {64, 128}), 2, "previous shards end at 0");
  ExpectInvalid(ShardPlan::SplitTokens(Spec(), {0, 1}, {0, 0}), 2, "non-empty range");
}

TEST(ShardPlanTest, HeadAndTokenShardsTogether) {
  // Heads [0,4) split over tokens on workers 0 and 1; heads [4,8) on worker 2.
  ShardPlan plan{
      .shards = {
          {.worker = 0, .kv_head_begin = 0, .kv_head_end = 4, .token_begin = 0, .token_end = 512},
          {.worker = 1, .kv_head_begin = 0, .kv_head_end = 4, .token_begin = 512, .token_end = -1},
          {.worker = 2, .kv_head_begin = 4, .kv_head_end = 8}}};
  EXPECT_TRUE(plan.Validate(Spec(), 3).ok());
}

TEST(ShardPlanTest, RefusesBadShards) {
  ExpectInvalid(ShardPlan::Single(Spec(), 3), 3, "worker index");
  ExpectInvalid(ShardPlan::Single(Spec(), -1), 3, "worker index");
  ShardPlan plan = ShardPlan::Single(Spec(), 0);
  plan.shards[0].kv_head_end = 9;
  ExpectInvalid(plan, 1, "KV heads [0, 9)");
  plan.shards[0].kv_head_end = 0;
  ExpectInvalid(plan, 1, "non-empty range");
  plan = ShardPlan::Single(Spec(), 0);
  plan.shards[0].token_begin = 64;
  ExpectInvalid(plan, 1, "previous shards end at 0");
  plan.shards[0].token_begin = -64;
  ExpectInvalid(plan, 1, "tokens [-64, inf)");
  plan = ShardPlan::Single(Spec(), 0);
  plan.shards[0].token_end = 1024;
  ExpectInvalid(plan, 1, "tokens from 1024 on have no shard");
}

TEST(ShardPlanTest, RefusesTwoShardsOnOneWorker) {
  ExpectInvalid(ShardPlan::SplitHeads(Spec(), {0, 0}), 1, "same worker");
  ExpectInvalid(ShardPlan::SplitTokens(Spec(), {1, 1}, {0, 64}), 2, "same worker");
}

TEST(ShardPlanTest, RefusesOverlapsAndGaps) {
  // Overlapping head ranges that are not equal.
  ShardPlan plan{.shards = {{.worker = 0, .kv_head_begin = 0, .kv_head_end = 6},
                            {.worker = 1, .kv_head_begin = 4, .kv_head_end = 8}}};
  ExpectInvalid(plan, 2, "overlap");
  // A head nobody holds.
  plan = ShardPlan{.shards = {{.worker = 0, .kv_head_begin = 0, .kv_head_end = 4},
                              {.worker = 1, .kv_head_begin = 5, .kv_head_end = 8}}};
  ExpectInvalid(plan, 2, "KV head 4 has no shard");
  plan = ShardPlan{.shards = {{.worker = 0, .kv_head_begin = 0, .kv_head_end = 4}}};
  ExpectInvalid(plan, 1, "KV head 4 has no shard");
  // The same tokens twice: two open-ended shards of one head range.
  plan = ShardPlan{.shards = {{.worker = 0, .kv_head_end = 8}, {.worker = 1, .kv_head_end = 8}}};
  ExpectInvalid(plan, 2, "previous shards end at inf");
  // Token ranges overlapping.
  plan = ShardPlan{.shards = {{.worker = 0, .kv_head_end = 8, .token_end = 256},
                              {.worker = 1, .kv_head_end = 8, .token_begin = 128}}};
  ExpectInvalid(plan, 2, "previous shards end at 256");
  EXPECT_EQ(ShardPlan{}.Validate(Spec(), 1).code(), StatusCode::kInvalidArgument);
}

TEST(ShardPlanTest, RefusesAnInvalidSpec) {
  ModelSpec bad = Spec();
  bad.head_dim = 33;
  EXPECT_EQ(ShardPlan::Single(bad, 0).Validate(bad, 1).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace attic
