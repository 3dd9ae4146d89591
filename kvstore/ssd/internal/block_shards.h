// How block keys are spread over the tier's block column families ("blocks.0" .. "blocks.N-1")
// so that large writes flush in parallel, one flush per shard. Private to kvstore/ssd; the
// reasons are in docs/kvstore-ssd.md ("Shards").
//
//   const int shard = BlockShardOf(PrivateBlockKey(seq, layer, head, b, BlockKind::kValue), 8);
//   batch.Put(database.blocks(shard), key, value);
//
// A key's shard is a hash of its stream: the tag, the owner (sequence, or prefix scope and
// hash), the layer and the KV head; neither the kind nor the block index. So one (layer, head)
// stream's K and V blocks live in one shard, contiguous in its blob files, while the streams
// of one prefill chunk (every layer and head) spread over all shards and flush in parallel.
// Keys of no known block shape are hashed whole. The mapping is stable across releases: it
// names where stored blocks are.
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

// "blocks.<shard>".
std::string BlockFamilyName(int shard);
// The shard a family name names, or -1 when it is not "blocks.<decimal without leading zeros>".
int ParseBlockFamilyName(std::string_view name);

// SsdTierOptions::block_shards = 0: min(8, hardware threads), at least 1.
int DefaultBlockShards();

}  // namespace attic::ssd_internal
