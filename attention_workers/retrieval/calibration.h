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
// definition. Efforts are given cheapest first, and recall is taken to grow with effort: the
// last is measured first (when it misses, it is returned, not met), then a bisection finds the
// cheapest that meets the target (log2 of the efforts' count measurements, not one each).
// Thread safety: stateless; the index is only searched (concurrently when a pool is given).
#pragma once

#include <span>
#include <vector>

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
  // Recall is also measured apart on the exact top keys more than far_distance positions
  // before the query's limit (with positions only), and must reach the target there too when
  // they are at least min_far_share of all. Prefill queries mostly attend near themselves; a
  // decode stretch that quotes earlier text attends far more often (an unseen layer 3: 27 %
  // of the top keys far at decode, 2 % for the held-out queries), and an index that reaches
  // the target only on the near keys falls below it there. 0 = no far check.
  int far_distance = 1024;
  double min_far_share = 0.01;
  ThreadPool* pool = nullptr;    // exact scans and searches of the queries in parallel
  IsaLevel isa = ActiveIsa();
};

// A sample split into the queries an index learns from and the ones held out to check it.
// The held-out queries are every stride-th query of the sample's second half, from its last
// one back, so that no stretch of the context loses the training queries next to it: holding
// out the last queries instead leaves the keys near the end of the prompt linked by no query
// near them, and those are the keys a head with a long local reach attends to in decode (on
// an unseen layer 3 the graph then reached 0.74 at decode while the tail check read 0.96).
struct HeldOutSplit {
  std::vector<float> train_q, held_q;
  std::vector<int32_t> train_positions, held_positions;  // empty when the sample has none
  int group_size = 0;
  int head_dim = 0;

  QuerySample train() const;
  QuerySample held_out() const;
};

// Holds out `queries` (all of them when the second half has fewer; none for queries <= 0).
HeldOutSplit SplitHeldOut(const QuerySample& sample, int queries);

// InvalidArgument for no efforts, top_k < 1, an empty sample or one whose head_dim differs.
StatusOr<Calibration> CalibrateEffort(const KeyIndex& index, const KeyRows& keys,
                                      const QuerySample& held_out,
                                      const CalibrationOptions& options);

}  // namespace attic::retrieval
