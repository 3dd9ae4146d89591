#include "tests/integration/offload_fixture.h"

#include "services/loadgen/decode_driver.h"

namespace attic::testing {

ModelSpec TestSpec() {
  return ModelSpec{.name = "llama-shaped-test",
                   .num_layers = 4,
                   .num_q_heads = 32,
                   .num_kv_heads = 8,
                   .head_dim = 128,
                   .dtype = DType::kBFloat16,
                   .block_size = 64};
}

std::vector<std::string> WorkerArgs(const ModelSpec& spec) {
  std::vector<std::string> args = loadgen::WorkerModelArgs(spec);
  args.insert(args.end(), {"--kv-memory-bytes", "768MiB", "--compute-threads", "1",
                           "--log-level", "warn"});
  return args;
}

void OffloadFleet::StartWorkers(int n) {
  for (int i = 0; i < n; ++i) {
    workers_.push_back(std::make_unique<loadgen::WorkerProcess>(loadgen::WorkerProcessOptions{
        .binary = ATTIC_WORKER_BINARY, .args = WorkerArgs(spec_), .name = "w" + std::to_string(i)}));
    Status s = workers_.back()->Start(std::chrono::seconds(30));
    ASSERT_TRUE(s.ok()) << s;
  }
}

std::unique_ptr<Client> OffloadFleet::Connect(std::chrono::milliseconds timeout) {
  ClientOptions options;
  for (const auto& w : workers_) options.workers.push_back(w->data_address());
  options.spec = spec_;
  options.name = "offload-test";
  options.timeout = timeout;
  StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(client).value() : nullptr;
}

StatusOr<PrefixMatch> OffloadFleet::OpenAndPrefill(Client& client, loadgen::EngineModel& model,
                                                   uint64_t id, const ShardPlan& plan) {
  return loadgen::OpenAndPrefill(client, model, id, plan, "acme");
}

Status OffloadFleet::Step(Client& client, loadgen::EngineModel& model, int layer,
                          const std::vector<uint64_t>& ids, bool check) {
  StatusOr<loadgen::StepResult> r = loadgen::DecodeStep(client, model, layer, ids, check);
  if (!r.ok()) return r.status();
  if (check) {
    EXPECT_LT(r->max_relative_error, kMaxRelativeError) << "layer " << layer;
    EXPECT_LT(r->max_lse_error, 2e-3) << "layer " << layer;
  }
  return OkStatus();
}

}  // namespace attic::testing
