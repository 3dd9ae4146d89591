// 4-bit scalar-quantized copies of the keys that the graph index traverses with, so a search
// reads 64 B per visited key (head_dim 128) instead of a 256 B bf16 row, and re-ranks only its
// best candidates with exact scores.
//
//   KeyCodes codes;
//   codes.Train(keys);                    // per-dimension ranges from the keys
//   codes.Append(keys, 0, keys.count);    // codes of rows [0, count)
//   CodeQuery cq(codes, group);           // per search: queries folded with the ranges
//   cq.Score(codes, ids, out);            // approximate group-max scores
//
// Dimension d of a key is stored as c = round((x - lo[d]) / step[d]) clamped to [0, 15], two
// dimensions per byte: byte j holds dimension j in its low nibble and j + head_dim/2 in its
// high nibble. q . x ~ sum_d (q[d] * step[d]) * c[d] + sum_d q[d] * lo[d], so a query is
// folded once per search and the per-key work is a plain dot product with the nibbles.
// Thread safety: KeyCodes is read-only during searches (Append needs exclusive access);
// CodeQuery is per search.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "attention_workers/isa.h"
#include "attention_workers/retrieval/key_rows.h"

namespace attic::retrieval::internal {

class KeyCodes {
 public:
  // Per-dimension ranges from rows [0, keys.count) (a range of a constant dimension is widened
  // so its step stays positive). REQUIRES: keys.count >= 1.
  void Train(const KeyRows& keys);
  // Appends the codes of rows [begin, end). REQUIRES: Train was called, begin == size().
  void Append(const KeyRows& keys, int64_t begin, int64_t end);

  int head_dim() const { return head_dim_; }
  int code_bytes() const { return head_dim_ / 2; }
  int64_t size() const { return head_dim_ == 0 ? 0 : static_cast<int64_t>(codes_.size()) / code_bytes(); }
  const uint8_t* code(int32_t p) const {
    return codes_.data() + static_cast<size_t>(p) * code_bytes();
  }
  std::span<const float> lo() const { return lo_; }
  std::span<const float> step() const { return step_; }
  int64_t memory_bytes() const {
    return static_cast<int64_t>(codes_.size() + (lo_.size() + step_.size()) * sizeof(float));
  }

 private:
  int head_dim_ = 0;
  std::vector<float> lo_;      // [head_dim]
  std::vector<float> step_;    // [head_dim]
  std::vector<uint8_t> codes_;  // [n, head_dim / 2]
};

// One search's queries folded with the code ranges.
class CodeQuery {
 public:
  // Reuses this object's buffers: no allocation once they have grown.
  void Prepare(const KeyCodes& codes, const float* q, int group_size, IsaLevel isa);
  // out[i] = approximate group-max score of codes.code(ids[i]).
  void Score(const KeyCodes& codes, std::span<const int32_t> ids, float* out) const;

 private:
  std::vector<float> qs_;    // [group_size, head_dim]: q[g][d] * step[d]
  std::vector<float> bias_;  // [group_size]: sum_d q[g][d] * lo[d]
  int group_size_ = 0;
  int head_dim_ = 0;
  IsaLevel isa_ = IsaLevel::kScalar;
};

}  // namespace attic::retrieval::internal
