#include "kvstore/ssd/internal/batch_pool.h"

namespace attic::ssd_internal {

WriteBatchPool::Lease WriteBatchPool::Take() {
  std::unique_ptr<rocksdb::WriteBatch> batch;
  {
    MutexLock lock(&mu_);
    if (!free_.empty()) {
      batch = std::move(free_.back());
      free_.pop_back();
    }
  }
  if (batch == nullptr) batch = std::make_unique<rocksdb::WriteBatch>();
  return Lease(this, std::move(batch));
}

void WriteBatchPool::Give(std::unique_ptr<rocksdb::WriteBatch> batch) {
  if (batch == nullptr || batch->GetDataSize() > kMaxPooledBytes) return;
  batch->Clear();  // keeps the buffer's capacity
  MutexLock lock(&mu_);
  if (free_.size() < kMaxPooled) free_.push_back(std::move(batch));
}

}  // namespace attic::ssd_internal
