// Printing the retrieval evaluation: the table of every (method, setting) row, the summary at
// matched recall (per method, the cheapest setting whose recall@100 reaches the target), and
// each row as the JSON object of the bench envelope's "rows".
//
//   PrintRows(stdout, rows, dense_us);
//   PrintMatchedRecall(stdout, rows, dense_us, 0.95);
//   report.AddRawRow(RowJson(row, dense_us.at(row.context)));
//
// dense_us maps a context to the one-thread cold dense-pass latency measured in the same run
// (dense_reference.h); latency ratios are row latency / that.
// Thread safety: stateless.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "bench/retrieval/evaluator.h"

namespace attic::retrieval::eval {

using DenseLatencies = std::map<int64_t, double>;  // context -> µs

void PrintRows(std::FILE* out, const std::vector<EvalRow>& rows, const DenseLatencies& dense_us);

// Rows with recall_at_100 >= target: per (layer, head, context, method) the least bytes.
void PrintMatchedRecall(std::FILE* out, const std::vector<EvalRow>& rows,
                        const DenseLatencies& dense_us, double target);

// What the worker would serve, decided from the prefill sample alone (no decode step chose
// anything): per (layer, head, context) the dense decision's row when the head profile says
// dense, else the attic-serving row (calibrated graph, 4-bit scan, or dense). Then, per
// context, the heads sent sparse, their bytes and recall (lowest, mean, how many under
// target), and the bytes over all heads with dense heads at 100 %. Prints nothing without
// attic-serving rows.
struct ServingSummary {
  std::string method;
  int64_t context = 0;
  int heads = 0;
  int sparse_heads = 0;
  int below_target = 0;           // sparse heads with recall@100 < target
  double min_recall = 1.0;        // over sparse heads
  double mean_recall = 0.0;       // over sparse heads
  double sparse_bytes = 0.0;      // mean bytes fraction over sparse heads
  double max_sparse_bytes = 0.0;  // the costliest sparse head
  double all_bytes = 0.0;         // mean over all heads, dense heads at 1
};
// method: attic-serving, or attic-serving-guarded (the same with the recall guard).
std::vector<ServingSummary> PrintServingPolicy(std::FILE* out, const std::vector<EvalRow>& rows,
                                               const DenseLatencies& dense_us, double target,
                                               const std::string& method);

// {"method", "setting", "layer", "kv_head", "context", "recall_at_100", "mass_recall",
//  "output_rel_err", "keys_scanned_fraction", "bytes_fraction", "latency_us", "build_ms",
//  "build_threads", "build_keys_per_s_per_core",
//  "index_bytes_per_key", "recall_at_100_per_head", "steps", "dense_latency_us",
//  "latency_ratio"} as one JSON object.
std::string RowJson(const EvalRow& row, double dense_us);

}  // namespace attic::retrieval::eval
