// attic-scheduler and two attic-worker processes on loopback: registration (the fleet, /readyz,
// /metrics), prefix affinity through the workers' heartbeat summaries, heartbeat loss (a
// SIGSTOPped worker becomes dead, Locate names it, it comes back after SIGCONT), and a
// scheduler restart (kill -9, same port: the workers register again and re-announce their
// sequences, head and token shards included).
//
// Sequences are opened on the workers through attic::Client with a fixed worker list; the
// scheduler is asked directly (POST /v1/place, /v1/locate with Cap'n Proto bodies).
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "services/loadgen/decode_driver.h"
#include "services/loadgen/engine_model.h"
#include "services/loadgen/worker_process.h"
#include "transport/control/scheduler_protocol.h"
#include "transport/control/http_server.h"

namespace attic::scheduler {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kTenant[] = "acme";
constexpr milliseconds kHttpTimeout{5000};

ModelSpec Spec() {
  return ModelSpec{.name = "scheduler-test",
                   .num_layers = 2,
                   .num_q_heads = 8,
                   .num_kv_heads = 2,
                   .head_dim = 128,
                   .dtype = DType::kBFloat16,
                   .block_size = 64};
}

bool WaitFor(const std::function<bool()>& done, milliseconds limit = seconds(30)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return done();
}

// The value of one unlabelled series (or a series spelled with its labels) in a scrape; -1
// when absent.
double Sample(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

class SchedulerProcessTest : public ::testing::Test {
 protected:
  void SetUp() override { StartScheduler(0); }

  void TearDown() override {
    client_.reset();
    for (auto& w : workers_) {
      if (w->running()) ::kill(w->pid(), SIGCONT);  // a stopped worker cannot exit otherwise
    }
  }

  void StartScheduler(uint16_t port) {
    scheduler_ = std::make_unique<loadgen::WorkerProcess>(loadgen::WorkerProcessOptions{
        .binary = ATTIC_SCHEDULER_BINARY,
        .args = {"--listen-address", "127.0.0.1", "--port", std::to_string(port),
                 "--heartbeat-interval-ms", "100", "--dead-after-ms", "1000",
                 // Affinity only through the workers' summaries (what this test checks).
                 "--policy-recent-placement-ttl-ms", "0"},
        .name = "scheduler",
        .plain_daemon = true});
    const Status s = scheduler_->Start(seconds(30));
    ASSERT_TRUE(s.ok()) << s;
    address_ = scheduler_->control_address();
  }

  void StartWorkers() {
    for (int i = 0; i < 2; ++i) {
      std::vector<std::string> args = loadgen::WorkerModelArgs(spec_);
      args.insert(args.end(),
                  {"--kv-memory-bytes", "64MiB", "--compute-threads", "1", "--busy-poll-us", "0",
                   "--scheduler-address", address_, "--scheduler-heartbeat-ms", "100"});
      workers_.push_back(std::make_unique<loadgen::WorkerProcess>(loadgen::WorkerProcessOptions{
          .binary = ATTIC_WORKER_BINARY, .args = args, .name = "w" + std::to_string(i)}));
      const Status s = workers_.back()->Start(seconds(30));
      ASSERT_TRUE(s.ok()) << s;
    }
    ClientOptions options;
    for (const auto& w : workers_) options.workers.push_back(w->data_address());
    options.spec = spec_;
    options.name = "scheduler-test";
    options.timeout = seconds(20);
    StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(client).value();
    ASSERT_TRUE(WaitFor([&] { return AliveCount() == 2; })) << scheduler_->Log();
  }

  StatusOr<std::string> Post(const std::string& path, const std::string& body) {
    ASSIGN_OR_RETURN(control::HttpResponse r,
                     control::HttpPost(address_, path, body, kHttpTimeout, kCapnpContentType));
    if (r.status != 200) return RefusalStatus(r.status, r.body);
    return r.body;
  }

  StatusOr<Placement> Place(uint64_t id, std::vector<uint64_t> hashes = {}) {
    const PlaceRequest request{.sequence_id = id,
                               .tenant = kTenant,
                               .prompt_tokens = 512,
                               .expected_tokens = 600,
                               .prompt_hashes = std::move(hashes),
                               .prefix_scope = ScopeFingerprint(kTenant, 0, spec_)};
    ASSIGN_OR_RETURN(std::string body, Post("/v1/place", EncodePlaceRequest(request)));
    return DecodePlacement(body);
  }

  StatusOr<Placement> Locate(uint64_t id) {
    ASSIGN_OR_RETURN(std::string body, Post("/v1/locate", EncodeLocateRequest(id)));
    return DecodePlacement(body);
  }

  StatusOr<Fleet> GetFleet() {
    ASSIGN_OR_RETURN(control::HttpResponse r,
                     control::HttpGet(address_, "/v1/fleet", kHttpTimeout));
    if (r.status != 200) return RefusalStatus(r.status, r.body);
    return DecodeFleet(r.body);
  }

  int AliveCount() {
    StatusOr<Fleet> f = GetFleet();
    if (!f.ok()) return -1;
    int alive = 0;
    for (const FleetWorker& w : f->workers) alive += w.alive && w.ready ? 1 : 0;
    return alive;
  }

  std::string Get(const std::string& path, int* status = nullptr) {
    StatusOr<control::HttpResponse> r = control::HttpGet(address_, path, kHttpTimeout);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return "";
    if (status != nullptr) *status = r->status;
    return r->body;
  }

  // The index of the worker process whose data address is `address`; -1 if none.
  int WorkerAt(const std::string& address) const {
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (workers_[i]->data_address() == address) return static_cast<int>(i);
    }
    return -1;
  }

  // The client's plan for a scheduler placement (worker indices from data addresses).
  ShardPlan PlanOf(const Placement& p) const {
    ShardPlan plan;
    for (const PlacedShard& s : p.shards) {
      plan.shards.push_back({.worker = WorkerAt(s.data_address),
                             .kv_head_begin = static_cast<int>(s.kv_head_begin),
                             .kv_head_end = static_cast<int>(s.kv_head_end),
                             .token_begin = static_cast<int64_t>(s.token_begin),
                             .token_end = s.token_end});
    }
    return plan;
  }

  void Open(uint64_t id, const ShardPlan& plan, int prompt_tokens = 512,
            int shared_prefix_tokens = 0, uint64_t prefix_content = 0,
            PrefixMatch* match = nullptr) {
    model_.AddSequence({.id = id,
                        .prompt_tokens = prompt_tokens,
                        .shared_prefix_tokens = shared_prefix_tokens,
                        .prefix_content = prefix_content});
    StatusOr<PrefixMatch> m = loadgen::OpenAndPrefill(*client_, model_, id, plan, kTenant);
    ASSERT_TRUE(m.ok()) << m.status();
    if (match != nullptr) *match = *m;
  }

  ModelSpec spec_ = Spec();
  loadgen::EngineModel model_{spec_, 11};
  std::unique_ptr<loadgen::WorkerProcess> scheduler_;
  std::string address_;
  std::vector<std::unique_ptr<loadgen::WorkerProcess>> workers_;
  std::unique_ptr<Client> client_;
};

TEST_F(SchedulerProcessTest, WorkersRegisterAndTheSchedulerBecomesReady) {
  int status = 0;
  const std::string not_ready = Get("/readyz", &status);
  EXPECT_EQ(status, 503);
  EXPECT_NE(not_ready.find("no live, ready worker"), std::string::npos) << not_ready;
  EXPECT_EQ(Get("/healthz", &status), "ok\n");
  EXPECT_EQ(status, 200);

  StartWorkers();
  StatusOr<Fleet> fleet = GetFleet();
  ASSERT_TRUE(fleet.ok()) << fleet.status();
  ASSERT_EQ(fleet->workers.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const FleetWorker& w = fleet->workers[i];
    EXPECT_EQ(w.name, "w" + std::to_string(i));
    EXPECT_EQ(w.data_address, workers_[i]->data_address());
    EXPECT_EQ(w.metrics_address, workers_[i]->control_address());
    EXPECT_TRUE(w.alive);
    EXPECT_TRUE(w.ready);
    EXPECT_LT(w.silent_ms, 1000u);
    EXPECT_EQ(w.figures.kv_bytes_per_token, 2u * 2 * 2 * 128 * 2);
    EXPECT_EQ(w.figures.block_tokens, 64u);
    EXPECT_GT(w.figures.dram_capacity_bytes, uint64_t{60} << 20);
    EXPECT_EQ(w.figures.kv_free_bytes, w.figures.dram_capacity_bytes);
    EXPECT_EQ(w.figures.compute_threads, 1u);
  }
  EXPECT_EQ(Get("/readyz", &status), "ready\n");
  EXPECT_EQ(status, 200);
  const std::string metrics = Get("/metrics");
  EXPECT_EQ(Sample(metrics, "attic_scheduler_workers_alive"), 2) << metrics;
  EXPECT_EQ(Sample(metrics, "attic_scheduler_workers_dead"), 0);
  EXPECT_GE(Sample(metrics, "attic_scheduler_registrations_total"), 2);
  EXPECT_TRUE(WaitFor([&] {
    return Sample(Get("/metrics"), "attic_scheduler_heartbeats_total{result=\"known\"}") > 0;
  }));

  // An open sequence shows in the figures and as a held shard.
  StatusOr<Placement> p = Place(1);
  ASSERT_TRUE(p.ok()) << p.status();
  Open(1, PlanOf(*p));
  const int where = WorkerAt(p->shards[0].data_address);
  ASSERT_TRUE(WaitFor([&] {
    StatusOr<Fleet> f = GetFleet();
    return f.ok() && f->workers[static_cast<size_t>(where)].figures.sequences == 1 &&
           f->workers[static_cast<size_t>(where)].figures.kv_bytes_dram > 0;
  }));
  const std::string after = Get("/metrics");
  EXPECT_EQ(Sample(after, "attic_scheduler_sequences"), 1) << after;
  EXPECT_EQ(Sample(after, "attic_scheduler_placements_total{reason=\"headroom\"}"), 1) << after;
}

TEST_F(SchedulerProcessTest, PrefixAffinityFollowsTheWorkersSummaries) {
  StartWorkers();
  // Sequence 1 runs on w1 (opened there directly) and closes: its prompt blocks stay in w1's
  // prefix cache, and w1's heartbeats carry them in its summary.
  Open(1, ShardPlan::Single(spec_, 1), 512, 512, /*prefix_content=*/500);
  ASSERT_TRUE(client_->Close(1).get().ok());
  ASSERT_TRUE(WaitFor([&] {
    StatusOr<Fleet> f = GetFleet();
    return f.ok() && f->workers[1].figures.prefix_blocks > 0 &&
           f->workers[1].figures.sequences == 0;
  }));
  // Sequence 2 shares the 8-block prefix: it goes to w1, although both workers have the same
  // room and load (which would pick w0 by name).
  model_.AddSequence(
      {.id = 2, .prompt_tokens = 600, .shared_prefix_tokens = 512, .prefix_content = 500});
  const std::vector<uint64_t> hashes = model_.PromptHashes(2);
  model_.RemoveSequence(2);
  StatusOr<Placement> p = Place(2, hashes);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->shards.size(), 1u);
  EXPECT_EQ(p->shards[0].worker_name, "w1");
  EXPECT_EQ(p->reason, "prefix-affinity");
  EXPECT_EQ(p->prefix_blocks_matched, 8u);
  PrefixMatch match;
  Open(2, PlanOf(*p), 600, 512, 500, &match);
  EXPECT_EQ(match.matched_tokens, 512);  // the worker held what the scheduler expected
  // A prompt nobody holds goes by headroom and load.
  model_.AddSequence({.id = 3, .prompt_tokens = 600});
  StatusOr<Placement> other = Place(3, model_.PromptHashes(3));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->reason, "headroom");
  EXPECT_EQ(other->shards[0].worker_name, "w0");
  const std::string metrics = Get("/metrics");
  EXPECT_EQ(Sample(metrics, "attic_scheduler_prefix_affinity_hits_total"), 1) << metrics;
}

