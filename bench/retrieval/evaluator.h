// The retrieval evaluation of one (layer, KV head, context): every method, every setting of
// its effort sweep, over the context's decode steps, against exact attention.
//
//   ASSIGN_OR_RETURN(ContextPlan plan, PlanContext(ds, layer, 16384));
//   ASSIGN_OR_RETURN(HeadResult r, EvaluateHead(ds, layer, /*kv_head=*/0, plan,
//                                               RetrievalMethods({}), EvalOptions{}));
//   // r.rows: one EvalRow per (method, setting); r.notes: methods skipped and why
//
// Per step at position p: the index (built over keys [0, plan.indexed) and, for the kinds that
// learn, the prefill queries before plan.indexed — the leakage guard checks it) retrieves
// top_k; the selection is sinks + window + retrieved (keys [indexed, p] always in the window);
// SparseDecodeAttention over it is compared with dense attention over [0, p].
// Latency is Search + selection + sparse attention of one GQA group, one thread, median over
// steps (keys warm in cache: the steps run back to back).
// Thread safety: EvaluateHead may run concurrently for distinct heads; it uses one thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "attention_workers/retrieval/selection.h"
#include "bench/retrieval/dataset.h"
#include "bench/retrieval/methods.h"

namespace attic::retrieval::eval {

struct EvalOptions {
  SelectionParams selection{.sinks = 4, .window = 64, .top_k = 100};
  int max_steps = 0;  // 0 = every decode step of the context
  // Time each step cold: the caches are streamed out before it (dense_reference.h), so the
  // index, keys and values it reads come from DRAM. Run one evaluation at a time for this.
  bool cold_steps = false;
};

// One (method, setting) on one (layer, KV head, context), averaged over the decode steps.
struct EvalRow {
  std::string method;
  std::string setting;
  int layer = 0;
  int kv_head = 0;
  int64_t context = 0;
  int steps = 0;
  double recall_at_100 = 0.0;               // group-max TopK
  std::vector<double> recall_per_head;      // [G]: each query head's own TopK
  double mass_recall = 0.0;
  std::optional<double> output_rel_err;     // absent when the dump has no values
  double keys_scanned_fraction = 0.0;       // exact dot products / indexed keys
  double bytes_fraction = 0.0;              // step bytes / dense-pass bytes
  double latency_us = 0.0;                  // median over steps
  double build_ms = 0.0;
  int build_threads = 1;                    // threads the build ran on
  double build_keys_per_s_per_core = 0.0;   // indexed keys / build seconds / build_threads
  double index_bytes_per_key = 0.0;
};

struct HeadResult {
  std::vector<EvalRow> rows;
  std::vector<std::string> notes;  // "attic-graph: skipped (...)"
};

// Unimplemented kinds are skipped with a note; any other build or search failure is an error.
StatusOr<HeadResult> EvaluateHead(const Dataset& ds, const LayerData& layer, int kv_head,
                                  const ContextPlan& plan, const std::vector<MethodSpec>& methods,
                                  const EvalOptions& options);

// The row of a head served densely (the per-head dense decision): recall 1, bytes fraction 1.
EvalRow DenseRow(const LayerData& layer, int kv_head, int64_t context, int group_size);

}  // namespace attic::retrieval::eval
