#include "services/worker/request_queue.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <unordered_set>
#include <utility>

namespace attic::worker_internal {

namespace {

// Weight of the newest service time in a cost class's mean.
constexpr double kMeanWeight = 0.2;

double SecondsUntil(transport::Deadline deadline) {
  return std::chrono::duration<double>(deadline - transport::Clock::now()).count();
}

}  // namespace

RequestQueue::RequestQueue(const RequestQueueOptions& options, std::string name)
    : options_(options), name_(std::move(name)) {
  {
    MutexLock lock(&mu_);
    mean_seconds_.assign(static_cast<size_t>(std::max(1, options.cost_classes)), 0.0);
  }
  const int runners = std::max(1, options.runners);
  threads_.reserve(static_cast<size_t>(runners));
  for (int i = 0; i < runners; ++i) threads_.emplace_back([this] { RunnerLoop(); });
}

RequestQueue::~RequestQueue() {
  std::deque<Entry> orphans;
  {
    MutexLock lock(&mu_);
    stop_ = true;
    orphans.swap(queue_);
    admitted_waiting_ = 0;
  }
  wake_.NotifyAll();
  for (std::thread& t : threads_) t.join();
  for (Entry& e : orphans) {
    if (e.job.expire) e.job.expire(UnavailableError("worker " + name_ + " is shutting down"));
  }
}

Status RequestQueue::Submit(QueuedJob job) {
  MutexLock lock(&mu_);
  if (stop_) return UnavailableError("worker " + name_ + " is shutting down");
  if (!job.bypass) {
    if (admitted_waiting_ >= options_.max_queued) {
      ++refused_;
      return ResourceExhaustedError("worker " + name_ + " has " +
                                    std::to_string(admitted_waiting_) +
                                    " requests queued (its limit); retry later or elsewhere");
    }
    const double wait = PredictedWaitSeconds();
    const double left = SecondsUntil(job.deadline);
    if (wait > left) {
      ++refused_;
      return ResourceExhaustedError(
          "worker " + name_ + " would start the request in about " +
          std::to_string(static_cast<int64_t>(wait * 1e3)) + " ms (" +
          std::to_string(admitted_waiting_) + " queued), after its deadline (" +
          std::to_string(static_cast<int64_t>(std::max(0.0, left) * 1e3)) + " ms left)");
    }
    ++admitted_waiting_;
  }
  queue_.push_back(Entry{std::move(job)});
  wake_.NotifyOne();
  return OkStatus();
}

void RequestQueue::RunExclusive(std::function<void()> fn) {
  {
    MutexLock lock(&mu_);
    if (stop_) return;
    exclusive_ = std::move(fn);
  }
  wake_.NotifyOne();
}

double RequestQueue::PredictedWaitSeconds() const {
  double total = 0;
  for (const Entry& e : queue_) {
    if (e.job.bypass) continue;
    total += mean_seconds_[static_cast<size_t>(e.job.cost_class) % mean_seconds_.size()];
  }
  return total / static_cast<double>(std::max<size_t>(1, threads_.size()));
}

void RequestQueue::Observe(int cost_class, double seconds) {
  double& mean = mean_seconds_[static_cast<size_t>(cost_class) % mean_seconds_.size()];
  mean = mean == 0.0 ? seconds : (1.0 - kMeanWeight) * mean + kMeanWeight * seconds;
}

int64_t RequestQueue::NextRunnable() {
  if (queue_.empty()) return -1;
  const auto free_of = [](const std::vector<uint64_t>& seqs, const auto& set) {
    return std::none_of(seqs.begin(), seqs.end(), [&](uint64_t s) { return set.count(s) > 0; });
  };
  // The common case: the oldest waiting job is free.
  if (free_of(queue_.front().job.sequences, busy_)) return 0;
  std::unordered_set<uint64_t> later;  // sequences an earlier waiting job claims first
  for (size_t i = 0; i < queue_.size(); ++i) {
    const std::vector<uint64_t>& seqs = queue_[i].job.sequences;
    if (free_of(seqs, busy_) && free_of(seqs, later)) return static_cast<int64_t>(i);
    later.insert(seqs.begin(), seqs.end());
  }
  return -1;
}

void RequestQueue::RunnerLoop() {
  pthread_setname_np(pthread_self(), "attic-runner");
  MutexLock lock(&mu_);
  while (true) {
    int64_t next = -1;
    const auto ready = [&]() REQUIRES(mu_) {
      if (stop_) return true;
      if (exclusive_running_) return false;
      if (exclusive_) return running_ == 0;
      next = NextRunnable();
      return next >= 0;
    };
    while (!ready()) wake_.Wait(&mu_);
    if (stop_) return;
    if (exclusive_) {
      std::function<void()> fn = std::move(exclusive_);
      exclusive_ = nullptr;
      exclusive_running_ = true;
      mu_.Unlock();
      fn();
      mu_.Lock();
      exclusive_running_ = false;
      wake_.NotifyAll();
      if (Idle()) idle_.NotifyAll();
      continue;
    }
    Entry entry = std::move(queue_[static_cast<size_t>(next)]);
    queue_.erase(queue_.begin() + next);
    if (!entry.job.bypass) --admitted_waiting_;
    for (uint64_t s : entry.job.sequences) ++busy_[s];
    ++running_;
    // Another runner may start the next free job at once.
    if (!queue_.empty()) wake_.NotifyOne();
    mu_.Unlock();
    const auto start = transport::Clock::now();
    if (start > entry.job.deadline) {
      if (entry.job.expire) {
        entry.job.expire(DeadlineExceededError("expired in the queue of worker " + name_));
      }
    } else {
      entry.job.run();
    }
    const double seconds =
        std::chrono::duration<double>(transport::Clock::now() - start).count();
    const int cost_class = entry.job.cost_class;
    std::vector<uint64_t> sequences = std::move(entry.job.sequences);
    entry.job = QueuedJob{};  // the job's captures go before the lock is taken
    mu_.Lock();
    Observe(cost_class, seconds);
    for (uint64_t s : sequences) {
      auto it = busy_.find(s);
      if (--it->second == 0) busy_.erase(it);
    }
    --running_;
    wake_.NotifyAll();
    if (Idle()) idle_.NotifyAll();
  }
}

bool RequestQueue::WaitIdle(transport::Deadline deadline) {
  MutexLock lock(&mu_);
  while (!Idle()) {
    if (!idle_.WaitUntil(&mu_, deadline)) return Idle();
  }
  return true;
}

int64_t RequestQueue::queued() const {
  MutexLock lock(&mu_);
  return static_cast<int64_t>(queue_.size());
}

int64_t RequestQueue::running() const {
  MutexLock lock(&mu_);
  return running_;
}

uint64_t RequestQueue::refused() const {
  MutexLock lock(&mu_);
  return refused_;
}

}  // namespace attic::worker_internal
