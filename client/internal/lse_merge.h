// Merging partial attention states by log-sum-exp (DESIGN.md, "The decode step"), the client's
// own copy: the client does not link attention_workers.
//
// A state of one query head is (o [D], lse): the normalized output over a subset of tokens and
// the natural-log sum of exp(scale * q.k) over it. Two disjoint subsets merge as
//   m = max(lse_a, lse_b); w_a = exp(lse_a - m); w_b = exp(lse_b - m);
//   o = (w_a o_a + w_b o_b) / (w_a + w_b);  lse = m + log(w_a + w_b).
// A part with lse = -inf (no tokens) is the identity, so an accumulator starts as (0, -inf).
//
//   std::vector<float> o(heads * d, 0.0f), lse(heads, -INFINITY);
//   for (const Part& p : parts) MergeStatesInto(o.data(), lse.data(), p.o, p.lse, heads, d);
//
// Thread safety: stateless.
#pragma once

namespace attic::client_internal {

// (o_acc, lse_acc) <- merge((o_acc, lse_acc), (o_part, lse_part)) for num_heads heads:
// o_* are [num_heads, d] row-major, lse_* are [num_heads].
void MergeStatesInto(float* o_acc, float* lse_acc, const float* o_part, const float* lse_part,
                     int num_heads, int d);

}  // namespace attic::client_internal
