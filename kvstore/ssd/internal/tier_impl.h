// SsdTier's state (TierState), shared by the tier's source files (ssd_tier.cc: open, write,
// flush, recovery; ssd_tier_read.cc: reads, scans, figures). Private to kvstore/ssd.
//
// Thread safety: `mu` guards which Database is open. Every operation holds it shared for its
// whole length (an uncontended shared lock: noise next to a disk read); only recovery after a
// failed write holds it exclusively, to close and reopen the database. The counters are
// atomics; the crew is thread-safe; everything else is set once by Open.
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/statistics.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "common/thread_annotations.h"
#include "kvstore/ssd/internal/batch_pool.h"
#include "kvstore/ssd/internal/database.h"
#include "kvstore/ssd/internal/task_crew.h"
#include "kvstore/ssd/ssd_tier.h"

namespace attic::ssd_internal {

struct TierState {
  SsdTierOptions options;
  bool direct_io = false;
  std::string direct_io_note;

  // Declaration order is destruction order in reverse: the file system and environment
  // outlive the database.
  std::shared_ptr<rocksdb::FileSystem> fs;          // what RocksDB writes through (faults included)
  std::unique_ptr<rocksdb::Env> env;                // the composite env over fs when faults are set
  std::shared_ptr<rocksdb::Statistics> statistics;  // kept across reopens

  SharedMutex mu;
  // Null only after a failed write whose reopen failed; the next Write retries.
  std::unique_ptr<Database> database GUARDED_BY(mu);
  // The directory's block shard count (set by Open; a reopen finds the same).
  int block_shards = 0;
  // Waits for the shard flushes of large writes side by side: block_shards - 1 helpers.
  std::unique_ptr<TaskCrew> flush_crew;
  // Runs ReadBlocks' MultiGets side by side: read_threads - 1 helpers (none for 0 or 1).
  std::unique_ptr<TaskCrew> read_crew;

  // Set when a write or flush failed: RocksDB may have stopped writes after a background
  // error, and the next Write recovers first (Recover in ssd_tier.cc).
  std::atomic<bool> needs_recovery{false};

  WriteBatchPool batches;

  std::atomic<uint64_t> writes{0};
  std::atomic<uint64_t> write_errors{0};
  std::atomic<uint64_t> blocks_written{0};
  std::atomic<uint64_t> block_bytes_written{0};
  std::atomic<uint64_t> blocks_read{0};
  std::atomic<uint64_t> block_bytes_read{0};
  std::atomic<uint64_t> checksum_failures{0};
  std::atomic<uint64_t> flushes{0};
  std::atomic<uint64_t> reopens{0};
};

// The open database, or UNAVAILABLE saying why there is none.
StatusOr<Database*> OpenDatabase(TierState& t) REQUIRES_SHARED(t.mu);

}  // namespace attic::ssd_internal
