// The workers' scheduler agent against a real scheduler service on loopback HTTP: it
// registers, heartbeats, registers again when told known = false, survives a scheduler that is
// down at first or restarts (its sequences re-announced), and the report of a real worker
// service (figures, quantiles).
#include "services/worker/scheduler_agent.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "services/scheduler/scheduler_service.h"
#include "services/worker/worker_metrics.h"
#include "services/worker/worker_report.h"
#include "services/worker/worker_service.h"
#include "transport/control/http_server.h"

namespace attic {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Polls `done` every 10 ms for up to `limit`.
bool WaitFor(const std::function<bool()>& done, milliseconds limit = seconds(20)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return done();
}

// A scheduler service and its HTTP server; Stop and Start again on the same port.
class LocalScheduler {
 public:
  explicit LocalScheduler(scheduler::Clock clock = {}) : clock_(std::move(clock)) {}

  void Start(uint16_t port = 0) {
    service_ = std::make_unique<scheduler::SchedulerService>(
        scheduler::SchedulerStateOptions{.heartbeat_interval = milliseconds(50),
                                         .dead_after = milliseconds(2000)},
        std::make_unique<scheduler::DefaultPlacementPolicy>(), clock_);
    StatusOr<std::unique_ptr<control::HttpServer>> server = control::HttpServer::Start(
        {.address = "127.0.0.1", .port = port, .threads = 2, .max_request_bytes = 1 << 24},
        service_->Routes());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
    port_ = server_->port();
  }
  void Stop() {
    server_.reset();
    service_.reset();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  scheduler::SchedulerState& state() { return service_->state(); }
  uint16_t port() const { return port_; }

 private:
  scheduler::Clock clock_;
  std::unique_ptr<scheduler::SchedulerService> service_;
  std::unique_ptr<control::HttpServer> server_;
  uint16_t port_ = 0;
};

scheduler::WorkerReport FakeReport() {
  scheduler::WorkerReport r;
  r.name = "a1";
  r.data_address = "127.0.0.1:7100";
  r.metrics_address = "127.0.0.1:7180";
  r.incarnation = 5;
  r.num_kv_heads = 2;
  r.figures.kv_free_bytes = r.figures.dram_free_bytes = uint64_t{1} << 30;
  r.figures.dram_capacity_bytes = uint64_t{2} << 30;
  r.figures.kv_bytes_per_token = 1024;
  r.figures.block_tokens = 64;
  r.shards = {
      {.sequence_id = 77, .tenant = "t", .kv_head_begin = 0, .kv_head_end = 2, .tokens = 640}};
  r.ready = true;
  return r;
}

bool Alive(scheduler::SchedulerState& state, const std::string& name) {
  for (const scheduler::FleetWorker& w : state.GetFleet().workers) {
    if (w.name == name) return w.alive;
  }
  return false;
}

std::unique_ptr<SchedulerAgent> StartAgent(const std::string& address) {
  StatusOr<std::unique_ptr<SchedulerAgent>> agent =
      SchedulerAgent::Start({.scheduler = address,
                             .fallback_interval = milliseconds(50),
                             .request_timeout = milliseconds(1000)},
                            FakeReport);
  EXPECT_TRUE(agent.ok()) << agent.status();
  return agent.ok() ? std::move(agent).value() : nullptr;
}

TEST(SchedulerAgent, RegistersAndHeartbeats) {
  LocalScheduler sched;
  sched.Start();
  std::unique_ptr<SchedulerAgent> agent = StartAgent(sched.address());
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitFor([&] { return agent->stats().heartbeats >= 3; })) << agent->stats().failures;
  EXPECT_EQ(agent->stats().registrations, 1u);
  EXPECT_TRUE(agent->stats().registered);
  EXPECT_EQ(agent->stats().scheduler_incarnation, sched.state().incarnation());
  EXPECT_TRUE(Alive(sched.state(), "a1"));
  StatusOr<scheduler::Placement> where = sched.state().Locate(77);
  ASSERT_TRUE(where.ok()) << where.status();
  EXPECT_EQ(where->shards[0].data_address, "127.0.0.1:7100");
}

TEST(SchedulerAgent, RegistersOnceTheSchedulerComesUpAndAgainAfterItRestarts) {
  // A free port with nothing on it yet.
  LocalScheduler sched;
  sched.Start();
  const uint16_t port = sched.port();
  sched.Stop();
  std::unique_ptr<SchedulerAgent> agent = StartAgent("127.0.0.1:" + std::to_string(port));
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitFor([&] { return agent->stats().failures >= 2; }));
  EXPECT_FALSE(agent->stats().registered);

  sched.Start(port);
  ASSERT_TRUE(WaitFor([&] { return agent->stats().heartbeats >= 1; }));
  EXPECT_EQ(agent->stats().registrations, 1u);
  EXPECT_TRUE(sched.state().Locate(77).ok());

