// The retrieval evaluation's per-step metrics (definitions: the data's README.md and
// docs/retrieval-bench.md), as pure functions over one decode step of one GQA group.
//
//   double r = RecallAt(result.positions, exact_top100);                  // |R ∩ TopK| / |TopK|
//   double m = MassRecall(lse_selected, lse_full);                         // mean_g exp(Δlse)
//   double e = OutputRelErr(o_selected, o_full, /*group=*/4, /*head_dim=*/128);
//   int64_t b = StepBytesRead(result.stats, selected.size(), scored_in_selection, 128);
//   double fraction = b / DenseBytes(position + 1, 128);
//
// Bytes are counted as bf16 (2 bytes per element) whatever the storage dtype, so every
// method — Attic's indexes and the fp32 baselines alike — is priced the same way.
// Thread safety: stateless.
#pragma once

#include <cstdint>
#include <span>

#include "attention_workers/retrieval/key_index.h"

namespace attic::retrieval::eval {

inline constexpr int64_t kBytesPerElement = 2;  // bf16

// |retrieved ∩ truth| / |truth|; 1 when truth is empty. Both hold distinct positions.
double RecallAt(std::span<const int32_t> retrieved, std::span<const int32_t> truth);

// Mean over heads of exp(lse_selected[g] - lse_full[g]): the softmax mass on the selection.
double MassRecall(std::span<const float> lse_selected, std::span<const float> lse_full);

// Mean over the group's heads of ||o_selected - o_full||_2 / ||o_full||_2 (0 for a zero o_full
// row that is matched exactly). o_* are [group, head_dim].
double OutputRelErr(const float* o_selected, const float* o_full, int group, int head_dim);

// Bytes one step reads: what the search read, the values of the selection, and the keys of
// the selection the search did not already score. selection_scored <= selection_size.
int64_t StepBytesRead(const SearchStats& search, int64_t selection_size, int64_t selection_scored,
                      int head_dim);

// Bytes of a dense pass over `context` tokens: K and V, head_dim elements each, bf16.
double DenseBytes(int64_t context, int head_dim);

}  // namespace attic::retrieval::eval
