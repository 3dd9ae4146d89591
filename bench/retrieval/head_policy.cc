#include "bench/retrieval/head_policy.h"

#include "attention_workers/retrieval/head_profile.h"

namespace attic::retrieval::eval {

StatusOr<HeadDecision> DecideHead(const KeyRows& keys, const QuerySample& sample, float scale,
                                  const SelectionParams& selection) {
  ProfileOptions options;
  options.scale = scale;
  options.selection = selection;
  options.selection.exclude_window = false;
  ASSIGN_OR_RETURN(HeadProfile profile, ProfileHead(keys, sample, options));
  return HeadDecision{.available = profile.has_evidence, .dense = profile.dense,
                      .detail = profile.ToString()};
}

}  // namespace attic::retrieval::eval
