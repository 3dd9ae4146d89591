// The client's per-sequence bookkeeping after a Resume: lengths combined over shards, shards
// that already hold a token, durable lengths from replies.
#include "client/internal/sequence.h"

#include <gtest/gtest.h>

#include <vector>

namespace attic::client_internal {
namespace {

// Heads [0,4): tokens [0,256) on worker 0, [256,inf) on worker 1; heads [4,8) on worker 2.
ShardPlan Mixed() {
  return ShardPlan{
      .shards = {
          {.worker = 0, .kv_head_begin = 0, .kv_head_end = 4, .token_begin = 0, .token_end = 256},
          {.worker = 1, .kv_head_begin = 0, .kv_head_end = 4, .token_begin = 256, .token_end = -1},
          {.worker = 2, .kv_head_begin = 4, .kv_head_end = 8}}};
}

TEST(SequenceStateTest, ResumedLengthsAreContiguousAndTheMinimumOverHeads) {
  SequenceState seq(7, Mixed(), /*num_layers=*/2);
  // Layer 0: heads [0,4) hold 256 + 200 = 456 tokens, heads [4,8) lost more (440).
  // Layer 1: the first token shard lost its tail: only 192 tokens are contiguous from 0.
  const std::vector<ResumedShard> shards = {{.lengths = {256, 192}, .durable = {256, 192}},
                                            {.lengths = {200, 100}, .durable = {192, 100}},
                                            {.lengths = {440, 400}, .durable = {384, 400}}};
  const ResumeInfo info = AdoptResumed(seq, shards);
  EXPECT_EQ(info.lengths, (std::vector<int64_t>{440, 192}));
  EXPECT_EQ(info.durable_lengths, (std::vector<int64_t>{384, 192}));
  MutexLock lock(&seq.mu);
  EXPECT_TRUE(seq.open);
  EXPECT_TRUE(seq.looked_up);  // no LookupPrefix after a Resume
  EXPECT_EQ(seq.length, (std::vector<int64_t>{440, 192}));
  EXPECT_EQ(seq.local_len[0], (std::vector<int64_t>{256, 200, 440}));
  // Decode token 440 of layer 0: heads [0,4) hold it already, heads [4,8) do not.
  EXPECT_TRUE(HoldsToken(seq, 0, 1, 440));
  EXPECT_FALSE(HoldsToken(seq, 0, 2, 440));
  EXPECT_FALSE(HoldsToken(seq, 0, 1, 456));
  // Durable lengths only grow, whatever order replies come in.
  NoteDurable(seq, 0, 2, 448);
  NoteDurable(seq, 0, 2, 400);
  EXPECT_EQ(seq.durable_len[0][2], 448);
}

}  // namespace
}  // namespace attic::client_internal
