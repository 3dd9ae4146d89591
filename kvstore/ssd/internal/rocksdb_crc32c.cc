#include "kvstore/ssd/internal/rocksdb_crc32c.h"

#include <rocksdb/file_checksum.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/hash.h"

#if ATTIC_ROCKSDB_HW_CRC32C
namespace {
// Set by every call of the replacement on the calling thread: the run-time probe.
thread_local bool t_replacement_called = false;
}  // namespace

// What `--wrap=_ZN7rocksdb6crc32c6ExtendEjPKcm` (kvstore/ssd/CMakeLists.txt) sends RocksDB's
// calls of rocksdb::crc32c::Extend(uint32_t crc, const char* data, size_t n) to: the CRC-32C of
// data[0, n) continuing from crc (0 to start), the conventions of attic::Crc32c.
extern "C" uint32_t AtticRocksDbCrc32cExtend(uint32_t crc, const char* data, size_t n) __asm__(
    "__wrap__ZN7rocksdb6crc32c6ExtendEjPKcm");
extern "C" uint32_t AtticRocksDbCrc32cExtend(uint32_t crc, const char* data, size_t n) {
  t_replacement_called = true;
  return attic::Crc32c(data, n, crc);
}
#endif

namespace attic::ssd_internal {
namespace {

// Checksums a few bytes with RocksDB's CRC-32C file checksum generator, which calls
// crc32c::Extend from inside RocksDB, and says whether that call reached the replacement.
bool Probe() {
#if ATTIC_ROCKSDB_HW_CRC32C
  const std::shared_ptr<rocksdb::FileChecksumGenFactory> factory =
      rocksdb::GetFileChecksumGenCrc32cFactory();
  if (factory == nullptr) return false;
  rocksdb::FileChecksumGenContext context;
  context.file_name = "attic-crc32c-probe";
  const std::unique_ptr<rocksdb::FileChecksumGenerator> gen =
      factory->CreateFileChecksumGenerator(context);
  if (gen == nullptr) return false;
  t_replacement_called = false;
  static constexpr char kBytes[] = "123456789";
  gen->Update(kBytes, sizeof(kBytes) - 1);
  gen->Finalize();
  return t_replacement_called;
#else
  return false;
#endif
}

}  // namespace

bool RocksDbCrc32cAccelerated() {
  static const bool accelerated = Probe();
  return accelerated;
}

}  // namespace attic::ssd_internal
