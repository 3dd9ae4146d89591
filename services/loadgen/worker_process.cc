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

WorkerProcess::WorkerProcess(WorkerProcessOptions options) : options_(std::move(options)) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "attic-worker-XXXXXX").string();
  if (mkdtemp(tmpl.data()) != nullptr) dir_ = tmpl;
}

WorkerProcess::~WorkerProcess() {
  if (pid_ > 0) Kill(SIGKILL).status().IgnoreError();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::string WorkerProcess::Log() const {
  std::ifstream in(dir_ + "/worker.log");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Status WorkerProcess::Start(std::chrono::milliseconds timeout) {
  if (pid_ > 0) return FailedPreconditionError(options_.name + " is already running");
  if (dir_.empty()) return InternalError("no temp folder for " + options_.name);
  const std::string ready = dir_ + "/ready.json";
  std::filesystem::remove(ready);
  std::vector<std::string> argv = {options_.binary,
                                   "--name", options_.name,
                                   "--listen-address", "127.0.0.1",
                                   "--control-address", "127.0.0.1",
                                   "--data-port", std::to_string(data_port_),
                                   "--control-port", std::to_string(control_port_),
                                   "--ready-file", ready};
  argv.insert(argv.end(), options_.args.begin(), options_.args.end());
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string log = dir_ + "/worker.log";
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, options_.binary.c_str(), &actions, nullptr, cargv.data(),
                             environ);
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
      if (!j.is_discarded() && j.contains("data_port") && j.contains("control_port")) {
        data_port_ = j["data_port"].get<uint16_t>();
        control_port_ = j["control_port"].get<uint16_t>();
        return OkStatus();
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