TEST_F(SchedulerProcessTest, SilentWorkerIsDeadAndLocateNamesIt) {
  StartWorkers();
  // Two placements in a row go to different workers (the first one's memory is reserved).
  StatusOr<Placement> a = Place(10);
  StatusOr<Placement> b = Place(11);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_NE(a->shards[0].worker_name, b->shards[0].worker_name);
  Open(10, PlanOf(*a));
  Open(11, PlanOf(*b));
  const int victim = WorkerAt(a->shards[0].data_address);
  const int survivor = 1 - victim;
  ASSERT_TRUE(WaitFor([&] { return Locate(10).ok() && Locate(11).ok(); }));

  ASSERT_EQ(::kill(workers_[static_cast<size_t>(victim)]->pid(), SIGSTOP), 0);
  ASSERT_TRUE(WaitFor([&] { return Locate(10).status().code() == StatusCode::kUnavailable; }))
      << Locate(10).status();
  const Status gone = Locate(10).status();
  const std::string prefix = "sequence 10: worker w" + std::to_string(victim) + " (" +
                             workers_[static_cast<size_t>(victim)]->data_address() +
                             ") is dead: no heartbeat for ";
  EXPECT_EQ(gone.message().substr(0, prefix.size()), prefix) << gone;
  StatusOr<Placement> still = Locate(11);
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(WorkerAt(still->shards[0].data_address), survivor);
  const std::string metrics = Get("/metrics");
  EXPECT_EQ(Sample(metrics, "attic_scheduler_workers_dead"), 1) << metrics;
  EXPECT_EQ(Sample(metrics, "attic_scheduler_workers_alive"), 1);
  EXPECT_GE(Sample(metrics, "attic_scheduler_locates_total{code=\"UNAVAILABLE\"}"), 1);
  int status = 0;
  Get("/readyz", &status);
  EXPECT_EQ(status, 200);  // one worker still serves
  // New sequences go to the survivor.
  StatusOr<Placement> c = Place(12);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(WorkerAt(c->shards[0].data_address), survivor);

  // The worker resumes: told it is unknown, it registers again with its sequence.
  ASSERT_EQ(::kill(workers_[static_cast<size_t>(victim)]->pid(), SIGCONT), 0);
  ASSERT_TRUE(WaitFor([&] { return Locate(10).ok(); })) << Locate(10).status();
  EXPECT_EQ(WorkerAt(Locate(10)->shards[0].data_address), victim);
  EXPECT_EQ(AliveCount(), 2);
  // And it still serves the sequence.
  for (int layer = 0; layer < spec_.num_layers; ++layer) {
    StatusOr<loadgen::StepResult> r = loadgen::DecodeStep(*client_, model_, layer, {10}, true);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_LT(r->max_relative_error, 5e-3);
  }
}

