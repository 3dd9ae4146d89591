#include "kvstore/ssd/internal/db_options.h"

#include <fcntl.h>
#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "kvstore/ssd/internal/block_shards.h"

namespace attic::ssd_internal {
namespace {

constexpr size_t kProbeBytes = 4096;
constexpr size_t kRecordsWriteBufferBytes = size_t{16} << 20;
// With direct I/O RocksDB reads compaction inputs without the kernel's readahead; this is its
// own (RocksDB's tuning guide suggests a few MiB for direct I/O).
constexpr size_t kCompactionReadaheadBytes = size_t{2} << 20;
// Flush and compaction output buffer: one direct write per this many bytes. Each new file's
// buffer starts at 64 KiB and doubles up to this, reallocated and copied each time, and a flush
// writes two new files: at 4 MiB that churn doubled a 4 MiB flush's CPU time (5.5-6.3 ms
// against 2.3-3.7 ms at 1 MiB, measured on the VM; 256 KiB saves nothing more).
constexpr size_t kWritableFileBufferBytes = size_t{1} << 20;
constexpr uint64_t kMaxTotalWalBytes = uint64_t{512} << 20;

Status ErrnoStatus(int err, const std::string& what) {
  std::string message = what + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return ResourceExhaustedError(std::move(message));
  return UnavailableError(std::move(message));
}

// The probe's outcome for one errno of open(2) or write(2).
StatusOr<DirectIoProbe> ProbeFailed(int err, const std::string& dir, const char* step) {
  if (err == EINVAL || err == EOPNOTSUPP) {
    return DirectIoProbe{
        .supported = false,
        .note = std::string("O_DIRECT refused by the file system under ") + dir + " (" + step +
                ": " + std::strerror(err) +
                "); using buffered I/O: block reads and flushes "
                "go through the page cache, so reload figures are warm and the page cache "
                "competes with the KV store for DRAM"};
  }
  return ErrnoStatus(err, std::string("direct I/O probe in ") + dir + " (" + step + ")");
}

StatusOr<DirectIoProbe> WriteOneAlignedPage(int fd, const std::string& dir) {
  void* page = nullptr;
  if (posix_memalign(&page, kProbeBytes, kProbeBytes) != 0) {
    return ResourceExhaustedError("direct I/O probe: no memory for one page");
  }
  std::memset(page, 0, kProbeBytes);
  const ssize_t n = ::pwrite(fd, page, kProbeBytes, 0);
  const int err = errno;
  std::free(page);
  if (n == static_cast<ssize_t>(kProbeBytes)) return DirectIoProbe{.supported = true};
  if (n >= 0) return UnavailableError("direct I/O probe in " + dir + ": short write");
  return ProbeFailed(err, dir, "write");
}

rocksdb::BlockBasedTableOptions TableOptions(std::shared_ptr<rocksdb::Cache> cache) {
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = std::move(cache);
  // Index and filter blocks count against the cache instead of growing outside it; L0's stay
  // pinned since every lookup consults them.
  t.cache_index_and_filter_blocks = true;
  t.pin_l0_filter_and_index_blocks_in_cache = true;
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  return t;
}

rocksdb::ColumnFamilyOptions BlocksFamily(const SsdTierOptions& o,
                                          const rocksdb::BlockBasedTableOptions& table) {
  rocksdb::ColumnFamilyOptions cf;
  cf.write_buffer_size = o.write_buffer_bytes;
  cf.compression = rocksdb::kNoCompression;  // bf16 activations do not compress
  cf.enable_blob_files = true;
  cf.min_blob_size = o.min_blob_bytes;
  cf.blob_file_size = o.blob_file_bytes;
  cf.blob_compression_type = rocksdb::kNoCompression;
  // No blob garbage collection: it relocates every live blob of the oldest quarter of the blob
  // files that a compaction meets, and writes of one sequence overlap in key range, so their
  // compactions met them all the time: 7-35 % of a spill rewritten (write amplification
  // 1.07-1.35 against 1.01 without, and half the spill rate with two writers on the VM). A
  // blob file is dropped once no table file refers to it: a file with one sequence's blocks
  // (a large write's flush, usually) goes with its range delete; a file with blocks of several
  // sequences (small writes flushed together, or writers sharing a shard) stays until all of
  // them are gone. Space is held longer; no byte is written twice.
  cf.enable_blob_garbage_collection = false;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return cf;
}

rocksdb::ColumnFamilyOptions RecordsFamily(const SsdTierOptions& o,
                                           const rocksdb::BlockBasedTableOptions& table) {
  rocksdb::ColumnFamilyOptions cf;
  cf.write_buffer_size = std::min(o.write_buffer_bytes, kRecordsWriteBufferBytes);
  cf.compression = rocksdb::kNoCompression;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return cf;
}

}  // namespace

Status ValidateOptions(const SsdTierOptions& o) {
  if (o.path.empty()) return InvalidArgumentError("SsdTierOptions.path is empty");
  if (o.background_threads < 1 || o.background_threads > 256) {
    return InvalidArgumentError("SsdTierOptions.background_threads must be in [1, 256], got " +
                                std::to_string(o.background_threads));
  }
  if (o.read_threads < 0 || o.read_threads > 256) {
    return InvalidArgumentError("SsdTierOptions.read_threads must be in [0, 256], got " +
                                std::to_string(o.read_threads));
  }
  if (o.block_shards < 0 || o.block_shards > kMaxBlockShards) {
    return InvalidArgumentError("SsdTierOptions.block_shards must be in [0, " +
                                std::to_string(kMaxBlockShards) + "], got " +
                                std::to_string(o.block_shards));
  }
  if (o.write_buffer_bytes < (size_t{1} << 20)) {
    return InvalidArgumentError("SsdTierOptions.write_buffer_bytes must be at least 1 MiB, got " +
                                std::to_string(o.write_buffer_bytes));
  }
  if (o.flush_bytes > o.write_buffer_bytes) {
    return InvalidArgumentError("SsdTierOptions.flush_bytes (" + std::to_string(o.flush_bytes) +
                                ") exceeds write_buffer_bytes (" +
                                std::to_string(o.write_buffer_bytes) +
                                "): a flushed write must fit in one memtable");
  }
  if (o.blob_file_bytes < (uint64_t{1} << 20)) {
    return InvalidArgumentError("SsdTierOptions.blob_file_bytes must be at least 1 MiB, got " +
                                std::to_string(o.blob_file_bytes));
  }
  return OkStatus();
}

StatusOr<DirectIoProbe> ProbeDirectIo(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return ErrnoStatus(ec.value(), "creating the SSD tier directory " + dir);
  const std::string scratch = dir + "/.attic-direct-io-probe";
  const int fd = ::open(scratch.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) return ProbeFailed(errno, dir, "open");
  StatusOr<DirectIoProbe> probe = WriteOneAlignedPage(fd, dir);
  ::close(fd);
  ::unlink(scratch.c_str());
  return probe;
}

RocksOptions BuildRocksOptions(const SsdTierOptions& o, int shards, bool direct_io,
                               rocksdb::Env* env, std::shared_ptr<rocksdb::Statistics> statistics) {
  RocksOptions r;
  rocksdb::DBOptions& db = r.db;
  db.create_if_missing = true;
  db.create_missing_column_families = true;
  if (env != nullptr) db.env = env;
  db.statistics = std::move(statistics);
  // A large write flushes every shard it touched at once, and concurrent writes flush side by
  // side: one flush thread per shard at least. The rest of background_threads compact.
  db.max_background_flushes = std::max(shards, o.background_threads / 2);
  db.max_background_compactions = std::max(1, o.background_threads - o.background_threads / 2);
  db.max_background_jobs = db.max_background_flushes + db.max_background_compactions;
  // No atomic flush: RocksDB runs the families of one atomic flush one after another on one
  // thread. A large write orders its parts instead (ssd_tier.cc, docs/kvstore-ssd.md
  // "Durability"): block puts flushed first, then records and deletions through the WAL.
  db.atomic_flush = false;
  // Small writes leave data in up to every shard's memtable, each holding its WAL alive;
  // past this much WAL RocksDB flushes the families that hold the oldest one.
  db.max_total_wal_size = kMaxTotalWalBytes;
  // Closing never flushes: what only a memtable holds belongs to a large write that has not
  // returned (or failed), and a flush at close could wait on a memtable a failed flush left
  // behind (ssd_tier.cc, Recover). What the WAL holds is replayed at the next open.
  db.avoid_flush_during_shutdown = true;
  db.use_direct_reads = direct_io;
  db.use_direct_io_for_flush_and_compaction = direct_io;
  db.compaction_readahead_size = kCompactionReadaheadBytes;
  db.writable_file_max_buffer_size = kWritableFileBufferBytes;
  db.keep_log_file_num = 4;
  db.max_log_file_size = size_t{16} << 20;

  const rocksdb::BlockBasedTableOptions table =
      TableOptions(rocksdb::NewLRUCache(o.block_cache_bytes));
  rocksdb::ColumnFamilyOptions unused;  // "default": nothing is stored there
  unused.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  r.column_families.emplace_back(rocksdb::kDefaultColumnFamilyName, unused);
  r.column_families.emplace_back(kRecordsFamily, RecordsFamily(o, table));
  const rocksdb::ColumnFamilyOptions blocks = BlocksFamily(o, table);
  for (int i = 0; i < shards; ++i) r.column_families.emplace_back(BlockFamilyName(i), blocks);
  return r;
}

}  // namespace attic::ssd_internal
