// PlacementPolicy: where a new sequence goes — a shard plan over the live workers, chosen from
// the figures their heartbeats carry. Pure logic, no I/O and no clock: the scheduler's state
// gathers the views and calls Place under its lock.
//
//   DefaultPlacementPolicy policy({.head_shard_min_tokens = 32768});
//   std::vector<WorkerView> views = ...;   // one per known worker
//   ASSIGN_OR_RETURN(PlacementDecision d, policy.Place(input, views));
//   for (const ShardDecision& s : d.shards) ... views[s.worker] ...
//
// DefaultPlacementPolicy's order (docs/scheduler.md, "Placement"):
//  1. Candidates: alive, ready, serving the request's model. None: UNAVAILABLE.
//  2. Head sharding for latency: expected tokens >= head_shard_min_tokens and at least two
//     candidates with room for their share: the KV heads split evenly over up to
//     head_shard_workers of them, in the ranking below. Reason "head-shard".
//  3. Prefix affinity: the candidate with the longest leading run of the prompt's block hashes
//     (its prefix summary, or the scheduler's recent placements), if the run is at least
//     min_prefix_blocks, the worker has room and its queue is not far longer than the
//     shortest. Reason "prefix-affinity".
//  4. Headroom, then load: the candidate with the most room in DRAM, then counting what its
//     SSD tier can take (both compared in steps of headroom_step of its capacity so that
//     near-equal workers are told apart by load), then the shortest queue, the fewest
//     sequences, the lowest recent Attend p99. Reason "headroom".
//  5. Token-range sharding when no single candidate has room: the fewest candidates (most room
//     first) whose room adds up, each given a block-aligned token range proportional to its
//     room, the last one open-ended. Reason "token-split".
//  6. Otherwise RESOURCE_EXHAUSTED naming the need and the best room.
// Room = kv_free_bytes - reserved_bytes; a sequence needs expected_tokens * kv_bytes_per_token
// (times its share of the heads for a head shard).
//
// Thread safety: DefaultPlacementPolicy is immutable after construction; Place may be called
// concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "transport/control/prefix_summary.h"
#include "transport/control/scheduler_protocol.h"

namespace attic::scheduler {

// One known worker as the policy sees it. Views point into the caller's state and live for
// the duration of one Place call.
struct WorkerView {
  std::string name;
  bool alive = false;
  bool ready = false;
  uint64_t model_fingerprint = 0;
  uint32_t num_kv_heads = 0;
  WorkerFigures figures;
  // The worker's prefix-cache summary; null or empty when it sent none.
  const PrefixSummary* prefix = nullptr;
  // Bytes promised to placements its figures do not show yet (placed, not yet filled).
  uint64_t reserved_bytes = 0;
  // Leading prompt blocks of this request that the scheduler recently placed on this worker
  // (their blocks may not be in its summary yet).
  int recent_prefix_blocks = 0;
};

struct PlacementInput {
  uint64_t sequence_id = 0;
  // 0 = any model.
  uint64_t model_fingerprint = 0;
  uint64_t prompt_tokens = 0;
  // Prompt plus expected decode tokens; the memory a placement sizes for (at least
  // prompt_tokens and one token).
  uint64_t expected_tokens = 0;
  // Chained hashes of the prompt's full blocks, and the prefix cache's scope they live in.
  std::span<const uint64_t> prompt_hashes;
  uint64_t prefix_scope = 0;
};

struct ShardDecision {
  size_t worker = 0;  // index into the views
  uint32_t kv_head_begin = 0;
  uint32_t kv_head_end = 0;
  uint64_t token_begin = 0;
  int64_t token_end = -1;  // -1: open-ended
  uint64_t bytes = 0;      // memory the shard is expected to take
};

struct PlacementDecision {
  std::vector<ShardDecision> shards;
  // Leading prompt blocks the first shard's worker probably holds.
  uint64_t prefix_blocks_matched = 0;
  // "head-shard", "prefix-affinity", "headroom" or "token-split".
  std::string reason;
};

class PlacementPolicy {
 public:
  virtual ~PlacementPolicy() = default;
  // A shard plan over `workers`, or UNAVAILABLE (no live, ready worker serves the model) or
  // RESOURCE_EXHAUSTED (the fleet cannot hold the sequence), each naming the sequence.
  virtual StatusOr<PlacementDecision> Place(const PlacementInput& input,
                                            std::span<const WorkerView> workers) const = 0;
};

struct DefaultPlacementOptions {
  // Shortest leading run of prompt blocks that makes a worker affine. Default 1.
  int min_prefix_blocks = 1;
  // Affinity yields when the affine worker's queue is longer than the shortest candidate
  // queue by more than this many requests, so a hot prefix does not pile every request onto
  // one worker while others idle. Default 16.
  uint64_t affinity_max_queue_gap = 16;
  // Sequences expecting at least this many tokens are split over KV heads when two or more
  // workers have room: each step then runs on several workers at once. 0 = never.
  // Default 32768.
  uint64_t head_shard_min_tokens = 32768;
  // Most workers one head-sharded sequence spans (at most the model's KV heads). Default 2.
  int head_shard_workers = 2;
  // Room is compared in steps of this fraction of a worker's capacity before load decides.
  // In (0, 1]. Default 0.1.
  double headroom_step = 0.1;
};

class DefaultPlacementPolicy final : public PlacementPolicy {
 public:
  explicit DefaultPlacementPolicy(DefaultPlacementOptions options = {});
  StatusOr<PlacementDecision> Place(const PlacementInput& input,
                                    std::span<const WorkerView> workers) const override;
  const DefaultPlacementOptions& options() const { return options_; }

 private:
  DefaultPlacementOptions options_;
};

}  // namespace attic::scheduler
