// A few threads that help callers run small sets of blocking tasks side by side: the tier's
// large writes flush every block shard they touched at once, each flush a call that blocks
// until RocksDB's background thread has written that shard (ssd_tier.cc). Private to
// kvstore/ssd.
//
//   TaskCrew crew(/*helpers=*/7);
//   std::vector<std::function<Status()>> flushes = ...;   // one per touched shard
//   std::vector<Status> results(flushes.size());
//   crew.RunAll(flushes, results);                        // returns when all have finished
//
// The caller works too: it runs its own tasks until none is left unclaimed, then waits for the
// ones helpers took. So a call never waits for a helper to come free (with every helper busy
// on other calls, it runs all its tasks itself), and concurrent calls share the helpers in the
// order they arrive. Helpers sleep on a condition variable while there is nothing to do.
//
// Thread safety: RunAll may be called from any number of threads at once. Tasks must not call
// RunAll on the same crew.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <span>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace attic::ssd_internal {

class TaskCrew {
 public:
  explicit TaskCrew(int helpers);
  // Joins the helpers. REQUIRES: no RunAll in progress.
  ~TaskCrew();
  TaskCrew(const TaskCrew&) = delete;
  TaskCrew& operator=(const TaskCrew&) = delete;

  // results[i] = tasks[i](). REQUIRES: results.size() == tasks.size().
  void RunAll(std::span<const std::function<Status()>> tasks, std::span<Status> results)
      EXCLUDES(mu_);

 private:
  struct Job {
    std::span<const std::function<Status()>> tasks;
    std::span<Status> results;
    // Guarded by TaskCrew::mu_: touched only in RunAll under the lock and in Claim and Run,
    // which REQUIRE it (an annotation here could not name the crew's mutex).
    size_t claimed = 0;   // tasks handed out
    size_t finished = 0;  // tasks done
  };

  void HelperLoop() EXCLUDES(mu_);
  // Claims the next task of job, dropping the job from the queue (if it is there) once all
  // are claimed. REQUIRES: job->claimed < job->tasks.size().
  size_t Claim(Job* job) REQUIRES(mu_);
  // Runs task i of job with mu_ released and records that it finished.
  void Run(Job* job, size_t i) REQUIRES(mu_);

  Mutex mu_;
  CondVar work_;                            // a job was queued, or stop_
  CondVar finished_;                        // some job's task finished
  std::deque<Job*> queue_ GUARDED_BY(mu_);  // jobs with unclaimed tasks
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> helpers_;
};

}  // namespace attic::ssd_internal
