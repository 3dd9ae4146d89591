// A fixed pool of threads for the attention worker's compute: a batch of (sequence, layer,
// KV head) tasks runs as one ParallelFor.
//
//   ThreadPool pool(ThreadPoolOptions{.num_threads = 0});      // 0 = one per core
//   pool.ParallelFor(tasks.size(), [&](int64_t i) { Run(tasks[i]); });
//
// The calling thread works too, so a pool of N threads starts N-1 workers. Tasks are handed
// out one index at a time from an atomic counter (dynamic balance: tasks differ in length).
// Workers sleep on a condition variable between batches; nothing spins while idle.
//
// Thread safety: ParallelFor may be called from several threads; calls run one at a time, in
// the order they take the pool's lock. fn must not call ParallelFor on the same pool.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace attic {

struct ThreadPoolOptions {
  // Threads that run tasks, the caller of ParallelFor included. 0 = std::thread's
  // hardware_concurrency(). More threads than cores only adds contention.
  int num_threads = 0;
};

class ThreadPool {
 public:
  explicit ThreadPool(const ThreadPoolOptions& options = {});
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(i) for every i in [0, n) and returns when all have finished.
  void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn);

 private:
  void WorkerLoop();
  void Drain(const std::function<void(int64_t)>& fn, int64_t n);

  std::mutex call_mu_;  // serializes ParallelFor calls
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  // Guarded by mu_ (fn_ is non-null only while a ParallelFor is running):
  uint64_t generation_ = 0;
  int active_ = 0;
  bool stop_ = false;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  // Claimed with fetch_add by every participant.
  std::atomic<int64_t> next_{0};
  std::vector<std::thread> workers_;
};

}  // namespace attic
