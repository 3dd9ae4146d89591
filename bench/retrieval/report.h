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

// {"method", "setting", "layer", "kv_head", "context", "recall_at_100", "mass_recall",
//  "output_rel_err", "keys_scanned_fraction", "bytes_fraction", "latency_us", "build_ms",
//  "build_threads", "build_keys_per_s_per_core",
//  "index_bytes_per_key", "recall_at_100_per_head", "steps", "dense_latency_us",
//  "latency_ratio"} as one JSON object.
std::string RowJson(const EvalRow& row, double dense_us);

}  // namespace attic::retrieval::eval
