// SchedulerState with a fake clock: registration, dead detection and the way back,
// re-registration with a new incarnation, the sequence table rebuilt from held shards, grace
// for placed but unannounced shards, release, reservations and recent placements.
#include "services/scheduler/scheduler_state.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace attic::scheduler {
namespace {

using std::chrono::milliseconds;

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kModel = 0xfeed;

class SchedulerStateTest : public ::testing::Test {
 protected:
  SchedulerStateTest()
      : state_({.heartbeat_interval = milliseconds(500),
                .dead_after = milliseconds(3000),
                .sequence_grace = milliseconds(10000),
                .forget_dead_after = milliseconds(60000),
                .recent_placement_ttl = milliseconds(5000),
                .incarnation = 99},
               [this] { return now_; }) {}

  static WorkerReport Report(const std::string& name, uint64_t incarnation = 1,
                             uint64_t free_bytes = 2 * kGiB) {
    WorkerReport r;
    r.name = name;
    r.data_address = "127.0.0.1:71" + name.substr(1) + "0";
    r.metrics_address = "127.0.0.1:72" + name.substr(1) + "0";
    r.incarnation = incarnation;
    r.model_fingerprint = kModel;
    r.num_kv_heads = 2;
    r.figures = {.dram_capacity_bytes = 4 * kGiB,
                 .dram_free_bytes = free_bytes,
                 .block_tokens = 64,
                 .kv_bytes_per_token = 6144,
                 .kv_free_bytes = free_bytes};
    r.ready = true;
    return r;
  }

  static PlaceRequest Request(uint64_t id, std::vector<uint64_t> hashes = {}) {
    return {.sequence_id = id,
            .tenant = "t",
            .model_fingerprint = kModel,
            .prompt_tokens = 1000,
            .expected_tokens = 1000,
            .prompt_hashes = std::move(hashes),
            .prefix_scope = 5};
  }

  void Advance(int ms) { now_ += milliseconds(ms); }

  TimePoint now_{std::chrono::hours(1)};
  SchedulerState state_;
  DefaultPlacementPolicy policy_{{.head_shard_min_tokens = 0}};
};

TEST_F(SchedulerStateTest, RegisterAndFleet) {
  const RegisterOutcome r = state_.Register(Report("w1"));
  EXPECT_TRUE(r.is_new);
  EXPECT_EQ(r.reply.heartbeat_interval_ms, 500u);
  EXPECT_EQ(r.reply.dead_after_ms, 3000u);
  EXPECT_EQ(r.reply.scheduler_incarnation, 99u);
  state_.Register(Report("w2"));
  Advance(250);
  const Fleet f = state_.GetFleet();
  ASSERT_EQ(f.workers.size(), 2u);
  EXPECT_EQ(f.workers[0].name, "w1");
  EXPECT_EQ(f.workers[0].data_address, "127.0.0.1:7110");
  EXPECT_TRUE(f.workers[0].alive);
  EXPECT_TRUE(f.workers[0].ready);
  EXPECT_EQ(f.workers[0].silent_ms, 250u);
  EXPECT_EQ(f.scheduler_incarnation, 99u);
  EXPECT_EQ(state_.Counts().workers_alive, 2);
}

TEST_F(SchedulerStateTest, DeadAfterSilenceAndBackAfterRegistering) {
  state_.Register(Report("w1"));
  state_.Register(Report("w2"));
  StatusOr<PlaceOutcome> p = state_.Place(Request(42), policy_);
  ASSERT_TRUE(p.ok()) << p.status();
  const std::string where = p->placement.shards[0].worker_name;
  const std::string other = where == "w1" ? "w2" : "w1";
  // Both heartbeat for 2.5 s; then only `other` does.
  for (int i = 0; i < 5; ++i) {
    Advance(500);
    EXPECT_TRUE(state_.Heartbeat(Report("w1")).known);
    EXPECT_TRUE(state_.Heartbeat(Report("w2")).known);
  }
  for (int i = 0; i < 6; ++i) {
    Advance(500);
    EXPECT_TRUE(state_.Heartbeat(Report(other)).known);
  }
  Advance(200);  // 3.2 s of silence
  StateCounts c = state_.Counts();
  EXPECT_EQ(c.workers_alive, 1);
  EXPECT_EQ(c.workers_dead, 1);
  StatusOr<Placement> located = state_.Locate(42);
  ASSERT_FALSE(located.ok());
  EXPECT_EQ(located.status().code(), StatusCode::kUnavailable);
  const std::string addr = where == "w1" ? "127.0.0.1:7110" : "127.0.0.1:7120";
  EXPECT_EQ(located.status().message(),
            "sequence 42: worker " + where + " (" + addr + ") is dead: no heartbeat for 3.2 s");
  // The dead worker gets no placements.
  p = state_.Place(Request(43), policy_);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->placement.shards[0].worker_name, other);
  // It heartbeats again: told to register, then it is alive again.
  EXPECT_FALSE(state_.Heartbeat(Report(where)).known);
  const RegisterOutcome back = state_.Register(Report(where));
  EXPECT_TRUE(back.came_back);
  EXPECT_FALSE(back.restarted);
  EXPECT_TRUE(state_.Heartbeat(Report(where)).known);
  EXPECT_EQ(state_.Counts().workers_dead, 0);
  // A placed sequence its worker now announces is found.
  WorkerReport with = Report(where);
  with.shards = {
      {.sequence_id = 42, .tenant = "t", .kv_head_begin = 0, .kv_head_end = 2, .tokens = 1000}};
  EXPECT_TRUE(state_.Heartbeat(with).known);
  located = state_.Locate(42);
  ASSERT_TRUE(located.ok()) << located.status();
  EXPECT_EQ(located->shards[0].worker_name, where);
}

