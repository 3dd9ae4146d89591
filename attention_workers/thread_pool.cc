#include "attention_workers/thread_pool.h"

#include <algorithm>
#include <chrono>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace attic {

namespace {

void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

}  // namespace

ThreadPool::ThreadPool(const ThreadPoolOptions& options)
    : spin_us_(std::max(0, options.spin_us)) {
  int n = options.num_threads;
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  workers_.reserve(static_cast<size_t>(n - 1));
  for (int i = 1; i < n; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    MutexLock l(&mu_);
    stop_ = true;
  }
  wake_.NotifyAll();
  for (auto& t : workers_) t.join();
}

void ThreadPool::Drain(Batch& batch) {
  for (int64_t i = batch.next.fetch_add(1, std::memory_order_relaxed); i < batch.n;
       i = batch.next.fetch_add(1, std::memory_order_relaxed)) {
    (*batch.fn)(i);
  }
}

ThreadPool::Batch* ThreadPool::OpenBatch() {
  for (Batch* b : open_) {
    if (b->next.load(std::memory_order_relaxed) < b->n) return b;
  }
  return nullptr;
}

void ThreadPool::WorkerLoop() {
  MutexLock l(&mu_);
  for (;;) {
    Batch* batch = nullptr;
    const auto ready = [&]() REQUIRES(mu_) {
      if (stop_) return true;
      batch = OpenBatch();
      return batch != nullptr;
    };
    if (!ready() && spin_us_ > 0) {
      // Poll (without the lock) until a batch is posted or the spin runs out.
      const uint64_t seen = posted_.load(std::memory_order_acquire);
      mu_.Unlock();
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us_);
      int polls = 0;
      while (posted_.load(std::memory_order_acquire) == seen) {
        CpuRelax();
        if (++polls % 64 == 0 && std::chrono::steady_clock::now() >= until) break;
      }
      mu_.Lock();
    }
    while (!ready()) {
      ++sleepers_;
      wake_.Wait(&mu_);
      --sleepers_;
    }
    if (stop_) return;
    ++batch->helpers;
    mu_.Unlock();
    Drain(*batch);
    mu_.Lock();
    // The caller waits for its helpers before its batch leaves its stack.
    if (--batch->helpers == 0) done_.NotifyAll();
  }
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  Batch batch;
  batch.fn = &fn;
  batch.n = n;
  int64_t sleepers = 0;
  {
    MutexLock l(&mu_);
    open_.push_back(&batch);
    posted_.fetch_add(1, std::memory_order_release);
    sleepers = sleepers_;
  }
  // The caller takes one task's share itself: wake at most n - 1 threads, and only sleeping
  // ones (spinning threads see posted_ change). A thread that goes to sleep after the push
  // finds the batch under the lock first.
  const int64_t wake = std::min(n - 1, sleepers);
  if (wake >= static_cast<int64_t>(workers_.size())) {
    wake_.NotifyAll();
  } else {
    for (int64_t i = 0; i < wake; ++i) wake_.NotifyOne();
  }
  Drain(batch);
  MutexLock l(&mu_);
  open_.erase(std::find(open_.begin(), open_.end(), &batch));
  while (batch.helpers != 0) done_.Wait(&mu_);
}

}  // namespace attic
