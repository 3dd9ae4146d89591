#include "attention_workers/retrieval/serving_index.h"

#include <cstdio>

#include "attention_workers/retrieval/calibration.h"
#include "attention_workers/retrieval/graph_index.h"
#include "attention_workers/retrieval/quantized_scan.h"

namespace attic::retrieval {
namespace {

// printf into a string (the figures below are short).
template <typename... Args>
std::string Printf(const char* format, Args... args) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), format, args...);
  return buf;
}

std::string Describe(const Calibration& c, const char* unit) {
  std::string s = Printf("%s %d, held-out recall %.3f", unit, c.effort, c.recall);
  if (c.recall_far >= 0.0) {
    s += Printf(", far keys %.3f (%.0f %% of the top)", c.recall_far, 100.0 * c.far_share);
  }
  return s + Printf(" %s %.3f (%d queries)", c.met ? ">=" : "<", c.target, c.queries);
}

}  // namespace

std::string ServingIndex::ToString() const {
  std::string s;
  if (dense) {
    s = "dense";
  } else if (replaced) {
    s = "4-bit scan";
  } else {
    s = std::string(IndexKindName(asked));
  }
  if (calibration.has_value()) {
    const char* unit = asked == IndexKind::kGraph ? "beam" : "effort";
    s += replaced || dense ? ": " + std::string(IndexKindName(asked)) + " " + Describe(*calibration, unit)
                           : ", " + Describe(*calibration, unit);
  }
  if (fallback_calibration.has_value()) {
    s += "; 4-bit scan " + Describe(*fallback_calibration, "re-rank");
  }
  return s;
}

StatusOr<ServingIndex> BuildServingIndex(IndexKind kind, const KeyRows& keys,
                                         const QuerySample& sample,
                                         const ServingOptions& serving,
                                         const BuildOptions& options) {
  if (serving.scan_depths.empty()) return InvalidArgumentError("serving options: no scan_depths");
  ServingIndex s;
  s.asked = kind;
  if (kind == IndexKind::kGraph) {
    ASSIGN_OR_RETURN(s.index, BuildGraphIndex(keys, sample, serving.graph, options));
  } else {
    ASSIGN_OR_RETURN(s.index, BuildKeyIndex(kind, keys, sample, options));
  }
  s.calibration = s.index->calibration();
  if (s.calibration.has_value() && kind == IndexKind::kGraph) {
    s.base_effort = s.calibration->effort;
    s.max_effort = 4 * serving.graph.default_beam;  // the check's largest beam
  }
  if (!s.calibration.has_value() || s.calibration->met) return s;
  s.base_effort = s.max_effort = 0;

  ASSIGN_OR_RETURN(std::unique_ptr<KeyIndex> scan,
                   BuildQuantizedScan(keys, {.bits = 4}, {.pool = options.pool, .isa = options.isa}));
  const GraphOptions& g = serving.graph;
  const HeldOutSplit split = SplitHeldOut(sample, s.calibration->queries);  // the build's
  ASSIGN_OR_RETURN(Calibration c,
                   CalibrateEffort(*scan, keys, split.held_out(),
                                   {.efforts = serving.scan_depths,
                                    .target = g.calibration_target,
                                    .top_k = g.calibration_top_k,
                                    .causal_window = g.calibration_window,
                                    .pool = options.pool,
                                    .isa = options.isa}));
  s.fallback_calibration = c;
  if (!c.met) {
    s.index.reset();
    s.dense = true;
    return s;
  }
  if (c.effort != QuantizedScanOptions{}.rerank) {  // effort 0 must mean the depth that met it
    ASSIGN_OR_RETURN(scan, BuildQuantizedScan(keys, {.bits = 4, .rerank = c.effort},
                                              {.pool = options.pool, .isa = options.isa}));
  }
  s.index = std::move(scan);
  s.replaced = true;
  s.base_effort = c.effort;
  s.max_effort = serving.scan_depths.back();
  return s;
}

}  // namespace attic::retrieval
