// The SSD tier's own throughput, for `./attic bench ssd`: spilling blocks through
// SsdTier::Write in large batches (the forced-flush path), reloading them through ReadBlocks
// (RocksDB MultiGet) on 1..N threads — every block, and the values alone as a dense attention
// step streams them — and single random ReadBlock latency. Every reload and the latency run
// reopen the tier first, so RocksDB's caches are cold; with direct I/O the page cache is
// bypassed too.
//
// The spilled data has the shape of the KV store's prefill write-through: sequences of
// layers x heads block streams (one per (layer, KV head)), written one chunk at a time; a
// batch holds the K and V blocks of chunk_blocks consecutive blocks of every stream.
//
//   TierBenchOptions o{.dir = "/tmp/x", .bytes = 1 << 30};
//   ASSIGN_OR_RETURN(SpillFigures spill, MeasureSpill(o, /*writers=*/1));
//   ASSIGN_OR_RETURN(std::vector<ReloadFigures> all, MeasureReload(o, spill, ReloadKind::kAll));
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
  // The shape of a sequence and of a write: layers x heads streams of stream_blocks blocks
  // (K and V each), written chunk_blocks blocks per stream at a time. The defaults make a
  // batch 4 x 8 x 4 x 2 = 256 blocks (4 MiB: the flush path) and a sequence 64 MiB.
  int layers = 4;
  int heads = 8;
  int stream_blocks = 64;  // 4096 tokens
  int chunk_blocks = 4;    // a 256-token prefill chunk
  // Reload threads, each one ReadBlocks call at a time; the tier splits each call over its
  // read_threads readers (tier.read_threads), so the disk sees up to threads x read_threads
  // requests at once (Debian's RocksDB has no io_uring: one MultiGet reads one blob at a time).
  std::vector<int> reload_threads = {1, 2, 4, 8};
  int read_batch_blocks = 256;  // keys per ReadBlocks call (every-block reload)
  int random_reads = 2000;
  SsdTierOptions tier;  // path is set from dir

  int batch_blocks() const { return layers * heads * chunk_blocks * 2; }
};

struct SpillFigures {
  int writers = 0;
  int shards = 0;     // the tier's block_shards
  bool sync = false;  // options.tier.sync
  size_t blocks = 0;
  size_t block_bytes = 0;  // payload written
  double seconds = 0.0;
  double gbps = 0.0;   // payload, 1e9 bytes/s
  SsdTierStats stats;  // after the last Write returned
};

enum class ReloadKind {
  kAll,         // every block, K and V, batches of read_batch_blocks
  kValuesOnly,  // the V blocks of each stream in block order, one ReadBlocks per stream
};

struct ReloadFigures {
  int threads = 0;
  size_t bytes = 0;  // block bytes read
  double seconds = 0.0;
  double gbps = 0.0;
  SsdTierStats stats;  // of the reopened tier, after the reload
};

// Writes options.bytes of blocks (random bytes) in batches of batch_blocks() into a fresh
// tier, from `writers` threads at once: sequence s from thread s % writers, its chunks in
// order, as the KV store writes a sequence through.
StatusOr<SpillFigures> MeasureSpill(const TierBenchOptions& options, int writers);
// Reads the spilled blocks back, once per thread count (each thread a contiguous share of the
// sequences' streams), reopening the tier before each run; every block's checksum is verified.
StatusOr<std::vector<ReloadFigures>> MeasureReload(const TierBenchOptions& options,
                                                   const SpillFigures& spill, ReloadKind kind);
// random_reads ReadBlock calls on uniformly random spilled keys, one thread, reopened tier.
// One block per spilled batch is read first (untimed), so every table file is open and its
// index cached: the figure is the steady state of a running worker, one blob read per call.
StatusOr<LatencyFigures> MeasureRandomBlockReads(const TierBenchOptions& options,
                                                 const SpillFigures& spill);

// The key of spilled block i, i in write order (batch i / batch_blocks()).
std::string SpilledBlockKey(const TierBenchOptions& options, size_t i);

}  // namespace attic::bench
