// SsdTier: block reads (Get, MultiGet) with checksum verification, record reads and scans, and
// the figures of Stats().
#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/statistics.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "kvstore/ssd/internal/block_value.h"
#include "kvstore/ssd/internal/key_tags.h"
#include "kvstore/ssd/internal/rocksdb_crc32c.h"
#include "kvstore/ssd/internal/status_map.h"
#include "kvstore/ssd/internal/tier_impl.h"
#include "kvstore/ssd/ssd_tier.h"

namespace attic {
namespace {

using ssd_internal::Database;
using ssd_internal::FromRocks;
using ssd_internal::TierState;

rocksdb::Slice ToSlice(std::string_view s) { return {s.data(), s.size()}; }

// Block reads leave RocksDB's own checks off: its CRC32C of blob records runs in software in
// Debian's portable build (about 0.9 GB/s on one core, measured), while the tier's Hash64
// trailer covers the same bytes end to end at about 7 GB/s and catches a wrong blob offset as
// well as a flipped bit. fill_cache stays on: block values are blobs and never enter the block
// cache, but the SST blocks that map a key to its blob (about 40 bytes per block) do, so a
// warm random read costs one disk read instead of two.
rocksdb::ReadOptions BlockReadOptions() {
  rocksdb::ReadOptions ro;
  ro.verify_checksums = false;
  ro.fill_cache = true;
  return ro;
}

// The answer for one fetched value: NOT_FOUND, a mapped RocksDB error, or the verified bytes
// copied into dst. Counts reads and checksum failures.
Status FinishBlockRead(TierState* impl, std::string_view key, const rocksdb::Status& s,
                       const rocksdb::PinnableSlice& value, std::span<std::byte> dst) {
  const std::string& path = impl->options.path;
  if (s.IsNotFound()) {
    return NotFoundError("no block " + DescribeTierKey(key) + " in the SSD tier at " + path);
  }
  Status st = FromRocks(s, "reading " + DescribeTierKey(key), path);
  if (st.ok()) {
    st = ssd_internal::CheckBlockValue(std::string_view(value.data(), value.size()), dst.size(),
                                       DescribeTierKey(key), path);
  }
  if (!st.ok()) {
    if (st.code() == StatusCode::kDataLoss) {
      impl->checksum_failures.fetch_add(1, std::memory_order_relaxed);
    }
    return st;
  }
  if (!dst.empty()) std::memcpy(dst.data(), value.data(), dst.size());
  impl->blocks_read.fetch_add(1, std::memory_order_relaxed);
  impl->block_bytes_read.fetch_add(dst.size(), std::memory_order_relaxed);
  return OkStatus();
}

// One MultiGet over keys (each in its shard); out[i] is keys[i]'s answer.
void MultiGetRun(TierState* impl, const Database& d, std::span<const std::string> keys,
                 std::span<const std::span<std::byte>> dsts, std::span<Status> out) {
  const size_t n = keys.size();
  std::vector<rocksdb::Slice> slices;
  std::vector<rocksdb::ColumnFamilyHandle*> families;
  slices.reserve(n);
  families.reserve(n);
  for (const std::string& k : keys) {
    slices.push_back(ToSlice(k));
    families.push_back(d.blocks_of(k));
  }
  std::vector<rocksdb::PinnableSlice> values(n);
  std::vector<rocksdb::Status> results(n);
  d.db()->MultiGet(BlockReadOptions(), n, families.data(), slices.data(), values.data(),
                   results.data());
  for (size_t i = 0; i < n; ++i) out[i] = FinishBlockRead(impl, keys[i], results[i], values[i], dsts[i]);
}

// Splits the keys into up to read_threads contiguous runs (adjacent blobs stay in one
// MultiGet, which merges them under direct I/O) and reads the runs side by side on the caller
// and the read crew: the disk sees up to read_threads requests at once instead of one.
void ReadRuns(TierState* impl, const Database& d, std::span<const std::string> keys,
              std::span<const std::span<std::byte>> dsts, std::span<Status> out) {
  const size_t n = keys.size();
  const size_t runs = std::clamp<size_t>(static_cast<size_t>(impl->options.read_threads), 1, n);
  if (runs == 1) {
    MultiGetRun(impl, d, keys, dsts, out);
    return;
  }
  std::vector<std::function<Status()>> tasks;
  tasks.reserve(runs);
  for (size_t r = 0; r < runs; ++r) {
    const size_t begin = n * r / runs;
    const size_t len = n * (r + 1) / runs - begin;
    tasks.emplace_back([=, &d] {
      MultiGetRun(impl, d, keys.subspan(begin, len), dsts.subspan(begin, len),
                  out.subspan(begin, len));
      return OkStatus();
    });
  }
  std::vector<Status> done(runs);
  impl->read_crew->RunAll(tasks, done);
}

uint64_t Ticker(const TierState& impl, rocksdb::Tickers t) {
  return impl.statistics->getTickerCount(t);
}

}  // namespace

Status SsdTier::ReadBlock(std::string_view key, std::span<std::byte> dst) {
  ReaderLock lock(&impl_->mu);
  ASSIGN_OR_RETURN(Database * d, ssd_internal::OpenDatabase(*impl_));
  rocksdb::PinnableSlice value;
  const rocksdb::Status s =
      d->db()->Get(BlockReadOptions(), d->blocks_of(key), ToSlice(key), &value);
  return FinishBlockRead(impl_.get(), key, s, value, dst);
}

Status SsdTier::ReadBlocks(std::span<const std::string> keys,
                           std::span<const std::span<std::byte>> dsts,
                           std::vector<Status>* statuses) {
  if (keys.size() != dsts.size()) {
    return InvalidArgumentError("ReadBlocks: " + std::to_string(keys.size()) + " keys but " +
                                std::to_string(dsts.size()) + " destinations");
  }
  const size_t n = keys.size();
  std::vector<Status> local;
  std::vector<Status>& out = statuses != nullptr ? *statuses : local;
  out.assign(n, OkStatus());
  if (n == 0) return OkStatus();
  ReaderLock lock(&impl_->mu);
  StatusOr<Database*> d = ssd_internal::OpenDatabase(*impl_);
  if (!d.ok()) {
    out.assign(n, d.status());
    return d.status();
  }
  ReadRuns(impl_.get(), **d, keys, dsts, out);
  for (const Status& s : out) {
    if (!s.ok()) return s;
  }
  return OkStatus();
}

StatusOr<bool> SsdTier::HasBlock(std::string_view key) {
  ReaderLock lock(&impl_->mu);
  ASSIGN_OR_RETURN(Database * d, ssd_internal::OpenDatabase(*impl_));
  rocksdb::PinnableSlice value;
  const rocksdb::Status s =
      d->db()->Get(BlockReadOptions(), d->blocks_of(key), ToSlice(key), &value);
  if (s.IsNotFound()) return false;
  RETURN_IF_ERROR(FromRocks(s, "looking up " + DescribeTierKey(key), impl_->options.path));
  return true;
}

StatusOr<std::string> SsdTier::GetRecord(std::string_view key) {
  ReaderLock lock(&impl_->mu);
  ASSIGN_OR_RETURN(Database * d, ssd_internal::OpenDatabase(*impl_));
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  rocksdb::PinnableSlice value;
  const rocksdb::Status s = d->db()->Get(ro, d->records(), ToSlice(key), &value);
  if (s.IsNotFound()) {
    return NotFoundError("no " + DescribeTierKey(key) + " in the SSD tier at " +
                         impl_->options.path);
  }
  RETURN_IF_ERROR(FromRocks(s, "reading " + DescribeTierKey(key), impl_->options.path));
  return value.ToString();
}

Status SsdTier::ScanRecords(std::string_view prefix,
                            const std::function<Status(std::string_view, std::string_view)>& fn) {
  ReaderLock lock(&impl_->mu);
  ASSIGN_OR_RETURN(Database * d, ssd_internal::OpenDatabase(*impl_));
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  ro.fill_cache = false;  // a recovery scan reads each record once
  const std::optional<std::string> end = ssd_internal::PrefixEnd(prefix);
  rocksdb::Slice upper;
  if (end) {
    upper = ToSlice(*end);
    ro.iterate_upper_bound = &upper;
  }
  std::unique_ptr<rocksdb::Iterator> it(d->db()->NewIterator(ro, d->records()));
  for (it->Seek(ToSlice(prefix)); it->Valid(); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    if (!key.starts_with(prefix)) break;
    RETURN_IF_ERROR(fn(key, std::string_view(it->value().data(), it->value().size())));
  }
  return FromRocks(it->status(), "scanning records from " + DescribeTierKey(prefix),
                   impl_->options.path);
}

SsdTierStats SsdTier::Stats() const {
  const ssd_internal::TierState& m = *impl_;
  SsdTierStats s;
  s.writes = m.writes.load(std::memory_order_relaxed);
  s.write_errors = m.write_errors.load(std::memory_order_relaxed);
  s.blocks_written = m.blocks_written.load(std::memory_order_relaxed);
  s.block_bytes_written = m.block_bytes_written.load(std::memory_order_relaxed);
  s.blocks_read = m.blocks_read.load(std::memory_order_relaxed);
  s.block_bytes_read = m.block_bytes_read.load(std::memory_order_relaxed);
  s.checksum_failures = m.checksum_failures.load(std::memory_order_relaxed);
  s.flushes = m.flushes.load(std::memory_order_relaxed);
  s.rocksdb_bytes_written = Ticker(m, rocksdb::BYTES_WRITTEN);
  s.rocksdb_bytes_read = Ticker(m, rocksdb::BYTES_READ);
  s.wal_bytes = Ticker(m, rocksdb::WAL_FILE_BYTES);
  s.flush_bytes_written = Ticker(m, rocksdb::FLUSH_WRITE_BYTES);
  s.compact_bytes_written = Ticker(m, rocksdb::COMPACT_WRITE_BYTES);
  s.compact_bytes_read = Ticker(m, rocksdb::COMPACT_READ_BYTES);
  s.blob_bytes_written = Ticker(m, rocksdb::BLOB_DB_BLOB_FILE_BYTES_WRITTEN);
  s.blob_bytes_read = Ticker(m, rocksdb::BLOB_DB_BLOB_FILE_BYTES_READ);
  s.stall_micros = Ticker(m, rocksdb::STALL_MICROS);
  s.reopens = m.reopens.load(std::memory_order_relaxed);
  s.direct_io = m.direct_io;
  s.rocksdb_crc32c_accelerated = ssd_internal::RocksDbCrc32cAccelerated();
  ReaderLock lock(&impl_->mu);
  const ssd_internal::Database* database = impl_->database.get();
  if (database == nullptr) return s;
  rocksdb::DB* db = database->db();
  uint64_t v = 0;
  for (rocksdb::ColumnFamilyHandle* shard : database->all_blocks()) {
    if (db->GetIntProperty(shard, rocksdb::DB::Properties::kLiveBlobFileSize, &v)) {
      s.live_blob_bytes += v;
    }
  }
  if (db->GetAggregatedIntProperty(rocksdb::DB::Properties::kTotalSstFilesSize, &v)) {
    s.total_sst_bytes = v;
  }
  return s;
}

}  // namespace attic
