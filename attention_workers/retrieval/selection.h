// The token selection of one sparse attention step: sinks (the first S tokens) + the local window
// (the last W tokens) + the retrieved top-k, de-duplicated and sorted — what the exact sparse
// kernel (SparseDecodeAttention) then attends to.
//
//   std::vector<int32_t> sel = BuildSelection(
//       {.length = n, .indexed = index->size(), .retrieved = r.positions},
//       {.sinks = 4, .window = 64});
//
// Keys the index has not folded in yet (positions [indexed, length)) are always part of the
// window, however long W is, so nothing is invisible between a decode append and the fold.
//
// exclude_window: the caller keeps the last W tokens itself (e.g. on the GPU) and merges its own
// partial by LSE, so the selection holds only positions below length - W: sinks, retrieved and
// the unfolded keys older than the caller's window. Nothing is counted twice.
// Thread safety: stateless.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"

namespace attic::retrieval {

struct SelectionParams {
  int sinks = 4;     // S >= 0
  int window = 64;   // W >= 0
  int top_k = 100;   // k >= 0 retrieved per step (0 = sinks and window only)
  bool exclude_window = false;
};

struct SelectionInput {
  int64_t length = 0;                 // the query attends to positions [0, length)
  int64_t indexed = 0;                // positions [0, indexed) are in the index
  std::span<const int32_t> retrieved;  // any order, may repeat, each < length
};

Status ValidateSelectionParams(const SelectionParams& params);

// Sorted, distinct positions.
std::vector<int32_t> BuildSelection(const SelectionInput& input, const SelectionParams& params);

}  // namespace attic::retrieval
