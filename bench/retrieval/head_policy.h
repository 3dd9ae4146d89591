// The per-head dense decision of the evaluation: whether a (layer, KV head) is served densely
// instead of by retrieval, decided from the prefill query sample the index may learn from
// (never from the decode steps).
//
//   ASSIGN_OR_RETURN(HeadDecision d, DecideHead(keys, sample, ds.scale, selection));
//   if (d.dense) rows.push_back(DenseRow(...));   // the head is attended densely
//
// The decision is attention_workers/retrieval/head_profile.h's ProfileHead with its default
// thresholds, for the evaluation's selection. Without a sample there is no evidence: available
// is false and the head stays sparse.
// Thread safety: stateless.
#pragma once

#include <string>

#include "attention_workers/retrieval/key_index.h"
#include "attention_workers/retrieval/selection.h"

namespace attic::retrieval::eval {

struct HeadDecision {
  bool available = false;  // the profile had evidence (prefill queries to measure)
  bool dense = false;
  std::string detail;      // the profile's one-line summary, or why there is none
};

// keys: the indexed keys; sample: the allowed prefill queries (positions below keys.count).
StatusOr<HeadDecision> DecideHead(const KeyRows& keys, const QuerySample& sample, float scale,
                                  const SelectionParams& selection);

}  // namespace attic::retrieval::eval
