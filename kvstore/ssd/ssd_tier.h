// SsdTier: the SSD tier of the KV store, on RocksDB. Holds every block the store has made
// durable (K and V separately, so reloading values never reads keys), the per-sequence
// manifests a restarted worker recovers from, and the prefix-cache entries of closed sequences.
// The layout, the durability rules and the error mapping are described in docs/kvstore-ssd.md.
//
//   ASSIGN_OR_RETURN(auto tier, SsdTier::Open({.path = "/var/lib/attic/kv"}));
//   TierBatch batch;
//   batch.blocks.push_back({.key = PrivateBlockKey(seq, layer, head, b, BlockKind::kValue),
//                           .bytes = block_bytes_span});
//   batch.records.push_back({.key = ManifestKey(seq), .value = encoded_manifest});
//   RETURN_IF_ERROR(tier->Write(batch));          // durable when it returns OK
//   RETURN_IF_ERROR(tier->ReadBlock(key, dst));   // DataLoss if the checksum does not match
//
// Blocks live in block_shards column families with blob files enabled (values at or above
// min_blob_bytes go to blob files, which compaction never rewrites), a block's shard chosen
// from its key's owner (the sequence, or the prefix scope), so one sequence's blocks stay
// together and writes of different sequences flush in parallel. Each stored value
// is the block's bytes followed by an 8-byte checksum (Hash64 of the bytes, little-endian) that
// every read verifies. Records (manifests, prefix entries, query samples) live in a column
// family of small values. Reads and flushes use direct I/O unless the file system refuses it
// (direct_io_active() and direct_io_note() say so).
//
// Errors: RocksDB's NoSpace -> RESOURCE_EXHAUSTED; IOError and a database stopped by a
// background error -> UNAVAILABLE (once the disk takes writes again, the next Write reopens the
// database, which replays its WAL); Corruption or a checksum mismatch -> DATA_LOSS naming the
// key; a missing key -> NOT_FOUND; a directory of the earlier unsharded layout ->
// FAILED_PRECONDITION. The tier never crashes on a bad disk. Every message names the
// operation, the directory and RocksDB's own text.
//
// Thread safety: every method may be called concurrently from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace attic {

class FaultInjector;
namespace ssd_internal {
struct TierState;
}  // namespace ssd_internal

