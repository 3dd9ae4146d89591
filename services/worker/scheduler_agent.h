// SchedulerAgent: a worker's thread that registers with attic-scheduler and heartbeats at the
// interval the scheduler returned, each message carrying the worker's current report
// (worker_report.h). It registers again when the scheduler answers known = false (it restarted
// or declared this worker dead) and when the scheduler becomes reachable after a failure.
//
//   ASSIGN_OR_RETURN(auto agent, SchedulerAgent::Start({.scheduler = "10.0.0.2:7170"},
//                                                      [&] { return reporter.Report(); }));
//   ...
//   agent->Nudge();   // readiness changed: heartbeat now
//   agent.reset();    // stops the thread (within one request timeout)
//
// The agent never touches request handling: it runs on its own thread and only reads figures,
// so a scheduler that is down, slow or refusing changes nothing for the data plane. A failure
// is logged once when it starts (then at debug level) and once when it ends.
//
// Thread safety: Nudge and stats may be called from any thread; the destructor from one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "transport/control/scheduler_protocol.h"

namespace attic {

struct SchedulerAgentOptions {
  // The scheduler's control address, "host:port". Required.
  std::string scheduler;
  // The heartbeat interval until the scheduler names one, and the wait between attempts while
  // it cannot be reached. Default 500 ms.
  std::chrono::milliseconds fallback_interval{500};
  // Each request's deadline. Default 2 s.
  std::chrono::milliseconds request_timeout{2000};
};

// The worker's current state; called on the agent's thread before every message.
using ReportSource = std::function<scheduler::WorkerReport()>;

struct SchedulerAgentStats {
  uint64_t registrations = 0;  // accepted registrations
  uint64_t heartbeats = 0;     // heartbeats answered known = true
  uint64_t unknown = 0;        // heartbeats answered known = false
  uint64_t failures = 0;       // requests that failed (unreachable, refused, malformed)
  bool registered = false;
  uint64_t scheduler_incarnation = 0;
};

class SchedulerAgent {
 public:
  // InvalidArgument for an empty scheduler address or no source.
  static StatusOr<std::unique_ptr<SchedulerAgent>> Start(SchedulerAgentOptions options,
                                                         ReportSource source);
  ~SchedulerAgent();
  SchedulerAgent(const SchedulerAgent&) = delete;
  SchedulerAgent& operator=(const SchedulerAgent&) = delete;

  // Sends the next message now instead of at the end of the interval.
  void Nudge() EXCLUDES(mu_);
  SchedulerAgentStats stats() const EXCLUDES(mu_);

 private:
  SchedulerAgent(SchedulerAgentOptions options, ReportSource source);
  void Run() EXCLUDES(mu_);
  // One registration; the interval to heartbeat at on success.
  StatusOr<std::chrono::milliseconds> Register() EXCLUDES(mu_);
  // One heartbeat: whether the scheduler knows this worker.
  StatusOr<bool> Heartbeat() EXCLUDES(mu_);
  StatusOr<std::string> Post(const char* path, const std::string& body);
  // Waits `d`, or less when nudged or stopped. False once stopped.
  bool Wait(std::chrono::milliseconds d) EXCLUDES(mu_);
  void Failed(const Status& s) EXCLUDES(mu_);
  void Recovered();

  const SchedulerAgentOptions options_;
  const ReportSource source_;
  bool failing_ = false;  // the agent thread's own: a failure was logged, its end not yet

  mutable Mutex mu_;
  CondVar wake_;
  bool stop_ GUARDED_BY(mu_) = false;
  bool nudged_ GUARDED_BY(mu_) = false;
  SchedulerAgentStats stats_ GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace attic
