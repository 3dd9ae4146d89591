#include "kvstore/ssd/internal/block_value.h"

#include <cinttypes>
#include <cstdio>

#include "common/hash.h"

namespace attic::ssd_internal {
namespace {

uint64_t LoadLittleEndian64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string Hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%016" PRIx64, v);
  return buf;
}

}  // namespace

uint64_t BlockChecksum(std::span<const std::byte> bytes) {
  return Hash64(bytes.data(), bytes.size(), kBlockChecksumSeed);
}

BlockTrailer MakeTrailer(std::span<const std::byte> bytes) {
  const uint64_t sum = BlockChecksum(bytes);
  BlockTrailer t;
  for (size_t i = 0; i < kTrailerBytes; ++i) t[i] = static_cast<char>(sum >> (8 * i));
  return t;
}

Status CheckBlockValue(std::string_view stored, size_t expected_bytes, std::string_view what,
                       std::string_view path) {
  if (stored.size() < kTrailerBytes || stored.size() - kTrailerBytes != expected_bytes) {
    const long long held =
        stored.size() < kTrailerBytes ? -1 : static_cast<long long>(stored.size() - kTrailerBytes);
    return DataLossError(std::string(what) + " in " + std::string(path) + " holds " +
                         std::to_string(held) + " bytes (stored value " +
                         std::to_string(stored.size()) + " bytes with its checksum), the reader " +
                         "expects " + std::to_string(expected_bytes));
  }
  const uint64_t stored_sum = LoadLittleEndian64(stored.data() + expected_bytes);
  const uint64_t computed = BlockChecksum(std::as_bytes(std::span(stored.data(), expected_bytes)));
  if (stored_sum != computed) {
    return DataLossError("checksum mismatch for " + std::string(what) + " in " + std::string(path) +
                         ": stored " + Hex64(stored_sum) + ", computed " + Hex64(computed) +
                         " over " + std::to_string(expected_bytes) + " bytes");
  }
  return OkStatus();
}

}  // namespace attic::ssd_internal
