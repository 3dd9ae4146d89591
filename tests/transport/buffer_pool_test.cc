// BufferPool: size classes, reuse without a new mapping, the cache limit, small sizes.
#include "transport/internal/buffer_pool.h"

#include <gtest/gtest.h>

#include <cstring>
#include <thread>

namespace attic::transport::internal {
namespace {

TEST(BufferPoolTest, SizeClassesAreQuarterStepsWithinAQuarterOfTheRequest) {
  EXPECT_EQ(BufferPool::SizeClass(1), BufferPool::kMinPooledBytes);
  EXPECT_EQ(BufferPool::SizeClass(64 << 10), size_t{64} << 10);
  EXPECT_EQ(BufferPool::SizeClass((64 << 10) + 1), size_t{80} << 10);
  EXPECT_EQ(BufferPool::SizeClass(size_t{1} << 20), size_t{1} << 20);
  EXPECT_EQ(BufferPool::SizeClass((size_t{1} << 20) + 100), size_t{1280} << 10);
  EXPECT_EQ(BufferPool::SizeClass(size_t{64} << 20), size_t{64} << 20);
  for (size_t n = 65536; n < (size_t{1} << 30); n = n * 3 / 2 + 7) {
    const size_t c = BufferPool::SizeClass(n);
    EXPECT_GE(c, n);
    EXPECT_LE(c, n + n / 4 + 1) << n;
  }
}

TEST(BufferPoolTest, ReleasedBuffersAreReusedWithoutANewMapping) {
  auto pool = BufferPool::Create(size_t{64} << 20);
  std::byte* first = nullptr;
  {
    auto b = pool->Get(size_t{1} << 20);
    ASSERT_NE(b, nullptr);
    first = b.get();
    std::memset(b.get(), 7, size_t{1} << 20);  // writable over its whole size
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.get()) % 64, 0u);
  }
  EXPECT_EQ(pool->cached_bytes(), size_t{1} << 20);
  auto again = pool->Get((size_t{1} << 20) - 1000);  // same class
  EXPECT_EQ(again.get(), first);
  EXPECT_EQ(pool->maps(), 1u);
  EXPECT_EQ(pool->cached_bytes(), 0u);
}

TEST(BufferPoolTest, SmallSizesAreNotPooled) {
  auto pool = BufferPool::Create(size_t{64} << 20);
  EXPECT_EQ(pool->Get(100), nullptr);
  EXPECT_EQ(pool->Get(BufferPool::kMinPooledBytes - 1), nullptr);
  EXPECT_NE(pool->Get(BufferPool::kMinPooledBytes), nullptr);
}

TEST(BufferPoolTest, CacheStaysWithinItsLimit) {
  auto pool = BufferPool::Create(size_t{4} << 20);
  {
    auto a = pool->Get(size_t{2} << 20);
    auto b = pool->Get(size_t{2} << 20);
    auto c = pool->Get(size_t{2} << 20);
  }
  EXPECT_LE(pool->cached_bytes(), size_t{4} << 20);
  { auto big = pool->Get(size_t{8} << 20); }  // larger than the whole cache: unmapped
  EXPECT_LE(pool->cached_bytes(), size_t{4} << 20);
  auto none = BufferPool::Create(0);
  { auto x = none->Get(size_t{1} << 20); }
  EXPECT_EQ(none->cached_bytes(), 0u);
}

TEST(BufferPoolTest, BuffersMayBeReleasedOnAnyThreadAndOutliveThePoolHandle) {
  auto pool = BufferPool::Create(size_t{16} << 20);
  std::shared_ptr<std::byte> b = pool->Get(size_t{1} << 20);
  pool.reset();  // the buffer keeps the pool alive
  std::thread t([b = std::move(b)]() mutable { b.reset(); });
  t.join();
}

}  // namespace
}  // namespace attic::transport::internal
