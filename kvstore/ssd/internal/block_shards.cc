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

// The owner: the bytes that open every block key of one sequence (tag, sequence id) or of one
// prefix scope (tag, scope); see block_keys.cc. 0 for a key of neither kind. Not the chain
// hash: a prefill chunk's shared blocks are one block index each, and spreading them over the
// shards would turn one flush into a flush per block.
size_t OwnerBytes(std::string_view key) {
  constexpr size_t kPrivateOwner = 1 + 8;
  constexpr size_t kSharedOwner = 1 + 8;
  if (key.empty()) return 0;
  if (key[0] == kPrivateBlockTag) return key.size() >= kPrivateOwner ? kPrivateOwner : 0;
  if (key[0] == kSharedBlockTag) return key.size() >= kSharedOwner ? kSharedOwner : 0;
  return 0;
}

int ShardOfHash(uint64_t hash, int shards) {
  return static_cast<int>(hash % static_cast<uint64_t>(shards));
}

}  // namespace

int BlockShardOf(std::string_view key, int shards) {
  if (shards <= 1) return 0;
  const size_t owner = OwnerBytes(key);
  const size_t n = owner != 0 ? owner : key.size();
  return ShardOfHash(Hash64(key.data(), n, kShardSeed), shards);
}

int BlockShardOfPrefix(std::string_view prefix, int shards) {
  if (shards <= 1) return 0;
  const size_t owner = OwnerBytes(prefix);
  if (owner == 0) return -1;
  return ShardOfHash(Hash64(prefix.data(), owner, kShardSeed), shards);
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
