// Merging partial attention states by log-sum-exp (DESIGN.md, "The decode step"): the one
// implementation, used by the workers (split-K chunks of a head) and by the client (shards of a
// sequence), checked against fp64 in tests/common/lse_merge_test.cc.
//
// A partial state of one query head is (o, lse): o [D] the normalized output over a subset of
// tokens, lse the natural-log sum of exp(scale * q.k) over that subset. Merging two disjoint
// subsets:  m = max(lse_a, lse_b); w_a = exp(lse_a - m); w_b = exp(lse_b - m);
//           o = (w_a o_a + w_b o_b) / (w_a + w_b);  lse = m + log(w_a + w_b).
// The merge is associative and commutative; a part with lse = -inf (no tokens) is the
// identity. Extreme but finite lse values are exact up to fp32 rounding (no overflow).
//
//   MergeStateInto(o_acc, &lse_acc, o_part, lse_part, 128);   // o_acc [128], in place
//
// Thread safety: stateless.
#pragma once

namespace attic {

// (o_acc, lse_acc) <- merge((o_acc, lse_acc), (o_part, lse_part)). o_acc and o_part are [d].
void MergeStateInto(float* o_acc, float* lse_acc, const float* o_part, float lse_part, int d);

// Merges num_heads states at once: o_* are [num_heads, d] row-major, lse_* are [num_heads].
void MergeStatesInto(float* o_acc, float* lse_acc, const float* o_part, const float* lse_part,
                     int num_heads, int d);

}  // namespace attic
