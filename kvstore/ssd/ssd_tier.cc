// SsdTier: opening, the write path (WAL for small batches; for large ones, flushed block
// shards, then the records through the WAL) and recovery after a failed write. Reads are in
// ssd_tier_read.cc.
#include "kvstore/ssd/ssd_tier.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/slice.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

#include "common/log.h"
#include "kvstore/ssd/fault_injection.h"
#include "kvstore/ssd/internal/block_shards.h"
#include "kvstore/ssd/internal/block_value.h"
#include "kvstore/ssd/internal/db_options.h"
#include "kvstore/ssd/internal/key_tags.h"
#include "kvstore/ssd/internal/rocksdb_crc32c.h"
#include "kvstore/ssd/internal/status_map.h"
#include "kvstore/ssd/internal/sync_policy.h"
#include "kvstore/ssd/internal/tier_impl.h"

namespace attic {
namespace {

using ssd_internal::Database;
using ssd_internal::FromRocks;
using ssd_internal::TierState;

constexpr size_t kWriteProbeBytes = 4096;

rocksdb::Slice ToSlice(std::string_view s) { return {s.data(), s.size()}; }

// The directory exists and, when asked for, the direct I/O verdict is known.
Status PrepareDirectory(TierState* t) {
  const std::string& path = t->options.path;
  if (!t->options.direct_io) {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec)
      return UnavailableError("creating the SSD tier directory " + path + ": " + ec.message());
    return OkStatus();
  }
  ASSIGN_OR_RETURN(ssd_internal::DirectIoProbe probe, ssd_internal::ProbeDirectIo(path));
  t->direct_io = probe.supported;
  t->direct_io_note = std::move(probe.note);
  if (!t->direct_io) {
    ATTIC_LOG(kWarn, "ssd") << "WARNING: " << t->direct_io_note;
  }
  return OkStatus();
}

// The file system RocksDB writes through: the default one, without fsyncs unless options.sync
// (internal/sync_policy.h says why), under the fault injector when there is one.
void SetUpEnvironment(TierState* t) {
  t->fs = rocksdb::FileSystem::Default();
  if (!t->options.sync) t->fs = ssd_internal::NewSyncSkippingFileSystem(t->fs);
  if (t->options.faults != nullptr) {
    t->fs = NewFaultInjectingFileSystem(t->fs, t->options.faults);
  }
  if (t->fs != rocksdb::FileSystem::Default()) t->env = rocksdb::NewCompositeEnv(t->fs);
  t->statistics = rocksdb::CreateDBStatistics();
}

StatusOr<std::unique_ptr<Database>> OpenRocks(const TierState& t) {
  return Database::Open(t.options, t.direct_io, t.env.get(), t.statistics);
}

std::string DescribeBatch(const TierBatch& b) {
  return "write of " + std::to_string(b.blocks.size()) + " blocks (" +
         std::to_string(b.block_bytes()) + " bytes), " + std::to_string(b.records.size()) +
         " records, " +
         std::to_string(b.delete_blocks.size() + b.delete_block_prefixes.size() +
                        b.delete_records.size()) +
         " deletions";
}

Status CheckKey(std::string_view key, const char* what) {
  if (key.empty()) return InvalidArgumentError(std::string("TierBatch: empty ") + what + " key");
  return OkStatus();
}

// Every key of the batch is usable, so a large batch never fails half written on a bad key.
Status CheckBatch(const TierBatch& b) {
  for (const TierBlockWrite& w : b.blocks) RETURN_IF_ERROR(CheckKey(w.key, "block"));
  for (const std::string& key : b.delete_blocks) RETURN_IF_ERROR(CheckKey(key, "block deletion"));
  for (const std::string& prefix : b.delete_block_prefixes) {
    if (!ssd_internal::PrefixEnd(prefix)) {
      return InvalidArgumentError("TierBatch: block prefix " + DescribeTierKey(prefix) +
                                  " bounds no range (empty or all 0xff bytes)");
    }
  }
  for (const TierRecordWrite& r : b.records) RETURN_IF_ERROR(CheckKey(r.key, "record"));
  for (const std::string& key : b.delete_records) {
    RETURN_IF_ERROR(CheckKey(key, "record deletion"));
  }
  return OkStatus();
}

// The batch's block puts, each into its shard's family; `touched` gets the shards written.
// Values are the block's bytes and its trailer, appended without an intermediate copy
// (SliceParts).
Status AddBlockPuts(const TierBatch& b, const Database& d, const std::string& path,
                    rocksdb::WriteBatch* wb, std::vector<bool>* touched) {
  touched->assign(static_cast<size_t>(d.block_shards()), false);
  for (const TierBlockWrite& w : b.blocks) {
    const int shard = ssd_internal::BlockShardOf(w.key, d.block_shards());
    (*touched)[static_cast<size_t>(shard)] = true;
    const ssd_internal::BlockTrailer trailer = ssd_internal::MakeTrailer(w.bytes);
    const rocksdb::Slice key = ToSlice(w.key);
    const std::array<rocksdb::Slice, 2> value = {
        rocksdb::Slice(reinterpret_cast<const char*>(w.bytes.data()), w.bytes.size()),
        rocksdb::Slice(trailer.data(), trailer.size())};
    RETURN_IF_ERROR(FromRocks(wb->Put(d.blocks(shard), rocksdb::SliceParts(&key, 1),
                                      rocksdb::SliceParts(value.data(), 2)),
                              "batching a block put", path));
  }
  return OkStatus();
}

// The batch's deletions and record puts. A prefix deletion goes to the one shard of the owner
// it names (PrivateBlockPrefix), or to every shard when it is shorter than an owner.
Status AddRecordsAndDeletions(const TierBatch& b, const Database& d, const std::string& path,
                              rocksdb::WriteBatch* wb) {
  for (const std::string& key : b.delete_blocks) {
    RETURN_IF_ERROR(
        FromRocks(wb->Delete(d.blocks_of(key), key), "batching a block deletion", path));
  }
  for (const std::string& prefix : b.delete_block_prefixes) {
    const std::optional<std::string> end = ssd_internal::PrefixEnd(prefix);  // CheckBatch: set
    const int one = ssd_internal::BlockShardOfPrefix(prefix, d.block_shards());
    for (int shard = 0; shard < d.block_shards(); ++shard) {
      if (one >= 0 && shard != one) continue;
      RETURN_IF_ERROR(FromRocks(wb->DeleteRange(d.blocks(shard), prefix, *end),
                                "batching a block range deletion", path));
    }
  }
  for (const TierRecordWrite& r : b.records) {
    RETURN_IF_ERROR(FromRocks(wb->Put(d.records(), r.key, r.value), "batching a record put", path));
  }
  for (const std::string& key : b.delete_records) {
    RETURN_IF_ERROR(FromRocks(wb->Delete(d.records(), key), "batching a record deletion", path));
  }
  return OkStatus();
}

// Creates, fills and syncs a scratch file through the file system RocksDB writes through.
// Recovery only touches the database once this works, so a disk that still fails does not
// turn a resumable stop into an unrecoverable one (or close a database that still reads).
Status ProbeWritable(const TierState& t) {
  const std::string scratch = t.options.path + "/.attic-write-probe";
  const rocksdb::IOOptions io;
  std::unique_ptr<rocksdb::FSWritableFile> file;
  rocksdb::IOStatus s = t.fs->NewWritableFile(scratch, rocksdb::FileOptions(), &file, nullptr);
  if (s.ok()) {
    const std::string page(kWriteProbeBytes, '\0');
    s = file->Append(page, io, nullptr);
    if (s.ok()) s = file->Sync(io, nullptr);
    const rocksdb::IOStatus closed = file->Close(io, nullptr);
    if (s.ok()) s = closed;
  }
  t.fs->DeleteFile(scratch, io, nullptr).PermitUncheckedError();
  return FromRocks(s, "checking that the disk takes writes again", t.options.path);
}

// After a failed write: once the disk takes writes, the database is closed and reopened,
// which replays the WAL, so nothing acknowledged is lost (an acknowledged large write was
// flushed; the unflushed memtable of a failed one is dropped, as a failed batch may be).
// DB::Resume() is not used: with shards flushing side by side, a flush that fails after
// another one set the background error rolls its memtable back without queueing it again, and
// Resume's own flush then waits for that memtable forever (RocksDB issue 15030; seen here with
// ENOSPC on two shards at once).
Status Recover(TierState* t) REQUIRES(t->mu) {
  RETURN_IF_ERROR(ProbeWritable(*t));
  if (t->database != nullptr) {
    ATTIC_LOG(kWarn, "ssd") << "reopening " << t->options.path << " after a failed write";
    t->database.reset();
  }
  ASSIGN_OR_RETURN(t->database, OpenRocks(*t));
  t->reopens.fetch_add(1, std::memory_order_relaxed);
  return OkStatus();
}

Status RecoverIfNeeded(TierState* t) {
  if (!t->needs_recovery.load(std::memory_order_acquire)) return OkStatus();
  WriterLock lock(&t->mu);
  if (!t->needs_recovery.load(std::memory_order_acquire)) return OkStatus();  // another did
  RETURN_IF_ERROR(Recover(t));
  t->needs_recovery.store(false, std::memory_order_release);
  return OkStatus();
}

Status FlushEverything(const Database& d, const std::string& why, const std::string& path) {
  std::vector<rocksdb::ColumnFamilyHandle*> families = d.all_blocks();
  families.push_back(d.records());
  rocksdb::FlushOptions fo;
  fo.wait = true;
  return FromRocks(d.db()->Flush(fo, families), why, path);
}

// Flushes the touched shards side by side (one RocksDB flush thread each, waited for by the
// caller and the tier's crew) and returns the first error.
Status FlushShards(TierState* t, const Database& d, const std::vector<bool>& touched,
                   const std::string& why) {
  std::vector<std::function<Status()>> flushes;
  for (size_t i = 0; i < touched.size(); ++i) {
    if (!touched[i]) continue;
    rocksdb::ColumnFamilyHandle* shard = d.blocks(static_cast<int>(i));
    flushes.emplace_back([&d, shard, &why, t] {
      rocksdb::FlushOptions fo;
      fo.wait = true;
      return FromRocks(d.db()->Flush(fo, shard), why, t->options.path);
    });
  }
  std::vector<Status> results(flushes.size());
  t->flush_crew->RunAll(flushes, results);
  t->flushes.fetch_add(flushes.size(), std::memory_order_relaxed);
  for (Status& s : results) RETURN_IF_ERROR(std::move(s));
  return OkStatus();
}

// A small batch: one WAL write, atomic.
Status CommitSmall(TierState* t, const Database& d, const TierBatch& batch,
                   rocksdb::WriteBatch* wb) {
  std::vector<bool> touched;
  RETURN_IF_ERROR(AddBlockPuts(batch, d, t->options.path, wb, &touched));
  RETURN_IF_ERROR(AddRecordsAndDeletions(batch, d, t->options.path, wb));
  rocksdb::WriteOptions wo;
  wo.sync = t->options.sync;
  return FromRocks(d.db()->Write(wo, wb), DescribeBatch(batch), t->options.path);
}

// A large batch: the block puts skip the WAL and their shards are flushed (the blocks reach
// the disk once, in blob files); only then do the records and deletions go through the WAL,
// so no record is ever durable before the blocks of its batch (docs/kvstore-ssd.md).
Status CommitLarge(TierState* t, const Database& d, const TierBatch& batch,
                   rocksdb::WriteBatch* wb) {
  const std::string& path = t->options.path;
  std::vector<bool> touched;
  RETURN_IF_ERROR(AddBlockPuts(batch, d, path, wb, &touched));
  rocksdb::WriteOptions no_wal;
  no_wal.disableWAL = true;
  RETURN_IF_ERROR(FromRocks(d.db()->Write(no_wal, wb), DescribeBatch(batch), path));
  RETURN_IF_ERROR(FlushShards(t, d, touched, "flush after the " + DescribeBatch(batch)));
  wb->Clear();
  RETURN_IF_ERROR(AddRecordsAndDeletions(batch, d, path, wb));
  if (wb->Count() == 0) return OkStatus();
  rocksdb::WriteOptions wo;
  wo.sync = t->options.sync;
  return FromRocks(d.db()->Write(wo, wb), "records and deletions of the " + DescribeBatch(batch),
                   path);
}

Status WriteLocked(TierState* t, const TierBatch& batch) REQUIRES_SHARED(t->mu) {
  RETURN_IF_ERROR(CheckBatch(batch));
  ASSIGN_OR_RETURN(Database * d, ssd_internal::OpenDatabase(*t));
  ssd_internal::WriteBatchPool::Lease wb = t->batches.Take();
  const bool large = batch.block_bytes() >= t->options.flush_bytes;
  Status s = large ? CommitLarge(t, *d, batch, wb.get()) : CommitSmall(t, *d, batch, wb.get());
  if (!s.ok()) t->needs_recovery.store(true, std::memory_order_release);
  return s;
}

}  // namespace

