// The local fleet (attic-scheduler + attic-workers as real processes) replaying traces end to
// end through attic-replay's driver: every request ends completed or failed with a code,
// completed + failed = admitted, and a repeated prompt prefix is served from the prefix cache.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "client/client.h"
#include "client/scheduler.h"
#include "services/fleet/local_fleet.h"
#include "services/loadgen/worker_process.h"
#include "services/replay/replay_driver.h"
#include "services/replay/report.h"
#include "services/replay/trace.h"

#define ASSERT_OK(expr)                                 \
  do {                                                  \
    const ::attic::Status attic_s = (expr);             \
    ASSERT_TRUE(attic_s.ok()) << attic_s.ToString();    \
  } while (0)
#define EXPECT_OK(expr)                                 \
  do {                                                  \
    const ::attic::Status attic_s = (expr);             \
    EXPECT_TRUE(attic_s.ok()) << attic_s.ToString();    \
  } while (0)

namespace attic {
namespace {

using replay::ReplayReport;
using replay::ReplaySummary;

// attic-ref-54m's shape with 2 layers: small enough that a test replays quickly.
ModelSpec TestSpec() {
  ModelSpec spec;
  spec.name = "attic-ref-54m";
  spec.num_layers = 2;
  spec.num_q_heads = 8;
  spec.num_kv_heads = 2;
  spec.head_dim = 128;
  spec.dtype = DType::kBFloat16;
  spec.block_size = 64;
  return spec;
}

class FleetReplayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fleet::LocalFleetOptions o{.workers = 2,
                               .scheduler_binary = ATTIC_SCHEDULER_BINARY,
                               .worker_binary = ATTIC_WORKER_BINARY};
    o.worker_args = loadgen::WorkerModelArgs(TestSpec());
    o.worker_args.insert(o.worker_args.end(),
                         {"--kv-memory-bytes", "256MiB", "--compute-threads", "1"});
    o.scheduler_args = {"--heartbeat-interval-ms", "100"};
    fleet_ = std::make_unique<fleet::LocalFleet>(o);
    ASSERT_OK(fleet_->Start(std::chrono::seconds(60)));
    trace_path_ = fleet_->dir() + "/trace.jsonl";
  }

  void WriteTrace(const std::string& text) {
    std::ofstream out(trace_path_);
    out << text;
  }

  ReplayReport Replay(replay::DriverOptions o) {
    StatusOr<replay::Trace> trace = replay::ReadTrace(trace_path_, {});
    EXPECT_OK(trace.status());
    o.spec = TestSpec();
    o.model_name = "attic-ref-54m";
    o.scheduler = fleet_->scheduler_address();
    o.progress = false;
    StatusOr<ReplayReport> r = replay::ReplayDriver(o, *std::move(trace)).Run();
    EXPECT_OK(r.status());
    return r.ok() ? *std::move(r) : ReplayReport{};
  }

  std::unique_ptr<fleet::LocalFleet> fleet_;
  std::string trace_path_;
};

TEST_F(FleetReplayTest, EveryRequestEndsAndRepeatedPrefixHitsTheCache) {
  // Request 1 repeats request 0's first three 512-token blocks and adds one; with one request
  // at a time it runs after request 0 closed, whose prompt blocks stay in the prefix cache.
  // Request 2 shares nothing; request 3 repeats request 1's prefix too.
  WriteTrace(
      R"({"timestamp": 0, "input_length": 1600, "output_length": 6, "hash_ids": [7, 8, 9, 10]})"
      "\n"
      R"({"timestamp": 10, "input_length": 2100, "output_length": 5, "hash_ids": [7, 8, 9, 11, 12]})"
      "\n"
      R"({"timestamp": 20, "input_length": 700, "output_length": 0, "hash_ids": [20, 21]})"
      "\n"
      R"({"timestamp": 30, "input_length": 2048, "output_length": 3, "hash_ids": [7, 8, 9, 11]})"
      "\n");
  const ReplayReport r = Replay({.max_concurrency = 1, .max_queue = 8});
  const ReplaySummary s = replay::Summarize(r);
  ASSERT_EQ(s.requests_admitted, 4);
  EXPECT_EQ(s.requests_completed + s.requests_failed, s.requests_admitted);
  EXPECT_EQ(s.requests_completed, 4) << replay::RenderTable(r, s);
  ASSERT_EQ(r.requests.size(), 4u);
  EXPECT_EQ(r.requests[0].prefix_tokens, 0);
  // Blocks 7, 8, 9 (1536 tokens) were written by request 0 and found again.
  EXPECT_GE(r.requests[1].prefix_tokens, 3 * 512);
  EXPECT_EQ(r.requests[2].prefix_tokens, 0);
  // Request 3's whole 2048-token prompt is 7, 8, 9, 11: four blocks, all cached by request 1.
  EXPECT_EQ(r.requests[3].prefix_tokens, 2048);
  EXPECT_GT(s.prefix_hit_ratio, 0.4);
  EXPECT_EQ(r.decode_tokens, 6 + 5 + 0 + 3);
  EXPECT_EQ(static_cast<int64_t>(r.step_latency_ms.size()), 6 + 5 + 3);
  EXPECT_GT(r.bytes_sent, 0u);

  // The JSON carries the accounting and the figures under their names.
  const nlohmann::json j = nlohmann::json::parse(replay::RenderJson(r, s));
  EXPECT_EQ(j["requests_admitted"], 4);
  EXPECT_EQ(j["requests_completed"].get<int64_t>() + j["requests_failed"].get<int64_t>(), 4);
  EXPECT_TRUE(j["step_latency_ms"].contains("p99"));
  EXPECT_GT(j["prefix_hit_ratio"].get<double>(), 0.4);
  EXPECT_EQ(j["config"]["model"], "attic-ref-54m");
}

