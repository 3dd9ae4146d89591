// attic-bench-decode --concurrency: N sequences decoding at once through one local
// attic-worker process, each driven by its own engine stream (its own thread: every layer of
// every step is its own Attend request), so the worker serves N requests of different
// sequences concurrently. Per N it reports decode tokens/s and the per-step latency (all
// layers of one sequence's step) against the bound measured in the same run:
//
//   step bound = N x (KV bytes one sequence's step reads / DRAM read bandwidth)
//                + layers x round trip
//
// the bandwidth measured with the worker's compute thread count, the round trip as Attic's own
// Echo to the worker. The model is attic-ref-54m's shape (6 layers, Hq 8, Hkv 2, D 128, bf16).
#pragma once

#include <string>
#include <vector>

namespace attic::bench {

struct ConcurrentDecodeFlags {
  std::vector<int> concurrency = {1, 4, 16, 64};
  int context = 16384;
  int steps = 8;
  int threads = 0;  // the worker's compute threads; 0 = every core
  std::string json;
};

// The process exit status: 0 when every run decoded correctly.
int RunConcurrentDecode(const ConcurrentDecodeFlags& flags);

}  // namespace attic::bench