namespace ssd_internal {

StatusOr<Database*> OpenDatabase(TierState& t) {
  if (t.database == nullptr) {
    return UnavailableError("the SSD tier at " + t.options.path +
                            " is closed after an error RocksDB could not resume from and a "
                            "failed reopen; the next Write retries");
  }
  return t.database.get();
}

}  // namespace ssd_internal

size_t TierBatch::block_bytes() const {
  size_t n = 0;
  for (const TierBlockWrite& w : blocks) n += w.bytes.size();
  return n;
}

double SsdTierStats::write_amplification() const {
  if (block_bytes_written == 0) return 0.0;
  return static_cast<double>(wal_bytes + flush_bytes_written + compact_bytes_written) /
         static_cast<double>(block_bytes_written);
}

SsdTier::SsdTier(std::unique_ptr<TierState> impl) : impl_(std::move(impl)) {}

SsdTier::~SsdTier() {
  WriterLock lock(&impl_->mu);
  impl_->database.reset();
}

namespace {

// Once per process: whether RocksDB's checksums run on the hardware CRC-32C.
void LogCrc32cOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (ssd_internal::RocksDbCrc32cAccelerated()) {
      ATTIC_LOG(kInfo, "ssd") << "RocksDB's CRC-32C runs on the SSE4.2 instruction";
    } else {
      ATTIC_LOG(kInfo, "ssd") << "RocksDB's CRC-32C is its own build's (software in portable "
                                 "builds): flushes spend about 1 ms per MiB on blob checksums";
    }
  });
}

}  // namespace

