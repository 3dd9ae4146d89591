// End to end with real processes: three attic-worker processes on loopback, a client playing
// the compute node, head and token sharding, a shared prompt prefix, every output checked
// against exact attention; then a worker killed mid-run and restarted.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <map>

#include "tests/integration/offload_fixture.h"

namespace attic::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kDecodeSteps = 200;

// Outputs are compared with fp64 attention every kCheckEvery steps (and at the last one);
// the reference is the slow part of the test.
constexpr int kCheckEvery = 25;

struct PlannedSequence {
  uint64_t id;
  int prompt_tokens;
  bool shared_prefix;
  ShardPlan plan;
};

TEST_F(OffloadFleet, DecodeMatchesExactAttentionAcrossShardingPlans) {
  StartWorkers(3);
  std::unique_ptr<Client> client = Connect(seconds(30));
  ASSERT_NE(client, nullptr);
  const ModelSpec& s = spec_;
  // Head sharding, token sharding, both at once, and single-worker plans; sequences 1, 2 and
  // 6 share a 1024-token prompt prefix (1 and 6 on the same shards, so 6 finds it cached).
  ShardPlan mixed;
  mixed.shards = {{.worker = 0, .kv_head_begin = 0, .kv_head_end = 4, .token_end = 1024},
                  {.worker = 1, .kv_head_begin = 0, .kv_head_end = 4, .token_begin = 1024},
                  {.worker = 2, .kv_head_begin = 4, .kv_head_end = 8}};
  const std::vector<PlannedSequence> planned = {
      {1, 2048, true, ShardPlan::SplitHeads(s, {0, 1})},
      {2, 1536, true, ShardPlan::SplitHeads(s, {1, 2})},
      {3, 3000, false, ShardPlan::SplitTokens(s, {0, 1, 2}, {0, 1024, 2048})},
      {4, 1100, false, ShardPlan::Single(s, 2)},
      {5, 2500, false, mixed},
      {6, 4096, true, ShardPlan::SplitHeads(s, {0, 1})},
      {7, 1024, false, ShardPlan::SplitTokens(s, {2, 0}, {0, 512})},
      {8, 3333, false, ShardPlan::SplitHeads(s, {0, 1, 2})},
  };
  loadgen::EngineModel model(s, /*seed=*/11);
  std::vector<uint64_t> ids;
  for (const PlannedSequence& p : planned) {
    model.AddSequence({.id = p.id,
                       .prompt_tokens = p.prompt_tokens,
                       .shared_prefix_tokens = p.shared_prefix ? 1024 : 0,
                       .prefix_content = 1000});
    StatusOr<PrefixMatch> match = OpenAndPrefill(*client, model, p.id, p.plan);
    ASSERT_TRUE(match.ok()) << "sequence " << p.id << ": " << match.status();
    if (p.id == 6) {
      EXPECT_EQ(match->matched_tokens, 1024) << "sequence 6 should reuse sequence 1's prefix";
    } else if (p.id == 1) {
      EXPECT_EQ(match->matched_tokens, 0);
    }
    ids.push_back(p.id);
  }
  for (int step = 0; step < kDecodeSteps; ++step) {
    const bool check = step % kCheckEvery == 0 || step == kDecodeSteps - 1;
    for (int layer = 0; layer < s.num_layers; ++layer) {
      Status st = Step(*client, model, layer, ids, check);
      ASSERT_TRUE(st.ok()) << "step " << step << " layer " << layer << ": " << st;
    }
  }
  for (uint64_t id : ids) {
    for (int layer = 0; layer < s.num_layers; ++layer) {
      StatusOr<int64_t> len = client->Length(id, layer);
      ASSERT_TRUE(len.ok()) << len.status();
      EXPECT_EQ(*len, model.Length(id, layer));
    }
    EXPECT_TRUE(client->Close(id).get().ok());
  }
}

TEST_F(OffloadFleet, KilledWorkerFailsItsSequencesWithinTheDeadlineAndRecoversAfterRestart) {
  StartWorkers(3);
  const milliseconds timeout(3000);
  std::unique_ptr<Client> client = Connect(timeout);
  ASSERT_NE(client, nullptr);
  const ModelSpec& s = spec_;
  loadgen::EngineModel model(s, /*seed=*/5);
  // 1 lives on workers 0 and 1 only; 2 on worker 2 only; 3 on workers 1 and 2.
  const std::map<uint64_t, ShardPlan> plans = {{1, ShardPlan::SplitHeads(s, {0, 1})},
                                               {2, ShardPlan::Single(s, 2)},
                                               {3, ShardPlan::SplitHeads(s, {1, 2})}};
  for (const auto& [id, plan] : plans) {
    model.AddSequence({.id = id, .prompt_tokens = 1500});
    StatusOr<PrefixMatch> m = OpenAndPrefill(*client, model, id, plan);
    ASSERT_TRUE(m.ok()) << m.status();
  }
  const std::vector<uint64_t> all = {1, 2, 3};
  for (int layer = 0; layer < s.num_layers; ++layer) {
    ASSERT_TRUE(Step(*client, model, layer, all, true).ok());
  }

  StatusOr<int> killed = workers_[2]->Kill(SIGKILL);
  ASSERT_TRUE(killed.ok()) << killed.status();
  // The batch still holding sequences of the dead worker fails, naming it, within the
  // deadline; its healthy item is still written and correct.
  const auto start = std::chrono::steady_clock::now();
  Status failed = Step(*client, model, 0, {1, 2}, false);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(failed.code(), StatusCode::kUnavailable) << failed;
  EXPECT_NE(failed.message().find("sequence 2"), std::string_view::npos) << failed;
  EXPECT_NE(failed.message().find("w2"), std::string_view::npos) << failed;
  EXPECT_LT(elapsed, timeout + milliseconds(1000));
  // Sequence 1 carries on, exactly (it took the token of layer 0 above: continue from 1).
  for (int layer = 1; layer < s.num_layers; ++layer) {
    ASSERT_TRUE(Step(*client, model, layer, {1}, true).ok());
  }
  for (int step = 0; step < 5; ++step) {
    for (int layer = 0; layer < s.num_layers; ++layer) {
      ASSERT_TRUE(Step(*client, model, layer, {1}, step == 4).ok());
    }
  }

  // Restart on the same ports; the lost sequences are reopened and prefilled again from the
  // compute node's copy, then decode goes on for everyone.
  Status restarted = workers_[2]->Start(seconds(30));
  ASSERT_TRUE(restarted.ok()) << restarted;
  for (uint64_t id : {uint64_t{2}, uint64_t{3}}) {
    client->Close(id).get().IgnoreError();  // the dead worker's half cannot answer
    model.RemoveSequence(id);
    model.AddSequence({.id = id, .prompt_tokens = 1500});
    StatusOr<PrefixMatch> m = OpenAndPrefill(*client, model, id, plans.at(id));
    ASSERT_TRUE(m.ok()) << "reopen " << id << ": " << m.status();
  }
  for (int step = 0; step < 3; ++step) {
    for (int layer = 0; layer < s.num_layers; ++layer) {
      Status st = Step(*client, model, layer, all, true);
      ASSERT_TRUE(st.ok()) << st;
    }
  }
}

}  // namespace
}  // namespace attic::testing