TEST_F(FleetReplayTest, AFullQueueFailsWithResourceExhaustedAndIsCounted) {
  // Six requests arrive at once; one runs, one waits, four find the queue full.
  std::string text;
  for (int i = 0; i < 6; ++i) {
    text += R"({"timestamp": 0, "input_length": 600, "output_length": 4, "hash_ids": [)" +
            std::to_string(100 + 2 * i) + ", " + std::to_string(101 + 2 * i) + "]}\n";
  }
  WriteTrace(text);
  const ReplayReport r = Replay({.max_concurrency = 1, .max_queue = 1});
  const ReplaySummary s = replay::Summarize(r);
  EXPECT_EQ(s.requests_admitted, 6);
  EXPECT_EQ(s.requests_completed, 2);
  EXPECT_EQ(s.requests_failed, 4);
  EXPECT_EQ(s.requests_completed + s.requests_failed, s.requests_admitted);
  ASSERT_EQ(s.failures_by_code.count("RESOURCE_EXHAUSTED"), 1u);
  EXPECT_EQ(s.failures_by_code.at("RESOURCE_EXHAUSTED"), 4);
  for (const replay::RequestRecord& rec : r.requests) {
    if (rec.code != StatusCode::kOk) {
      EXPECT_FALSE(rec.error.empty());
    }
    EXPECT_GE(rec.end_ms, 0);
  }
}

TEST_F(FleetReplayTest, ARequestTooLargeForTheFleetFailsWithItsCode) {
  // 1M prompt tokens of 2 layers need 2 GiB; the fleet has 512 MiB of DRAM (and SSD tiers,
  // which the placement may count): it fails with a code, the next request still completes.
  WriteTrace(
      R"({"timestamp": 0, "input_length": 1000000, "output_length": 2, "hash_ids": []})"
      "\n"
      R"({"timestamp": 1, "input_length": 300, "output_length": 2, "hash_ids": [55]})"
      "\n");
  const ReplayReport r = Replay({.max_concurrency = 1, .max_queue = 4,
                                 .timeout = std::chrono::milliseconds(60000)});
  const ReplaySummary s = replay::Summarize(r);
  EXPECT_EQ(s.requests_admitted, 2);
  EXPECT_EQ(s.requests_completed + s.requests_failed, 2);
  ASSERT_EQ(r.requests.size(), 2u);
  EXPECT_NE(r.requests[0].code, StatusCode::kOk);
  EXPECT_FALSE(r.requests[0].error.empty());
  EXPECT_EQ(r.requests[1].code, StatusCode::kOk) << r.requests[1].error;
}

TEST_F(FleetReplayTest, ReplaysTheCarriedMooncakeSlice) {
  const std::string slice = std::string(ATTIC_SOURCE_DIR) +
                            "/data/traces/mooncake_conversation_head1000.jsonl";
  StatusOr<replay::Trace> trace = replay::ReadTrace(slice, {.limit = 12});
  ASSERT_OK(trace.status());
  // Shorter prompts and outputs keep the test quick; arrivals and prefixes are the trace's.
  for (replay::TraceRequest& t : trace->requests) {
    t.input_tokens = std::min<int64_t>(t.input_tokens, 4096);
    t.output_tokens = std::min<int64_t>(t.output_tokens, 4);
  }
  replay::DriverOptions o{.spec = TestSpec(),
                          .model_name = "attic-ref-54m",
                          .scheduler = fleet_->scheduler_address(),
                          .speedup = 20,
                          // One at a time: each request's lookup comes after the previous one
                          // closed, so the shared block 0 is in the cache whatever the timing.
                          .max_concurrency = 1,
                          .max_queue = 16,
                          .progress = false};
  StatusOr<ReplayReport> r = replay::ReplayDriver(o, *std::move(trace)).Run();
  ASSERT_OK(r.status());
  const ReplaySummary s = replay::Summarize(*r);
  EXPECT_EQ(s.requests_admitted, 12);
  EXPECT_EQ(s.requests_completed + s.requests_failed, 12);
  for (const replay::RequestRecord& rec : r->requests) {
    EXPECT_TRUE(rec.code == StatusCode::kOk || !rec.error.empty());
  }
  // Every Mooncake conversation request starts with block 0: every request after the first
  // finds its 512 tokens cached.
  EXPECT_EQ(s.requests_completed, 12);
  EXPECT_GE(s.prefix_tokens, 11 * 512);
  // The scheduler still lists both workers after the run.
  StatusOr<std::vector<FleetWorker>> workers =
      GetFleet(fleet_->scheduler_address(), std::chrono::seconds(2));
  ASSERT_OK(workers.status());
  EXPECT_EQ(workers->size(), 2u);
}

}  // namespace
}  // namespace attic
