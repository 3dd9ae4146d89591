// The SSD tier's own throughput, for `./attic bench ssd`: spilling blocks through
// SsdTier::Write in large batches (the forced-flush path), reloading them all through
// ReadBlocks (RocksDB MultiGet) on 1..N threads, and single random ReadBlock latency. Every
// reload and the latency run reopen the tier first, so RocksDB's caches are cold; with direct
// I/O the page cache is bypassed too.
//
//   TierBenchOptions o{.dir = "/tmp/x", .bytes = 1 << 30};
//   ASSIGN_OR_RETURN(SpillFigures spill, MeasureSpill(o, /*writers=*/1));
//   ASSIGN_OR_RETURN(std::vector<ReloadFigures> reload, MeasureReload(o, spill));
//   ASSIGN_OR_RETURN(LatencyFigures lat, MeasureRandomBlockReads(o, spill));
//
// Thread safety: one measurement at a time per directory.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "bench/ssd/disk_throughput.h"
#include "common/status.h"
#include "kvstore/ssd/ssd_tier.h"

namespace attic::bench {

struct TierBenchOptions {
  std::string dir;                 // the RocksDB directory (created; emptied first)
  size_t bytes = size_t{1} << 30;  // block bytes to spill, rounded down to whole batches
  size_t block_bytes = 16384;      // one KV block: 64 tokens x 128 dims x bf16
  int batch_blocks = 256;          // blocks per Write (256 x 16 KiB = 4 MiB: flush path)
  std::vector<int> reload_threads = {1, 2, 4};
  int read_batch_blocks = 256;  // keys per ReadBlocks call
  int random_reads = 2000;
  SsdTierOptions tier;  // path is set from dir
};

struct SpillFigures {
  int writers = 0;
  bool sync = false;  // options.tier.sync
  size_t blocks = 0;
  size_t block_bytes = 0;  // payload written
  double seconds = 0.0;
  double gbps = 0.0;   // payload, 1e9 bytes/s
  SsdTierStats stats;  // after the last Write returned
};

struct ReloadFigures {
  int threads = 0;
  double seconds = 0.0;
  double gbps = 0.0;
  SsdTierStats stats;  // of the reopened tier, after the reload
};

// Writes options.bytes of blocks (random bytes) in batches of batch_blocks into a fresh tier,
// from `writers` threads at once (batch b from thread b % writers).
StatusOr<SpillFigures> MeasureSpill(const TierBenchOptions& options, int writers);
// Reads every spilled block back in key order, once per thread count (contiguous key ranges
// per thread), reopening the tier before each run; every block's checksum is verified.
StatusOr<std::vector<ReloadFigures>> MeasureReload(const TierBenchOptions& options,
                                                   const SpillFigures& spill);
// random_reads ReadBlock calls on uniformly random spilled keys, one thread, reopened tier.
// One block per spilled batch is read first (untimed), so every table file is open and its
// index cached: the figure is the steady state of a running worker, one blob read per call.
StatusOr<LatencyFigures> MeasureRandomBlockReads(const TierBenchOptions& options,
                                                 const SpillFigures& spill);

// The key of spilled block i (private V blocks; key order is i's order).
std::string SpilledBlockKey(size_t i);

}  // namespace attic::bench