struct SsdTierOptions {
  // The RocksDB directory: the worker's durable state. Created if missing.
  std::string path;
  // RocksDB's block cache (SST index, filter and data blocks of the records family, and of the
  // block shards' blob indexes). Block bytes themselves bypass it: blob reads
  // go to the disk with direct I/O, and the KV store's DRAM pools are the cache of blocks.
  size_t block_cache_bytes = size_t{32} << 20;
  // Block column families ("shards"): a sequence's private blocks in one, a prefix scope's
  // shared blocks in one. Large writes of different sequences flush side by side, each shard
  // on its own RocksDB flush thread, so spill throughput grows with concurrent writers (one
  // memtable's flush is single-threaded, and one family's flushes queue behind each other).
  // 0: min(8, hardware threads). Fixed when the directory is created: an existing directory
  // keeps its count whatever this says (block_shards() tells). At most 64.
  int block_shards = 0;
  // RocksDB background threads besides the flush threads: half of them flush too (flush
  // threads = max(shards, background_threads / 2)), the rest compact.
  int background_threads = 2;
  // use_direct_reads and use_direct_io_for_flush_and_compaction. If the file system refuses
  // O_DIRECT, the tier opens with buffered I/O and says why in direct_io_note().
  bool direct_io = true;
  // Memtable size of each block shard; a Write larger than flush_bytes skips the WAL and is
  // flushed at once, so it must fit in one memtable.
  size_t write_buffer_bytes = size_t{128} << 20;
  // Target size of one blob file.
  uint64_t blob_file_bytes = uint64_t{256} << 20;
  // Values at least this large go to blob files.
  uint64_t min_blob_bytes = 1024;
  // A Write whose block bytes reach this skips the WAL and flushes the memtable before it
  // returns: large writes hit the disk once (in a blob file, with direct I/O) instead of
  // twice (WAL, then blob file). Smaller writes go through the WAL.
  size_t flush_bytes = size_t{1} << 20;
  // Reads ReadBlocks keeps in flight: a call splits its keys into up to this many contiguous
  // runs, each one MultiGet, run side by side by the caller and a crew of read_threads - 1
  // reader threads the tier owns (shared by concurrent calls). Debian's RocksDB has no
  // io_uring, so one MultiGet reads its blobs one after another: without the crew a sparse
  // step's scattered blocks cost one device latency each; with it, about one per
  // read_threads blocks. Runs stay contiguous, so adjacent blobs of a dense reload are still
  // merged into large reads. 0 or 1: the caller reads alone. At most 256. Default 16.
  int read_threads = 16;
  // Power-loss durability. true: every fsync RocksDB issues (the WAL on every small write;
  // flushed blob and table files, the MANIFEST and the directory on every large one), so a
  // Write that returned OK survives a power loss. false: no fsync at all; a Write that
  // returned OK survives a process crash (SIGKILL) but not a power loss, after which recent
  // writes may be gone and RocksDB may find the directory inconsistent (Open answers
  // DATA_LOSS; the tier is a cache and can be wiped). One fsync costs about as much as
  // writing 4 MiB on a VM disk, and a large write issues five.
  bool sync = false;
  // Test hook: every file the tier opens goes through it (ENOSPC and EIO injection). Not
  // owned; must outlive the tier. nullptr in production.
  FaultInjector* faults = nullptr;
};

// Which half of a block pair a key names.
enum class BlockKind : uint8_t { kKey = 0, kValue = 1 };

// Block keys. Private blocks (a sequence's own: decode tokens, unshared prompt, tails) are
// named by sequence, layer, absolute KV head and block index; shareable prompt blocks by the
// prefix scope and chain hash, layer and KV head, so two sequences with the same prefix store
// it once. Big-endian fields, the kind right after the owner (sequence, or scope and hash):
// keys of one sequence (or one prefix entry) are adjacent, and within them all its V blocks
// are, ordered by layer, head and block, so values are stored contiguously.
std::string PrivateBlockKey(uint64_t seq_id, int layer, int kv_head, int block, BlockKind kind);
std::string SharedBlockKey(uint64_t scope, uint64_t hash, int layer, int kv_head, BlockKind kind);
// Every private block key of a sequence starts with this (DeleteRange of a closed sequence).
std::string PrivateBlockPrefix(uint64_t seq_id);
// Every shared block key of one prefix entry (scope, hash) starts with this, K and V of every
// layer and head (DeleteRange of a reclaimed entry; one shard, the scope's).
std::string SharedBlockPrefix(uint64_t scope, uint64_t hash);
// REQUIRES for the block and record keys: layer, kv_head and block are >= 0.

// Record keys (the small column family).
std::string ManifestKey(uint64_t seq_id);                   // a sequence's manifest
std::string SampleKey(uint64_t seq_id, int layer);          // its prefill query sample
std::string PrefixEntryKey(uint64_t scope, uint64_t hash);  // a prefix entry's record
std::string_view ManifestKeyPrefix();                       // every manifest key's prefix
std::string_view PrefixEntryKeyPrefix();                    // every prefix entry's prefix
std::string SamplePrefix(uint64_t seq_id);                  // a sequence's samples

// The inverses for the record keys a recovery scan meets: false (outputs untouched) when the
// key is not of that kind.
bool ParseManifestKey(std::string_view key, uint64_t* seq_id);
bool ParseSampleKey(std::string_view key, uint64_t* seq_id, int* layer);
bool ParsePrefixEntryKey(std::string_view key, uint64_t* scope, uint64_t* hash);

