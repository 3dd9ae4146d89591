// SlabAllocator: where the KV store's big page-aligned slabs come from.
//
// Each block pool asks for one slab at startup and carves it into fixed-size blocks. The hook
// exists so that the transport can hand in memory it has already registered for RDMA, or
// register the slabs the store reports through KvStore::memory_regions().
//
//   MmapSlabAllocator alloc({.populate = true});
//   ASSIGN_OR_RETURN(void* slab, alloc.Allocate(64 << 20));   // page aligned
//   ...
//   alloc.Deallocate(slab, 64 << 20);
//
// Thread safety: implementations must allow concurrent calls (the store calls them only while
// opening and destroying, but several stores may share one allocator).
#pragma once

#include <cstddef>
#include <string_view>

#include "common/status.h"

namespace attic {

// Which pool a slab or block belongs to. K and V live in separate pools so that values can
// move to SSD while keys stay in DRAM.
enum class PoolKind : int { kKey = 0, kValue = 1 };

// "K" or "V".
std::string_view PoolKindName(PoolKind kind);

// One contiguous slab the transport may register with the NIC.
struct MemoryRegion {
  void* base = nullptr;  // page aligned
  size_t bytes = 0;      // a multiple of the page size
  PoolKind kind = PoolKind::kKey;
};

class SlabAllocator {
 public:
  virtual ~SlabAllocator() = default;

  // Returns `bytes` bytes of zero-or-garbage memory, aligned to the system page size.
  // REQUIRES: bytes > 0 and a multiple of the page size.
  // ResourceExhausted when the memory cannot be obtained.
  virtual StatusOr<void*> Allocate(size_t bytes) = 0;

  // Gives back a slab. REQUIRES: p and bytes are exactly what one Allocate call returned/took.
  virtual void Deallocate(void* p, size_t bytes) = 0;
};

struct MmapSlabAllocatorOptions {
  // Prefault every page at allocation (MAP_POPULATE). Slower start and memory committed up
  // front, but no page faults on the data path and an early failure when RAM is short.
  // Default: false.
  bool populate = false;
  // Ask for transparent huge pages (madvise(MADV_HUGEPAGE), best effort: ignored when the
  // kernel refuses). Fewer TLB misses when kernels stream blocks. false asks for small pages
  // (MADV_NOHUGEPAGE), for slabs whose pages are released block by block (the V slab of a
  // store with an SSD tier). Default: true.
  bool huge_pages = true;
};

// Private anonymous mmap. Stateless apart from its options.
class MmapSlabAllocator final : public SlabAllocator {
 public:
  explicit MmapSlabAllocator(MmapSlabAllocatorOptions options = {}) : options_(options) {}

  StatusOr<void*> Allocate(size_t bytes) override;
  void Deallocate(void* p, size_t bytes) override;

 private:
  MmapSlabAllocatorOptions options_;
};

// The system page size in bytes (4096 on x86-64 Linux).
size_t PageSize();

// bytes rounded up to a multiple of PageSize().
size_t RoundUpToPage(size_t bytes);

}  // namespace attic
