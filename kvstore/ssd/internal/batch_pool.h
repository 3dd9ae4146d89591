// A few rocksdb::WriteBatch objects kept for reuse. A spill batch is megabytes; a fresh
// WriteBatch for each would fault in megabytes of new pages every time (about 1.5 ms per 4 MiB
// on a VM), while a cleared one keeps its buffer. Private to kvstore/ssd.
//
//   WriteBatchPool::Lease wb = pool.Take();
//   wb->Put(...);                      // returned to the pool when `wb` goes out of scope
//
// Thread safety: Take and the lease's return may be called from any thread (a short mutex).
#pragma once

#include <rocksdb/write_batch.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "common/thread_annotations.h"

namespace attic::ssd_internal {

class WriteBatchPool {
 public:
  // Batches kept at most, and the largest kept (bigger ones are freed after use).
  static constexpr size_t kMaxPooled = 4;
  static constexpr size_t kMaxPooledBytes = size_t{64} << 20;

  class Lease {
   public:
    Lease(WriteBatchPool* pool, std::unique_ptr<rocksdb::WriteBatch> batch)
        : pool_(pool), batch_(std::move(batch)) {}
    ~Lease() { pool_->Give(std::move(batch_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    rocksdb::WriteBatch* operator->() const { return batch_.get(); }
    rocksdb::WriteBatch* get() const { return batch_.get(); }

   private:
    WriteBatchPool* pool_;
    std::unique_ptr<rocksdb::WriteBatch> batch_;
  };

  // An empty batch; a pooled one when there is one.
  Lease Take();

 private:
  void Give(std::unique_ptr<rocksdb::WriteBatch> batch);

  Mutex mu_;
  std::vector<std::unique_ptr<rocksdb::WriteBatch>> free_ GUARDED_BY(mu_);
};

}  // namespace attic::ssd_internal
