// Which tokens, hashes and heads go to which shard of a validated ShardPlan (client/client.h).
// Pure functions over plain data, so the routing rules are tested without a network.
//
//   std::vector<HeadRange> ranges = HeadRanges(plan);
//   ASSIGN_OR_RETURN(auto slices, RoutePrefill(plan, local_len, first_token, n));
//   for (const ShardSlice& s : slices) ...   // global tokens [s.begin, s.end) for s.shard
//
// Thread safety: stateless functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "client/client.h"
#include "common/status.h"

namespace attic::client_internal {

// The shards holding one KV-head range, ordered by token_begin; the last is open-ended.
struct HeadRange {
  int kv_head_begin = 0;
  int kv_head_end = 0;
  std::vector<size_t> shards;  // indices into ShardPlan::shards
};

// REQUIRES: plan.Validate() passed. Ordered by kv_head_begin.
std::vector<HeadRange> HeadRanges(const ShardPlan& plan);

// The index of the shard of `range` that is open-ended in tokens (receives decode tokens).
size_t OpenEndedShard(const ShardPlan& plan, const HeadRange& range);

// The prompt-block hashes of a shard's token range: blocks [token_begin / B, token_end / B)
// clipped to the hashes given.
std::span<const uint64_t> ShardHashes(const Shard& shard, std::span<const uint64_t> hashes,
                                      int block_size);

// Leading tokens held for every head: per head range, the shards' matched tokens counted from
// token 0 while each shard matched its whole range; the minimum over head ranges.
// matched: shard-local tokens per shard of the plan.
int64_t CombinePrefixMatch(const ShardPlan& plan, const std::vector<HeadRange>& ranges,
                           std::span<const int64_t> matched);

// FAILED_PRECONDITION unless a Prefill of `n` tokens may start at `first` on a layer holding
// `length` tokens of which the leading `prefix` came from the prefix cache: it must start at
// the length, or anywhere before it while the layer holds nothing beyond the prefix hit.
Status CheckPrefillStart(int64_t first, int64_t length, int64_t prefix);

// Global tokens [begin, end) of a prefill chunk that one shard must receive.
struct ShardSlice {
  size_t shard = 0;
  int64_t begin = 0;
  int64_t end = 0;
};

// Routes the chunk [first, first + n) to the shards whose token range holds it, skipping the
// tokens each shard already holds (local_len: shard-local tokens held per shard for this
// layer). FAILED_PRECONDITION if a shard would receive tokens that do not start at its local
// length. A slice may start inside a block (the shard's local length is not a multiple of B):
// the sender completes that block token-major.
StatusOr<std::vector<ShardSlice>> RoutePrefill(const ShardPlan& plan,
                                               std::span<const int64_t> local_len, int64_t first,
                                               int64_t n);

// Tokens per AppendKv message (a multiple of B, at least B) so that k and v of `heads` heads,
// block-major in `dtype`, fit in max_payload_bytes; one block if even one block does not fit.
int64_t TokensPerMessage(int heads, int block_size, int head_dim, DType dtype,
                         size_t max_payload_bytes);

}  // namespace attic::client_internal
