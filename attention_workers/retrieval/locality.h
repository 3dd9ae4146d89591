// Locality-aware sparse fetch: which value blocks a sparse decode step of one (sequence, layer,
// KV head) must read when values live on SSD, and which top-k tokens it attends to so that it
// reads few of them.
//
// Consecutive decode steps select mostly the same blocks (NOSA's observation). A per-head
// ResidentSet keeps the value blocks of recent selections in DRAM; each step
//  1. prefers, among candidates of near-equal score, tokens whose block is already available
//     (resident, or read anyway for the sinks and window),
//  2. reads only the blocks it is missing, at most fetch_budget of them, best scores first,
//  3. when the budget is spent, drops the candidates of unread blocks and takes the next best
//     available ones instead,
//  4. optionally prefetches the neighbours of the blocks it read (they are adjacent on SSD).
//
//   ResidentSet resident(params.resident_blocks);
//   SearchResult r;   // search depth: CandidateDepth(params, top_k) instead of top_k
//   RETURN_IF_ERROR(index->Search(keys, scorer, {.top_k = CandidateDepth(params, 100)}, &r));
//   const std::vector<int32_t> fixed = BuildSelection(
//       {.length = n, .indexed = index->size(), .retrieved = {}}, selection);
//   FetchPlan plan = PlanLocalityFetch({.length = n, .fixed = fixed, .candidates = r.positions,
//                                       .scores = r.scores, .top_k = 100},
//                                      params, resident);
//   ...read plan.blocks_fetched and plan.blocks_prefetched from SSD...
//   std::vector<int32_t> sel = BuildSelection(
//       {.length = n, .indexed = index->size(), .retrieved = plan.retrieved}, selection);
//   for (int b : ApplyFetchPlan(plan, &resident)) { ...the DRAM copy of b may go... }
//
// Score slack. Let s_1 and s_k be the scores of the best and the k-th candidate (k = top_k,
// or fewer when fewer candidates came). A candidate in an available block is ranked as if its
// score were s + score_slack * (s_1 - s_k). So an available candidate within the slack of the
// k-th best (s >= s_k - slack * gap) displaces a non-resident one that beats it by less than
// the slack, and one further below than the slack never enters the top k. The slack is a
// fraction of the spread of the top-k scores, so it is independent of the score scale and
// tightens on peaked heads whose mass sits in a few tokens. 0 = pure score order: with an
// unlimited budget the chosen tokens are then exactly the first top_k candidates.
//
// Budget. fetch_budget counts every block read in a step: the blocks of the fixed part (sinks
// and window — always read, even beyond the budget, as attention needs them), then the blocks
// of chosen candidates, then prefetched neighbours. 0 = unlimited.
//
// Units: positions are token positions of the (layer, KV head); block b holds positions
// [b * block_size, (b + 1) * block_size).
// Thread safety: PlanLocalityFetch is a pure function. A ResidentSet is not thread-safe: one per
// (sequence, layer, KV head), used by the thread that runs that head's step.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace attic::retrieval {

// Defaults: the setting with the fewest resident blocks that cut value bytes per step at least
// 5x on the reference activations (layer 4, 16K, graph index) with recall@100 and mass recall
// within 0.01 of the plain selection: 8.0x, recall -0.006, mass recall +0.000
// (docs/retrieval-locality.md).
struct LocalityParams {
  // Tokens per value block: the KV store's B.
  int block_size = 64;

  // Capacity of one head's ResidentSet, in value blocks (16 KiB each at B = 64, D = 128,
  // bf16; 64 blocks = 1 MiB). It must hold more than the blocks one step selects (38 on
  // average at top_k 100 on the reference activations) or the set thrashes: 32 blocks cut
  // bytes only 2.4x, 64 blocks 7-8x, 128 blocks 27-39x. 0 = no resident set.
  int resident_blocks = 64;

  // Most blocks read per step (fixed part, candidates, prefetch together); 0 = unlimited.
  // Bounds the SSD reads of a step whose selection moves (and of the first, cold step) at
  // some cost in recall: candidates of blocks that do not fit are replaced by lower-ranked
  // available ones. With 64 resident blocks and no slack, a budget of 16 cost recall@100
  // 0.003, 8 cost 0.017 and 4 cost 0.036.
  int fetch_budget = 16;

