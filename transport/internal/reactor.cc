#include "transport/internal/reactor.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "transport/internal/ucx_status.h"

namespace attic::transport::internal {

// ---- Mailbox ----

Mailbox::Mailbox() : wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (wake_fd_ < 0) LogWarning(std::string("eventfd failed: ") + std::strerror(errno));
}

Mailbox::~Mailbox() {
  if (wake_fd_ >= 0) close(wake_fd_);
}

bool Mailbox::Post(Task task) {
  {
    MutexLock lock(&mu_);
    if (closed_) return false;
    tasks_.push_back(std::move(task));
    pending_.store(true);
  }
  // A reactor that is not asleep takes the task on its next round without a syscall.
  if (sleeping_.load()) Wake();
  return true;
}

bool Mailbox::BeginSleep() {
  sleeping_.store(true);
  if (!pending_.load()) return true;
  sleeping_.store(false, std::memory_order_relaxed);
  return false;
}

void Mailbox::Wake() {
  const uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;  // EAGAIN only when the counter is saturated: a wakeup is pending anyway
}

std::vector<Mailbox::Task> Mailbox::TakeAll() {
  std::vector<Task> out;
  if (!pending_.load(std::memory_order_acquire)) return out;
  MutexLock lock(&mu_);
  pending_.store(false, std::memory_order_relaxed);
  out.swap(tasks_);
  return out;
}

std::vector<Mailbox::Task> Mailbox::Close() {
  std::vector<Task> out;
  MutexLock lock(&mu_);
  closed_ = true;
  out.swap(tasks_);
  return out;
}

void Mailbox::DrainWakeups() {
  uint64_t value;
  while (read(wake_fd_, &value, sizeof(value)) == sizeof(value)) {
  }
}

// ---- Reactor ----

StatusOr<std::unique_ptr<Reactor>> Reactor::Start(const std::string& thread_name, Owner* owner,
                                                  std::chrono::microseconds busy_poll) {
  std::unique_ptr<Reactor> reactor(new Reactor(owner, busy_poll));
  std::promise<Status> started;
  std::future<Status> result = started.get_future();
  reactor->thread_ = std::thread(&Reactor::Main, reactor.get(), thread_name, &started);
  Status status = result.get();
  if (!status.ok()) {
    reactor->thread_.join();  // Main has already torn down what it created
    return status;
  }
  return reactor;
}

Reactor::~Reactor() { Stop(); }

void Reactor::Stop() {
  if (!thread_.joinable()) return;
  if (OnReactorThread()) {
    // A thread cannot join itself; carrying on would free state the loop still uses.
    LogWarning("RPC server or client destroyed from its own progress thread (a callback)");
    std::abort();
  }
  stopping_.store(true, std::memory_order_release);
  mailbox_->Wake();
  thread_.join();
}

void Reactor::Main(const std::string& name, std::promise<Status>* started) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  Status status = Setup();
  const bool ok = status.ok();
  started->set_value(std::move(status));  // `started` is gone after this line
  if (ok) Loop();
  Shutdown();
}

Status Reactor::Setup() {
  if (mailbox_->wake_fd() < 0) return InternalError("eventfd for the reactor failed");
  ASSIGN_OR_RETURN(UcpContext context, UcpContext::Create());
  context_.emplace(std::move(context));
  ASSIGN_OR_RETURN(UcpWorker worker, UcpWorker::Create(*context_));
  worker_.emplace(std::move(worker));
  return owner_->OnStart(*this);
}

bool Reactor::RunReadyTasks() {
  bool ran = false;
  // One batch: what these tasks defer in turn runs next round, after progress.
  if (!deferred_.empty()) {
    std::vector<Mailbox::Task> tasks;
    tasks.swap(deferred_);
    for (auto& t : tasks) t();
    ran = true;
  }
  for (auto& t : mailbox_->TakeAll()) {
    t();
    ran = true;
  }
  return ran;
}

