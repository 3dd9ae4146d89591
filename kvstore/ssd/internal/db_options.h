// How SsdTierOptions become RocksDB options, and the O_DIRECT probe. Private to kvstore/ssd;
// the choices are explained in docs/kvstore-ssd.md ("Layout" and "Direct I/O").
//
//   ASSIGN_OR_RETURN(DirectIoProbe probe, ProbeDirectIo(options.path));
//   RocksOptions ro = BuildRocksOptions(options, shards, probe.supported, env, statistics);
//   rocksdb::DB::Open(ro.db, options.path, ro.column_families, &handles, &db);
//
// Thread safety: pure functions (the probe creates and removes one file in the directory).
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/statistics.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "kvstore/ssd/ssd_tier.h"

namespace attic::ssd_internal {

inline constexpr const char* kRecordsFamily = "records";
// Column family order of RocksOptions::column_families (RocksDB insists on "default"): then
// the records, then the block shards "blocks.0" .. "blocks.N-1" (internal/block_shards.h).
inline constexpr int kDefaultIndex = 0;
inline constexpr int kRecordsIndex = 1;
inline constexpr int kFirstBlocksIndex = 2;

// INVALID_ARGUMENT naming the field when options are out of range.
Status ValidateOptions(const SsdTierOptions& options);

struct DirectIoProbe {
  bool supported = false;
  std::string note;  // why not, when !supported
};

// Creates options.path if missing, then opens a scratch file in it with O_DIRECT and writes
// one aligned 4 KiB page. EINVAL (tmpfs, some overlay file systems) -> supported = false and
// a note; other failures (no permission, ENOSPC) -> UNAVAILABLE / RESOURCE_EXHAUSTED naming
// the directory, since RocksDB could not use it either.
StatusOr<DirectIoProbe> ProbeDirectIo(const std::string& dir);

struct RocksOptions {
  rocksdb::DBOptions db;
  // default, records, blocks.0 .. blocks.<shards - 1>
  std::vector<rocksdb::ColumnFamilyDescriptor> column_families;
};

// env may be null (the default Env). The block cache is shared by every column family.
// `shards` is the directory's block shard count (Database::Open resolves it), not
// options.block_shards. RocksDB gets one flush thread per shard (at least), so every shard
// of a large write flushes at once.
RocksOptions BuildRocksOptions(const SsdTierOptions& options, int shards, bool direct_io,
                               rocksdb::Env* env, std::shared_ptr<rocksdb::Statistics> statistics);

}  // namespace attic::ssd_internal
