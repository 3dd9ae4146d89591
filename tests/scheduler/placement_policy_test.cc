// DefaultPlacementPolicy: prefix affinity (summary, recent placements, yielding to headroom
// and to load), headroom, load tie-breaks, head sharding, token-range sharding and refusals.
#include "services/scheduler/placement_policy.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "transport/control/prefix_summary.h"

namespace attic::scheduler {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kBytesPerToken = 6144;  // attic-ref-54m: 6 KiB of K and V per token
constexpr uint64_t kScope = 0x5c09e;
constexpr uint64_t kModel = 0xfeed;

WorkerView Worker(std::string name, uint64_t free_bytes, uint64_t capacity = 4 * kGiB) {
  WorkerView w;
  w.name = std::move(name);
  w.alive = true;
  w.ready = true;
  w.model_fingerprint = kModel;
  w.num_kv_heads = 8;
  w.figures.dram_capacity_bytes = capacity;
  w.figures.dram_free_bytes = free_bytes;
  w.figures.kv_free_bytes = free_bytes;
  w.figures.block_tokens = 64;
  w.figures.kv_bytes_per_token = kBytesPerToken;
  return w;
}

std::vector<uint64_t> Hashes(int n, uint64_t seed = 1) {
  std::vector<uint64_t> h;
  for (int i = 0; i < n; ++i) h.push_back(seed * 1000003 + static_cast<uint64_t>(i));
  return h;
}

PlacementInput Input(uint64_t tokens, const std::vector<uint64_t>& hashes) {
  return {.sequence_id = 42,
          .model_fingerprint = kModel,
          .prompt_tokens = tokens,
          .expected_tokens = tokens,
          .prompt_hashes = hashes,
          .prefix_scope = kScope};
}

PrefixSummary SummaryOf(const std::vector<uint64_t>& hashes, size_t n) {
  PrefixSummary s = PrefixSummary::ForEntries(64);
  for (size_t i = 0; i < n; ++i) s.Add(kScope, hashes[i]);
  return s;
}

DefaultPlacementPolicy NoHeadShards() {
  return DefaultPlacementPolicy({.head_shard_min_tokens = 0});
}

TEST(PlacementPolicy, SummaryHitWinsOverMoreRoom) {
  const std::vector<uint64_t> hashes = Hashes(8);
  const PrefixSummary summary = SummaryOf(hashes, 6);
  std::vector<WorkerView> w = {Worker("w0", 3 * kGiB), Worker("w1", 1 * kGiB)};
  w[1].prefix = &summary;
  StatusOr<PlacementDecision> d = NoHeadShards().Place(Input(600, hashes), w);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->shards.size(), 1u);
  EXPECT_EQ(d->shards[0].worker, 1u);
  EXPECT_EQ(d->reason, "prefix-affinity");
  EXPECT_EQ(d->prefix_blocks_matched, 6u);
  EXPECT_EQ(d->shards[0].kv_head_begin, 0u);
  EXPECT_EQ(d->shards[0].kv_head_end, 8u);
  EXPECT_EQ(d->shards[0].token_end, -1);
  EXPECT_EQ(d->shards[0].bytes, 600 * kBytesPerToken);
}

TEST(PlacementPolicy, LongestRunWins) {
  const std::vector<uint64_t> hashes = Hashes(8);
  const PrefixSummary two = SummaryOf(hashes, 2);
  const PrefixSummary five = SummaryOf(hashes, 5);
  std::vector<WorkerView> w = {Worker("w0", kGiB), Worker("w1", kGiB), Worker("w2", 2 * kGiB)};
  w[0].prefix = &two;
  w[1].prefix = &five;
  StatusOr<PlacementDecision> d = NoHeadShards().Place(Input(600, hashes), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 1u);
  EXPECT_EQ(d->prefix_blocks_matched, 5u);
}

TEST(PlacementPolicy, RunMustStartAtTheFirstBlock) {
  const std::vector<uint64_t> hashes = Hashes(8);
  PrefixSummary tail = PrefixSummary::ForEntries(64);
  for (size_t i = 1; i < hashes.size(); ++i) tail.Add(kScope, hashes[i]);  // not block 0
  std::vector<WorkerView> w = {Worker("w0", 2 * kGiB), Worker("w1", kGiB)};
  w[1].prefix = &tail;
  StatusOr<PlacementDecision> d = NoHeadShards().Place(Input(600, hashes), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 0u);
  EXPECT_EQ(d->reason, "headroom");
}

