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
#include <optional>
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

struct UpFlags {
  attic::fleet::LocalFleetOptions fleet;
  std::string state_file;
  int64_t timeout_s = 120;
};

// The flag at args[*i], "--flag value" or "--flag=value"; taking a separate value advances *i.
class FlagReader {
 public:
  FlagReader(const std::vector<std::string>& args, size_t* i) : args_(args), i_(i), arg_(args[*i]) {
    flag_ = arg_;
    has_inline_ = flag_.rfind("--", 0) == 0 && flag_.find('=') != std::string::npos;
    if (has_inline_) {
      value_ = flag_.substr(flag_.find('=') + 1);
      flag_ = flag_.substr(0, flag_.find('='));
    }
  }

  const std::string& arg() const { return arg_; }  // as given, "=value" included
  const std::string& flag() const { return flag_; }
  const std::string& value() const { return value_; }

  // Takes the value: the inline one, else the next argument. False when there is none.
  bool Next() {
    if (has_inline_) return true;
    if (*i_ + 1 >= args_.size()) return false;
    value_ = args_[++*i_];
    return true;
  }

  // Takes an integer value in [lo, hi] into *out; the error, empty if none.
  std::string Integer(int64_t lo, int64_t hi, int64_t* out) {
    if (!Next()) return flag_ + " needs a value";
    attic::StatusOr<int64_t> v = attic::config::ParseInt(value_);
    if (!v.ok() || *v < lo || *v > hi) {
      return flag_ + " = " + value_ + ": must be an integer in [" + std::to_string(lo) + ", " +
             std::to_string(hi) + "]";
    }
    *out = *v;
    return "";
  }

 private:
  const std::vector<std::string>& args_;
  size_t* i_;
  const std::string arg_;
  std::string flag_;
  std::string value_;
  bool has_inline_ = false;
};

// Applies one flag other than --help; the error, empty if none.
std::string ApplyFlag(FlagReader& r, UpFlags* up) {
  attic::fleet::LocalFleetOptions& options = up->fleet;
  const std::string& flag = r.flag();
  std::string error;
  int64_t n = 0;
  if (flag == "--workers") {
    error = r.Integer(1, 64, &n);
    options.workers = static_cast<int>(n);
  } else if (flag == "--base-port") {
    error = r.Integer(0, 65535, &n);
    options.base_port = static_cast<uint16_t>(n);
  } else if (flag == "--timeout-s") {
    error = r.Integer(1, 3600, &up->timeout_s);
  } else if (flag == "--state-file") {
    if (!r.Next()) error = flag + " needs a file";
    up->state_file = r.value();
  } else if (flag == "--dir") {
    if (!r.Next()) error = flag + " needs a folder";
    options.dir = r.value();
    options.keep_dir = true;
  } else if (flag == "--worker-memory") {
    if (!r.Next()) error = flag + " needs a size";
    options.worker_args.insert(options.worker_args.end(), {"--kv-memory-bytes", r.value()});
  } else if (flag == "--model-preset") {
    if (!r.Next()) error = flag + " needs a name";
    options.worker_args.insert(options.worker_args.end(), {"--model-preset", r.value()});
  } else if (flag == "--worker-arg") {
    if (!r.Next()) error = flag + " needs a flag";
    options.worker_args.push_back(r.value());
  } else if (flag == "--scheduler-arg") {
    if (!r.Next()) error = flag + " needs a flag";
    options.scheduler_args.push_back(r.value());
  } else if (flag == "--dram-only") {
    options.dram_only = true;
  } else {
    error = "unknown flag '" + r.arg() + "' (see --help)";
  }
  return error;
}

// The exit status when the program ends here (--help, a bad flag).
std::optional<int> ParseFlags(int argc, char** argv, UpFlags* up) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    FlagReader r(args, &i);
    if (r.flag() == "-h" || r.flag() == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (std::string error = ApplyFlag(r, up); !error.empty()) return Fail(error);
  }
  return std::nullopt;
}

// Blocks the stop signals in every thread, to be taken synchronously by sigwait, so a Ctrl-C
// during the start is handled the same way.
sigset_t BlockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// Written beside the file and renamed over it, so a reader never sees it half written.
bool WriteStateFile(const std::string& path, const std::string& state) {
  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp);
  out << state;
  out.close();
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return out && !ec;
}

}  // namespace

int main(int argc, char** argv) {
  UpFlags up;
  if (const std::optional<int> rc = ParseFlags(argc, argv, &up)) return *rc;
  sigset_t signals = BlockStopSignals();

  attic::fleet::LocalFleet fleet(up.fleet);
  std::fprintf(stderr, "attic-up: starting a scheduler and %d worker%s\n", up.fleet.workers,
               up.fleet.workers == 1 ? "" : "s");
  if (attic::Status s = fleet.Start(std::chrono::seconds(up.timeout_s)); !s.ok()) {
    return Fail(s.ToString());
  }
  const std::string state = fleet.StateJson();
  if (!up.state_file.empty() && !WriteStateFile(up.state_file, state)) {
    return Fail("cannot write " + up.state_file);
  }
  std::cout << state << std::flush;
  std::fprintf(stderr, "attic-up: fleet ready (folder %s); Ctrl-C stops it\n",
               fleet.dir().c_str());
  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "attic-up: signal %d: stopping the fleet\n", sig);
  fleet.Stop();
  if (!up.state_file.empty()) {
    std::error_code ec;
    std::filesystem::remove(up.state_file, ec);
  }
  std::fprintf(stderr, "attic-up: stopped\n");
  return 0;
}