TEST_F(SchedulerStateTest, LateHeartbeatIsUnknownAndSilentWorkerIsDead) {
  state_.Register(Report("w1"));
  Advance(3001);
  // Nobody looked in between: the late heartbeat itself finds the worker silent too long.
  EXPECT_FALSE(state_.Heartbeat(Report("w1")).known);
  EXPECT_EQ(state_.Counts().workers_dead, 1);
  EXPECT_EQ(state_.Place(Request(1), policy_).status().code(), StatusCode::kUnavailable);
}

TEST_F(SchedulerStateTest, NewIncarnationReplacesTheOldState) {
  WorkerReport first = Report("w1", 1);
  first.shards = {
      {.sequence_id = 7, .tenant = "t", .kv_head_begin = 0, .kv_head_end = 2, .tokens = 100}};
  state_.Register(first);
  ASSERT_TRUE(state_.Locate(7).ok());
  // A heartbeat of another incarnation is not this worker's: register first.
  EXPECT_FALSE(state_.Heartbeat(Report("w1", 2)).known);
  // The restarted worker holds no sequence: 7 is forgotten.
  const RegisterOutcome r = state_.Register(Report("w1", 2));
  EXPECT_TRUE(r.restarted);
  EXPECT_EQ(state_.Locate(7).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(state_.Heartbeat(Report("w1", 2)).known);
  EXPECT_FALSE(state_.Heartbeat(Report("w1", 1)).known);
  EXPECT_EQ(state_.GetFleet().workers.size(), 1u);
}

TEST_F(SchedulerStateTest, SequencesRebuiltFromHeldShards) {
  // A scheduler that just started knows nothing; the workers announce what they hold: a
  // head-sharded sequence 5 (heads 0 and 1 on w1 and w2) and a token-split sequence 6.
  WorkerReport w1 = Report("w1");
  w1.shards = {
      {.sequence_id = 5, .tenant = "t", .kv_head_begin = 0, .kv_head_end = 1, .tokens = 300},
      {.sequence_id = 6,
       .tenant = "u",
       .kv_head_begin = 0,
       .kv_head_end = 2,
       .token_begin = 0,
       .tokens = 640}};
  WorkerReport w2 = Report("w2");
  w2.shards = {
      {.sequence_id = 5, .tenant = "t", .kv_head_begin = 1, .kv_head_end = 2, .tokens = 300},
      {.sequence_id = 6,
       .tenant = "u",
       .kv_head_begin = 0,
       .kv_head_end = 2,
       .token_begin = 640,
       .tokens = 100}};
  EXPECT_FALSE(state_.Heartbeat(w1).known);
  state_.Register(w1);
  state_.Register(w2);
  EXPECT_EQ(state_.Counts().sequences, 2);

  StatusOr<Placement> five = state_.Locate(5);
  ASSERT_TRUE(five.ok()) << five.status();
  EXPECT_EQ(five->reason, "announced");
  ASSERT_EQ(five->shards.size(), 2u);
  EXPECT_EQ(five->shards[0].worker_name, "w1");
  EXPECT_EQ(five->shards[0].data_address, "127.0.0.1:7110");
  EXPECT_EQ(five->shards[0].kv_head_begin, 0u);
  EXPECT_EQ(five->shards[0].kv_head_end, 1u);
  EXPECT_EQ(five->shards[0].token_end, -1);
  EXPECT_EQ(five->shards[1].worker_name, "w2");
  EXPECT_EQ(five->shards[1].kv_head_begin, 1u);
  EXPECT_EQ(five->shards[1].token_end, -1);

  StatusOr<Placement> six = state_.Locate(6);
  ASSERT_TRUE(six.ok()) << six.status();
  ASSERT_EQ(six->shards.size(), 2u);
  EXPECT_EQ(six->shards[0].worker_name, "w1");
  EXPECT_EQ(six->shards[0].token_begin, 0u);
  EXPECT_EQ(six->shards[0].token_end, 640);  // where w2's range begins
  EXPECT_EQ(six->shards[1].worker_name, "w2");
  EXPECT_EQ(six->shards[1].token_begin, 640u);
  EXPECT_EQ(six->shards[1].token_end, -1);

  // w1 closes 5: its shard goes, w2's stays until w2 drops it too.
  w1.shards.erase(w1.shards.begin());
  Advance(500);
  EXPECT_TRUE(state_.Heartbeat(w1).known);
  five = state_.Locate(5);
  ASSERT_TRUE(five.ok());
  ASSERT_EQ(five->shards.size(), 1u);
  EXPECT_EQ(five->shards[0].worker_name, "w2");
  w2.shards.erase(w2.shards.begin());
  EXPECT_TRUE(state_.Heartbeat(w2).known);
  EXPECT_EQ(state_.Locate(5).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(state_.Counts().sequences, 1);
}

TEST_F(SchedulerStateTest, PlacedButNeverOpenedIsForgottenAfterGrace) {
  state_.Register(Report("w1"));
  ASSERT_TRUE(state_.Place(Request(8), policy_).ok());
  for (int i = 0; i < 19; ++i) {  // 9.5 s: still within the grace period
    Advance(500);
    ASSERT_TRUE(state_.Heartbeat(Report("w1")).known);
  }
  ASSERT_TRUE(state_.Locate(8).ok());
  Advance(600);
  ASSERT_TRUE(state_.Heartbeat(Report("w1")).known);
  EXPECT_EQ(state_.Locate(8).status().code(), StatusCode::kNotFound);
}

TEST_F(SchedulerStateTest, ReleaseForgetsAtOnce) {
  state_.Register(Report("w1"));
  ASSERT_TRUE(state_.Place(Request(9), policy_).ok());
  EXPECT_EQ(state_.Counts().sequences, 1);
  EXPECT_TRUE(state_.Release(9));
  EXPECT_FALSE(state_.Release(9));
  EXPECT_EQ(state_.Locate(9).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(state_.Counts().sequences, 0);
}

TEST_F(SchedulerStateTest, RetriedPlaceGetsTheSamePlacementAndOpenOneIsRefused) {
  state_.Register(Report("w1"));
  state_.Register(Report("w2"));
  StatusOr<PlaceOutcome> a = state_.Place(Request(10), policy_);
  ASSERT_TRUE(a.ok()) << a.status();
  StatusOr<PlaceOutcome> b = state_.Place(Request(10), policy_);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->repeated);
  EXPECT_EQ(a->placement.shards, b->placement.shards);
  WorkerReport holder = Report(a->placement.shards[0].worker_name);
  holder.shards = {{.sequence_id = 10, .tenant = "t", .kv_head_begin = 0, .kv_head_end = 2}};
  state_.Heartbeat(holder);
  EXPECT_EQ(state_.Place(Request(10), policy_).status().code(), StatusCode::kAlreadyExists);
}

TEST_F(SchedulerStateTest, ReservationsSpreadABurst) {
  // 1000 tokens x 6 KiB = 5.9 MiB each; two workers with 64 MiB free: a burst of placements
  // alternates instead of piling onto the first (the figures do not move between heartbeats).
  state_.Register(Report("w1", 1, 64 << 20));
  state_.Register(Report("w2", 1, 64 << 20));
  WorkerReport w1 = Report("w1", 1, 64 << 20);
  for (uint64_t id = 1; id <= 10; ++id) {
    StatusOr<PlaceOutcome> p = state_.Place(Request(id), policy_);
    ASSERT_TRUE(p.ok()) << p.status();
    if (p->placement.shards[0].worker_name == "w1") {
      w1.shards.push_back(
          {.sequence_id = id, .tenant = "t", .kv_head_begin = 0, .kv_head_end = 2, .tokens = 1000});
    }
  }
  EXPECT_EQ(w1.shards.size(), 5u);
  // Once w1 announces the tokens (its figures would now show them), they are no longer
  // reserved on top of its figures: with equal figures, w1 has more room than w2.
  EXPECT_TRUE(state_.Heartbeat(w1).known);
  StatusOr<PlaceOutcome> next = state_.Place(Request(11), policy_);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->placement.shards[0].worker_name, "w1");
}

TEST_F(SchedulerStateTest, ReleaseGivesTheReservationBack) {
  state_.Register(Report("w1", 1, 64 << 20));
  state_.Register(Report("w2", 1, 64 << 20));
  std::vector<uint64_t> on_w2;
  for (uint64_t id = 1; id <= 6; ++id) {
    StatusOr<PlaceOutcome> p = state_.Place(Request(id), policy_);
    ASSERT_TRUE(p.ok()) << p.status();
    if (p->placement.shards[0].worker_name == "w2") on_w2.push_back(id);
  }
  ASSERT_EQ(on_w2.size(), 3u);
  // With w2's placements released it has more room than w1 again (a tie would pick w1).
  for (const uint64_t id : on_w2) EXPECT_TRUE(state_.Release(id));
  StatusOr<PlaceOutcome> next = state_.Place(Request(7), policy_);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->placement.shards[0].worker_name, "w2");
}

