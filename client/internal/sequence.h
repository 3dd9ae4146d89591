// What the client knows about each open sequence: its plan, how many tokens every shard holds
// per layer, and the prefix hit. The table of sequences is shared with transport callbacks (a
// failed Open removes its own entry from there).
//
//   ASSIGN_OR_RETURN(std::shared_ptr<SequenceState> seq, table->FindOpen(id));
//   { MutexLock lock(&seq->mu); seq->length[layer] += 1; }
//
// Thread safety: SequenceTable is internally locked. A SequenceState's const members are
// immutable; the rest is guarded by its own mutex. Locks are never nested (the table's lock is
// released before a sequence's is taken).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "client/client.h"
#include "client/internal/routing.h"
#include "client/internal/wire_codec.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace attic::client_internal {

struct SequenceState {
  SequenceState(uint64_t id_in, ShardPlan plan_in, int num_layers)
      : id(id_in),
        plan(std::move(plan_in)),
        ranges(HeadRanges(plan)),
        length(static_cast<size_t>(num_layers), 0),
        local_len(static_cast<size_t>(num_layers), std::vector<int64_t>(plan.shards.size(), 0)),
        durable_len(local_len),
        layer_error(static_cast<size_t>(num_layers)) {}

  const uint64_t id;
  const ShardPlan plan;  // validated
  const std::vector<HeadRange> ranges;

  Mutex mu;
  // False until every shard acknowledged OpenSequence.
  bool open GUARDED_BY(mu) = false;
  bool looked_up GUARDED_BY(mu) = false;
  // True while a LookupPrefix is in flight: its reply sets every layer's lengths.
  bool lookup_pending GUARDED_BY(mu) = false;
  // Leading tokens every head holds through the prefix cache (PrefixMatch::matched_tokens).
  int64_t prefix_tokens GUARDED_BY(mu) = 0;
  // [L] tokens sent per layer, prefix hits included (Client::Length).
  std::vector<int64_t> length GUARDED_BY(mu);
  // [L][shards] shard-local tokens each shard holds (or will once in-flight appends land).
  std::vector<std::vector<int64_t>> local_len GUARDED_BY(mu);
  // [L][shards] shard-local durable tokens, as the latest reply of each shard said (never
  // decreasing: replies of concurrent requests may arrive out of order).
  std::vector<std::vector<int64_t>> durable_len GUARDED_BY(mu);
  // [L] the first failed append of a layer: after one, the workers' lengths are unknown, so
  // later appends of that layer are refused (the caller closes and reopens the sequence).
  std::vector<Status> layer_error GUARDED_BY(mu);
};

// Whether the shard already holds global token `token` of the layer.
inline bool HoldsToken(const SequenceState& seq, int layer, size_t shard, int64_t token)
    REQUIRES(seq.mu) {
  return seq.plan.shards[shard].token_begin + seq.local_len[static_cast<size_t>(layer)][shard] >
         token;
}

// Records a shard's durable length from a reply.
inline void NoteDurable(SequenceState& seq, int layer, size_t shard, int64_t durable)
    REQUIRES(seq.mu) {
  int64_t& d = seq.durable_len[static_cast<size_t>(layer)][shard];
  d = std::max(d, durable);
}

// Takes the shards' resumed lengths (shards[i] for plan shard i) as the sequence's bookkeeping
// and marks it open: each layer's length is what every head holds contiguously from token 0
// (CombinePrefixMatch), and LookupPrefix is no longer allowed. Returns what Resume reports.
ResumeInfo AdoptResumed(SequenceState& seq, const std::vector<ResumedShard>& shards)
    EXCLUDES(seq.mu);

// FAILED_PRECONDITION after a failed append on the layer (the workers' lengths are unknown)
// and while a LookupPrefix is in flight (its reply resets the lengths).
Status CheckAppendable(SequenceState& seq, int layer) REQUIRES(seq.mu);

class SequenceTable {
 public:
  // ALREADY_EXISTS if the id is in the table.
  Status Insert(std::shared_ptr<SequenceState> seq) EXCLUDES(mu_);
  // Inserts, or replaces the entry of the same id (a resumed sequence).
  void Put(std::shared_ptr<SequenceState> seq) EXCLUDES(mu_);
  // NOT_FOUND if absent.
  StatusOr<std::shared_ptr<SequenceState>> Find(uint64_t id) const EXCLUDES(mu_);
  // Find, and FAILED_PRECONDITION while the sequence's Open has not completed.
  StatusOr<std::shared_ptr<SequenceState>> FindOpen(uint64_t id) const EXCLUDES(mu_);
  // Removes and returns the entry (null if absent).
  std::shared_ptr<SequenceState> Remove(uint64_t id) EXCLUDES(mu_);
  // Removes the entry only if it is `seq` (a later Open of the same id stays).
  void RemoveIfSame(const SequenceState* seq) EXCLUDES(mu_);

 private:
  mutable Mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<SequenceState>> map_ GUARDED_BY(mu_);
};

}  // namespace attic::client_internal
