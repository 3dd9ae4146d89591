// The serving policy for one (layer, KV head): which index answers its sparse steps, decided at
// build from the prefill sample alone, so that no head is served below its recall target.
//
//   ASSIGN_OR_RETURN(ServingIndex s, BuildServingIndex(IndexKind::kGraph, keys, sample));
//   if (s.dense) { ...answer the head densely, log s.ToString()... }
//   else         { ...search s.index with effort 0 when s.index->kind() != the kind asked... }
//
// 1. The kind asked for is built. When it calibrated itself (KeyIndex::calibration(): the graph
//    index holds sample queries out of its build and raises its beam until they reach the
//    target) and met the target, it serves.
// 2. When it did not (the head's top keys are hard to route to at any allowed beam), the 4-bit
//    scan is built instead — linear, ~14 % of a dense pass's bytes at 16K, recall@100 ~0.997 on
//    the reference activations — and checked on the same held-out queries at re-rank depths
//    ServingOptions::scan_depths (200, 400, 800).
// 3. When that misses too, the head is answered densely: exact rather than below target.
// Kinds without a calibration (exact, cluster, quantized asked for directly) serve as built.
// Thread safety: stateless.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <vector>

#include "attention_workers/retrieval/graph_index.h"
#include "attention_workers/retrieval/key_index.h"

namespace attic::retrieval {

struct ServingOptions {
  // The graph kind's build; its calibration_* fields are the check every step uses (target,
  // top_k, causal window, held-out queries).
  GraphOptions graph;
  // Re-rank depths the 4-bit scan is checked at, cheapest first (its effort unit). 200 is
  // QuantizedScanOptions::rerank.
  std::vector<int> scan_depths = {200, 400, 800};
};

struct ServingIndex {
  std::unique_ptr<KeyIndex> index;  // null when dense
  IndexKind asked = IndexKind::kGraph;
  bool dense = false;
  bool replaced = false;                 // index is the 4-bit scan instead of the kind asked for
  std::optional<Calibration> calibration;           // the asked kind's
  std::optional<Calibration> fallback_calibration;  // the 4-bit scan's, when it was tried
  // The efforts the recall guard (recall_guard.h) starts from and may raise to, in the served
  // index's unit: the calibrated beam up to the largest beam the check tried, or the scan's
  // depth up to the deepest. 0 when not served or not calibrated.
  int base_effort = 0;
  int max_effort = 0;
  // "graph, beam 480, held-out recall 0.968 >= 0.960 (64 queries)", "4-bit scan: graph
  // reached 0.912 < 0.960 at beam 1280; ...", "dense: ...".
  std::string ToString() const;
};

// InvalidArgument as BuildKeyIndex and BuildGraphIndex, or for no scan_depths.
StatusOr<ServingIndex> BuildServingIndex(IndexKind kind, const KeyRows& keys,
                                         const QuerySample& sample,
                                         const ServingOptions& serving = {},
                                         const BuildOptions& options = {});

}  // namespace attic::retrieval
