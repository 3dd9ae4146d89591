// The disk's own limits, measured the way the SSD tier uses the disk: large O_DIRECT sequential
// transfers (what a flush and a reload could reach at best) and 16 KiB O_DIRECT reads at random
// aligned offsets (what one block read could cost at best). The physical limit rows of
// `./attic bench ssd`.
//
//   ASSIGN_OR_RETURN(DiskFigures disk, MeasureDisk({.dir = "/var/lib/attic", .bytes = 1 << 30}));
//   // disk.write_gbps, disk.read_gbps, disk.random_read.p50_us
//
// Thread safety: one measurement at a time per directory (it writes one scratch file there).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace attic::bench {

// Percentiles of a latency sample, microseconds.
struct LatencyFigures {
  int samples = 0;
  double p50_us = 0.0;
  double p90_us = 0.0;
  double p99_us = 0.0;
  double mean_us = 0.0;
};
// Nearest-rank percentiles of `us` (reordered).
LatencyFigures Percentiles(std::vector<double>* us);

struct DiskOptions {
  std::string dir;                          // the scratch file goes here (removed afterwards)
  size_t bytes = size_t{1} << 30;           // file size, rounded down to transfer_bytes
  size_t transfer_bytes = size_t{4} << 20;  // one pwrite / pread
  // Each pass splits the file into this many contiguous ranges, one thread each (the tier's
  // reload does the same); the best pass is the device's limit.
  std::vector<int> threads = {1, 2, 4};
  size_t random_read_bytes = 16384;  // one random read (a KV block)
  int random_reads = 2000;
  // Random-read IOPS at queue depth: for each size and depth, `depth` threads issue blocking
  // O_DIRECT preads at random aligned offsets, random_qd_reads of them in all.
  std::vector<size_t> random_qd_bytes = {4096, 16384};
  std::vector<int> queue_depths = {1, 16, 32};
  int random_qd_reads = 4000;
};

// Random reads of one size at one queue depth.
struct RandomReadPass {
  size_t bytes = 0;
  int queue_depth = 0;
  double iops = 0.0;       // reads completed per second, all threads
  LatencyFigures latency;  // of one read
};

struct DiskPass {
  int threads = 0;
  double gbps = 0.0;  // 1e9 bytes/s
};

struct DiskFigures {
  bool direct_io = false;        // false: the file system refused O_DIRECT; buffered figures
  std::string note;              // why not direct, when so
  size_t bytes = 0;              // written and read per pass
  std::vector<DiskPass> writes;  // one per thread count; fdatasync included
  std::vector<DiskPass> reads;
  double write_gbps = 0.0;  // best of writes
  double read_gbps = 0.0;   // best of reads
  LatencyFigures random_read;
  std::vector<RandomReadPass> random_passes;  // one per (random_qd_bytes, queue_depths)

  // The pass of that size and depth, or nullptr.
  const RandomReadPass* FindRandom(size_t read_bytes, int queue_depth) const;
  // The pass of that size with the most IOPS, or nullptr.
  const RandomReadPass* BestRandom(size_t read_bytes) const;
};

// Per thread count: writes a file of options.bytes in transfer_bytes pieces and fdatasyncs it
// (timed together), then reads it back sequentially. Then times random_reads single reads at
// random aligned offsets on one thread, and the random-read passes at each queue depth. With
// buffered I/O (O_DIRECT refused) the page cache is
// dropped for the file before each read pass.
StatusOr<DiskFigures> MeasureDisk(const DiskOptions& options);

}  // namespace attic::bench
