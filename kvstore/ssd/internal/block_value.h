// The stored form of a block: its bytes followed by an 8-byte little-endian checksum,
// Hash64(bytes, n, kBlockChecksumSeed). Every read verifies it, so a block that comes back
// from the disk, the page cache or RocksDB's memtable with any bit changed is DATA_LOSS, not
// wrong attention. Private to kvstore/ssd.
//
//   BlockTrailer t = MakeTrailer(bytes);                   // written after the bytes
//   RETURN_IF_ERROR(CheckBlockValue(stored, dst.size(), describe_key, path));
//   std::memcpy(dst.data(), stored.data(), dst.size());
//
// Thread safety: pure functions.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace attic::ssd_internal {

// Fixed forever: changing it makes every stored block unreadable. ("attic-kv" in ASCII.)
inline constexpr uint64_t kBlockChecksumSeed = 0x61747469632d6b76ULL;
inline constexpr size_t kTrailerBytes = 8;

using BlockTrailer = std::array<char, kTrailerBytes>;

uint64_t BlockChecksum(std::span<const std::byte> bytes);
BlockTrailer MakeTrailer(std::span<const std::byte> bytes);

// OK when stored is expected_bytes of payload plus a trailer that matches the payload.
// DATA_LOSS otherwise, naming `what` (the key in words), the path, and both sizes or both
// checksums.
Status CheckBlockValue(std::string_view stored, size_t expected_bytes, std::string_view what,
                       std::string_view path);

}  // namespace attic::ssd_internal
