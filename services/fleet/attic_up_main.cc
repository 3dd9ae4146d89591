// attic-up: a local Attic fleet in one command (`./attic up`): an attic-scheduler and N
// attic-workers on loopback, each worker with its own data directory. Prints the fleet's
// addresses as JSON (and writes them to --state-file), then runs until Ctrl-C or SIGTERM and
// shuts everything down cleanly.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "services/config/settings.h"
#include "services/fleet/local_fleet.h"

namespace {

constexpr std::string_view kUsage = R"(usage: attic-up [--workers N] [--base-port P] [--state-file F] [--dir D]
                [--worker-memory BYTES] [--model-preset NAME] [--worker-arg FLAG]...
                [--scheduler-arg FLAG]... [--dram-only] [--timeout-s S]

Starts an attic-scheduler and N attic-workers (default 2) as child processes on 127.0.0.1,
waits until every worker has registered with the scheduler and is ready, prints the fleet as
JSON {"scheduler": "host:port", "workers": [{"name", "data", "control", "metrics", "dir"}]}
(and writes it to F), then runs until interrupted (Ctrl-C or SIGTERM) and stops them all.

  --workers N          workers to start (1..64, default 2)
  --base-port P        scheduler on P, worker i on data port P+1+2i, control port P+2+2i
                       (default 0: ephemeral ports)
  --state-file F       where to write the JSON (removed at shutdown)
  --dir D              fleet folder: logs and the workers' data directories (default: a temp
                       folder, removed at shutdown); a given folder is kept
  --worker-memory B    each worker's DRAM for KV (--kv-memory-bytes), e.g. 2GiB
  --model-preset NAME  attic-ref-54m (default) or llama3-8b
  --worker-arg FLAG    one more flag for every worker (repeat; e.g. --worker-arg=--compute-threads=1)
  --scheduler-arg FLAG one more flag for the scheduler (repeat)
  --dram-only          workers without an SSD tier
  --timeout-s S        how long to wait for the fleet to be ready (default 120)
)";

int Fail(const std::string& message) {
  std::fprintf(stderr, "attic-up: error: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  attic::fleet::LocalFleetOptions options;
  std::string state_file;
  int64_t timeout_s = 120;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::string value;
    const bool has_inline = flag.rfind("--", 0) == 0 && flag.find('=') != std::string::npos;
    if (has_inline) {
      value = flag.substr(flag.find('=') + 1);
      flag = flag.substr(0, flag.find('='));
    }
    auto next = [&]() -> bool {
      if (has_inline) return true;
      if (i + 1 >= args.size()) return false;
      value = args[++i];
      return true;
    };
    auto integer = [&](int64_t lo, int64_t hi, int64_t* out) -> std::string {
      if (!next()) return flag + " needs a value";
      attic::StatusOr<int64_t> v = attic::config::ParseInt(value);
      if (!v.ok() || *v < lo || *v > hi) {
        return flag + " = " + value + ": must be an integer in [" + std::to_string(lo) + ", " +
               std::to_string(hi) + "]";
      }
      *out = *v;
      return "";
    };
    std::string error;
    int64_t n = 0;
    if (flag == "-h" || flag == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (flag == "--workers") {
      error = integer(1, 64, &n);
      options.workers = static_cast<int>(n);
    } else if (flag == "--base-port") {
      error = integer(0, 65535, &n);
      options.base_port = static_cast<uint16_t>(n);
    } else if (flag == "--timeout-s") {
      error = integer(1, 3600, &timeout_s);
    } else if (flag == "--state-file") {
      if (!next()) error = flag + " needs a file";
      state_file = value;
    } else if (flag == "--dir") {
      if (!next()) error = flag + " needs a folder";
      options.dir = value;
      options.keep_dir = true;
    } else if (flag == "--worker-memory") {
      if (!next()) error = flag + " needs a size";
      options.worker_args.insert(options.worker_args.end(), {"--kv-memory-bytes", value});
    } else if (flag == "--model-preset") {
      if (!next()) error = flag + " needs a name";
      options.worker_args.insert(options.worker_args.end(), {"--model-preset", value});
    } else if (flag == "--worker-arg") {
      if (!next()) error = flag + " needs a flag";
      options.worker_args.push_back(value);
    } else if (flag == "--scheduler-arg") {
      if (!next()) error = flag + " needs a flag";
      options.scheduler_args.push_back(value);
    } else if (flag == "--dram-only") {
      options.dram_only = true;
    } else {
      error = "unknown flag '" + args[i] + "' (see --help)";
    }
    if (!error.empty()) return Fail(error);
  }

  // Signals are taken synchronously, so a Ctrl-C during the start is handled the same way.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  attic::fleet::LocalFleet fleet(options);
  std::fprintf(stderr, "attic-up: starting a scheduler and %d worker%s\n", options.workers,
               options.workers == 1 ? "" : "s");
  if (attic::Status s = fleet.Start(std::chrono::seconds(timeout_s)); !s.ok()) {
    return Fail(s.ToString());
  }
  const std::string state = fleet.StateJson();
  if (!state_file.empty()) {
    const std::string tmp = state_file + ".tmp";
    std::ofstream out(tmp);
    out << state;
    out.close();
    std::error_code ec;
    std::filesystem::rename(tmp, state_file, ec);
    if (!out || ec) return Fail("cannot write " + state_file);
  }
  std::cout << state << std::flush;
  std::fprintf(stderr, "attic-up: fleet ready (folder %s); Ctrl-C stops it\n",
               fleet.dir().c_str());
  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "attic-up: signal %d: stopping the fleet\n", sig);
  fleet.Stop();
  if (!state_file.empty()) {
    std::error_code ec;
    std::filesystem::remove(state_file, ec);
  }
  std::fprintf(stderr, "attic-up: stopped\n");
  return 0;
}
