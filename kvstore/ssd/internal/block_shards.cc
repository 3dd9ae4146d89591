#include "kvstore/ssd/internal/block_shards.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <thread>

#include "common/hash.h"
#include "kvstore/ssd/internal/key_tags.h"

namespace attic::ssd_internal {
namespace {

// Fixed forever: it decides which family holds a stored block.
constexpr uint64_t kShardSeed = 0x5eed'b10c'5a4d'0001ULL;

// Block key shapes (block_keys.cc): tag, owner, kind, layer (4), head (4)[, block (4)]. The
// stream is everything but the kind and the block index.
constexpr size_t kPrivateOwnerEnd = 1 + 8;
constexpr size_t kPrivateKeyBytes = kPrivateOwnerEnd + 1 + 4 + 4 + 4;
constexpr size_t kSharedOwnerEnd = 1 + 8 + 8;
constexpr size_t kSharedKeyBytes = kSharedOwnerEnd + 1 + 4 + 4;
constexpr size_t kLayerHeadBytes = 4 + 4;

uint64_t StreamHash(std::string_view key, size_t owner_end) {
  const uint64_t layer_head = Hash64(key.data() + owner_end + 1, kLayerHeadBytes, kShardSeed);
  return Hash64(key.data(), owner_end, layer_head);
}

uint64_t KeyHash(std::string_view key) {
  if (key.size() == kPrivateKeyBytes && key[0] == kPrivateBlockTag) {
    return StreamHash(key, kPrivateOwnerEnd);
  }
  if (key.size() == kSharedKeyBytes && key[0] == kSharedBlockTag) {
    return StreamHash(key, kSharedOwnerEnd);
  }
  return Hash64(key.data(), key.size(), kShardSeed);
}

}  // namespace

int BlockShardOf(std::string_view key, int shards) {
  if (shards <= 1) return 0;
  return static_cast<int>(KeyHash(key) % static_cast<uint64_t>(shards));
}

std::string BlockFamilyName(int shard) {
  return std::string(kBlockFamilyPrefix) + std::to_string(shard);
}

int ParseBlockFamilyName(std::string_view name) {
  if (!name.starts_with(kBlockFamilyPrefix)) return -1;
  const std::string_view digits = name.substr(kBlockFamilyPrefix.size());
  if (digits.empty() || digits[0] < '0' || digits[0] > '9') return -1;
  if (digits.size() > 1 && digits[0] == '0') return -1;
  int shard = -1;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), shard);
  if (ec != std::errc() || end != digits.data() + digits.size()) return -1;
  return shard;
}

int DefaultBlockShards() {
  const auto threads = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(threads, 1, 8);
}

}  // namespace attic::ssd_internal