TEST_F(SchedulerProcessTest, RestartedSchedulerRelearnsTheSequencesFromTheWorkers) {
  StartWorkers();
  StatusOr<Placement> a = Place(20);
  StatusOr<Placement> b = Place(21);
  ASSERT_TRUE(a.ok() && b.ok());
  Open(20, PlanOf(*a));
  Open(21, PlanOf(*b));
  Open(22, ShardPlan::SplitHeads(spec_, {0, 1}));                  // heads 0 | 1
  Open(23, ShardPlan::SplitTokens(spec_, {0, 1}, {0, 128}), 300);  // tokens [0,128) | [128, inf)
  const std::string old_address = address_;
  const auto port = static_cast<uint16_t>(std::stoi(address_.substr(address_.rfind(':') + 1)));
  ASSERT_TRUE(scheduler_->Kill(SIGKILL).ok());

  // Workers keep serving while the scheduler is away.
  for (int layer = 0; layer < spec_.num_layers; ++layer) {
    StatusOr<loadgen::StepResult> r =
        loadgen::DecodeStep(*client_, model_, layer, {20, 21, 22, 23}, true);
    ASSERT_TRUE(r.ok()) << r.status();
  }
  StartScheduler(port);
  ASSERT_EQ(address_, old_address);
  ASSERT_TRUE(WaitFor([&] {
    return Locate(20).ok() && Locate(21).ok() && Locate(22).ok() && Locate(23).ok();
  })) << scheduler_->Log();
  ASSERT_TRUE(WaitFor([&] {
    StatusOr<Placement> p = Locate(22);
    StatusOr<Placement> q = Locate(23);
    return p.ok() && q.ok() && p->shards.size() == 2 && q->shards.size() == 2;
  }));

  StatusOr<Placement> p20 = Locate(20);
  ASSERT_EQ(p20->shards.size(), 1u);
  EXPECT_EQ(p20->shards[0].data_address, a->shards[0].data_address);
  EXPECT_EQ(p20->reason, "announced");
  StatusOr<Placement> p21 = Locate(21);
  EXPECT_EQ(p21->shards[0].data_address, b->shards[0].data_address);

  StatusOr<Placement> p22 = Locate(22);
  EXPECT_EQ(p22->shards[0].data_address, workers_[0]->data_address());
  EXPECT_EQ(p22->shards[0].kv_head_begin, 0u);
  EXPECT_EQ(p22->shards[0].kv_head_end, 1u);
  EXPECT_EQ(p22->shards[1].data_address, workers_[1]->data_address());
  EXPECT_EQ(p22->shards[1].kv_head_begin, 1u);
  EXPECT_EQ(p22->shards[1].kv_head_end, 2u);

  StatusOr<Placement> p23 = Locate(23);
  EXPECT_EQ(p23->shards[0].data_address, workers_[0]->data_address());
  EXPECT_EQ(p23->shards[0].token_begin, 0u);
  EXPECT_EQ(p23->shards[0].token_end, 128);
  EXPECT_EQ(p23->shards[1].data_address, workers_[1]->data_address());
  EXPECT_EQ(p23->shards[1].token_begin, 128u);
  EXPECT_EQ(p23->shards[1].token_end, -1);
  // The located plans are the ones the sequences were opened with.
  EXPECT_TRUE(PlanOf(*p23).Validate(spec_, 2).ok());

  EXPECT_EQ(AliveCount(), 2);
  const std::string metrics = Get("/metrics");
  EXPECT_EQ(Sample(metrics, "attic_scheduler_sequences"), 4) << metrics;
  // A closed sequence is forgotten once its workers stop announcing it.
  ASSERT_TRUE(client_->Close(21).get().ok());
  ASSERT_TRUE(WaitFor([&] { return Locate(21).status().code() == StatusCode::kNotFound; }));
}

}  // namespace
}  // namespace attic::scheduler
