// ValueResidency: where each V block's bytes are when the store has an SSD tier — in DRAM
// (resident) or only on SSD (spilled) — whether they are durable (and so may be spilled), and
// when they were last used (the spill order).
//
// A spilled block keeps its id and its slot in the V slab; only the slot's pages are given
// back to the kernel (madvise MADV_DONTNEED), so the slab is address space and DRAM use is the
// resident blocks. Reloading writes the bytes into the same slot (fresh pages fault in), so
// every reference to the block (a sequence's table, a prefix entry) stays valid.
//
//   ValueResidency res(&v_pool);            // the pool calls OnAllocate / OnFree
//   res.SetDurable(id);                     // written through to SSD
//   res.Touch(id);                          // used by attention now
//   int64_t n = res.SpillOldest(want);      // between requests, no views held
//   if (!res.resident(id)) { ... Claim(id), read into pool.block(id), FinishLoad(id, ok) ... }
//
// Thread safety: every method may be called from any thread. Spilling REQUIRES that nobody
// reads the spilled blocks' bytes (the store's Maintain contract); loads of one block are
// serialized by Claim.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "kvstore/internal/block_pool.h"

namespace attic::kv_internal {

class ValueResidency {
 public:
  explicit ValueResidency(BlockPool* v_pool);
  ~ValueResidency();
  ValueResidency(const ValueResidency&) = delete;
  ValueResidency& operator=(const ValueResidency&) = delete;

  // Pool hooks, called under the pool's mutex: a fresh block is resident and not durable.
  void OnAllocate(BlockId id);
  void OnFree(BlockId id);

  bool resident(BlockId id) const {
    return (slots_[id].flags.load(std::memory_order_acquire) & kSpilled) == 0;
  }
  bool durable(BlockId id) const {
    return (slots_[id].flags.load(std::memory_order_acquire) & kDurable) != 0;
  }
  void SetDurable(BlockId id) { slots_[id].flags.fetch_or(kDurable, std::memory_order_acq_rel); }
  void ClearDurable(BlockId id) {
    slots_[id].flags.fetch_and(static_cast<uint8_t>(~kDurable), std::memory_order_acq_rel);
  }
  void Touch(BlockId id) {
    slots_[id].last_use.store(clock_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  // Advances the use clock (once per request is enough: the order within one is irrelevant).
  void Tick() { clock_.fetch_add(1, std::memory_order_relaxed); }

  // A durable block whose bytes were never loaded (recovery): spilled from the start, its
  // slot's pages released.
  void MarkSpilled(BlockId id);

  // Load protocol for a spilled block. Claim returns true to the one caller that must load
  // it; false when it is resident (nothing to do) or another caller is loading it (then
  // WaitLoaded). FinishLoad(ok) publishes the bytes (resident) or gives the claim back.
  bool Claim(BlockId id);
  void FinishLoad(BlockId id, bool ok);
  // Returns when no load of id is in flight; true if it is resident then.
  bool WaitLoaded(BlockId id) const;

  // Spills up to `count` resident durable blocks in use, least recently used first. Returns
  // how many were spilled.
  int64_t SpillOldest(int64_t count);

  int64_t spilled_blocks() const { return spilled_.load(std::memory_order_relaxed); }
  int64_t resident_blocks() const { return pool_->used_blocks() - spilled_blocks(); }
  int64_t spilled_total() const { return spilled_total_.load(std::memory_order_relaxed); }

 private:
  static constexpr uint8_t kSpilled = 1;
  static constexpr uint8_t kDurable = 2;
  static constexpr uint8_t kLoading = 4;

  struct Slot {
    std::atomic<uint32_t> last_use{0};
    std::atomic<uint8_t> flags{0};
  };

  void ReleasePages(BlockId id) const;

  BlockPool* const pool_;
  std::unique_ptr<Slot[]> slots_;  // [pool capacity]
  std::atomic<uint32_t> clock_{1};
  std::atomic<int64_t> spilled_{0};
  std::atomic<int64_t> spilled_total_{0};
};

}  // namespace attic::kv_internal
