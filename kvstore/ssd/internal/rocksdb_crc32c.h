// Hardware CRC-32C for RocksDB's own checksums. Private to kvstore/ssd.
//
// Debian's RocksDB is a portable build: its rocksdb::crc32c::Extend runs a table-driven
// software loop, about 0.9-1.4 GB/s on one core. A flush checksums every blob record it writes
// with it (the blob header's CRC covers key and value; no option skips it), so on the spill
// path it was the largest single cost: about half of a flush thread's time.
//
// rocksdb_crc32c.cc defines a replacement, on x86-64, computing the same function (CRC-32C
// with RocksDB's conventions) with attic::Crc32c, which runs the SSE4.2 instruction (about
// 9 GB/s; a portable loop on CPUs without it). The ssd_tier target links every executable that
// uses it with `--wrap=<Extend's mangled name>`, so the linker points RocksDB's calls to Extend
// (every call from another object file of librocksdb.a: blob records, WAL records, table
// blocks) at the replacement. The results are bit-identical, so files written with or without
// it read back either way. Configure with -DATTIC_ROCKSDB_HW_CRC32C=OFF to keep RocksDB's own.
//
// A shared librocksdb resolves its calls inside itself, beyond the reach of --wrap:
// RocksDbCrc32cAccelerated() checks at run time, through a RocksDB API that computes a CRC-32C,
// whether RocksDB's calls land in the replacement. The tier logs the verdict once and reports
// it in SsdTierStats::rocksdb_crc32c_accelerated.
//
//   if (!ssd_internal::RocksDbCrc32cAccelerated()) ATTIC_LOG(kInfo, "ssd") << "software CRC";
//
// Thread safety: thread-safe.
#pragma once

namespace attic::ssd_internal {

// Whether RocksDB's CRC-32C calls run the replacement above (probed once).
bool RocksDbCrc32cAccelerated();

}  // namespace attic::ssd_internal
