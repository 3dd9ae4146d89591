// The plan of an Attend request: split-K chunks, sparse heads, cut windows, spilled blocks.
#include "attention_workers/attend_plan.h"

#include <gtest/gtest.h>

#include <vector>

namespace attic {
namespace {

// Blocks of `block` tokens over `tokens` tokens; blocks in `spilled` have no values.
std::vector<KvRun> Blocks(int tokens, int block, std::vector<int> spilled = {}) {
  static const char kK = 0, kV = 0;
  std::vector<KvRun> runs;
  for (int t = 0; t < tokens; t += block) runs.push_back({&kK, &kV, std::min(block, tokens - t)});
  for (int b : spilled) runs[static_cast<size_t>(b)].v = nullptr;
  return runs;
}

int64_t Tokens(std::span<const KvRun> runs) {
  int64_t n = 0;
  for (const KvRun& r : runs) n += r.num_tokens;
  return n;
}

// Every head's tasks are consecutive chunks of its runs, in order, covering `covered` tokens.
void ExpectCovers(const AttendPlan& plan, size_t h, std::span<const KvRun> runs,
                  int64_t covered) {
  int64_t tokens = 0;
  uint32_t next_block = 0;
  for (const PlanTask& t : plan.HeadTasks(h)) {
    EXPECT_EQ(t.head, h);
    EXPECT_FALSE(t.sparse);
    EXPECT_EQ(t.first_block, next_block);
    for (size_t r = 0; r < t.runs.size(); ++r) {
      EXPECT_EQ(t.runs[r].k, runs[t.first_block + r].k);
    }
    next_block += static_cast<uint32_t>(t.runs.size());
    tokens += Tokens(t.runs);
  }
  EXPECT_EQ(tokens, covered);
}

TEST(AttendPlan, SplitsLongDenseHeadsIntoChunksForEveryThread) {
  const std::vector<KvRun> a = Blocks(16384, 64), b = Blocks(16384, 64);
  const std::vector<AttendHead> heads = {{.runs = a}, {.runs = b}};
  AttendPlan plan;
  PlanAttend(heads, {.threads = 2, .tasks_per_thread = 4, .min_chunk_tokens = 1024}, &plan);
  // 32K tokens over 8 tasks: 4K-token chunks, four per head.
  EXPECT_EQ(plan.chunk_tokens, 4096);
  ASSERT_EQ(plan.num_heads(), 2u);
  EXPECT_EQ(plan.tasks.size(), 8u);
  EXPECT_EQ(plan.HeadTasks(0).size(), 4u);
  ExpectCovers(plan, 0, a, 16384);
  ExpectCovers(plan, 1, b, 16384);
  EXPECT_EQ(plan.dense_tokens, 32768);
  EXPECT_EQ(plan.max_task_spilled, 0u);
  EXPECT_EQ(plan.max_task_runs, 64u);
}

TEST(AttendPlan, ShortHeadsStayWholeAtTheMinimumChunk) {
  const std::vector<KvRun> a = Blocks(700, 64), b = Blocks(0, 64);
  const std::vector<AttendHead> heads = {{.runs = a}, {.runs = b}};
  AttendPlan plan;
  PlanAttend(heads, {.threads = 16}, &plan);
  EXPECT_EQ(plan.chunk_tokens, 1024);
  ASSERT_EQ(plan.tasks.size(), 2u);
  ExpectCovers(plan, 0, a, 700);
  // An empty head still has its one (empty) task: it answers lse = -inf.
  ASSERT_EQ(plan.HeadTasks(1).size(), 1u);
  EXPECT_TRUE(plan.HeadTasks(1)[0].runs.empty());
}

TEST(AttendPlan, SparseHeadIsOneTaskOverAllItsBlocks) {
  const std::vector<KvRun> dense = Blocks(8192, 64), sparse = Blocks(8192, 64, {3, 7});
  const std::vector<AttendHead> heads = {{.runs = dense},
                                         {.runs = sparse, .mode = HeadMode::kSparse}};
  AttendPlan plan;
  PlanAttend(heads, {.threads = 2, .tasks_per_thread = 2, .min_chunk_tokens = 1024}, &plan);
  // Only dense tokens count for the chunk length: 8K over 4 tasks.
  EXPECT_EQ(plan.chunk_tokens, 2048);
  EXPECT_EQ(plan.HeadTasks(0).size(), 4u);
  ASSERT_EQ(plan.HeadTasks(1).size(), 1u);
  const PlanTask& t = plan.HeadTasks(1)[0];
  EXPECT_TRUE(t.sparse);
  EXPECT_EQ(t.runs.size(), sparse.size());
  EXPECT_EQ(t.runs.data(), sparse.data());
  // What a sparse head fetches is decided after its search, not in the plan.
  EXPECT_EQ(t.num_spilled(), 0u);
}

TEST(AttendPlan, DenseTokensCutTheHeadShort) {
  const std::vector<KvRun> a = Blocks(1000, 64), b = Blocks(1000, 64);
  const std::vector<AttendHead> heads = {{.runs = a, .dense_tokens = 1000 - 100},
                                         {.runs = b, .dense_tokens = 0}};
  AttendPlan plan;
  PlanAttend(heads, {.threads = 1}, &plan);
  ASSERT_EQ(plan.tasks.size(), 2u);
  const PlanTask& t = plan.HeadTasks(0)[0];
  EXPECT_EQ(Tokens(t.runs), 900);
  ASSERT_EQ(t.runs.size(), 15u);  // 14 whole blocks and 4 tokens of the 15th
  EXPECT_EQ(t.runs.back().num_tokens, 900 - 14 * 64);
  // The heads' own runs are untouched.
  EXPECT_EQ(a[14].num_tokens, 64);
  EXPECT_EQ(Tokens(plan.HeadTasks(1)[0].runs), 0);
  EXPECT_EQ(plan.dense_tokens, 900);
}

TEST(AttendPlan, ListsSpilledBlocksPerDenseTask) {
  // Two chunks of 16 blocks: blocks 1, 2 and 20 spilled.
  const std::vector<KvRun> a = Blocks(2048, 64, {1, 2, 20});
  const std::vector<AttendHead> heads = {{.runs = a}};
  AttendPlan plan;
  PlanAttend(heads, {.threads = 1, .tasks_per_thread = 2, .min_chunk_tokens = 1024}, &plan);
  ASSERT_EQ(plan.tasks.size(), 2u);
  const PlanTask& t0 = plan.tasks[0];
  const PlanTask& t1 = plan.tasks[1];
  ASSERT_EQ(t0.num_spilled(), 2u);
  EXPECT_EQ(plan.spilled[t0.spilled_begin], 1);
  EXPECT_EQ(plan.spilled[t0.spilled_begin + 1], 2);
  ASSERT_EQ(t1.num_spilled(), 1u);
  EXPECT_EQ(plan.spilled[t1.spilled_begin], 20);  // among the head's blocks, not the task's
  EXPECT_EQ(t1.first_block, 16u);
  EXPECT_EQ(plan.max_task_spilled, 2u);
}

TEST(AttendPlan, ReplanningReplacesThePlan) {
  const std::vector<KvRun> a = Blocks(4096, 64, {0}), b = Blocks(128, 64);
  AttendPlan plan;
  const std::vector<AttendHead> first = {{.runs = a}, {.runs = a, .dense_tokens = 10}};
  PlanAttend(first, {.threads = 4}, &plan);
  const std::vector<AttendHead> second = {{.runs = b, .mode = HeadMode::kSparse}};
  PlanAttend(second, {.threads = 4}, &plan);
  ASSERT_EQ(plan.num_heads(), 1u);
  ASSERT_EQ(plan.tasks.size(), 1u);
  EXPECT_TRUE(plan.tasks[0].sparse);
  EXPECT_TRUE(plan.spilled.empty());
  EXPECT_TRUE(plan.cut.empty());
  EXPECT_EQ(plan.max_task_spilled, 0u);
  EXPECT_EQ(plan.dense_tokens, 0);
}

}  // namespace
}  // namespace attic
