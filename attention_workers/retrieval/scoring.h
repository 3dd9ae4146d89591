// GroupScorer: the score every retrieval index ranks keys by, score(k) = max over the GQA
// group's query heads of q_g . k (unscaled), computed by a per-ISA kernel from keys in their
// storage dtype. The recall metric uses the same definition (docs/retrieval.md).
//
//   GroupScorer scorer(QueryGroup{.q = q, .group_size = 4, .head_dim = 128}, DType::kBFloat16);
//   scorer.ScorePositions(keys, candidates, scores);     // scores[i] for keys.row(candidates[i])
//   std::vector<int32_t> top = TopKPositions(scores_of_all, 100);
//
// Thread safety: a scorer is immutable after construction; share it across threads freely.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "attention_workers/isa.h"
#include "attention_workers/retrieval/key_rows.h"
#include "common/dtype.h"
#include "common/status.h"

namespace attic::retrieval {

// InvalidArgument unless q is non-null, 1 <= group_size <= 128 and head_dim is a multiple of 32
// in [32, 512].
Status ValidateQueryGroup(const QueryGroup& q);

class GroupScorer {
 public:
  // REQUIRES: ValidateQueryGroup(q).ok(). The queries are copied; isa must be supported.
  GroupScorer(const QueryGroup& q, DType dtype, IsaLevel isa = ActiveIsa());

  int group_size() const { return group_size_; }
  int head_dim() const { return head_dim_; }
  DType dtype() const { return dtype_; }

  // out[i] = score of the head_dim elements at rows[i].
  void ScoreRows(std::span<const std::byte* const> rows, float* out) const;
  // out[i] = score of keys.row(positions[i]). REQUIRES: positions within [0, keys.count).
  void ScorePositions(const KeyRows& keys, std::span<const int32_t> positions, float* out) const;
  // out[p - begin] = score of keys.row(p) for p in [begin, end).
  void ScoreRange(const KeyRows& keys, int64_t begin, int64_t end, float* out) const;
  float ScoreRow(const std::byte* row) const;
  // Writes the queries as given to the constructor into out [group_size, head_dim] fp32 (for
  // indexes that score compact codes or centroids themselves).
  void CopyQueries(float* out) const;

 private:
  std::vector<float> q_;  // laid out for the kernel (internal/score_abi.h)
  int group_size_;
  int head_dim_;
  DType dtype_;
  IsaLevel isa_;
};

// Positions (base + index) of the k largest scores, best first; ties go to the lower position.
// Returns min(k, scores.size()) positions.
std::vector<int32_t> TopKPositions(std::span<const float> scores, int k, int32_t base = 0);

}  // namespace attic::retrieval
