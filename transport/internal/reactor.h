// Reactor: the one thread that drives a UCP worker. It owns the UCP context and worker,
// sleeps on the worker's event fd when idle, runs tasks that other threads post to its
// Mailbox, and calls its Owner (the RPC server or client) for everything else.
//
//   class Server : public Reactor::Owner { ... };
//   ASSIGN_OR_RETURN(auto reactor, Reactor::Start("attic-rpc-srv", &server, 50us));
//   reactor->mailbox()->Post([&] { ... runs on the reactor thread ... });
//   reactor->Stop();   // leftover tasks run, then Owner::OnStop, then worker and context go
//
// One round of the loop: ucp_worker_progress until it reports nothing, at most
// kMaxProgressPerRound times (a peer streaming faster than the loop handles messages must not
// hold back dispatches and replies); run the tasks deferred by UCX callbacks;
// run posted tasks; Owner::OnTick fires expired deadlines and names the next. If the round
// did anything, or did something less than `busy_poll` ago, go round again (adaptive busy
// polling: a reply or the next request arriving within the window costs no wakeup).
// Otherwise ucp_worker_arm and, if it returns OK, poll the worker's fd and the mailbox's
// eventfd with the time to that deadline as timeout. An idle reactor blocks in poll(2).
//
// Thread safety: Mailbox::Post and Stop may be called from any thread; everything else only
// on the reactor thread (UCX callbacks, Owner hooks, posted tasks).
#pragma once

#include <ucp/api/ucp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "transport/internal/ucp_handles.h"
#include "transport/message.h"

namespace attic::transport::internal {

// The submission queue of a reactor. Shared with whoever must reach the reactor thread
// (connections, responders), so it may outlive the reactor: once closed, Post refuses.
class Mailbox {
 public:
  using Task = std::function<void()>;

  Mailbox();
  ~Mailbox();
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  // Queues `task` for the reactor thread and wakes it if it sleeps (a busy-polling or
  // running reactor finds the task without a syscall). False (task dropped, not run) once
  // the reactor has stopped.
  bool Post(Task task) EXCLUDES(mu_);
  // Wakes the reactor without a task.
  void Wake();

  // Reactor thread only.
  // What was posted; cheap (no lock) when nothing was.
  std::vector<Task> TakeAll() EXCLUDES(mu_);
  std::vector<Task> Close() EXCLUDES(mu_);  // refuses later posts, returns what was queued
  // Around the reactor's sleep: BeginSleep returns false (do not sleep) if tasks are
  // waiting; from then until EndSleep every Post writes the eventfd.
  bool BeginSleep();
  void EndSleep() { sleeping_.store(false, std::memory_order_relaxed); }
  void DrainWakeups();
  int wake_fd() const { return wake_fd_; }

 private:
  Mutex mu_;
  std::vector<Task> tasks_ GUARDED_BY(mu_);
  bool closed_ GUARDED_BY(mu_) = false;
  // Set (seq_cst) by Post before it reads sleeping_, and sleeping_ is set (seq_cst) before
  // BeginSleep reads pending_: either the reactor sees the task or the poster sees the
  // sleeper, so no task waits for a wakeup that never comes.
  std::atomic<bool> pending_{false};
  std::atomic<bool> sleeping_{false};
  int wake_fd_ = -1;  // eventfd; readable while a wakeup is pending
};

class Reactor {
 public:
  // The RPC side driven by the reactor. Every hook runs on the reactor thread.
  class Owner {
   public:
    virtual ~Owner() = default;
    // After the context and worker exist: listen, register handlers and memory. An error
    // stops the thread and is what Start returns.
    virtual Status OnStart(Reactor& reactor) = 0;
    // After every round: fire expired deadlines; return the earliest pending one
    // (Deadline::max() when there is none).
    virtual Deadline OnTick() = 0;
    // Once, after the mailbox closed and its last tasks ran: fail what is pending, close
    // endpoints, release what OnStart created (in reverse order).
    virtual void OnStop() = 0;
  };

  // Starts the thread named `thread_name` (at most 15 characters) and waits for OnStart.
  // `busy_poll`: how long the loop keeps polling after its last activity before it sleeps
  // (0: sleep at once).
  static StatusOr<std::unique_ptr<Reactor>> Start(const std::string& thread_name, Owner* owner,
                                                  std::chrono::microseconds busy_poll);
  ~Reactor();  // Stop()
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Stops the loop and joins the thread; idempotent. REQUIRES: not on the reactor thread.
  void Stop();

  const std::shared_ptr<Mailbox>& mailbox() const { return mailbox_; }
  bool OnReactorThread() const { return std::this_thread::get_id() == thread_.get_id(); }

  // Reactor thread only.
  ucp_context_h context() const { return context_->get(); }
  ucp_worker_h worker() const { return worker_->get(); }
  // Largest FrameHeader + inline header to send in one UCX AM header (see kFrameInlineHeader).
  size_t max_inline_am_header() const {
    return std::min(worker_->max_am_header(), kMaxInlineAmHeader);
  }
  // Bigger Cap'n Proto headers travel in the AM data instead, which keeps the packet UCX
  // sends first (eager fragment or rendezvous request) small.
  static constexpr size_t kMaxInlineAmHeader = 2048;
  // Runs `task` after the current ucp_worker_progress returns: UCX callbacks use it for
  // anything that sends or closes, which UCX does not allow from inside progress.
  void Defer(Mailbox::Task task) { deferred_.push_back(std::move(task)); }
  // Starts closing an endpoint without waiting (force for failed peers; otherwise pending
  // sends are flushed first). Stop waits, bounded, for these closes to finish.
  void CloseInBackground(ucp_ep_h ep, bool force);

 private:
  Reactor(Owner* owner, std::chrono::microseconds busy_poll)
      : owner_(owner), busy_poll_(busy_poll), mailbox_(std::make_shared<Mailbox>()) {}
  void Main(const std::string& name, std::promise<Status>* started);
  Status Setup();
  void Loop();
  void Shutdown();
  // ucp_worker_progress calls per round at most, so that tasks run between them.
  static constexpr int kMaxProgressPerRound = 16;
  bool RunReadyTasks();
  void ReapClosed(bool wait);
  void Sleep(Deadline next);

  Owner* const owner_;
  const std::chrono::microseconds busy_poll_;
  const std::shared_ptr<Mailbox> mailbox_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  // Reactor thread only; declared in creation order (destroyed in reverse).
  std::optional<UcpContext> context_;
  std::optional<UcpWorker> worker_;
  std::vector<Mailbox::Task> deferred_;
  std::vector<void*> closing_;  // ucp_ep_close_nbx requests still in flight
  bool arm_failed_logged_ = false;
};

}  // namespace attic::transport::internal