// Any tier key in words, for messages: "private block seq 7 layer 1 head 0 block 12 V",
// "manifest seq 7"; keys of no known shape as hex ("key 0x70ff...").
std::string DescribeTierKey(std::string_view key);

struct TierBlockWrite {
  std::string key;
  std::span<const std::byte> bytes;  // the block's bytes; the tier appends the checksum
};

struct TierRecordWrite {
  std::string key;
  std::string value;
};

// One write: all of it is durable when Write returns OK. A small batch (block bytes below
// flush_bytes) is atomic: after an error or a crash it is all there or not at all. A large one
// is written in two steps — its block puts, flushed; then its records and deletions, at once —
// so after an error or a crash it may be partly there, but only as block puts without the
// batch's records and deletions: never a record without the blocks of the same batch, never a
// deletion without the rest of the batch. Blocks no record names are invisible to the KV store
// (they are reached through manifests and prefix entries) and go with their sequence's range
// delete, or are overwritten when written again. Callers treat a failed batch as not written
// and may write it again (puts and deletes are idempotent). docs/kvstore-ssd.md, "Durability".
struct TierBatch {
  std::vector<TierBlockWrite> blocks;
  std::vector<TierRecordWrite> records;
  std::vector<std::string> delete_blocks;          // single block keys
  std::vector<std::string> delete_block_prefixes;  // every block key with this prefix
  std::vector<std::string> delete_records;
  size_t block_bytes() const;  // sum of blocks[i].bytes.size()
};

struct SsdTierStats {
  uint64_t writes = 0;        // Write calls that succeeded
  uint64_t write_errors = 0;  // ... that failed
  uint64_t blocks_written = 0;
  uint64_t block_bytes_written = 0;  // payload bytes (without checksums)
  uint64_t blocks_read = 0;
  uint64_t block_bytes_read = 0;
  uint64_t checksum_failures = 0;  // block reads answered DATA_LOSS (ours or RocksDB's check)
  uint64_t flushes = 0;            // flushes Write forced (large writes)
  uint64_t reopens = 0;            // database reopened to recover from a failed write
  // From RocksDB's statistics: what actually reached and left the files.
  uint64_t rocksdb_bytes_written = 0;  // BYTES_WRITTEN (WAL + memtable inserts)
  uint64_t rocksdb_bytes_read = 0;     // BYTES_READ
  uint64_t wal_bytes = 0;              // WAL_FILE_BYTES
  uint64_t flush_bytes_written = 0;    // FLUSH_WRITE_BYTES
  uint64_t compact_bytes_written = 0;  // COMPACT_WRITE_BYTES
  uint64_t compact_bytes_read = 0;     // COMPACT_READ_BYTES
  uint64_t blob_bytes_written = 0;     // BLOB_DB_BLOB_FILE_BYTES_WRITTEN
  uint64_t blob_bytes_read = 0;        // BLOB_DB_BLOB_FILE_BYTES_READ
  uint64_t stall_micros = 0;           // STALL_MICROS: writes RocksDB delayed or stopped
  uint64_t live_blob_bytes = 0;        // rocksdb.live-blob-file-size
  uint64_t total_sst_bytes = 0;        // rocksdb.total-sst-files-size
  bool direct_io = false;              // direct_io_active()
  // RocksDB's own CRC-32C (blob records, WAL, table blocks) runs on the SSE4.2 instruction
  // instead of the distribution build's software loop (kvstore/ssd/internal/rocksdb_crc32c.h).
  bool rocksdb_crc32c_accelerated = false;
  // Write amplification of the figures above: bytes RocksDB put on the disk (WAL, flushed SST
  // and blob files, compaction output) per payload byte written. 0 before any write.
  double write_amplification() const;
};

