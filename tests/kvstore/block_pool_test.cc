// BlockPool: carving, all-or-nothing allocation, frees, bad frees, and checksum checks.
#include "kvstore/internal/block_pool.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include "common/hash.h"

namespace attic::kv_internal {
namespace {

std::unique_ptr<BlockPool> MakePool(MmapSlabAllocator* alloc, int64_t blocks,
                                    size_t block_bytes = 1024) {
  StatusOr<std::unique_ptr<BlockPool>> p =
      BlockPool::Create(PoolKind::kKey, block_bytes, blocks, alloc, false);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? std::move(p).value() : nullptr;
}

TEST(BlockPoolTest, HandsOutEveryBlockOnceThenRefuses) {
  MmapSlabAllocator alloc;
  auto pool = MakePool(&alloc, 10);
  ASSERT_NE(pool, nullptr);
  std::vector<BlockId> ids;
  ASSERT_TRUE(pool->TryAllocate(4, &ids));
  ASSERT_TRUE(pool->TryAllocate(6, &ids));
  EXPECT_EQ(std::set<BlockId>(ids.begin(), ids.end()).size(), 10u);
  for (BlockId id : ids) EXPECT_LT(id, 10u);
  EXPECT_EQ(pool->free_blocks(), 0);
  EXPECT_EQ(pool->used_blocks(), 10);
  EXPECT_FALSE(pool->TryAllocate(1, &ids));
  EXPECT_EQ(ids.size(), 10u);
}

TEST(BlockPoolTest, AllocationIsAllOrNothing) {
  MmapSlabAllocator alloc;
  auto pool = MakePool(&alloc, 5);
  std::vector<BlockId> ids;
  ASSERT_TRUE(pool->TryAllocate(3, &ids));
  EXPECT_FALSE(pool->TryAllocate(3, &ids));
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_EQ(pool->free_blocks(), 2);
  pool->Free(ids);
  EXPECT_EQ(pool->free_blocks(), 5);
  EXPECT_TRUE(pool->TryAllocate(5, &ids));
}

TEST(BlockPoolTest, BlocksAreDisjointSlicesOfTheRegion) {
  MmapSlabAllocator alloc;
  auto pool = MakePool(&alloc, 8, 1000);  // not a divisor of the page: slab rounds up
  const MemoryRegion r = pool->region();
  EXPECT_EQ(r.kind, PoolKind::kKey);
  EXPECT_EQ(r.bytes, RoundUpToPage(8000));
  std::vector<BlockId> ids;
  ASSERT_TRUE(pool->TryAllocate(8, &ids));
  for (BlockId id : ids) std::memset(pool->block(id), static_cast<int>(id), 1000);
  for (BlockId id : ids) {
    EXPECT_EQ(pool->block(id), static_cast<std::byte*>(r.base) + size_t{id} * 1000);
    EXPECT_EQ(static_cast<int>(pool->block(id)[999]), static_cast<int>(id));
  }
}

TEST(BlockPoolTest, DoubleAndForeignFreesAreCountedNotApplied) {
  MmapSlabAllocator alloc;
  auto pool = MakePool(&alloc, 4);
  std::vector<BlockId> ids;
  ASSERT_TRUE(pool->TryAllocate(2, &ids));
  pool->Free(ids[0]);
  pool->Free(ids[0]);
  pool->Free(BlockId{77});
  EXPECT_EQ(pool->bad_frees(), 2);
  EXPECT_EQ(pool->free_blocks(), 3);
  std::vector<BlockId> again;
  ASSERT_TRUE(pool->TryAllocate(3, &again));
  EXPECT_EQ(std::set<BlockId>(again.begin(), again.end()).size(), 3u);
}

TEST(BlockPoolTest, CreateRejectsBadSizes) {
  MmapSlabAllocator alloc;
  EXPECT_EQ(BlockPool::Create(PoolKind::kValue, 1024, 0, &alloc, false).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(BlockPool::Create(PoolKind::kValue, 0, 4, &alloc, false).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      BlockPool::Create(PoolKind::kValue, 1024, kMaxPoolBlocks + 1, &alloc, false).status().code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(BlockPool::Create(PoolKind::kValue, 1024, 4, nullptr, false).status().code(),
            StatusCode::kInvalidArgument);
}

// Hands out memory one byte past a page boundary.
class MisalignedAllocator : public SlabAllocator {
 public:
  StatusOr<void*> Allocate(size_t bytes) override {
    ASSIGN_OR_RETURN(void* p, inner_.Allocate(bytes + PageSize()));
    return static_cast<void*>(static_cast<char*>(p) + 1);
  }
  void Deallocate(void* p, size_t bytes) override {
    ++deallocations;
    inner_.Deallocate(static_cast<char*>(p) - 1, bytes + PageSize());
  }
  int deallocations = 0;

 private:
  MmapSlabAllocator inner_;
};

TEST(BlockPoolTest, MisalignedSlabIsRefusedAndReturned) {
  MisalignedAllocator alloc;
  const auto p = BlockPool::Create(PoolKind::kKey, 1024, 4, &alloc, true);
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(alloc.deallocations, 1);
}

TEST(BlockPoolTest, CheckBlockPairNamesTheBadPool) {
  MmapSlabAllocator alloc;
  auto k = MakePool(&alloc, 2);
  auto v = std::move(BlockPool::Create(PoolKind::kValue, 1024, 2, &alloc, false)).value();
  std::vector<BlockId> ks;
  std::vector<BlockId> vs;
  ASSERT_TRUE(k->TryAllocate(1, &ks));
  ASSERT_TRUE(v->TryAllocate(1, &vs));
  std::memset(k->block(ks[0]), 1, 1024);
  std::memset(v->block(vs[0]), 2, 1024);
  BlockRef ref{.k = ks[0], .v = vs[0]};
  ref.k_crc = Crc32c(k->block(ks[0]), 1024);
  ref.v_crc = Crc32c(v->block(vs[0]), 1024);
  EXPECT_EQ(CheckBlockPair(*k, *v, ref, 1024), "");
  v->block(vs[0])[10] = std::byte{9};
  const std::string bad = CheckBlockPair(*k, *v, ref, 1024);
  EXPECT_EQ(bad.rfind("V block " + std::to_string(vs[0]) + " checksum mismatch", 0), 0u) << bad;
  // Only the first `bytes` bytes are covered: slack past a smaller spec's block is ignored.
  v->block(vs[0])[10] = std::byte{2};
  ref.k_crc = Crc32c(k->block(ks[0]), 512);
  ref.v_crc = Crc32c(v->block(vs[0]), 512);
  k->block(ks[0])[1000] = std::byte{5};
  EXPECT_EQ(CheckBlockPair(*k, *v, ref, 512), "");
  k->block(ks[0])[100] = std::byte{5};
  EXPECT_EQ(CheckBlockPair(*k, *v, ref, 512).substr(0, 7), "K block");
}

}  // namespace
}  // namespace attic::kv_internal
