// The machine's DRAM read bandwidth, measured the way the attention kernels read: vector loads
// streaming over a buffer far larger than the caches, on 1 or many threads. It is the
// physical limit the kernel benchmark reports its ratios against.
//
//   ThreadPool pool({.num_threads = 2});
//   ReadBandwidth bw = MeasureReadBandwidth(pool, size_t{1} << 30, 5);   // bw.best_gbps
//
// The compute side of the same roofline: the core's fp32 fused multiply-add throughput at the
// active ISA level (12 independent FMA chains per thread, registers only), on 1 or many threads.
//
//   FmaThroughput f = MeasureFmaThroughput(pool, 5);   // f.best_gflops: 1e9 multiply-adds/s
//
// Thread safety: uses the given pool; one measurement at a time per pool.
#pragma once

#include <cstddef>

#include "attention_workers/thread_pool.h"

namespace attic::bench {

struct ReadBandwidth {
  double best_gbps = 0.0;    // 1e9 bytes per second, best repetition
  double median_gbps = 0.0;  // median repetition
};

// Reads `bytes` (rounded down to 4 KiB) `reps` times with pool.num_threads() threads.
ReadBandwidth MeasureReadBandwidth(ThreadPool& pool, size_t bytes, int reps);

struct FmaThroughput {
  double best_gflops = 0.0;  // 1e9 fp32 multiply-adds (vector lanes counted) per second
  int lanes = 1;             // fp32 lanes of one FMA instruction at the active ISA level
};

// pool.num_threads() threads each run about 50 ms of FMAs at ActiveIsa(), `reps` times.
FmaThroughput MeasureFmaThroughput(ThreadPool& pool, int reps);

}  // namespace attic::bench