TEST(PlacementPolicy, OtherScopeDoesNotMatch) {
  const std::vector<uint64_t> hashes = Hashes(8);
  PrefixSummary other = PrefixSummary::ForEntries(64);
  for (const uint64_t h : hashes) other.Add(kScope + 1, h);
  std::vector<WorkerView> w = {Worker("w0", 2 * kGiB), Worker("w1", kGiB)};
  w[1].prefix = &other;
  StatusOr<PlacementDecision> d = NoHeadShards().Place(Input(600, hashes), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 0u);
}

TEST(PlacementPolicy, RecentPlacementHit) {
  const std::vector<uint64_t> hashes = Hashes(8);
  std::vector<WorkerView> w = {Worker("w0", 3 * kGiB), Worker("w1", kGiB)};
  w[1].recent_prefix_blocks = 8;  // no summary yet, but the scheduler just sent the prefix there
  StatusOr<PlacementDecision> d = NoHeadShards().Place(Input(600, hashes), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 1u);
  EXPECT_EQ(d->reason, "prefix-affinity");
  EXPECT_EQ(d->prefix_blocks_matched, 8u);
}

TEST(PlacementPolicy, MinPrefixBlocks) {
  const std::vector<uint64_t> hashes = Hashes(8);
  std::vector<WorkerView> w = {Worker("w0", 3 * kGiB), Worker("w1", kGiB)};
  w[1].recent_prefix_blocks = 2;
  DefaultPlacementPolicy policy({.min_prefix_blocks = 3, .head_shard_min_tokens = 0});
  StatusOr<PlacementDecision> d = policy.Place(Input(600, hashes), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 0u);
  EXPECT_EQ(d->reason, "headroom");
}

TEST(PlacementPolicy, AffinityYieldsToHeadroomWhenTheAffineWorkerIsFull) {
  const std::vector<uint64_t> hashes = Hashes(8);
  const PrefixSummary summary = SummaryOf(hashes, 8);
  // 100k tokens need 586 MiB: w1 holds the prefix but has 100 MiB left.
  std::vector<WorkerView> w = {Worker("w0", 2 * kGiB), Worker("w1", 100 * kMiB)};
  w[1].prefix = &summary;
  StatusOr<PlacementDecision> d = NoHeadShards().Place(Input(100000, hashes), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 0u);
  EXPECT_EQ(d->reason, "headroom");
  // Reserved bytes count against room as well.
  w[1].figures.dram_free_bytes = w[1].figures.kv_free_bytes = 2 * kGiB;
  w[1].reserved_bytes = 2 * kGiB - 100 * kMiB;
  d = NoHeadShards().Place(Input(100000, hashes), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 0u);
}

TEST(PlacementPolicy, AffinityYieldsToAMuchShorterQueue) {
  const std::vector<uint64_t> hashes = Hashes(8);
  const PrefixSummary summary = SummaryOf(hashes, 8);
  std::vector<WorkerView> w = {Worker("w0", kGiB), Worker("w1", kGiB)};
  w[1].prefix = &summary;
  w[1].figures.queue_depth = 40;
  DefaultPlacementPolicy policy({.affinity_max_queue_gap = 16, .head_shard_min_tokens = 0});
  StatusOr<PlacementDecision> d = policy.Place(Input(600, hashes), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 0u);
  w[1].figures.queue_depth = 10;  // within the gap: affinity holds
  d = policy.Place(Input(600, hashes), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 1u);
}

