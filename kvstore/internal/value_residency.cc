#include "kvstore/internal/value_residency.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

namespace attic::kv_internal {

ValueResidency::ValueResidency(BlockPool* v_pool)
    : pool_(v_pool), slots_(new Slot[static_cast<size_t>(v_pool->capacity_blocks())]) {
  pool_->AttachResidency(this);
}

ValueResidency::~ValueResidency() { pool_->AttachResidency(nullptr); }

void ValueResidency::OnAllocate(BlockId id) {
  slots_[id].flags.store(0, std::memory_order_release);
  slots_[id].last_use.store(clock_.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

void ValueResidency::OnFree(BlockId id) {
  const uint8_t old = slots_[id].flags.exchange(0, std::memory_order_acq_rel);
  if ((old & kSpilled) != 0) spilled_.fetch_sub(1, std::memory_order_relaxed);
}

void ValueResidency::ReleasePages(BlockId id) const {
  // Only whole pages inside the slot: a neighbour sharing a page keeps its bytes.
  const size_t page = PageSize();
  const auto begin = reinterpret_cast<uintptr_t>(pool_->block(id));
  const uintptr_t end = begin + pool_->block_bytes();
  const uintptr_t first = (begin + page - 1) / page * page;
  const uintptr_t last = end / page * page;
  if (last <= first) {
    // No whole page: nothing to give back, but the bytes are gone all the same, so that a
    // read that forgot to reload finds zeros here as it would in a released page.
    std::memset(pool_->block(id), 0, pool_->block_bytes());
    return;
  }
  std::memset(reinterpret_cast<void*>(begin), 0, first - begin);
  std::memset(reinterpret_cast<void*>(last), 0, end - last);
  // Advice on memory the pool owns cannot fail short of a kernel bug; if it does, the pages
  // simply stay committed.
  (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

void ValueResidency::MarkSpilled(BlockId id) {
  ReleasePages(id);
  const uint8_t old = slots_[id].flags.exchange(kSpilled | kDurable, std::memory_order_acq_rel);
  if ((old & kSpilled) == 0) spilled_.fetch_add(1, std::memory_order_relaxed);
}

bool ValueResidency::Claim(BlockId id) {
  std::atomic<uint8_t>& f = slots_[id].flags;
  uint8_t cur = f.load(std::memory_order_acquire);
  for (;;) {
    if ((cur & kSpilled) == 0 || (cur & kLoading) != 0) return false;
    if (f.compare_exchange_weak(cur, static_cast<uint8_t>(cur | kLoading),
                                std::memory_order_acq_rel)) {
      return true;
    }
  }
}

void ValueResidency::FinishLoad(BlockId id, bool ok) {
  std::atomic<uint8_t>& f = slots_[id].flags;
  if (ok) {
    f.fetch_and(static_cast<uint8_t>(~(kSpilled | kLoading)), std::memory_order_acq_rel);
    spilled_.fetch_sub(1, std::memory_order_relaxed);
    Touch(id);
  } else {
    f.fetch_and(static_cast<uint8_t>(~kLoading), std::memory_order_acq_rel);
  }
}

bool ValueResidency::WaitLoaded(BlockId id) const {
  for (;;) {
    const uint8_t f = slots_[id].flags.load(std::memory_order_acquire);
    if ((f & kLoading) == 0) return (f & kSpilled) == 0;
    std::this_thread::yield();
  }
}

int64_t ValueResidency::SpillOldest(int64_t count) {
  if (count <= 0) return 0;
  std::vector<std::pair<uint32_t, BlockId>> candidates;
  pool_->ForEachInUse([&](BlockId id) {
    const uint8_t f = slots_[id].flags.load(std::memory_order_acquire);
    if (f == kDurable) {  // resident, durable, not loading
      candidates.emplace_back(slots_[id].last_use.load(std::memory_order_relaxed), id);
    }
  });
  const auto n = static_cast<size_t>(std::min<int64_t>(count, static_cast<int64_t>(candidates.size())));
  if (n == 0) return 0;
  // Older clock values first; the clock is 32-bit but a wrap needs 4 billion requests.
  std::nth_element(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(n - 1),
                   candidates.end());
  int64_t spilled = 0;
  for (size_t i = 0; i < n; ++i) {
    const BlockId id = candidates[i].second;
    uint8_t expected = kDurable;
    // Held as "loading" while the pages go, so that no Claim starts a load into them.
    if (!slots_[id].flags.compare_exchange_strong(expected, kDurable | kLoading,
                                                  std::memory_order_acq_rel)) {
      continue;  // freed or reloaded meanwhile
    }
    ReleasePages(id);
    slots_[id].flags.store(kDurable | kSpilled, std::memory_order_release);
    ++spilled;
  }
  spilled_.fetch_add(spilled, std::memory_order_relaxed);
  spilled_total_.fetch_add(spilled, std::memory_order_relaxed);
  return spilled;
}

}  // namespace attic::kv_internal