  // The scheduler dies and comes back empty: the agent finds it unreachable, then registers
  // again, and the sequence it holds is known again.
  sched.Stop();
  ASSERT_TRUE(WaitFor([&] { return !agent->stats().registered; }));
  sched.Start(port);
  EXPECT_EQ(sched.state().Locate(77).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(WaitFor([&] { return agent->stats().registrations >= 2; }));
  ASSERT_TRUE(WaitFor([&] { return sched.state().Locate(77).ok(); }));
}

TEST(SchedulerAgent, RegistersAgainWhenDeclaredDead) {
  // The scheduler's clock jumps past dead_after: the next heartbeat is answered known = false.
  std::atomic<int64_t> skew_ms{0};
  LocalScheduler sched(
      [&skew_ms] { return std::chrono::steady_clock::now() + milliseconds(skew_ms.load()); });
  sched.Start();
  std::unique_ptr<SchedulerAgent> agent = StartAgent(sched.address());
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitFor([&] { return agent->stats().heartbeats >= 1; }));
  skew_ms += 5000;
  ASSERT_TRUE(WaitFor([&] { return agent->stats().unknown >= 1; }));
  ASSERT_TRUE(WaitFor([&] { return agent->stats().registrations >= 2; }));
  ASSERT_TRUE(WaitFor([&] { return Alive(sched.state(), "a1"); }));
}

TEST(SchedulerAgent, RefusesBadOptions) {
  EXPECT_EQ(SchedulerAgent::Start({}, FakeReport).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SchedulerAgent::Start({.scheduler = "127.0.0.1:1"}, nullptr).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(WorkerReport, QuantilesInterpolateWithinBuckets) {
  const std::vector<double> bounds = {0.001, 0.002, 0.004};
  // 10 in (0, 1 ms], 10 in (1, 2 ms], none above.
  const std::vector<uint64_t> counts = {10, 10, 0, 0};
  EXPECT_DOUBLE_EQ(WorkerReporter::QuantileUs(counts, bounds, 0.5), 1000.0);
  EXPECT_DOUBLE_EQ(WorkerReporter::QuantileUs(counts, bounds, 0.75), 1500.0);
  EXPECT_DOUBLE_EQ(WorkerReporter::QuantileUs({0, 0, 0, 0}, bounds, 0.5), 0.0);
  // Past the last bound: the last bound.
  EXPECT_DOUBLE_EQ(WorkerReporter::QuantileUs({0, 0, 0, 5}, bounds, 0.99), 4000.0);
}

TEST(WorkerReport, FiguresOfAnIdleWorker) {
  WorkerMetrics metrics("r1");
  WorkerServiceOptions options;
  options.name = "r1";
  options.spec = ModelSpec{.name = "report-test",
                           .num_layers = 2,
                           .num_q_heads = 4,
                           .num_kv_heads = 2,
                           .head_dim = 64,
                           .dtype = DType::kBFloat16,
                           .block_size = 32};
  options.kv_memory_bytes = uint64_t{8} << 20;
  options.compute_threads = 1;
  StatusOr<std::unique_ptr<WorkerService>> service = WorkerService::Create(options, &metrics);
  ASSERT_TRUE(service.ok()) << service.status();
  WorkerReporter reporter(
      {.name = "r1", .data_address = "h:1", .metrics_address = "h:2", .incarnation = 9},
      service->get(), &metrics, [] { return uint64_t{12}; }, [] { return true; });
  const scheduler::WorkerReport r = reporter.Report();
  EXPECT_EQ(r.name, "r1");
  EXPECT_EQ(r.incarnation, 9u);
  EXPECT_EQ(r.num_kv_heads, 2u);
  EXPECT_EQ(r.model_fingerprint, (*service)->model_fingerprint());
  EXPECT_TRUE(r.ready);
  EXPECT_TRUE(r.shards.empty());
  EXPECT_EQ(r.figures.kv_bytes_per_token, 2u * 2 * 2 * 64 * 2);  // K and V, L, Hkv, D, bf16
  EXPECT_EQ(r.figures.block_tokens, 32u);
  EXPECT_EQ(r.figures.compute_threads, 1u);
  EXPECT_EQ(r.figures.requests_total, 12u);
  EXPECT_FALSE(r.figures.ssd_tier);
  EXPECT_EQ(r.figures.kv_bytes_dram, 0u);
  // Everything is free: the pools' whole capacity, in K and V block pairs.
  EXPECT_GT(r.figures.dram_capacity_bytes, uint64_t{7} << 20);
  EXPECT_LE(r.figures.dram_capacity_bytes, uint64_t{8} << 20);
  EXPECT_EQ(r.figures.dram_free_bytes, r.figures.dram_capacity_bytes);
  EXPECT_EQ(r.figures.kv_free_bytes, r.figures.dram_capacity_bytes);
  EXPECT_EQ(r.figures.attend_p99_us, 0.0);
  EXPECT_FALSE(r.prefix.empty());
  EXPECT_EQ(r.prefix.entries(), 0u);
}

}  // namespace
}  // namespace attic