class SsdTier {
 public:
  // Opens or creates the database at options.path. INVALID_ARGUMENT for bad options;
  // UNAVAILABLE (naming the path and RocksDB's message) when it cannot be opened (I/O error,
  // directory locked by another process); DATA_LOSS when RocksDB finds it corrupt.
  static StatusOr<std::unique_ptr<SsdTier>> Open(const SsdTierOptions& options);
  ~SsdTier();
  SsdTier(const SsdTier&) = delete;
  SsdTier& operator=(const SsdTier&) = delete;

  Status Write(const TierBatch& batch);

  // Reads one block into dst (its size must equal the stored block's, else DATA_LOSS naming
  // both sizes) and verifies its checksum.
  Status ReadBlock(std::string_view key, std::span<std::byte> dst);
  // Reads many blocks at once: up to read_threads MultiGets of contiguous runs of the keys,
  // side by side; statuses[i] is ReadBlock's answer for keys[i]. Returns the first error (in
  // key order), OK when every block was read.
  Status ReadBlocks(std::span<const std::string> keys, std::span<const std::span<std::byte>> dsts,
                    std::vector<Status>* statuses);
  // Whether a block is stored. RocksDB 7 cannot look up a blob index without reading the blob,
  // so this reads the value (no checksum check): not for hot paths.
  StatusOr<bool> HasBlock(std::string_view key);

  StatusOr<std::string> GetRecord(std::string_view key);  // NOT_FOUND when absent
  // Calls fn(key, value) for every record whose key starts with prefix, in key order; stops at
  // and returns fn's first error.
  Status ScanRecords(std::string_view prefix,
                     const std::function<Status(std::string_view, std::string_view)>& fn);

  SsdTierStats Stats() const;
  bool direct_io_active() const;
  // Empty when direct I/O is active as asked; else why not ("O_DIRECT refused by the file
  // system under /x: Invalid argument; using buffered I/O").
  const std::string& direct_io_note() const;
  const std::string& path() const;
  // The directory's block shard count (SsdTierOptions::block_shards, or what the directory
  // was created with).
  int block_shards() const;

  // Flushes memtables and waits (tests, orderly shutdown).
  Status Flush();

 private:
  explicit SsdTier(std::unique_ptr<ssd_internal::TierState> impl);
  std::unique_ptr<ssd_internal::TierState> impl_;
};

// Injected faults for tests: a RocksDB FileSystem wrapper (kvstore/ssd/fault_injection.cc)
// consults it on every file operation. Thread-safe.
class FaultInjector {
 public:
  enum class Fault {
    kNone,
    kNoSpace,       // writes, appends, syncs and file creation fail with ENOSPC
    kIoError,       // every read and write fails with EIO
    kReadIoError,   // reads fail with EIO, writes work
    kCorruptReads,  // reads of blob files (*.blob) succeed but return one flipped bit
  };
  // Longest delay SetLatency takes: a test that wants a disk slower than this wants a
  // stopped one (use kIoError).
  static constexpr std::chrono::microseconds kMaxLatency = std::chrono::seconds(10);

  FaultInjector();
  ~FaultInjector();
  void Set(Fault fault);
  Fault fault() const;
  uint64_t injected() const;  // operations failed so far

  // A slow disk, independent of Set's fault (both apply): every read (Read, MultiRead,
  // PositionedRead, Prefetch, ReadAsync) sleeps `read` and every write, flush, sync or
  // allocation sleeps `write` before it runs. Zero turns a delay off. INVALID_ARGUMENT (nothing
  // changed) for a negative delay or one above kMaxLatency.
  Status SetLatency(std::chrono::microseconds read, std::chrono::microseconds write);
  uint64_t delayed() const;  // operations delayed so far
  // The most reads that were inside the file system at once since the last reset, and the
  // reset. With a read delay this shows how many reads the tier keeps in flight.
  int peak_reads_in_flight() const;
  void ResetPeakReadsInFlight();

 private:
  struct State;
  std::unique_ptr<State> state_;
  friend class FaultInjectingFileSystem;
};

}  // namespace attic
