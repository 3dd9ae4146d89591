// The latency a retrieval step is judged against: one dense decode-attention pass of one GQA
// group over the whole context, on one thread, with K and V not in cache (a buffer larger than
// the last-level cache is streamed before every repetition).
//
//   ASSIGN_OR_RETURN(double us, DenseLatencyUs(ds, ds.layers[0], /*kv_head=*/0, 16384, 5));
//
// Thread safety: run it alone — other threads streaming memory make the figure noisy.
#pragma once

#include <cstdint>

#include "bench/retrieval/dataset.h"

namespace attic::retrieval::eval {

// Median microseconds over reps passes of DecodeAttention over tokens [0, context).
StatusOr<double> DenseLatencyUs(const Dataset& ds, const LayerData& layer, int kv_head,
                                int64_t context, int reps);

}  // namespace attic::retrieval::eval