StatusOr<std::unique_ptr<SsdTier>> SsdTier::Open(const SsdTierOptions& options) {
  RETURN_IF_ERROR(ssd_internal::ValidateOptions(options));
  LogCrc32cOnce();
  auto t = std::make_unique<TierState>();
  t->options = options;
  RETURN_IF_ERROR(PrepareDirectory(t.get()));
  SetUpEnvironment(t.get());
  {
    WriterLock lock(&t->mu);
    ASSIGN_OR_RETURN(t->database, OpenRocks(*t));
    t->block_shards = t->database->block_shards();
  }
  if (options.block_shards != 0 && options.block_shards != t->block_shards) {
    ATTIC_LOG(kInfo, "ssd") << "the SSD tier at " << options.path << " keeps the "
                            << t->block_shards << " block shards it was created with ("
                            << options.block_shards << " asked for)";
  }
  t->flush_crew = std::make_unique<ssd_internal::TaskCrew>(t->block_shards - 1);
  t->read_crew = std::make_unique<ssd_internal::TaskCrew>(std::max(0, options.read_threads - 1));
  return std::unique_ptr<SsdTier>(new SsdTier(std::move(t)));
}

Status SsdTier::Write(const TierBatch& batch) {
  Status s = RecoverIfNeeded(impl_.get());
  if (s.ok()) {
    ReaderLock lock(&impl_->mu);
    s = WriteLocked(impl_.get(), batch);
  }
  if (!s.ok()) {
    impl_->write_errors.fetch_add(1, std::memory_order_relaxed);
    return s;
  }
  impl_->writes.fetch_add(1, std::memory_order_relaxed);
  impl_->blocks_written.fetch_add(batch.blocks.size(), std::memory_order_relaxed);
  impl_->block_bytes_written.fetch_add(batch.block_bytes(), std::memory_order_relaxed);
  return OkStatus();
}

Status SsdTier::Flush() {
  RETURN_IF_ERROR(RecoverIfNeeded(impl_.get()));
  ReaderLock lock(&impl_->mu);
  ASSIGN_OR_RETURN(Database * d, ssd_internal::OpenDatabase(*impl_));
  Status s = FlushEverything(*d, "flush", impl_->options.path);
  if (!s.ok()) impl_->needs_recovery.store(true, std::memory_order_release);
  return s;
}

bool SsdTier::direct_io_active() const { return impl_->direct_io; }
const std::string& SsdTier::direct_io_note() const { return impl_->direct_io_note; }
const std::string& SsdTier::path() const { return impl_->options.path; }
int SsdTier::block_shards() const { return impl_->block_shards; }

}  // namespace attic
