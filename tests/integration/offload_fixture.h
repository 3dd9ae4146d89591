// A fleet of real attic-worker processes on loopback plus the EngineModel that plays the
// compute node, for the end-to-end offload tests.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "client/client.h"
#include "services/loadgen/engine_model.h"
#include "services/loadgen/worker_process.h"

namespace attic::testing {

// Llama-shaped, four layers: Hq = 32, Hkv = 8 (G = 4), D = 128, bf16, B = 64.
ModelSpec TestSpec();
// attic-worker flags serving TestSpec().
std::vector<std::string> WorkerArgs(const ModelSpec& spec);

class OffloadFleet : public ::testing::Test {
 protected:
  void StartWorkers(int n);
  std::unique_ptr<Client> Connect(std::chrono::milliseconds timeout);

  // Opens and prefills (loadgen::OpenAndPrefill, tenant "acme").
  StatusOr<PrefixMatch> OpenAndPrefill(Client& client, loadgen::EngineModel& model, uint64_t id,
                                       const ShardPlan& plan);
  // One decode step of one layer for `ids`; with `check`, expects every output within
  // kMaxRelativeError of exact attention. Returns the Attend future's status.
  Status Step(Client& client, loadgen::EngineModel& model, int layer,
              const std::vector<uint64_t>& ids, bool check);

  ModelSpec spec_ = TestSpec();
  std::vector<std::unique_ptr<loadgen::WorkerProcess>> workers_;
};

// The largest norm-wise relative error allowed between a worker's output and exact attention.
inline constexpr double kMaxRelativeError = 5e-3;

}  // namespace attic::testing
