// Driving decode attention through attic::Client the way a compute node does, with the
// EngineModel as the node's own copy of the KV: open + prefix lookup + prefill, then decode
// steps layer by layer, each output optionally checked against exact attention.
//
//   ASSIGN_OR_RETURN(PrefixMatch m, OpenAndPrefill(client, model, id, plan, "acme"));
//   ASSIGN_OR_RETURN(StepResult r, DecodeStep(client, model, layer, ids, /*check=*/true));
//   // r.max_relative_error, r.seconds
//
// Thread safety: one driver call at a time per model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client/client.h"
#include "common/status.h"
#include "services/loadgen/engine_model.h"

namespace attic::loadgen {

// Opens the sequence on its plan, looks its prompt hashes up and prefills every layer with
// the model's local context (all layers in flight at once). Returns the prefix match.
StatusOr<PrefixMatch> OpenAndPrefill(Client& client, EngineModel& model, uint64_t id,
                                     const ShardPlan& plan, const std::string& tenant);

struct StepResult {
  double seconds = 0.0;              // Attend call to future ready
  uint64_t keys_scanned = 0;
  bool checked = false;
  double max_relative_error = 0.0;   // norm-wise, per (sequence) over all heads
  double max_lse_error = 0.0;        // absolute, natural log
};

// One decode step of one layer for `ids`: appends a token to each sequence of the model,
// sends the batch (k/v appended by the worker before attending), and with `check` compares
// every output with the model's fp64 attention. The Attend error if the batch failed.
// The p-quantile (0..1) of `values` by nearest rank; 0 for none.
double Percentile(std::vector<double> values, double p);

StatusOr<StepResult> DecodeStep(Client& client, EngineModel& model, int layer,
                                const std::vector<uint64_t>& ids, bool check);

}  // namespace attic::loadgen