TEST_F(SchedulerStateTest, RecentPlacementsKeepABurstTogether) {
  state_.Register(Report("w1"));
  state_.Register(Report("w2"));
  const std::vector<uint64_t> prefix = {101, 102, 103};
  StatusOr<PlaceOutcome> first = state_.Place(Request(20, prefix), policy_);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string where = first->placement.shards[0].worker_name;
  // No heartbeat shows the prefix yet; the burst still follows the first request.
  for (uint64_t id = 21; id < 25; ++id) {
    StatusOr<PlaceOutcome> p = state_.Place(Request(id, prefix), policy_);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->placement.shards[0].worker_name, where);
    EXPECT_EQ(p->placement.reason, "prefix-affinity");
    EXPECT_EQ(p->placement.prefix_blocks_matched, 3u);
  }
  // After the TTL the memory is gone (and no summary holds the prefix): headroom decides.
  for (int i = 0; i < 12; ++i) {
    Advance(500);
    ASSERT_TRUE(state_.Heartbeat(Report("w1")).known);
    ASSERT_TRUE(state_.Heartbeat(Report("w2")).known);
  }
  StatusOr<PlaceOutcome> later = state_.Place(Request(30, prefix), policy_);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->placement.reason, "headroom");
}

TEST_F(SchedulerStateTest, DeadWorkersAreDroppedEventually) {
  WorkerReport w1 = Report("w1");
  w1.shards = {{.sequence_id = 3, .tenant = "t", .kv_head_begin = 0, .kv_head_end = 2}};
  state_.Register(w1);
  Advance(30000);
  EXPECT_EQ(state_.Locate(3).status().code(), StatusCode::kUnavailable);
  Advance(31000);
  EXPECT_EQ(state_.Locate(3).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(state_.GetFleet().workers.empty());
}

}  // namespace
}  // namespace attic::scheduler
