#include "transport/internal/buffer_pool.h"

#include <sys/mman.h>

#include <bit>
#include <utility>

namespace attic::transport::internal {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// Anonymous memory with every page faulted in; from 2 MiB on, transparent huge pages are
// asked for first (a 64 MiB buffer is then 32 TLB entries, not 16384, for the copies into it).
std::byte* MapPrefaulted(size_t size) {
  const bool huge = size >= kHugePage;
  void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | (huge ? 0 : MAP_POPULATE), -1, 0);
  if (m == MAP_FAILED) return nullptr;
  auto* p = static_cast<std::byte*>(m);
  if (huge) {
    (void)madvise(p, size, MADV_HUGEPAGE);  // advice only: fine if THP is off
#ifdef MADV_POPULATE_WRITE
    if (madvise(p, size, MADV_POPULATE_WRITE) == 0) return p;
#endif
    for (size_t i = 0; i < size; i += 4096) p[i] = std::byte{0};  // older kernels
  }
  return p;
}

}  // namespace

std::shared_ptr<BufferPool> BufferPool::Create(size_t max_cached_bytes) {
  return std::shared_ptr<BufferPool>(new BufferPool(max_cached_bytes));
}

BufferPool::~BufferPool() {
  // Only reached once no buffer is out (each holds the pool).
  MutexLock lock(&mu_);
  for (auto& [size, list] : free_) {
    for (std::byte* p : list) munmap(p, size);
  }
}

size_t BufferPool::SizeClass(size_t bytes) {
  if (bytes <= kMinPooledBytes) return kMinPooledBytes;
  // Steps of a quarter of the power of two below: 64K, 80K, 96K, 112K, 128K, 160K, ...
  const size_t step = std::bit_floor(bytes - 1) / 4;
  return (bytes + step - 1) / step * step;
}

std::shared_ptr<std::byte> BufferPool::Get(size_t bytes) {
  if (bytes < kMinPooledBytes) return nullptr;
  const size_t size = SizeClass(bytes);
  std::byte* p = nullptr;
  {
    MutexLock lock(&mu_);
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();  // the most recently released: likeliest still in cache
      it->second.pop_back();
      cached_bytes_ -= size;
    } else {
      ++maps_;
    }
  }
  if (p == nullptr) {
    p = MapPrefaulted(size);
    if (p == nullptr) return nullptr;
  }
  return std::shared_ptr<std::byte>(
      p, [pool = shared_from_this(), size](std::byte* b) { pool->Release(b, size); });
}

void BufferPool::Release(std::byte* p, size_t size) {
  std::vector<std::pair<std::byte*, size_t>> unmap;
  {
    MutexLock lock(&mu_);
    if (size > max_cached_bytes_) {
      unmap.emplace_back(p, size);
    } else {
      // Make room by dropping older buffers of other sizes, smallest classes first.
      for (auto it = free_.begin(); cached_bytes_ + size > max_cached_bytes_;) {
        if (it->second.empty()) {
          it = free_.erase(it);
          continue;
        }
        unmap.emplace_back(it->second.front(), it->first);
        it->second.erase(it->second.begin());
        cached_bytes_ -= it->first;
      }
      free_[size].push_back(p);
      cached_bytes_ += size;
    }
  }
  for (auto [q, n] : unmap) munmap(q, n);
}

size_t BufferPool::cached_bytes() const {
  MutexLock lock(&mu_);
  return cached_bytes_;
}

size_t BufferPool::maps() const {
  MutexLock lock(&mu_);
  return maps_;
}

}  // namespace attic::transport::internal
