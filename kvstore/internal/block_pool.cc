#include "kvstore/internal/block_pool.h"

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>

#include "common/hash.h"
#include "kvstore/internal/value_residency.h"

namespace attic::kv_internal {

StatusOr<std::unique_ptr<BlockPool>> BlockPool::Create(PoolKind kind, size_t block_bytes,
                                                       int64_t num_blocks, SlabAllocator* allocator,
                                                       bool touch_pages) {
  const std::string name(PoolKindName(kind));
  if (allocator == nullptr) return InvalidArgumentError(name + " pool: no slab allocator");
  if (block_bytes == 0 || block_bytes > (size_t{1} << 30)) {
    return InvalidArgumentError(name + " pool: block_bytes = " + std::to_string(block_bytes) +
                                " is not in [1, 2^30]");
  }
  if (num_blocks < 1 || num_blocks > kMaxPoolBlocks) {
    return InvalidArgumentError(name + " pool: " + std::to_string(num_blocks) +
                                " blocks is not in [1, " + std::to_string(kMaxPoolBlocks) + "]");
  }
  const auto n = static_cast<size_t>(num_blocks);
  if (n > SIZE_MAX / 2 / block_bytes) {
    return InvalidArgumentError(name + " pool: " + std::to_string(num_blocks) + " blocks of " +
                                std::to_string(block_bytes) + " bytes overflow the address space");
  }
  const size_t slab_bytes = RoundUpToPage(n * block_bytes);
  ASSIGN_OR_RETURN(void* slab, allocator->Allocate(slab_bytes));
  if (slab == nullptr || reinterpret_cast<uintptr_t>(slab) % PageSize() != 0) {
    if (slab != nullptr) allocator->Deallocate(slab, slab_bytes);
    return InvalidArgumentError(name + " pool: the slab allocator returned memory that is not " +
                                "page aligned");
  }
  if (touch_pages) {
    auto* p = static_cast<volatile unsigned char*>(slab);
    for (size_t off = 0; off < slab_bytes; off += PageSize()) p[off] = 0;
  }
  return std::unique_ptr<BlockPool>(new BlockPool(
      kind, block_bytes, num_blocks, static_cast<std::byte*>(slab), slab_bytes, allocator));
}

BlockPool::BlockPool(PoolKind kind, size_t block_bytes, int64_t num_blocks, std::byte* base,
                     size_t slab_bytes, SlabAllocator* allocator)
    : kind_(kind),
      block_bytes_(block_bytes),
      num_blocks_(num_blocks),
      base_(base),
      slab_bytes_(slab_bytes),
      allocator_(allocator) {
  MutexLock l(&mu_);
  free_.reserve(static_cast<size_t>(num_blocks));
  // Pushed in reverse so that allocation hands out low ids first (the slab fills front to back).
  for (int64_t i = num_blocks - 1; i >= 0; --i) free_.push_back(static_cast<BlockId>(i));
  in_use_.assign(static_cast<size_t>(num_blocks), false);
  free_count_.store(num_blocks, std::memory_order_relaxed);
}

BlockPool::~BlockPool() { allocator_->Deallocate(base_, slab_bytes_); }

bool BlockPool::TryAllocate(size_t n, std::vector<BlockId>* out) {
  MutexLock l(&mu_);
  if (free_.size() < n) return false;
  for (size_t i = 0; i < n; ++i) {
    const BlockId id = free_.back();
    free_.pop_back();
    in_use_[id] = true;
    if (residency_ != nullptr) residency_->OnAllocate(id);
    out->push_back(id);
  }
  free_count_.store(static_cast<int64_t>(free_.size()), std::memory_order_relaxed);
  return true;
}

void BlockPool::Free(std::span<const BlockId> ids) {
  MutexLock l(&mu_);
  for (const BlockId id : ids) {
    if (static_cast<int64_t>(id) >= num_blocks_ || !in_use_[id]) {
      bad_frees_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    in_use_[id] = false;
    if (residency_ != nullptr) residency_->OnFree(id);
    free_.push_back(id);
  }
  free_count_.store(static_cast<int64_t>(free_.size()), std::memory_order_relaxed);
}

void BlockPool::AttachResidency(ValueResidency* residency) {
  MutexLock l(&mu_);
  residency_ = residency;
  residency_view_.store(residency, std::memory_order_release);
}

bool BlockPool::resident(BlockId id) const {
  const ValueResidency* r = residency_view_.load(std::memory_order_acquire);
  return r == nullptr || r->resident(id);
}

void BlockPool::ForEachInUse(const std::function<void(BlockId)>& fn) const {
  MutexLock l(&mu_);
  for (size_t id = 0; id < in_use_.size(); ++id) {
    if (in_use_[id]) fn(static_cast<BlockId>(id));
  }
}

namespace {

std::string Hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08" PRIx32, v);
  return buf;
}

std::string Mismatch(const BlockPool& pool, BlockId id, uint32_t stored, size_t bytes) {
  const uint32_t computed = Crc32c(pool.block(id), bytes);
  if (computed == stored) return "";
  return std::string(PoolKindName(pool.kind())) + " block " + std::to_string(id) +
         " checksum mismatch (stored " + Hex32(stored) + ", computed " + Hex32(computed) + ")";
}

}  // namespace

std::string CheckBlockPair(const BlockPool& k_pool, const BlockPool& v_pool, const BlockRef& ref,
                           size_t bytes) {
  std::string bad = Mismatch(k_pool, ref.k, ref.k_crc, bytes);
  // A spilled value has no DRAM bytes to check: its reload verifies it.
  if (bad.empty() && v_pool.resident(ref.v)) bad = Mismatch(v_pool, ref.v, ref.v_crc, bytes);
  return bad;
}

}  // namespace attic::kv_internal
