// Effort calibration: how hard an index must search to reach a recall, measured on prefill
// queries it did not learn from (never on the steps it will serve).
//
//   const int efforts[] = {160, 240, 320, 480, 640};
//   ASSIGN_OR_RETURN(Calibration c, CalibrateEffort(*index, keys, held_out,
//                                                   {.efforts = efforts, .target = 0.96f}));
//   // c.effort: the cheapest effort whose mean recall@top_k reached the target (c.met), or
//   // the last one when none did (!c.met)
//
// Recall@k of one query is |retrieved ∩ exact top k| / k, with the exact top k by the GQA
// group's best score over the indexed keys [0, index.size()) — the retrieval benchmark's
// definition. Efforts are tried in the order given, which should be cheapest first; the first
// that reaches the target is taken.
// Thread safety: stateless; the index is only searched (concurrently when a pool is given).
#pragma once

#include <span>

#include "attention_workers/isa.h"
#include "attention_workers/retrieval/key_index.h"

namespace attic::retrieval {

struct CalibrationOptions {
  std::span<const int> efforts;  // in the index's unit, cheapest first; at least one
  float target = 0.96f;          // mean recall@top_k to reach
  int top_k = 100;
  // With the held-out queries' positions: a query at position p is checked as a decode step
  // with a local window of this many tokens would be — its exact top k over the keys before
  // p + 1 - causal_window only, and only what the search retrieved there counts (keys after p
  // do not exist for it; the window's keys a decode step attends to anyway). 0 = every
  // indexed key, positions or not.
  int causal_window = 0;
  ThreadPool* pool = nullptr;    // exact scans and searches of the queries in parallel
  IsaLevel isa = ActiveIsa();
};

// InvalidArgument for no efforts, top_k < 1, an empty sample or one whose head_dim differs.
StatusOr<Calibration> CalibrateEffort(const KeyIndex& index, const KeyRows& keys,
                                      const QuerySample& held_out,
                                      const CalibrationOptions& options);

}  // namespace attic::retrieval
