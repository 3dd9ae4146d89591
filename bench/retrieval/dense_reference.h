// The latency a retrieval step is judged against: one dense decode-attention pass of one GQA
// group over the whole context, on one thread. cold: K and V not in cache (a buffer of 3x the
// last-level cache is streamed before every repetition); warm: after one untimed pass, with
// whatever of K and V the cache keeps between passes.
//
//   ASSIGN_OR_RETURN(double us, DenseLatencyUs(ds, ds.layers[0], /*kv_head=*/0, 16384, 5));
//
// Thread safety: run it alone — other threads streaming memory make the figure noisy.
#pragma once

#include <cstdint>
#include <vector>

#include "bench/retrieval/dataset.h"

namespace attic::retrieval::eval {

// Median microseconds over reps passes of DecodeAttention over tokens [0, context).
StatusOr<double> DenseLatencyUs(const Dataset& ds, const LayerData& layer, int kv_head,
                                int64_t context, int reps, bool cold = true);

// Streams (reads and writes) a buffer of 3x the last-level cache, so that what a timed step
// reads next comes from DRAM. One per thread.
class CacheEvictor {
 public:
  CacheEvictor();
  void Evict();

 private:
  std::vector<uint64_t> buffer_;
};

}  // namespace attic::retrieval::eval
