// WorkerProcess: a real attic-worker child process, for integration tests, benchmarks and the
// demo.
//
//   WorkerProcess w({.binary = ATTIC_WORKER_BINARY, .args = {"--model-preset", "llama3-8b"}});
//   ASSERT_OK(w.Start(std::chrono::seconds(20)));   // waits for the ready file
//   client_options.workers.push_back(w.data_address());
//   w.Kill(SIGKILL);
//   ASSERT_OK(w.Start(...));                         // restarts on the same ports
//
// Ports: the first start uses ephemeral ports (port 0) and reads the bound ones from the
// worker's ready file; restarts ask for the same ports again.
// Thread safety: not thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/model_spec.h"
#include "common/status.h"

namespace attic::loadgen {

struct WorkerProcessOptions {
  std::string binary;              // path of attic-worker
  std::vector<std::string> args;   // extra flags (model, memory, threads)
  std::string name = "worker";
  // Ports of the first start (0 = ephemeral); restarts reuse the bound ones.
  uint16_t data_port = 0;
  uint16_t control_port = 0;
  // Another Attic daemon (attic-scheduler): Start passes only --ready-file and args, and the
  // ready file names one port ("port" or "control_port", read as the control port).
  bool plain_daemon = false;
  // Where the ready file and the log go; empty = a private temp folder removed at the end.
  std::string dir;
};

class WorkerProcess {
 public:
  explicit WorkerProcess(WorkerProcessOptions options);
  // Kills the process (SIGKILL) if it still runs and removes its ready file.
  ~WorkerProcess();
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  // Spawns the worker and waits until its ready file appears. UNAVAILABLE (with the end of
  // the worker's stderr) if it exits first or the timeout passes.
  Status Start(std::chrono::milliseconds timeout);
  // Sends the signal and waits for the process to exit; returns its wait status.
  StatusOr<int> Kill(int signal, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  std::string data_address() const { return "127.0.0.1:" + std::to_string(data_port_); }
  std::string control_address() const {
    return "127.0.0.1:" + std::to_string(control_port_);
  }
  const std::string& name() const { return options_.name; }
  // The worker's stderr so far (it is redirected to a file).
  std::string Log() const;
  std::string log_path() const { return dir_ + "/" + options_.name + ".log"; }

 private:
  WorkerProcessOptions options_;
  std::string dir_;  // ready file and log
  bool own_dir_ = false;
  pid_t pid_ = -1;
  uint16_t data_port_ = 0;
  uint16_t control_port_ = 0;
};

// attic-worker flags that make it serve `spec` exactly (every field, the softmax scale printed
// so that it round-trips: the worker must derive the same model fingerprint).
std::vector<std::string> WorkerModelArgs(const ModelSpec& spec);

// The path of another Attic executable installed next to the running one (build/*/bin holds
// them all): "/.../bin/attic-worker" for SiblingBinary("attic-worker").
std::string SiblingBinary(const std::string& name);

}  // namespace attic::loadgen