  // Preference for available blocks, as a fraction of the score spread s_1 - s_k of the top k
  // (see above). >= 0; 0 = none. Each 0.01 of slack cost 0.001-0.004 of recall@100 (more with
  // a smaller set) and no mass recall: the tokens it swaps carry little weight.
  float score_slack = 0.02f;

  // Candidates the search returns per step, the pool the top_k are chosen from (>= top_k;
  // 0 = 2 * top_k). The graph index re-ranks 200 keys exactly by default, so a depth up to
  // 200 costs its search nothing more, and its first top_k are those a top_k search returns.
  int candidates = 200;

  // Also read the blocks next to each block read for a candidate, within the budget; they are
  // inserted into the resident set as the least recent of the step. Off: on the reference
  // activations neighbours were rarely selected later: prefetch took 2-3x the reads.
  bool prefetch_neighbours = false;
};

// InvalidArgument naming the field: block_size < 1, resident_blocks, fetch_budget or candidates
// negative, score_slack negative or not finite.
Status ValidateLocalityParams(const LocalityParams& params);

// Candidates to ask the search for at a step selecting top_k: max(candidates, top_k), with
// candidates = 0 meaning 2 * top_k.
int CandidateDepth(const LocalityParams& params, int top_k);

// The value blocks of one (sequence, layer, KV head) held in DRAM, least recently used first
// out. Not thread-safe (see above).
class ResidentSet {
 public:
  // capacity >= 0 blocks; 0 holds nothing.
  explicit ResidentSet(int capacity);

  int capacity() const { return capacity_; }
  int size() const { return static_cast<int>(where_.size()); }
  bool Contains(int block) const { return where_.count(block) != 0; }

  // Marks a held block most recently used; false (and no change) if it is not held.
  bool Touch(int block);

  // Adds a block as the most recently used (or touches it when held) and returns the blocks
  // evicted to make room, least recent first: the block itself when capacity is 0.
  std::vector<int> Insert(int block);

  // Held blocks, most recent first.
  std::vector<int> Blocks() const { return {order_.begin(), order_.end()}; }

 private:
  int capacity_;
  std::list<int> order_;  // most recent first
  std::unordered_map<int, std::list<int>::iterator> where_;
};

// One step's inputs.
struct LocalityStepInput {
  int64_t length = 0;                   // positions [0, length) exist
  std::span<const int32_t> fixed;       // sinks + window (+ unfolded keys): always attended
  std::span<const int32_t> candidates;  // best first, distinct, each < length
  std::span<const float> scores;        // candidates' scores, same length, non-increasing
  int top_k = 100;                      // tokens to choose among the candidates
};

// What a step reads and attends to. Block lists are sorted and distinct.
struct FetchPlan {
  std::vector<int32_t> retrieved;      // the chosen tokens (<= top_k), in the order chosen
  std::vector<int> blocks_selected;    // blocks of fixed + retrieved: the step's attention reads
  std::vector<int> blocks_resident;    // of blocks_selected, those resident before the step
  std::vector<int> blocks_fetched;     // of blocks_selected, those read this step
  std::vector<int> blocks_prefetched;  // read this step for later steps, not attended
  int dropped = 0;                     // candidates passed over: their block did not fit
};

// True when the block's values are in DRAM.
using ResidencyFn = std::function<bool(int block)>;

// The step's plan (see the top of this file). Positions outside [0, length) are ignored.
// Fewer than top_k tokens are chosen only when the budget leaves too few available candidates
// (or fewer came). REQUIRES: ValidateLocalityParams(params).ok().
FetchPlan PlanLocalityFetch(const LocalityStepInput& input, const LocalityParams& params,
                            const ResidencyFn& resident);
FetchPlan PlanLocalityFetch(const LocalityStepInput& input, const LocalityParams& params,
                            const ResidentSet& resident);

// Updates the set after the plan's reads. Afterwards the step's blocks are the most recent, in
// this order from the most recent: the resident blocks it used, the fetched ones, the
// prefetched ones; evictions take the oldest other blocks first. Returns the evicted blocks.
std::vector<int> ApplyFetchPlan(const FetchPlan& plan, ResidentSet* resident);

}  // namespace attic::retrieval
