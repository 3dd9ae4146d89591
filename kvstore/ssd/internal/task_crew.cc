#include "kvstore/ssd/internal/task_crew.h"

#include <algorithm>

namespace attic::ssd_internal {

TaskCrew::TaskCrew(int helpers) {
  helpers_.reserve(static_cast<size_t>(std::max(0, helpers)));
  for (int i = 0; i < helpers; ++i) helpers_.emplace_back([this] { HelperLoop(); });
}

TaskCrew::~TaskCrew() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  work_.NotifyAll();
  for (std::thread& t : helpers_) t.join();
}

size_t TaskCrew::Claim(Job* job) {
  const size_t i = job->claimed++;
  if (job->claimed == job->tasks.size()) {
    const auto it = std::find(queue_.begin(), queue_.end(), job);
    if (it != queue_.end()) queue_.erase(it);
  }
  return i;
}

void TaskCrew::Run(Job* job, size_t i) {
  mu_.Unlock();
  Status s = job->tasks[i]();
  mu_.Lock();
  job->results[i] = std::move(s);
  ++job->finished;
  // The job may be gone as soon as the lock is released: only the caller touches it after its
  // last task finished.
  finished_.NotifyAll();
}

void TaskCrew::RunAll(std::span<const std::function<Status()>> tasks, std::span<Status> results) {
  if (tasks.empty()) return;
  Job job{.tasks = tasks, .results = results};
  MutexLock lock(&mu_);
  if (tasks.size() > 1 && !helpers_.empty()) {
    queue_.push_back(&job);
    work_.NotifyAll();
  }
  while (job.claimed < tasks.size()) {
    const size_t i = Claim(&job);
    Run(&job, i);
  }
  while (job.finished != tasks.size()) finished_.Wait(&mu_);
}

void TaskCrew::HelperLoop() {
  MutexLock lock(&mu_);
  for (;;) {
    while (!stop_ && queue_.empty()) work_.Wait(&mu_);
    if (stop_) return;
    Job* job = queue_.front();
    const size_t i = Claim(job);
    Run(job, i);
  }
}

}  // namespace attic::ssd_internal
