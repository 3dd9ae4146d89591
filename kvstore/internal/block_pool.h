// BlockPool: one page-aligned slab carved into fixed-size blocks, with a free list.
//
// The KV store keeps two pools (K and V) and allocates a (K, V) block pair per (layer, KV head,
// B tokens). Block ids are dense indexes into the slab, so a block's address is
// base + id * block_bytes and a block id stays meaningful to the transport after registration.
//
//   ASSIGN_OR_RETURN(auto pool, BlockPool::Create(PoolKind::kKey, 16384, 1024, &allocator, false));
//   std::vector<BlockId> ids;
//   if (pool->TryAllocate(4, &ids)) std::memcpy(pool->block(ids[0]), src, 16384);
//   pool->Free(ids);
//
// Thread safety: TryAllocate, Free and the counters may be called from any thread (a short
// mutex guards the free list; it is the innermost lock of the store). The bytes of a block
// belong to whoever holds its id: the pool never touches them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "kvstore/slab_allocator.h"

namespace attic::kv_internal {

using BlockId = uint32_t;
inline constexpr BlockId kNoBlock = UINT32_MAX;
// Block ids must stay below kNoBlock.
inline constexpr int64_t kMaxPoolBlocks = int64_t{kNoBlock} - 1;

class ValueResidency;

// The K and V blocks of one (layer, KV head, block index), with their checksums once sealed.
struct BlockRef {
  BlockId k = kNoBlock;
  BlockId v = kNoBlock;
  uint32_t k_crc = 0;   // CRC-32C of the K block's spec.block_bytes() bytes; set when sealed
  uint32_t v_crc = 0;   // same for V
  bool shared = false;  // owned by a prefix-cache entry rather than by one sequence

  bool valid() const { return k != kNoBlock; }
};

class BlockPool {
 public:
  // Takes one slab of num_blocks * block_bytes (rounded up to a page) from `allocator`, which
  // must outlive the pool. `touch_pages` prefaults the slab by writing to every page (for
  // allocators that do not prefault themselves). InvalidArgument for sizes out of range or an
  // allocator returning unaligned memory; the allocator's error when it has no memory.
  static StatusOr<std::unique_ptr<BlockPool>> Create(PoolKind kind, size_t block_bytes,
                                                     int64_t num_blocks, SlabAllocator* allocator,
                                                     bool touch_pages);
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // All or nothing: appends n free block ids to *out and returns true, or takes nothing and
  // returns false when fewer than n blocks are free.
  bool TryAllocate(size_t n, std::vector<BlockId>* out) EXCLUDES(mu_);
  // Returns blocks to the free list. Ids out of range or already free are ignored and counted
  // in bad_frees() (a store bug that Verify reports) instead of corrupting the free list.
  void Free(std::span<const BlockId> ids) EXCLUDES(mu_);
  void Free(BlockId id) EXCLUDES(mu_) { Free(std::span<const BlockId>(&id, 1)); }

  // The block's bytes: [block_bytes()]. REQUIRES: id < capacity_blocks().
  std::byte* block(BlockId id) const { return base_ + static_cast<size_t>(id) * block_bytes_; }

  PoolKind kind() const { return kind_; }
  size_t block_bytes() const { return block_bytes_; }
  int64_t capacity_blocks() const { return num_blocks_; }
  int64_t free_blocks() const { return free_count_.load(std::memory_order_relaxed); }
  int64_t used_blocks() const { return num_blocks_ - free_blocks(); }
  int64_t bad_frees() const { return bad_frees_.load(std::memory_order_relaxed); }
  MemoryRegion region() const { return MemoryRegion{base_, slab_bytes_, kind_}; }

  // The V pool of a store with an SSD tier tracks where each block's bytes are: the pool
  // tells `residency` of every allocation and free. nullptr detaches.
  void AttachResidency(ValueResidency* residency) EXCLUDES(mu_);
  // False only for a block whose bytes are spilled to SSD (never without residency).
  bool resident(BlockId id) const;
  // Calls fn(id) for every block in use, under the pool's mutex (fn must not call the pool).
  void ForEachInUse(const std::function<void(BlockId)>& fn) const EXCLUDES(mu_);

 private:
  BlockPool(PoolKind kind, size_t block_bytes, int64_t num_blocks, std::byte* base,
            size_t slab_bytes, SlabAllocator* allocator);

  const PoolKind kind_;
  const size_t block_bytes_;
  const int64_t num_blocks_;
  std::byte* const base_;  // [num_blocks_, block_bytes_], owned, from allocator_
  const size_t slab_bytes_;
  SlabAllocator* const allocator_;

  mutable Mutex mu_;
  ValueResidency* residency_ GUARDED_BY(mu_) = nullptr;
  std::atomic<ValueResidency*> residency_view_{nullptr};  // lock-free reads of residency_
  std::vector<BlockId> free_ GUARDED_BY(mu_);  // a stack: recently freed blocks are warm
  std::vector<bool> in_use_ GUARDED_BY(mu_);   // [num_blocks_], catches double frees
  std::atomic<int64_t> free_count_{0};         // mirrors free_.size() for lock-free figures
  std::atomic<int64_t> bad_frees_{0};
};

// Recomputes the checksums of a sealed pair over its first `bytes` bytes. Empty when both match,
// else "K block 17 checksum mismatch (stored 0x..., computed 0x...)" for the first bad one.
std::string CheckBlockPair(const BlockPool& k_pool, const BlockPool& v_pool, const BlockRef& ref,
                           size_t bytes);

}  // namespace attic::kv_internal
