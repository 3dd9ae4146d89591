// The RocksDB FileSystem that SsdTier opens its database through when SsdTierOptions.faults is
// set: every file operation first asks the FaultInjector (ssd_tier.h) whether to fail.
//
//   FaultInjector faults;
//   ASSIGN_OR_RETURN(auto tier, SsdTier::Open({.path = dir, .faults = &faults}));
//   faults.Set(FaultInjector::Fault::kNoSpace);   // the next WAL append or flush: ENOSPC
//   EXPECT_EQ(tier->Write(batch).code(), StatusCode::kResourceExhausted);
//   faults.Set(FaultInjector::Fault::kNone);      // the next Write resumes the database
//   RETURN_IF_ERROR(faults.SetLatency(std::chrono::milliseconds(5), {}));  // a slow disk
//
// What each fault does:
//   kNoSpace       IOStatus::NoSpace from Append, PositionedAppend, Flush, Sync, Fsync,
//                  RangeSync, Allocate and from creating or reopening a writable file.
//   kIoError       IOStatus::IOError from all of those, from every read, and from opening any
//                  file.
//   kReadIoError   IOStatus::IOError from reads only (Read, MultiRead, PositionedRead,
//                  Prefetch, ReadAsync).
//   kCorruptReads  reads of blob files (*.blob) succeed, with one bit of the returned data
//                  flipped.
// Latency (FaultInjector::SetLatency, alongside any fault): reads sleep the read delay and
// writes, flushes, syncs and allocations the write delay before they run; opens are not
// delayed. The injector also counts the reads inside the file system at once (its peak shows
// the queue depth the tier reached).
// Direct I/O passes through: the wrappers answer use_direct_io() and the buffer alignment with
// the wrapped file's.
//
// Thread safety: the file system and its files may be used from any thread; the injector is
// read with atomics on every operation.
#pragma once

#include <memory>

namespace rocksdb {
class FileSystem;
}  // namespace rocksdb

namespace attic {

class FaultInjector;

// REQUIRES: faults != nullptr and outlives the returned file system and every file it opens.
std::shared_ptr<rocksdb::FileSystem> NewFaultInjectingFileSystem(
    std::shared_ptr<rocksdb::FileSystem> base, FaultInjector* faults);

}  // namespace attic
