#include "client/internal/routing.h"

#include <gtest/gtest.h>

#include <vector>

namespace attic::client_internal {
namespace {

constexpr int kB = 64;

ModelSpec Spec() {
  return ModelSpec{.name = "m",
                   .num_layers = 2,
                   .num_q_heads = 16,
                   .num_kv_heads = 8,
                   .head_dim = 64,
                   .dtype = DType::kBFloat16,
                   .block_size = kB};
}

// Heads [0,4): tokens [0,256) on worker 0, [256,inf) on worker 1; heads [4,8) on worker 2.
ShardPlan Mixed() {
  return ShardPlan{
      .shards = {
          {.worker = 1, .kv_head_begin = 0, .kv_head_end = 4, .token_begin = 256, .token_end = -1},
          {.worker = 0, .kv_head_begin = 0, .kv_head_end = 4, .token_begin = 0, .token_end = 256},
          {.worker = 2, .kv_head_begin = 4, .kv_head_end = 8}}};
}

TEST(RoutingTest, HeadRangesOrderShardsByToken) {
  const ShardPlan plan = Mixed();
  ASSERT_TRUE(plan.Validate(Spec(), 3).ok());
  const std::vector<HeadRange> ranges = HeadRanges(plan);
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0].kv_head_end, 4);
  EXPECT_EQ(ranges[0].shards, (std::vector<size_t>{1, 0}));
  EXPECT_EQ(ranges[1].shards, (std::vector<size_t>{2}));
  EXPECT_EQ(OpenEndedShard(plan, ranges[0]), 0u);
  EXPECT_EQ(OpenEndedShard(plan, ranges[1]), 2u);
}

TEST(RoutingTest, ShardHashesFollowTokenRanges) {
  const ShardPlan plan = Mixed();
  const std::vector<uint64_t> hashes = {10, 11, 12, 13, 14, 15};  // 6 blocks = 384 tokens
  EXPECT_EQ(ShardHashes(plan.shards[1], hashes, kB).size(), 4u);
  const auto tail = ShardHashes(plan.shards[0], hashes, kB);
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(tail[0], 14u);
  EXPECT_EQ(ShardHashes(plan.shards[2], hashes, kB).size(), 6u);
  const std::vector<uint64_t> short_prompt = {10, 11};
  EXPECT_TRUE(ShardHashes(plan.shards[0], short_prompt, kB).empty());
  EXPECT_EQ(ShardHashes(plan.shards[1], short_prompt, kB).size(), 2u);
}

TEST(RoutingTest, PrefixMatchIsContiguousAndTheMinimumOverHeadRanges) {
  const ShardPlan plan = Mixed();
  const auto ranges = HeadRanges(plan);
  // Token shard 0 full (256), shard 1 has 128 more; heads [4,8) hold 448.
  EXPECT_EQ(CombinePrefixMatch(plan, ranges, std::vector<int64_t>{128, 256, 448}), 384);
  // Shard 0 not full: shard 1's hits are not contiguous with token 0.
  EXPECT_EQ(CombinePrefixMatch(plan, ranges, std::vector<int64_t>{128, 192, 448}), 192);
  // The other head range limits it.
  EXPECT_EQ(CombinePrefixMatch(plan, ranges, std::vector<int64_t>{128, 256, 64}), 64);
  EXPECT_EQ(CombinePrefixMatch(plan, ranges, std::vector<int64_t>{0, 0, 0}), 0);
}

TEST(RoutingTest, PrefillStartRule) {
  EXPECT_TRUE(CheckPrefillStart(0, 0, 0).ok());
  EXPECT_TRUE(CheckPrefillStart(128, 128, 0).ok());
  EXPECT_EQ(CheckPrefillStart(64, 128, 0).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(CheckPrefillStart(192, 128, 0).code(), StatusCode::kFailedPrecondition);
  // Within a prefix hit, a chunk may start earlier (the held tokens are dropped).
  EXPECT_TRUE(CheckPrefillStart(0, 128, 128).ok());
  EXPECT_TRUE(CheckPrefillStart(64, 128, 128).ok());
  EXPECT_EQ(CheckPrefillStart(0, 192, 128).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(CheckPrefillStart(-1, 0, 0).code(), StatusCode::kFailedPrecondition);
}

TEST(RoutingTest, PrefillRoutesByTokenRangeAndSkipsHeldTokens) {
  const ShardPlan plan = Mixed();
  std::vector<int64_t> held = {0, 0, 0};
  auto slices = RoutePrefill(plan, held, 0, 300);
  ASSERT_TRUE(slices.ok()) << slices.status();
  ASSERT_EQ(slices->size(), 3u);
  EXPECT_EQ((*slices)[0].shard, 0u);  // plan order
  EXPECT_EQ((*slices)[0].begin, 256);
  EXPECT_EQ((*slices)[0].end, 300);
  EXPECT_EQ((*slices)[1].shard, 1u);
  EXPECT_EQ((*slices)[1].end, 256);
  EXPECT_EQ((*slices)[2].begin, 0);
  EXPECT_EQ((*slices)[2].end, 300);

  // Prefix hits: shard 1 holds 128, shard 2 holds 192; a chunk from 0 skips them.
  held = {0, 128, 192};
  slices = RoutePrefill(plan, held, 0, 256);
  ASSERT_TRUE(slices.ok()) << slices.status();
  ASSERT_EQ(slices->size(), 2u);
  EXPECT_EQ((*slices)[0].shard, 1u);
  EXPECT_EQ((*slices)[0].begin, 128);
  EXPECT_EQ((*slices)[1].shard, 2u);
  EXPECT_EQ((*slices)[1].begin, 192);
  // Everything already held: nothing to send.
  slices = RoutePrefill(plan, held, 0, 128);
  ASSERT_TRUE(slices.ok());
  EXPECT_TRUE(slices->empty());
}

TEST(RoutingTest, PrefillRefusesGapsAndContinuesPartialBlocks) {
  const ShardPlan plan = Mixed();
  std::vector<int64_t> held = {0, 0, 0};
  // Starting past what shard 2 holds leaves a gap.
  auto slices = RoutePrefill(plan, held, 64, 64);
  EXPECT_EQ(slices.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(slices.status().message().find("would leave a gap"), std::string::npos);
  // After a partial chunk the next one continues inside the block (the sender completes it
  // token-major).
  held = {0, 100, 100};
  slices = RoutePrefill(plan, held, 100, 64);
  ASSERT_TRUE(slices.ok()) << slices.status();
  ASSERT_EQ(slices->size(), 2u);
  EXPECT_EQ((*slices)[0].begin, 100);
  EXPECT_EQ((*slices)[0].end, 164);
}

TEST(RoutingTest, TokensPerMessageStaysUnderTheLimit) {
  // 8 heads * 64 tokens * 128 dims * 2 bytes * (k + v) = 256 KiB per block.
  EXPECT_EQ(TokensPerMessage(8, 64, 128, DType::kBFloat16, size_t{64} << 20), 256 * 64);
  EXPECT_EQ(TokensPerMessage(8, 64, 128, DType::kBFloat16, 1000), 64);  // at least one block
}

}  // namespace
}  // namespace attic::client_internal