void Reactor::Loop() {
  ucp_worker_h w = worker();
  Clock::time_point last_activity = Clock::now();
  while (true) {
    bool active = false;
    // Bounded: under a steady stream of incoming data ucp_worker_progress keeps reporting
    // events, and draining it until it reports none would starve the deferred and posted
    // tasks (dispatching requests, sending replies) for as long as the stream lasts.
    for (int i = 0; i < kMaxProgressPerRound && ucp_worker_progress(w) != 0; ++i) active = true;
    active |= RunReadyTasks();
    ReapClosed(/*wait=*/false);
    const Deadline next = owner_->OnTick();
    if (stopping_.load(std::memory_order_acquire)) return;
    // Tasks may have started sends or closes: progress them before sleeping.
    if (active || !deferred_.empty()) {
      if (busy_poll_.count() > 0) last_activity = Clock::now();
      continue;
    }
    // Busy-poll window: the answer to what was just sent usually comes within it.
    if (busy_poll_.count() > 0 && Clock::now() - last_activity < busy_poll_) continue;
    Sleep(next);
  }
}

void Reactor::Sleep(Deadline next) {
  int timeout_ms = -1;
  if (next != Deadline::max()) {
    const auto left = next - Clock::now();
    // Round up so that the deadline has passed when poll returns.
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    timeout_ms = static_cast<int>(std::clamp<int64_t>(ms, 0, 3600 * 1000));
  }
  if (!mailbox_->BeginSleep()) return;  // tasks were posted: run them
  ucs_status_t s = ucp_worker_arm(worker());
  if (s == UCS_ERR_BUSY) {
    mailbox_->EndSleep();
    return;  // events are waiting: progress again
  }
  if (s != UCS_OK) {
    // Cannot sleep on the fd: degrade to a 1 ms poll rather than spin or hang.
    if (!arm_failed_logged_) LogWarning(UcsToStatus(s, "ucp_worker_arm").ToString());
    arm_failed_logged_ = true;
    timeout_ms = timeout_ms < 0 ? 1 : std::min(timeout_ms, 1);
  }
  pollfd fds[2] = {{worker_->event_fd(), POLLIN, 0}, {mailbox_->wake_fd(), POLLIN, 0}};
  int n = poll(fds, 2, timeout_ms);
  mailbox_->EndSleep();
  if (n < 0 && errno != EINTR) LogWarning(std::string("poll failed: ") + std::strerror(errno));
  if (n > 0 && (fds[1].revents & POLLIN) != 0) mailbox_->DrainWakeups();
}

void Reactor::CloseInBackground(ucp_ep_h ep, bool force) {
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  ucs_status_ptr_t r = ucp_ep_close_nbx(ep, &param);
  if (UCS_PTR_IS_PTR(r)) closing_.push_back(r);
}

void Reactor::ReapClosed(bool wait) {
  const auto until = Clock::now() + UcpEndpoint::kCloseTimeout;
  while (true) {
    std::erase_if(closing_, [](void* r) {
      if (ucp_request_check_status(r) == UCS_INPROGRESS) return false;
      ucp_request_free(r);
      return true;
    });
    if (!wait || closing_.empty() || Clock::now() >= until) break;
    ucp_worker_progress(worker());
  }
}

void Reactor::Shutdown() {
  if (worker_) {
    // Tasks posted before the close still run (replies are sent, calls fail cleanly).
    for (auto& t : mailbox_->Close()) t();
    while (!deferred_.empty()) RunReadyTasks();
    owner_->OnStop();
    while (!deferred_.empty()) RunReadyTasks();
    ReapClosed(/*wait=*/true);
    for (void* r : closing_) ucp_request_free(r);  // left to UCX; it frees them on completion
    closing_.clear();
  } else {
    mailbox_->Close();
  }
  worker_.reset();
  context_.reset();
}

}  // namespace attic::transport::internal