TEST(PlacementPolicy, HeadroomPrefersDramThenSsd) {
  std::vector<WorkerView> w = {Worker("w0", kGiB), Worker("w1", 3 * kGiB), Worker("w2", 2 * kGiB)};
  StatusOr<PlacementDecision> d = NoHeadShards().Place(Input(600, {}), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 1u);
  EXPECT_EQ(d->reason, "headroom");
  EXPECT_EQ(d->prefix_blocks_matched, 0u);
  // Equal DRAM room: the one whose SSD tier can take more wins.
  w = {Worker("w0", kGiB), Worker("w1", kGiB)};
  w[1].figures.ssd_tier = true;
  w[1].figures.kv_free_bytes = 3 * kGiB;
  d = NoHeadShards().Place(Input(600, {}), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 1u);
  // Only the SSD tier has room: still placed there.
  w = {Worker("w0", 10 * kMiB), Worker("w1", 10 * kMiB)};
  w[0].figures.ssd_tier = true;
  w[0].figures.kv_free_bytes = 3 * kGiB;
  d = NoHeadShards().Place(Input(100000, {}), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 0u);
}

TEST(PlacementPolicy, LoadBreaksTiesOfSimilarRoom) {
  // Within one headroom step (10 % of 4 GiB), load decides: queue, sequences, then p99.
  std::vector<WorkerView> w = {Worker("w0", 2 * kGiB + 150 * kMiB),
                               Worker("w1", 2 * kGiB + 50 * kMiB)};
  w[0].figures.queue_depth = 5;
  w[1].figures.queue_depth = 1;
  StatusOr<PlacementDecision> d = NoHeadShards().Place(Input(600, {}), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 1u);

  w[0].figures.queue_depth = w[1].figures.queue_depth = 0;
  w[0].figures.sequences = 3;
  w[1].figures.sequences = 9;
  d = NoHeadShards().Place(Input(600, {}), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 0u);

  w[0].figures.sequences = w[1].figures.sequences = 4;
  w[0].figures.attend_p99_us = 900;
  w[1].figures.attend_p99_us = 300;
  d = NoHeadShards().Place(Input(600, {}), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 1u);
}

TEST(PlacementPolicy, SkipsDeadNotReadyAndOtherModels) {
  std::vector<WorkerView> w = {Worker("w0", 3 * kGiB), Worker("w1", 3 * kGiB),
                               Worker("w2", 3 * kGiB), Worker("w3", kGiB)};
  w[0].alive = false;
  w[1].ready = false;
  w[2].model_fingerprint = kModel + 1;
  StatusOr<PlacementDecision> d = NoHeadShards().Place(Input(600, {}), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].worker, 3u);
}

TEST(PlacementPolicy, UnavailableWithoutLiveReadyWorker) {
  std::vector<WorkerView> w = {Worker("w0", kGiB), Worker("w1", kGiB)};
  w[0].alive = false;
  w[1].ready = false;
  StatusOr<PlacementDecision> d = NoHeadShards().Place(Input(600, {}), w);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(d.status().message().find("sequence 42"), std::string::npos) << d.status();
  EXPECT_NE(d.status().message().find("w0 dead"), std::string::npos) << d.status();
  EXPECT_NE(d.status().message().find("w1 not ready"), std::string::npos) << d.status();

  d = NoHeadShards().Place(Input(600, {}), {});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(d.status().message().find("no worker registered"), std::string::npos);
}

TEST(PlacementPolicy, HeadShardsLongSequences) {
  std::vector<WorkerView> w = {Worker("w0", 3 * kGiB), Worker("w1", 3 * kGiB),
                               Worker("w2", 3 * kGiB)};
  DefaultPlacementPolicy policy({.head_shard_min_tokens = 32768, .head_shard_workers = 2});
  StatusOr<PlacementDecision> d = policy.Place(Input(40000, {}), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->reason, "head-shard");
  ASSERT_EQ(d->shards.size(), 2u);
  EXPECT_NE(d->shards[0].worker, d->shards[1].worker);
  EXPECT_EQ(d->shards[0].kv_head_begin, 0u);
  EXPECT_EQ(d->shards[0].kv_head_end, 4u);
  EXPECT_EQ(d->shards[1].kv_head_begin, 4u);
  EXPECT_EQ(d->shards[1].kv_head_end, 8u);
  EXPECT_EQ(d->shards[0].bytes, 40000 * kBytesPerToken / 2);
  for (const ShardDecision& s : d->shards) EXPECT_EQ(s.token_end, -1);

  // Uneven split: 8 heads over 3 workers -> 3, 3, 2.
  policy = DefaultPlacementPolicy({.head_shard_min_tokens = 32768, .head_shard_workers = 3});
  d = policy.Place(Input(40000, {}), w);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->shards.size(), 3u);
  EXPECT_EQ(d->shards[0].kv_head_end - d->shards[0].kv_head_begin, 3u);
  EXPECT_EQ(d->shards[1].kv_head_end - d->shards[1].kv_head_begin, 3u);
  EXPECT_EQ(d->shards[2].kv_head_begin, 6u);
  EXPECT_EQ(d->shards[2].kv_head_end, 8u);

  // Short sequences stay whole.
  d = policy.Place(Input(1000, {}), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards.size(), 1u);
}

