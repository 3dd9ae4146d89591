// BufferPool: reusable receive buffers for large messages, so that a stream of big requests or
// replies does not pay for a fresh allocation and its page faults (a first touch of every
// 4 KiB page, about as costly as the copy itself) on every message.
//
//   auto pool = BufferPool::Create(256 << 20);
//   std::shared_ptr<std::byte> b = pool->Get(5 << 20);   // >= 5 MiB, page aligned, faulted in
//   ...                                                  // last owner gone: back to the pool
//
// Buffers of at least kMinPooledBytes are mapped pre-faulted (transparent huge pages asked
// for from 2 MiB) and sized in quarter steps of a power of two (at most 25% slack); smaller
// requests return null (the caller uses the heap, which serves small sizes from reused
// memory anyway). Released buffers are kept,
// newest first, while the pool holds at most `max_cached_bytes`; beyond that they are unmapped.
// Buffers are not registered with UCX: shared memory (CMA) and TCP need no registration, and
// on RDMA UCX's registration cache keeps the registration of a reused address.
//
// Thread safety: Get and the release of a buffer may happen on any thread (one short mutex
// around the free lists). A buffer may outlive the pool's creator: it holds the pool.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <vector>

#include "common/thread_annotations.h"

namespace attic::transport::internal {

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  static constexpr size_t kMinPooledBytes = size_t{64} << 10;

  // max_cached_bytes = 0 disables caching (every buffer is unmapped when released).
  static std::shared_ptr<BufferPool> Create(size_t max_cached_bytes);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A buffer of at least `bytes`, page aligned and pre-faulted; null if bytes <
  // kMinPooledBytes or the memory cannot be mapped. Releasing the last reference returns it.
  std::shared_ptr<std::byte> Get(size_t bytes) EXCLUDES(mu_);

  // The size Get actually maps for `bytes` (>= bytes, quarter steps of a power of two).
  static size_t SizeClass(size_t bytes);

  // For tests and metrics.
  size_t cached_bytes() const EXCLUDES(mu_);
  size_t maps() const EXCLUDES(mu_);  // mmap calls so far (misses)

 private:
  explicit BufferPool(size_t max_cached_bytes) : max_cached_bytes_(max_cached_bytes) {}
  void Release(std::byte* p, size_t size) EXCLUDES(mu_);

  const size_t max_cached_bytes_;
  mutable Mutex mu_;
  std::map<size_t, std::vector<std::byte*>> free_ GUARDED_BY(mu_);  // by size class
  size_t cached_bytes_ GUARDED_BY(mu_) = 0;
  size_t maps_ GUARDED_BY(mu_) = 0;
};

}  // namespace attic::transport::internal
