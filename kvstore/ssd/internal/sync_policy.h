// The file system the tier uses when SsdTierOptions.sync is false: every fsync RocksDB asks
// for (files, directories) becomes a no-op. Private to kvstore/ssd.
//
// Why: on this class of disk one fsync costs about as much as writing 4 MiB, and a forced
// flush issues five of them (blob file, table file, MANIFEST, directory), so a 4 MiB spill
// would spend most of its time in fsyncs that buy power-loss safety the option says is not
// wanted. A write is still durable against a process crash when Write returns: direct I/O
// hands blob and table bytes to the device, and buffered bytes (WAL, MANIFEST) sit in the
// kernel's page cache, which outlives the process. What is given up, and documented in
// docs/kvstore-ssd.md: after a power loss recent writes may be gone and RocksDB may find the
// directory inconsistent (Open answers DATA_LOSS; the tier is a cache and can be wiped).
//
//   std::shared_ptr<rocksdb::FileSystem> fs = NewSyncSkippingFileSystem(FileSystem::Default());
//
// Thread safety: as the wrapped file system.
#pragma once

#include <rocksdb/file_system.h>

#include <memory>

namespace attic::ssd_internal {

std::shared_ptr<rocksdb::FileSystem> NewSyncSkippingFileSystem(
    std::shared_ptr<rocksdb::FileSystem> base);

}  // namespace attic::ssd_internal
