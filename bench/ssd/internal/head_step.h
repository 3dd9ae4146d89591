// One decode step of one KV head against a KvStore, the way the worker's attend executor runs
// it (services/worker/attend_executor.cc): the sparse step (RunSparse + FetchSelection) and the
// dense step (RunDense, spilled values streamed with LoadValues). For the decode-step
// measurement (bench/ssd/decode_step.h).
//
//   HeadStepper stepper;   // one per thread: its scratch keeps its capacity
//   HeadStepResult r;
//   RETURN_IF_ERROR(stepper.Sparse(*store, spec, {.kv_head = 0, .length = p + 1,
//                                                 .q = q, .index = index.get(), ...}, &r));
//
// Sparse step: ReadBlocks (values not touched); the search over the store's key blocks, asked
// for CandidateDepth(locality, top_k) candidates when any value of the head is spilled, else
// top_k; without spilled values the selection is the first top_k; with them, PlanLocalityFetch
// over the store's residency (a block is available when ReadBlocks gave its value), FetchValues
// of the fetched and prefetched blocks, FetchValues of the resident blocks used (marking them
// recently used), BuildSelection of the plan's tokens; then SparseDecodeAttention.
// Dense step: every block of [0, length), spilled values streamed into a staging buffer with
// LoadValues, DecodeAttention.
// Thread safety: a HeadStepper is used by one thread at a time.
#pragma once

#include <cstdint>
#include <vector>

#include "attention_workers/decode_attention.h"
#include "attention_workers/retrieval/key_index.h"
#include "attention_workers/retrieval/locality.h"
#include "attention_workers/retrieval/selection.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "kvstore/kv_store.h"

namespace attic::retrieval::eval::decode_internal {

struct HeadStepInput {
  int kv_head = 0;
  int64_t length = 0;               // the query attends to positions [0, length)
  const float* q = nullptr;         // [G, D] fp32
  const KeyIndex* index = nullptr;  // sparse: indexes positions [0, index->size())
  SelectionParams selection;
  LocalityParams locality;  // sparse with spilled values
};

struct HeadStepResult {
  std::vector<int32_t> retrieved;  // sparse: the chosen top-k tokens
  std::vector<int32_t> selection;  // sparse: every attended position, sorted
  std::vector<float> out;          // [G, D]
  std::vector<float> lse;          // [G]
  bool spilled = false;            // some value of the head was not in DRAM
  int blocks_selected = 0;         // blocks holding attended positions
  int dropped = 0;                 // candidates the plan passed over for its budget
  FetchStats fetch;                // what FetchValues (sparse) or LoadValues (dense) read
  double read_us = 0.0;            // time in those calls (the SSD reads and their checks)
};

class HeadStepper {
 public:
  Status Sparse(KvStore& store, const ModelSpec& spec, const HeadStepInput& in,
                HeadStepResult* out);
  Status Dense(KvStore& store, const ModelSpec& spec, const HeadStepInput& in, HeadStepResult* out);

 private:
  // touch_values as the executor: dense passes mark every resident value used, sparse steps
  // only what they select.
  Status ReadHead(KvStore& store, const HeadStepInput& in, bool touch_values);
  // The locality plan and the fetches: fills out->retrieved, selection, and runs_' values.
  Status FetchSelection(KvStore& store, const HeadStepInput& in, int64_t indexed,
                        HeadStepResult* out);

  std::vector<BlockView> views_;
  std::vector<KvRun> runs_;  // one per block of [0, length), cut at length
  std::vector<const std::byte*> key_blocks_;
  SearchResult search_;
  std::vector<int32_t> fixed_;
  std::vector<int> fetch_;
  std::vector<int> used_;
  std::vector<const std::byte*> values_;
  std::vector<std::byte> staging_;
  std::vector<std::byte*> dst_;
};

}  // namespace attic::retrieval::eval::decode_internal
