// MmapSlabAllocator: page alignment, size checks, prefaulting, and usable memory.
#include "kvstore/slab_allocator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

namespace attic {
namespace {

TEST(SlabAllocatorTest, PageSizeAndRounding) {
  const size_t page = PageSize();
  EXPECT_GE(page, 4096u);
  EXPECT_EQ(page & (page - 1), 0u);
  EXPECT_EQ(RoundUpToPage(1), page);
  EXPECT_EQ(RoundUpToPage(page), page);
  EXPECT_EQ(RoundUpToPage(page + 1), 2 * page);
}

TEST(SlabAllocatorTest, ReturnsWritablePageAlignedMemory) {
  for (bool populate : {false, true}) {
    for (bool huge : {false, true}) {
      MmapSlabAllocator alloc({.populate = populate, .huge_pages = huge});
      const size_t bytes = 64 * PageSize();
      StatusOr<void*> p = alloc.Allocate(bytes);
      ASSERT_TRUE(p.ok()) << p.status();
      EXPECT_EQ(reinterpret_cast<uintptr_t>(*p) % PageSize(), 0u);
      auto* b = static_cast<unsigned char*>(*p);
      EXPECT_EQ(b[0], 0);  // anonymous memory starts zeroed
      std::memset(b, 0xab, bytes);
      EXPECT_EQ(b[bytes - 1], 0xab);
      alloc.Deallocate(*p, bytes);
    }
  }
}

TEST(SlabAllocatorTest, RejectsSizesThatAreNotWholePages) {
  MmapSlabAllocator alloc;
  EXPECT_EQ(alloc.Allocate(0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(alloc.Allocate(PageSize() + 1).status().code(), StatusCode::kInvalidArgument);
}

TEST(SlabAllocatorTest, ImpossibleSizeIsResourceExhausted) {
  MmapSlabAllocator alloc;
  const size_t huge = (size_t{1} << 62) / PageSize() * PageSize();
  const StatusOr<void*> p = alloc.Allocate(huge);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kResourceExhausted);
}

TEST(SlabAllocatorTest, PoolKindNames) {
  EXPECT_EQ(PoolKindName(PoolKind::kKey), "K");
  EXPECT_EQ(PoolKindName(PoolKind::kValue), "V");
}

}  // namespace
}  // namespace attic
