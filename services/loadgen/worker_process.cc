#include "services/loadgen/worker_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

extern char** environ;

namespace attic::loadgen {

WorkerProcess::WorkerProcess(WorkerProcessOptions options)
    : options_(std::move(options)),
      data_port_(options_.data_port),
      control_port_(options_.control_port) {
  if (!options_.dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options_.dir, ec);
    dir_ = options_.dir;
    return;
  }
  std::string tmpl = (std::filesystem::temp_directory_path() / "attic-worker-XXXXXX").string();
  if (mkdtemp(tmpl.data()) != nullptr) {
    dir_ = tmpl;
    own_dir_ = true;
  }
}

WorkerProcess::~WorkerProcess() {
  if (pid_ > 0) Kill(SIGKILL).status().IgnoreError();
  std::error_code ec;
  if (own_dir_) {
    std::filesystem::remove_all(dir_, ec);
  } else if (!dir_.empty()) {
    std::filesystem::remove(dir_ + "/" + options_.name + ".ready.json", ec);
  }
}

std::string WorkerProcess::Log() const {
  std::ifstream in(log_path());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Status WorkerProcess::Start(std::chrono::milliseconds timeout) {
  if (pid_ > 0) return FailedPreconditionError(options_.name + " is already running");
  if (dir_.empty()) return InternalError("no temp folder for " + options_.name);
  const std::string ready = dir_ + "/" + options_.name + ".ready.json";
  std::error_code ec;
  std::filesystem::remove(ready, ec);
  std::vector<std::string> argv = {options_.binary, "--ready-file", ready};
  if (!options_.plain_daemon) {
    argv.insert(argv.end(), {"--name", options_.name,
                             "--listen-address", "127.0.0.1",
                             "--control-address", "127.0.0.1",
                             "--data-port", std::to_string(data_port_),
                             "--control-port", std::to_string(control_port_)});
  }
  argv.insert(argv.end(), options_.args.begin(), options_.args.end());
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string log = log_path();
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  // The child starts with no signal blocked and default dispositions, whatever the parent
  // blocks (attic-up waits for its signals with sigwait).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, options_.binary.c_str(), &actions, &attr, cargv.data(),
                             environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return UnavailableError("cannot spawn " + options_.binary + ": " + std::strerror(rc));
  }
  pid_ = pid;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int wstatus = 0;
    if (waitpid(pid_, &wstatus, WNOHANG) == pid_) {
      pid_ = -1;
      return UnavailableError(options_.name + " exited during start (status " +
                              std::to_string(wstatus) + "):\n" + Log());
    }
    std::ifstream in(ready);
    if (in) {
      nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (!j.is_discarded() && j.is_object()) {
        if (!options_.plain_daemon && j.contains("data_port") && j.contains("control_port")) {
          data_port_ = j["data_port"].get<uint16_t>();
          control_port_ = j["control_port"].get<uint16_t>();
          return OkStatus();
        }
        if (options_.plain_daemon && (j.contains("port") || j.contains("control_port"))) {
          control_port_ = j.contains("port") ? j["port"].get<uint16_t>()
                                             : j["control_port"].get<uint16_t>();
          return OkStatus();
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Kill(SIGKILL).status().IgnoreError();
  return UnavailableError(options_.name + " not ready after " + std::to_string(timeout.count()) +
                          " ms:\n" + Log());
}

StatusOr<int> WorkerProcess::Kill(int signal, std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return FailedPreconditionError(options_.name + " is not running");
  ::kill(pid_, signal);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int wstatus = 0;
    const pid_t r = waitpid(pid_, &wstatus, WNOHANG);
    if (r == pid_ || r < 0) {
      pid_ = -1;
      return wstatus;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, &wstatus, 0);
      pid_ = -1;
      return DeadlineExceededError(options_.name + " ignored signal " + std::to_string(signal) +
                                   " for " + std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::vector<std::string> WorkerModelArgs(const ModelSpec& spec) {
  char scale[32];
  std::snprintf(scale, sizeof(scale), "%.9g", static_cast<double>(spec.softmax_scale));
  return {"--model-name",         spec.name,
          "--model-num-layers",   std::to_string(spec.num_layers),
          "--model-num-q-heads",  std::to_string(spec.num_q_heads),
          "--model-num-kv-heads", std::to_string(spec.num_kv_heads),
          "--model-head-dim",     std::to_string(spec.head_dim),
          "--model-dtype",        std::string(DTypeName(spec.dtype)),
          "--model-block-size",   std::to_string(spec.block_size),
          "--model-softmax-scale", scale};
}

std::string SiblingBinary(const std::string& name) {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return name;
  return (self.parent_path() / name).string();
}

}  // namespace attic::loadgen
