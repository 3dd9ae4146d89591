// How block keys are spread over the tier's block column families ("blocks.0" .. "blocks.N-1")
// so that concurrent large writes flush side by side, one flush thread per shard. Private to
// kvstore/ssd; the reasons are in docs/kvstore-ssd.md ("Shards").
//
//   const int shard = BlockShardOf(PrivateBlockKey(seq, layer, head, b, BlockKind::kValue), 8);
//   batch.Put(database.blocks(shard), key, value);
//
// A key's shard is a hash of its owner: the tag and the sequence id of a private block, the
// tag and the prefix scope of a shared one. So a sequence's private blocks live in one shard
// (its write-through batches flush as one memtable, its values stay contiguous in that shard's
// blob files, and closing it is one range deletion), and so do a scope's shared blocks (a
// prefill chunk's shared blocks, one chain hash per block, flush together), while writes of
// different sequences go to different shards and flush in parallel. Keys of no known block
// shape are hashed whole. The mapping is stable across releases: it names where stored blocks
// are.
//
// Thread safety: constants and pure functions.
#pragma once

#include <string>
#include <string_view>

namespace attic::ssd_internal {

inline constexpr int kMaxBlockShards = 64;
inline constexpr std::string_view kBlockFamilyPrefix = "blocks.";
// The family of the first layout (kind last, one family). A directory that has it is refused.
inline constexpr std::string_view kUnshardedBlocksFamily = "blocks";

// The shard of a block key, in [0, shards). REQUIRES: 1 <= shards <= kMaxBlockShards.
int BlockShardOf(std::string_view key, int shards);

// The one shard that holds every key starting with prefix, or -1 when such keys may be in any
// shard (the prefix is shorter than an owner).
int BlockShardOfPrefix(std::string_view prefix, int shards);

// "blocks.<shard>".
std::string BlockFamilyName(int shard);
// The shard a family name names, or -1 when it is not "blocks.<decimal without leading zeros>".
int ParseBlockFamilyName(std::string_view name);

// SsdTierOptions::block_shards = 0: min(8, hardware threads), at least 1.
int DefaultBlockShards();

}  // namespace attic::ssd_internal
