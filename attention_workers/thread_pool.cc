#include "attention_workers/thread_pool.h"

namespace attic {

ThreadPool::ThreadPool(const ThreadPoolOptions& options) {
  int n = options.num_threads;
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  workers_.reserve(static_cast<size_t>(n - 1));
  for (int i = 1; i < n; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::Drain(const std::function<void(int64_t)>& fn, int64_t n) {
  for (int64_t i = next_.fetch_add(1, std::memory_order_relaxed); i < n;
       i = next_.fetch_add(1, std::memory_order_relaxed)) {
    fn(i);
  }
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    wake_.wait(l, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    if (fn_ == nullptr) continue;  // woke after that batch had already finished
    const std::function<void(int64_t)>* fn = fn_;
    const int64_t n = n_;
    ++active_;
    l.unlock();
    Drain(*fn, n);
    l.lock();
    if (--active_ == 0) done_.notify_all();
  }
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  std::lock_guard<std::mutex> call(call_mu_);
  if (workers_.empty() || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    fn_ = &fn;
    n_ = n;
    next_.store(0, std::memory_order_relaxed);
    ++generation_;
    ++active_;  // the caller
  }
  wake_.notify_all();
  Drain(fn, n);
  std::unique_lock<std::mutex> l(mu_);
  --active_;
  done_.wait(l, [&] { return active_ == 0; });
  fn_ = nullptr;
}

}  // namespace attic
