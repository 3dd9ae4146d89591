#include "kvstore/slab_allocator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace attic {

std::string_view PoolKindName(PoolKind kind) { return kind == PoolKind::kKey ? "K" : "V"; }

size_t PageSize() {
  static const size_t page = [] {
    const long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<size_t>(p) : size_t{4096};
  }();
  return page;
}

size_t RoundUpToPage(size_t bytes) {
  const size_t page = PageSize();
  return (bytes + page - 1) / page * page;
}

StatusOr<void*> MmapSlabAllocator::Allocate(size_t bytes) {
  if (bytes == 0 || bytes % PageSize() != 0) {
    return InvalidArgumentError("slab size " + std::to_string(bytes) +
                                " is not a positive multiple of the page size " +
                                std::to_string(PageSize()));
  }
  // MAP_POPULATE would fault the pages in before madvise can ask for huge pages, so with huge
  // pages the slab is prefaulted by touching it after the advice instead.
  const bool map_populate = options_.populate && !options_.huge_pages;
  int flags = MAP_PRIVATE | MAP_ANONYMOUS;
  if (map_populate) flags |= MAP_POPULATE;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    return ResourceExhaustedError("mmap of a " + std::to_string(bytes) +
                                  "-byte slab failed: " + std::strerror(err));
  }
#ifdef MADV_HUGEPAGE
  // Best effort: kernels without THP (or with it disabled) answer EINVAL, which costs nothing.
  if (options_.huge_pages) (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
#ifdef MADV_NOHUGEPAGE
  // Small pages even where THP is "always": callers that release pages piecemeal ask for it.
  if (!options_.huge_pages) (void)madvise(p, bytes, MADV_NOHUGEPAGE);
#endif
  if (options_.populate && !map_populate) {
    auto* bytes_p = static_cast<volatile unsigned char*>(p);
    for (size_t off = 0; off < bytes; off += PageSize()) bytes_p[off] = 0;
  }
  return p;
}

void MmapSlabAllocator::Deallocate(void* p, size_t bytes) {
  if (p != nullptr) (void)munmap(p, bytes);
}

}  // namespace attic
