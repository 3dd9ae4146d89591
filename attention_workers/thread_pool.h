// A fixed pool of threads for the attention worker's compute: a batch of (sequence, layer,
// KV head) tasks runs as one ParallelFor.
//
//   ThreadPool pool(ThreadPoolOptions{.num_threads = 0});      // 0 = one per core
//   pool.ParallelFor(tasks.size(), [&](int64_t i) { Run(tasks[i]); });
//
// The calling thread works on its own batch too, so a pool of N threads starts N-1 workers.
// Several threads may call ParallelFor at once (the worker runs requests of different
// sequences concurrently): their batches are all open together, and an idle pool thread
// takes tasks from the oldest batch that still has any, so an early request finishes first
// while a later one fills the cores the early one leaves idle. Tasks are handed out one index
// at a time from each batch's atomic counter (dynamic balance: tasks differ in length).
// Threads sleep on a condition variable between batches. With spin_us > 0 a thread that runs
// out of work first polls for a new batch that long: a decode step's batch then starts on
// every core without a futex wake per thread (tens of microseconds each on a VM, against
// a batch of a few hundred). Spinning costs a core's time for spin_us after each batch, so it
// is for dedicated cores (the worker's busy_poll_us), not oversubscribed ones.
//
// Thread safety: ParallelFor may be called from any thread, concurrently; fn may itself call
// ParallelFor on the same pool (the nested caller drains its own batch).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"

namespace attic {

struct ThreadPoolOptions {
  // Threads that run tasks, the caller of ParallelFor included. 0 = std::thread's
  // hardware_concurrency(). More threads than cores only adds contention.
  int num_threads = 0;
  // Poll for new work this long before sleeping, microseconds; 0 = sleep at once.
  int spin_us = 0;
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
  // One ParallelFor call, on its caller's stack.
  struct Batch {
    const std::function<void(int64_t)>* fn = nullptr;
    int64_t n = 0;
    std::atomic<int64_t> next{0};  // claimed with fetch_add by every participant
    int helpers = 0;               // pool threads working on it; guarded by the pool's mu_
  };

  void WorkerLoop();
  static void Drain(Batch& batch);
  // The oldest open batch with unclaimed tasks, or nullptr.
  Batch* OpenBatch() REQUIRES(mu_);

  const int spin_us_;
  // Batches posted so far: a spinning thread watches it change.
  std::atomic<uint64_t> posted_{0};
  Mutex mu_;
  int sleepers_ GUARDED_BY(mu_) = 0;  // pool threads waiting on wake_
  CondVar wake_;
  CondVar done_;
  std::vector<Batch*> open_ GUARDED_BY(mu_);  // in call order
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace attic
