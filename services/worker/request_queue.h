// RequestQueue: the worker's admission and concurrency control. Requests of different
// sequences run at once on a set of runner threads; requests that share a sequence run one
// after another in arrival order (an append before the attend that reads it, a close after
// both). An exclusive job (the SSD tier's upkeep, which may drop value pages that running
// requests read) runs alone: once asked for, no new request starts until it has run.
//
//   RequestQueue queue({.runners = 4, .max_queued = 1024}, "w1");
//   Status admitted = queue.Submit({.sequences = {7}, .deadline = d, .cost_class = 5,
//                                   .run = [..] { ... }, .expire = [..](Status s) { ... }});
//   if (!admitted.ok()) responder.Fail(admitted);        // RESOURCE_EXHAUSTED: shed now
//
// Admission: a request is refused at Submit with RESOURCE_EXHAUSTED when max_queued requests
// already wait, or when the work queued ahead of it (each queued request's cost class's
// recent service time, an exponentially weighted mean, over the runners) would keep it
// waiting past its deadline. Jobs with `bypass` (closing a sequence) are never refused. A
// request whose deadline passes while it waits gets expire(DEADLINE_EXCEEDED) instead of run.
//
// Thread safety: every method may be called from any thread. run and expire are called on a
// runner thread, never with the queue's lock held.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "transport/message.h"

namespace attic::worker_internal {

struct RequestQueueOptions {
  // Threads running requests. Each request may spread its work over the compute pool, so a
  // few runners keep the cores busy; more let more small requests overlap.
  int runners = 4;
  // Requests waiting at most (admission refuses beyond it). Bypass jobs do not count.
  int max_queued = 1024;
  // Cost classes (e.g. one per method): their service times are averaged apart.
  int cost_classes = 16;
};

struct QueuedJob {
  std::vector<uint64_t> sequences;  // run in arrival order with every job sharing one
  transport::Deadline deadline = transport::Deadline::max();
  int cost_class = 0;   // in [0, cost_classes)
  bool bypass = false;  // never refused by admission
  std::function<void()> run;
  std::function<void(Status)> expire;  // the deadline passed in the queue, or shutdown
};

class RequestQueue {
 public:
  RequestQueue(const RequestQueueOptions& options, std::string name);
  // Stops the runners after the jobs running now; the waiting ones get expire(UNAVAILABLE).
  ~RequestQueue();
  RequestQueue(const RequestQueue&) = delete;
  RequestQueue& operator=(const RequestQueue&) = delete;

  // Queues job, or refuses it (RESOURCE_EXHAUSTED, UNAVAILABLE once stopping) without
  // queueing, in which case nothing of job is called.
  Status Submit(QueuedJob job);

  // Runs fn once no request runs; no request starts between this call and fn's end. Several
  // calls before it runs collapse into one (the last fn).
  void RunExclusive(std::function<void()> fn);

  // Blocks until nothing is queued or running, or the deadline passes (false then).
  bool WaitIdle(transport::Deadline deadline);
  int64_t queued() const;
  int64_t running() const;
  int runners() const { return static_cast<int>(threads_.size()); }
  // Requests refused by admission since the start.
  uint64_t refused() const;

 private:
  struct Entry {
    QueuedJob job;
  };

  void RunnerLoop();
  // The index in queue_ of the first job free to start (no sequence shared with a running job
  // or an earlier waiting one), or -1.
  int64_t NextRunnable() REQUIRES(mu_);
  double PredictedWaitSeconds() const REQUIRES(mu_);
  void Observe(int cost_class, double seconds) REQUIRES(mu_);
  bool Idle() const REQUIRES(mu_) {
    return queue_.empty() && running_ == 0 && !exclusive_;
  }

  const RequestQueueOptions options_;
  const std::string name_;

  mutable Mutex mu_;
  CondVar wake_;
  CondVar idle_;
  std::deque<Entry> queue_ GUARDED_BY(mu_);
  // Sequences of the running jobs, with how many running jobs hold each (a job names a
  // sequence once; two running jobs never share one).
  std::unordered_map<uint64_t, int> busy_ GUARDED_BY(mu_);
  int running_ GUARDED_BY(mu_) = 0;
  int64_t admitted_waiting_ GUARDED_BY(mu_) = 0;  // queued jobs without bypass
  std::function<void()> exclusive_ GUARDED_BY(mu_);
  bool exclusive_running_ GUARDED_BY(mu_) = false;
  std::vector<double> mean_seconds_ GUARDED_BY(mu_);  // [cost_classes]; 0 = not seen yet
  uint64_t refused_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace attic::worker_internal
