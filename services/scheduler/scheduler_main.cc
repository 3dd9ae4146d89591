// attic-scheduler: workers register and heartbeat with it; clients ask it where to place a new
// sequence and where one lives; it never touches the data plane (docs/scheduler.md).
//
//   attic-scheduler --port 7170 --heartbeat-interval-ms 500 --dead-after-ms 3000
//   attic-scheduler --config scheduler.yaml
//   attic-scheduler --help
//
// All of its state is soft: after a restart the workers register again and re-announce their
// sequences. SIGTERM or SIGINT stops it (the HTTP server closes its connections first).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "common/log.h"
#include "services/config/settings.h"
#include "services/scheduler/scheduler_config.h"
#include "services/scheduler/scheduler_service.h"
#include "transport/control/http_server.h"

namespace attic::scheduler {
namespace {

// The worker's ready-file shape (worker_main.cc), so one reader serves both.
Status WriteReadyFile(const std::string& path, uint16_t port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "{\"name\": \"attic-scheduler\", \"pid\": " << getpid() << ", \"control_port\": " << port
        << "}\n";
    if (!out) return UnavailableError("cannot write ready file " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return UnavailableError("cannot rename ready file to " + path);
  }
  return OkStatus();
}

int Serve(const SchedulerConfig& config) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  SchedulerService service(config.StateOptions(),
                           std::make_unique<DefaultPlacementPolicy>(config.PolicyOptions()));
  StatusOr<std::unique_ptr<control::HttpServer>> http =
      control::HttpServer::Start({.address = config.listen_address,
                                  .port = config.port,
                                  .threads = config.threads,
                                  .max_request_bytes = config.max_request_bytes},
                                 service.Routes());
  if (!http.ok()) {
    ATTIC_LOG(kError, "scheduler") << "cannot listen on " << config.listen_address << ":"
                                   << config.port << ": " << http.status();
    return 1;
  }
  ATTIC_LOG(kInfo, "scheduler") << "listening on " << config.listen_address << ":"
                                << (*http)->port() << ", incarnation "
                                << service.state().incarnation() << "; heartbeat every "
                                << config.heartbeat_interval_ms << " ms, dead after "
                                << config.dead_after_ms << " ms";
  if (!config.ready_file.empty()) {
    const Status s = WriteReadyFile(config.ready_file, (*http)->port());
    if (!s.ok()) {
      ATTIC_LOG(kError, "scheduler") << s;
      return 1;
    }
  }
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  ATTIC_LOG(kInfo, "scheduler") << "signal " << signal_number << ": stopping";
  http->reset();  // before the service its handlers use
  ATTIC_LOG(kInfo, "scheduler") << "stopped";
  return 0;
}

}  // namespace
}  // namespace attic::scheduler

int main(int argc, char** argv) {
  attic::StatusOr<attic::scheduler::SchedulerConfigResult> loaded =
      attic::scheduler::LoadSchedulerConfig(argc, argv, attic::config::EnvironmentMap());
  if (!loaded.ok()) {
    std::fprintf(stderr, "attic-scheduler: %s\n", std::string(loaded.status().message()).c_str());
    return 2;
  }
  if (loaded->exit_now) {
    std::fputs(loaded->output.c_str(), loaded->exit_code == 0 ? stdout : stderr);
    return loaded->exit_code;
  }
  const attic::scheduler::SchedulerConfig& config = loaded->config;
  if (auto level = attic::ParseLogLevel(config.log_level)) attic::SetLogLevel(*level);
  ATTIC_LOG(kInfo, "scheduler") << "configuration:\n" << attic::scheduler::DescribeConfig(config);
  return attic::scheduler::Serve(config);
}
