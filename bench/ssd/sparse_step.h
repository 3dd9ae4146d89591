// Sparse-fetch latency per decode step when the selected values all miss DRAM, for
// `./attic bench ssd`: a KvStore with its SSD tier holds one sequence whose values are all
// spilled, and each step fetches blocks_per_step scattered value blocks of one (layer, KV
// head) through KvStore::FetchValues, as the worker's sparse step does for the blocks its
// selection found on SSD. Maintain spills them again after the step (not timed), so every
// step reads every block from the disk. The figure is set against the disk's own random-read
// latency and IOPS measured in the same run (bench/ssd/disk_throughput.h): with reads in
// flight side by side a step should cost about one device latency, not one per block.
//
//   ASSIGN_OR_RETURN(std::vector<SparseStepFigures> f,
//                    MeasureSparseSteps({.dir = "/mnt/ssd/x", .blocks_per_step = {16, 64}}));
//
// Thread safety: one measurement at a time per directory; runs on the calling thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/ssd/disk_throughput.h"
#include "common/status.h"

namespace attic::bench {

struct SparseStepOptions {
  std::string dir;  // the store's RocksDB directories go under it (removed afterwards)
  bool direct_io = true;
  // Blocks one step fetches; a row each.
  std::vector<int> blocks_per_step = {16, 64};
  // SsdTierOptions::read_threads of each run (the tier's default first); a row each.
  std::vector<int> read_threads = {16, 1};
  int steps = 200;             // timed steps per row (after 10 untimed ones)
  int context_blocks = 2048;   // value blocks of the sequence (one layer, one KV head)
  int head_dim = 128;          // with bf16 and 64-token blocks: 16 KiB blocks
};

struct SparseStepFigures {
  int blocks_per_step = 0;
  int read_threads = 0;
  size_t block_bytes = 0;
  LatencyFigures step;          // one FetchValues call, microseconds
  double blocks_read = 0.0;     // per step, from FetchStats (should equal blocks_per_step)
};

// One row per (read_threads, blocks_per_step). InvalidArgument for bad options.
StatusOr<std::vector<SparseStepFigures>> MeasureSparseSteps(const SparseStepOptions& options);

// The time the disk needs to serve n random reads of `bytes` at best: the larger of one
// read's latency at queue depth 1 (p50) and n / (best IOPS of any depth measured). 0 when
// the disk figures have no pass of that size.
double SparseStepLimitUs(const DiskFigures& disk, size_t bytes, int n);

}  // namespace attic::bench
