#include "services/worker/scheduler_agent.h"

#include <algorithm>
#include <utility>

#include "common/log.h"
#include "transport/control/http_server.h"

namespace attic {

using std::chrono::milliseconds;

StatusOr<std::unique_ptr<SchedulerAgent>> SchedulerAgent::Start(SchedulerAgentOptions options,
                                                                ReportSource source) {
  if (options.scheduler.empty()) return InvalidArgumentError("scheduler agent: no address");
  if (!source) return InvalidArgumentError("scheduler agent: no report source");
  options.fallback_interval = std::max(options.fallback_interval, milliseconds(1));
  options.request_timeout = std::max(options.request_timeout, milliseconds(1));
  std::unique_ptr<SchedulerAgent> agent(new SchedulerAgent(std::move(options), std::move(source)));
  agent->thread_ = std::thread([a = agent.get()] { a->Run(); });
  return agent;
}

SchedulerAgent::SchedulerAgent(SchedulerAgentOptions options, ReportSource source)
    : options_(std::move(options)), source_(std::move(source)) {}

SchedulerAgent::~SchedulerAgent() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  wake_.NotifyAll();
  if (thread_.joinable()) thread_.join();
}

void SchedulerAgent::Nudge() {
  {
    MutexLock lock(&mu_);
    nudged_ = true;
  }
  wake_.NotifyAll();
}

SchedulerAgentStats SchedulerAgent::stats() const {
  MutexLock lock(&mu_);
  return stats_;
}

bool SchedulerAgent::Wait(milliseconds d) {
  MutexLock lock(&mu_);
  const auto deadline = std::chrono::steady_clock::now() + d;
  while (!stop_ && !nudged_) {
    if (!wake_.WaitUntil(&mu_, deadline)) break;
  }
  nudged_ = false;
  return !stop_;
}

void SchedulerAgent::Failed(const Status& s) {
  {
    MutexLock lock(&mu_);
    ++stats_.failures;
    stats_.registered = false;
  }
  if (!failing_) {
    ATTIC_LOG(kWarn, "worker") << "scheduler " << options_.scheduler << ": " << s
                               << "; retrying every " << options_.fallback_interval.count()
                               << " ms (serving goes on)";
    failing_ = true;
  } else {
    ATTIC_LOG(kDebug, "worker") << "scheduler " << options_.scheduler << " still failing: " << s;
  }
}

void SchedulerAgent::Recovered() {
  if (!failing_) return;
  ATTIC_LOG(kInfo, "worker") << "scheduler " << options_.scheduler << " reachable again";
  failing_ = false;
}

StatusOr<std::string> SchedulerAgent::Post(const char* path, const std::string& body) {
  ASSIGN_OR_RETURN(control::HttpResponse r,
                   control::HttpPost(options_.scheduler, path, body, options_.request_timeout,
                                     scheduler::kCapnpContentType));
  if (r.status != 200) return scheduler::RefusalStatus(r.status, r.body);
  return std::move(r.body);
}

StatusOr<milliseconds> SchedulerAgent::Register() {
  const scheduler::WorkerReport report = source_();
  ASSIGN_OR_RETURN(std::string body, Post("/v1/register", scheduler::EncodeWorkerReport(report)));
  ASSIGN_OR_RETURN(scheduler::RegisterReply reply, scheduler::DecodeRegisterReply(body));
  {
    MutexLock lock(&mu_);
    ++stats_.registrations;
    stats_.registered = true;
    stats_.scheduler_incarnation = reply.scheduler_incarnation;
  }
  ATTIC_LOG(kInfo, "worker") << report.name << " registered with scheduler " << options_.scheduler
                             << " (" << report.shards.size()
                             << " sequence shards announced; heartbeat every "
                             << reply.heartbeat_interval_ms << " ms)";
  return reply.heartbeat_interval_ms > 0 ? milliseconds(reply.heartbeat_interval_ms)
                                         : options_.fallback_interval;
}

StatusOr<bool> SchedulerAgent::Heartbeat() {
  ASSIGN_OR_RETURN(std::string body,
                   Post("/v1/heartbeat", scheduler::EncodeWorkerReport(source_())));
  ASSIGN_OR_RETURN(scheduler::HeartbeatReply reply, scheduler::DecodeHeartbeatReply(body));
  MutexLock lock(&mu_);
  if (reply.known) {
    ++stats_.heartbeats;
  } else {
    ++stats_.unknown;
    stats_.registered = false;
  }
  return reply.known;
}

void SchedulerAgent::Run() {
  bool registered = false;
  milliseconds interval = options_.fallback_interval;
  while (true) {
    if (!registered) {
      StatusOr<milliseconds> r = Register();
      if (!r.ok()) {
        Failed(r.status());
        if (!Wait(options_.fallback_interval)) return;
        continue;
      }
      Recovered();
      registered = true;
      interval = *r;
    }
    if (!Wait(interval)) return;
    StatusOr<bool> known = Heartbeat();
    if (!known.ok()) {
      Failed(known.status());
      registered = false;  // register again once it answers: it may have restarted meanwhile
      if (!Wait(options_.fallback_interval)) return;
      continue;
    }
    Recovered();
    if (!*known) {
      ATTIC_LOG(kInfo, "worker") << "scheduler " << options_.scheduler
                                 << " does not know this worker (it restarted or found it "
                                    "silent too long): registering again";
      registered = false;
    }
  }
}

}  // namespace attic