TEST(PlacementPolicy, HeadShardNeedsTwoWorkersWithRoom) {
  // 40k tokens = 234 MiB, 117 MiB per half: only w0 has room for a half.
  std::vector<WorkerView> w = {Worker("w0", 3 * kGiB), Worker("w1", 50 * kMiB)};
  DefaultPlacementPolicy policy({.head_shard_min_tokens = 32768});
  StatusOr<PlacementDecision> d = policy.Place(Input(40000, {}), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->reason, "headroom");
  ASSERT_EQ(d->shards.size(), 1u);
  EXPECT_EQ(d->shards[0].worker, 0u);
}

TEST(PlacementPolicy, TokenSplitWhenNoWorkerHoldsTheContext) {
  // 200k tokens need 1.14 GiB; the workers have 800, 400 and 100 MiB.
  std::vector<WorkerView> w = {Worker("w0", 400 * kMiB), Worker("w1", 800 * kMiB),
                               Worker("w2", 100 * kMiB)};
  StatusOr<PlacementDecision> d = NoHeadShards().Place(Input(200000, {}), w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->reason, "token-split");
  ASSERT_EQ(d->shards.size(), 2u);
  EXPECT_EQ(d->shards[0].worker, 1u);  // most room first
  EXPECT_EQ(d->shards[1].worker, 0u);
  EXPECT_EQ(d->shards[0].token_begin, 0u);
  const int64_t bound = d->shards[0].token_end;
  EXPECT_EQ(bound % 64, 0);
  EXPECT_EQ(static_cast<uint64_t>(bound), d->shards[1].token_begin);
  EXPECT_EQ(d->shards[1].token_end, -1);
  // Proportional to room: 2/3 of the tokens on w1, within one block.
  EXPECT_NEAR(static_cast<double>(bound), 200000.0 * 2 / 3, 64);
  for (const ShardDecision& s : d->shards) {
    EXPECT_EQ(s.kv_head_begin, 0u);
    EXPECT_EQ(s.kv_head_end, 8u);
    EXPECT_LE(s.bytes, w[s.worker].figures.kv_free_bytes + 64 * kBytesPerToken);
  }
}

TEST(PlacementPolicy, ResourceExhaustedNamesNeedAndBestRoom) {
  std::vector<WorkerView> w = {Worker("w0", 400 * kMiB), Worker("w1", 300 * kMiB)};
  StatusOr<PlacementDecision> d = NoHeadShards().Place(Input(200000, {}), w);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kResourceExhausted);
  const std::string m(d.status().message());
  EXPECT_NE(m.find("sequence 42 needs 1.14 GiB"), std::string::npos) << m;
  EXPECT_NE(m.find("200000 tokens"), std::string::npos) << m;
  EXPECT_NE(m.find("400 MiB (w0)"), std::string::npos) << m;
  EXPECT_NE(m.find("700 MiB over 2 live workers"), std::string::npos) << m;
}

TEST(PlacementPolicy, ExpectedTokensAtLeastThePrompt) {
  std::vector<WorkerView> w = {Worker("w0", 3 * kGiB)};
  PlacementInput in = Input(1000, {});
  in.expected_tokens = 10;  // below the prompt: the prompt is what must fit
  StatusOr<PlacementDecision> d = NoHeadShards().Place(in, w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->shards[0].bytes, 1000 * kBytesPerToken);
}

}  // namespace
}  // namespace attic::scheduler
