// ./attic bench transport [--json FILE] [--quick] [--tls both|default|tcp] [--window W]
//
// The data plane against UCX's own benchmark, in one run. Two processes on loopback, as
// ucx_perftest runs: this binary re-executes itself as the server (hidden `--serve PORT_FILE`:
// an RpcServer answering Echo and Discard inside the transport) and is the client itself.
//
//   rpc_round_trip      Echo of 8 B .. 4 KiB payloads, p50 in µs (p99 and average as params),
//                       through the callback API (the next call is issued from the previous
//                       call's callback, so no caller wakeup is timed) and, as a separate row,
//                       through Call(...).get() (what a blocking Attic caller sees).
//                       Limit: 2 x ucx_perftest ucp_am_lat -e one-way p50 at the same size.
//   rpc_discard_bw      one-way bandwidth, 1 .. 64 MiB requests answered by an empty reply,
//                       W requests in flight (--window, at most 128 MiB outstanding).
//                       Limit: ucx_perftest ucp_am_bw -e at the same size.
//   rpc_echo_bw         the same size echoed back: bytes per second in each direction
//                       (no limit: ucx_perftest has no two-way AM test).
//   ucx_perftest_*      ucp_am_lat, tag_lat (one-way µs, as ucx_perftest prints it),
//                       ucp_am_bw, tag_bw (GB/s); err_handling=peer rows ran with -e, the
//                       endpoint error mode Attic uses (with UCX 1.13 it rules out shared
//                       memory, so both sides talk TCP even on one host) and give the limits;
//                       err_handling=none rows are the machine's best, for reference.
//
// Units: GB/s = 1e9 bytes/s everywhere. ucx_perftest prints "MB/s" meaning 2^20 bytes/s; its
// figures are converted (x 1048576 / 1e9).
//
// --tls both (default) runs everything twice: with the inherited UCX settings ("default",
// shared memory + CMA between processes here) and with UCX_TLS=tcp; each row carries `tls`.
// The variable is set in this process before its UCX context is created and is inherited by
// the server and by ucx_perftest, so all three use the same transports. Every figure is the
// median over the repetitions (3, or 1 with --quick), Attic and ucx_perftest alternating.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_report.h"
#include "transport/rpc_client.h"
#include "transport/rpc_server.h"

extern char** environ;

namespace attic::bench {
namespace {

using namespace std::chrono_literals;
using transport::Clock;
using transport::Connection;
using transport::DeadlineAfter;
using transport::IncomingMessage;
using transport::Method;
using transport::OutgoingMessage;

constexpr double kMiBPerSecToGBps = 1048576.0 / 1e9;

struct Flags {
  std::string json;
  bool quick = false;
  std::vector<std::string> tls = {"default", "tcp"};
  int window = 8;
  int busy_poll_us = -1;  // -1: the transport's default
  std::string serve_port_file;
};

void Usage() {
  std::printf(
      "usage: attic-bench-transport [--json FILE] [--quick] [--tls both|default|tcp]\n"
      "                             [--window W] [--busy-poll-us N]\n"
      "  RPC round trip and bandwidth over UCX on loopback (two processes) against\n"
      "  ucx_perftest ucp_am_lat/ucp_am_bw (tag_lat/tag_bw for reference) in the same run.\n"
      "  --json FILE       also write the result envelope as JSON\n"
      "  --quick           fewer iterations and one repetition (a smoke run)\n"
      "  --tls WHICH       default: inherited UCX settings; tcp: UCX_TLS=tcp; both (default)\n"
      "  --window W        requests in flight in the bandwidth tests (default 8)\n"
      "  --busy-poll-us N  RpcServerOptions/RpcClientOptions::busy_poll_us (default: theirs)\n");
}

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--json" && has_value) {
      f->json = argv[++i];
    } else if (a == "--quick") {
      f->quick = true;
    } else if (a == "--tls" && has_value) {
      const std::string v = argv[++i];
      if (v == "both") {
        f->tls = {"default", "tcp"};
      } else if (v == "default" || v == "tcp") {
        f->tls = {v};
      } else {
        std::fprintf(stderr, "attic-bench-transport: --tls takes both, default or tcp\n");
        std::exit(2);
      }
    } else if (a == "--window" && has_value) {
      f->window = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--busy-poll-us" && has_value) {
      f->busy_poll_us = std::max(0, std::atoi(argv[++i]));
    } else if (a == "--serve" && has_value) {
      f->serve_port_file = argv[++i];
    } else if (a == "--help" || a == "-h") {
      Usage();
      return false;
    } else {
      std::fprintf(stderr, "attic-bench-transport: unknown argument '%s' (try --help)\n",
                   a.c_str());
      std::exit(2);
    }
  }
  return true;
}

// ---- the server process ----

int Serve(const Flags& flags) {
  transport::RpcServerOptions options{.name = "bench-server", .listen_address = "127.0.0.1"};
  if (flags.busy_poll_us >= 0) options.busy_poll_us = flags.busy_poll_us;
  auto server = transport::RpcServer::Start(options, nullptr);
  if (!server.ok()) {
    std::fprintf(stderr, "attic-bench-transport --serve: %s\n", server.status().ToString().c_str());
    return 1;
  }
  // Written whole under another name first, so the parent never reads half a number.
  const std::string tmp = flags.serve_port_file + ".tmp";
  std::ofstream(tmp) << (*server)->port() << "\n";
  if (std::rename(tmp.c_str(), flags.serve_port_file.c_str()) != 0) return 1;
  while (true) pause();  // until the parent's SIGTERM
}

// ---- child processes ----

class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { Stop(); }

  // Starts argv[0] (searched in PATH) with stdout (and stderr) going to `out_fd` (-1: /dev/null).
  Status Start(const std::vector<std::string>& args, int out_fd = -1) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (out_fd >= 0) {
      posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
      posix_spawn_file_actions_adddup2(&actions, out_fd, STDERR_FILENO);
    } else {
      posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    }
    const int rc = posix_spawnp(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = -1;
      return UnavailableError("cannot start " + args[0] + ": " + std::strerror(rc));
    }
    return OkStatus();
  }
  bool Running() {
    if (pid_ < 0) return false;
    int st;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }
  // Waits up to `timeout` for the child to exit on its own, then kills it.
  void Stop(std::chrono::milliseconds timeout = 0ms) {
    if (pid_ < 0) return;
    const auto until = Clock::now() + timeout;
    while (Running() && Clock::now() < until) std::this_thread::sleep_for(5ms);
    if (pid_ < 0) return;
    kill(pid_, SIGTERM);
    int st;
    waitpid(pid_, &st, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

// A TCP port nothing listens on right now (bound to port 0, then released).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

// Runs `args` to completion (bounded by `timeout`) and returns what it printed.
StatusOr<std::string> RunCapture(const std::vector<std::string>& args,
                                 std::chrono::milliseconds timeout) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return InternalError("pipe failed");
  Child child;
  Status started = child.Start(args, fds[1]);
  close(fds[1]);
  if (!started.ok()) {
    close(fds[0]);
    return started;
  }
  std::string out;
  const auto until = Clock::now() + timeout;
  char buf[4096];
  while (Clock::now() < until) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  child.Stop(timeout);
  return out;
}

// ---- ucx_perftest ----

struct PerftestResult {
  double lat_p50_us = 0, lat_avg_us = 0;  // one-way, as printed
  double bw_gbps = 0;                     // "bandwidth average", converted to 1e9 bytes/s
};

bool PerftestAvailable() {
  auto out = RunCapture({"ucx_perftest", "-h"}, 5s);
  return out.ok() && out->find("ucp_am_lat") != std::string::npos;
}

// One ucx_perftest test: a server and a client on loopback, on a fresh port.
// `peer_errors`: endpoints with UCP_ERR_HANDLING_MODE_PEER (-e), as Attic's are.
StatusOr<PerftestResult> RunPerftest(const std::string& test, size_t bytes, int iters, int warmup,
                                     bool peer_errors) {
  std::string last_output;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const std::string port = std::to_string(FreePort());
    Child server;
    RETURN_IF_ERROR(server.Start({"ucx_perftest", "-p", port}));
    std::this_thread::sleep_for(300ms);  // lets it listen
    std::vector<std::string> args = {"ucx_perftest", "127.0.0.1",
                                     "-p",           port,
                                     "-t",           test,
                                     "-s",           std::to_string(bytes),
                                     "-n",           std::to_string(iters),
                                     "-w",           std::to_string(warmup)};
    if (peer_errors) args.push_back("-e");
    ASSIGN_OR_RETURN(std::string out, RunCapture(args, 120s));
    server.Stop(2s);
    // Final: iterations, latency p50 / average / overall (usec), bandwidth average / overall
    // (MB/s = 2^20 B/s), message rate average / overall.
    const size_t at = out.find("Final:");
    if (at != std::string::npos) {
      std::istringstream line(out.substr(at + 6));
      double it, p50, avg, overall, bw;
      if (line >> it >> p50 >> avg >> overall >> bw) {
        return PerftestResult{p50, avg, bw * kMiBPerSecToGBps};
      }
    }
    last_output = out;
  }
  return UnavailableError("ucx_perftest -t " + test +
                          " gave no Final line: " + last_output.substr(0, 400));
}

// ---- Attic: latency ----

struct LatencyStats {
  double p50 = 0, p99 = 0, avg = 0;
};

LatencyStats Summarize(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  LatencyStats s;
  if (us.empty()) return s;
  s.p50 = us[us.size() / 2];
  s.p99 = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  double sum = 0;
  for (double x : us) sum += x;
  s.avg = sum / static_cast<double>(us.size());
  return s;
}

double MicrosSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

OutgoingMessage EchoOf(Method method, const std::vector<std::byte>& payload, size_t bytes) {
  OutgoingMessage m;
  m.method = method;
  if (bytes > 0) m.payload = {std::span<const std::byte>(payload.data(), bytes)};
  return m;
}

// Ping-pong through the callback API: each reply's callback (on the client's progress
// thread) times the call and issues the next one; this thread only waits for the end.
class CallbackPingPong {
 public:
  CallbackPingPong(Connection& conn, const std::vector<std::byte>& payload, size_t bytes,
                   int warmup, int iters)
      : conn_(conn), payload_(payload), bytes_(bytes), warmup_(warmup), iters_(iters) {
    samples_.reserve(static_cast<size_t>(iters));
  }
  StatusOr<LatencyStats> Run() {
    std::future<Status> done = finished_.get_future();
    Issue();
    if (done.wait_for(120s) != std::future_status::ready) {
      return DeadlineExceededError("callback ping-pong did not finish in 120 s");
    }
    RETURN_IF_ERROR(done.get());
    return Summarize(std::move(samples_));
  }

 private:
  void Issue() {
    t0_ = Clock::now();
    conn_.Call(EchoOf(Method::kEcho, payload_, bytes_), DeadlineAfter(10s),
               [this](StatusOr<IncomingMessage> r) { OnReply(std::move(r)); });
  }
  void OnReply(StatusOr<IncomingMessage> r) {
    const double us = MicrosSince(t0_);
    if (!r.ok()) return finished_.set_value(r.status());
    if (r->payload().size() != bytes_) return finished_.set_value(DataLossError("short echo"));
    if (count_ >= warmup_) samples_.push_back(us);
    if (++count_ == warmup_ + iters_) return finished_.set_value(OkStatus());
    Issue();
  }

  Connection& conn_;
  const std::vector<std::byte>& payload_;
  const size_t bytes_;
  const int warmup_, iters_;
  int count_ = 0;  // progress thread only, after the first Issue
  Clock::time_point t0_;
  std::vector<double> samples_;
  std::promise<Status> finished_;
};

// Ping-pong as a blocking caller does it: Call(...).get() from this thread.
StatusOr<LatencyStats> FuturePingPong(Connection& conn, const std::vector<std::byte>& payload,
                                      size_t bytes, int warmup, int iters) {
  std::vector<double> samples;
  samples.reserve(static_cast<size_t>(iters));
  for (int i = 0; i < warmup + iters; ++i) {
    const auto t0 = Clock::now();
    StatusOr<IncomingMessage> r =
        conn.Call(EchoOf(Method::kEcho, payload, bytes), DeadlineAfter(10s)).get();
    const double us = MicrosSince(t0);
    RETURN_IF_ERROR(r.status());
    if (i >= warmup) samples.push_back(us);
  }
  return Summarize(std::move(samples));
}

// ---- Attic: bandwidth ----

// `calls` requests of `bytes`, `window` in flight; each completion issues the next request
// from the callback. Returns bytes per second of request payload (1e9 = 1 GB/s).
class WindowedStream {
 public:
  WindowedStream(Connection& conn, Method method, const std::vector<std::byte>& payload,
                 size_t bytes, int calls, int window)
      : conn_(conn),
        method_(method),
        payload_(payload),
        bytes_(bytes),
        calls_(calls),
        window_(window) {}
  StatusOr<double> Run() {
    std::future<Status> done = finished_.get_future();
    const auto t0 = Clock::now();
    for (int i = 0; i < std::min(window_, calls_); ++i) MaybeIssue();
    if (done.wait_for(300s) != std::future_status::ready) {
      return DeadlineExceededError("bandwidth stream did not finish in 300 s");
    }
    RETURN_IF_ERROR(done.get());
    const double secs = std::chrono::duration<double>(end_ - t0).count();
    return static_cast<double>(bytes_) * calls_ / secs;
  }

 private:
  void MaybeIssue() {
    if (issued_.fetch_add(1) >= calls_) return;
    conn_.Call(EchoOf(method_, payload_, bytes_), DeadlineAfter(60s),
               [this](StatusOr<IncomingMessage> r) { OnReply(std::move(r)); });
  }
  void OnReply(StatusOr<IncomingMessage> r) {
    if (failed_) return;
    const size_t want = method_ == Method::kEcho ? bytes_ : 0;
    if (!r.ok() || r->payload().size() != want) {
      failed_ = true;
      return finished_.set_value(r.ok() ? DataLossError("wrong reply size") : r.status());
    }
    if (++completed_ == calls_) {
      end_ = Clock::now();
      return finished_.set_value(OkStatus());
    }
    MaybeIssue();
  }

  Connection& conn_;
  const Method method_;
  const std::vector<std::byte>& payload_;
  const size_t bytes_;
  const int calls_, window_;
  std::atomic<int> issued_{0};
  int completed_ = 0;  // progress thread only
  bool failed_ = false;
  Clock::time_point end_;
  std::promise<Status> finished_;
};

// ---- one configuration ----

struct Sizes {
  std::vector<size_t> latency = {8, 64, 1024, 4096};
  std::vector<size_t> bulk = {size_t{1} << 20, size_t{4} << 20, size_t{16} << 20, size_t{64} << 20};
};

// Requests in flight for `bytes`: --window, but at most 128 MiB outstanding (2 x 64 MiB), so
// the receiver's buffer cache (RpcServerOptions::receive_cache_bytes) covers them.
int WindowFor(size_t bytes, int window) {
  return static_cast<int>(std::clamp<size_t>((size_t{128} << 20) / bytes, 1, window));
}

// Calls per bandwidth measurement: about `budget` bytes, at least 16 and at most 2000.
int BulkCalls(size_t bytes, bool quick) {
  const size_t budget = quick ? (size_t{256} << 20) : (size_t{1} << 30);
  return static_cast<int>(std::clamp<size_t>(budget / bytes, 16, 2000));
}

// Figures of one repetition, keyed by row name + params; medians are taken across reps.
using Samples = std::map<std::string, std::vector<double>>;

std::string Key(const std::string& name, size_t bytes) {
  return name + "/" + std::to_string(bytes);
}

class ServerProcess {
 public:
  Status Start(const Flags& flags) {
    char dir[] = "/tmp/attic-bench-transport-XXXXXX";
    if (mkdtemp(dir) == nullptr) return InternalError("mkdtemp failed");
    dir_ = dir;
    const std::string port_file = dir_ + "/port";
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) return InternalError("cannot read /proc/self/exe");
    std::vector<std::string> args = {std::string(self, static_cast<size_t>(n)), "--serve",
                                     port_file};
    if (flags.busy_poll_us >= 0) {
      args.insert(args.end(), {"--busy-poll-us", std::to_string(flags.busy_poll_us)});
    }
    RETURN_IF_ERROR(child_.Start(args));
    const auto until = Clock::now() + 20s;
    while (Clock::now() < until) {
      std::ifstream in(port_file);
      int port = 0;
      if (in >> port && port > 0) {
        address_ = "127.0.0.1:" + std::to_string(port);
        return OkStatus();
      }
      if (!child_.Running()) return UnavailableError("the server process exited");
      std::this_thread::sleep_for(10ms);
    }
    return UnavailableError("the server process did not report its port in 20 s");
  }
  ~ServerProcess() {
    child_.Stop();
    if (!dir_.empty()) {
      std::remove((dir_ + "/port").c_str());
      rmdir(dir_.c_str());
    }
  }
  const std::string& address() const { return address_; }

 private:
  Child child_;
  std::string dir_;
  std::string address_;
};

Status RunAttic(const Flags& flags, const Sizes& sizes, Samples* out) {
  ServerProcess server;
  RETURN_IF_ERROR(server.Start(flags));
  transport::RpcClientOptions options{.name = "bench-client"};
  if (flags.busy_poll_us >= 0) options.busy_poll_us = flags.busy_poll_us;
  ASSIGN_OR_RETURN(auto client, transport::RpcClient::Create(options));
  ASSIGN_OR_RETURN(auto conn, client->Connect(server.address(), DeadlineAfter(10s)));
  std::vector<std::byte> payload(sizes.bulk.back(), std::byte{0x5a});

  const int warmup = flags.quick ? 500 : 2000;
  const int iters = flags.quick ? 5000 : 30000;
  for (size_t bytes : sizes.latency) {
    ASSIGN_OR_RETURN(LatencyStats cb, CallbackPingPong(*conn, payload, bytes, warmup, iters).Run());
    (*out)[Key("cb_p50", bytes)].push_back(cb.p50);
    (*out)[Key("cb_p99", bytes)].push_back(cb.p99);
    (*out)[Key("cb_avg", bytes)].push_back(cb.avg);
    ASSIGN_OR_RETURN(LatencyStats fu, FuturePingPong(*conn, payload, bytes, warmup / 2, iters / 2));
    (*out)[Key("fu_p50", bytes)].push_back(fu.p50);
    (*out)[Key("fu_p99", bytes)].push_back(fu.p99);
    (*out)[Key("fu_avg", bytes)].push_back(fu.avg);
  }
  for (size_t bytes : sizes.bulk) {
    const int calls = BulkCalls(bytes, flags.quick);
    // One untimed pass of a window's worth warms buffers and connections.
    RETURN_IF_ERROR(
        WindowedStream(*conn, Method::kDiscard, payload, bytes, flags.window, flags.window)
            .Run()
            .status());
    ASSIGN_OR_RETURN(
        double discard,
        WindowedStream(*conn, Method::kDiscard, payload, bytes, calls, flags.window).Run());
    (*out)[Key("discard", bytes)].push_back(discard / 1e9);
    ASSIGN_OR_RETURN(double echo, WindowedStream(*conn, Method::kEcho, payload, bytes,
                                                 std::max(8, calls / 2), flags.window)
                                      .Run());
    (*out)[Key("echo", bytes)].push_back(echo / 1e9);
  }
  return OkStatus();
}

// Limits come from runs with -e (peer error handling, as Attic's endpoints): with UCX 1.13
// that excludes the shared-memory transports (no peer-failure detection), so on one host
// both sides use TCP. Runs without -e (prefix "nofail_") are the machine's best, for reference.
Status RunPerftests(const Flags& flags, const Sizes& sizes, Samples* out) {
  const int lat_iters = flags.quick ? 20000 : 100000;
  for (bool peer : {true, false}) {
    const std::string pre = peer ? "" : "nofail_";
    for (size_t bytes : sizes.latency) {
      if (!peer && bytes != 8) continue;
      ASSIGN_OR_RETURN(auto r, RunPerftest("ucp_am_lat", bytes, lat_iters, lat_iters / 10, peer));
      (*out)[Key(pre + "am_lat_p50", bytes)].push_back(r.lat_p50_us);
      (*out)[Key(pre + "am_lat_avg", bytes)].push_back(r.lat_avg_us);
    }
    ASSIGN_OR_RETURN(auto tag, RunPerftest("tag_lat", 8, lat_iters, lat_iters / 10, peer));
    (*out)[Key(pre + "tag_lat_p50", 8)].push_back(tag.lat_p50_us);
    (*out)[Key(pre + "tag_lat_avg", 8)].push_back(tag.lat_avg_us);
    for (size_t bytes : sizes.bulk) {
      const int n = BulkCalls(bytes, flags.quick);
      for (const char* test : {"ucp_am_bw", "tag_bw"}) {
        ASSIGN_OR_RETURN(auto r, RunPerftest(test, bytes, n, std::max(2, n / 10), peer));
        (*out)[Key(pre + (std::string(test) == "tag_bw" ? "tag_bw" : "am_bw"), bytes)].push_back(
            r.bw_gbps);
      }
    }
  }
  return OkStatus();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

std::string Fmt(double x) {
  char b[32];
  std::snprintf(b, sizeof(b), "%.3f", x);
  return b;
}

void AddRows(const std::string& tls, const Sizes& sizes, const Flags& flags, int reps,
             const Samples& s, bool have_perftest, BenchReport* report) {
  auto med = [&](const std::string& key) -> std::optional<double> {
    auto it = s.find(key);
    if (it == s.end() || it->second.empty()) return std::nullopt;
    return Median(it->second);
  };
  const std::string r = std::to_string(reps);
  for (size_t bytes : sizes.latency) {
    const std::optional<double> am = med(Key("am_lat_p50", bytes));
    for (const char* api : {"callback", "future"}) {
      const std::string p = std::string(api) == "callback" ? "cb_" : "fu_";
      BenchRow row{.name = "rpc_round_trip",
                   .params = {{"tls", tls},
                              {"api", api},
                              {"payload_bytes", std::to_string(bytes)},
                              {"stat", "p50"},
                              {"p99_us", Fmt(*med(Key(p + "p99", bytes)))},
                              {"avg_us", Fmt(*med(Key(p + "avg", bytes)))},
                              {"reps", r}},
                   .value = *med(Key(p + "p50", bytes)),
                   .unit = "us",
                   .better = "lower"};
      if (am) {
        row.limit = 2 * *am;
        row.limit_source =
            "2 x ucx_perftest ucp_am_lat -e one-way p50, -s " + std::to_string(bytes);
      }
      report->AddRow(std::move(row));
    }
  }
  for (size_t bytes : sizes.bulk) {
    const std::optional<double> am = med(Key("am_bw", bytes));
    BenchRow row{.name = "rpc_discard_bw",
                 .params = {{"tls", tls},
                            {"payload_bytes", std::to_string(bytes)},
                            {"window", std::to_string(WindowFor(bytes, flags.window))},
                            {"calls", std::to_string(BulkCalls(bytes, flags.quick))},
                            {"reps", r}},
                 .value = *med(Key("discard", bytes)),
                 .unit = "GB/s"};
    if (am) {
      row.limit = *am;
      row.limit_source = "ucx_perftest ucp_am_bw -e -s " + std::to_string(bytes);
    }
    report->AddRow(std::move(row));
    report->AddRow({.name = "rpc_echo_bw",
                    .params = {{"tls", tls},
                               {"payload_bytes", std::to_string(bytes)},
                               {"window", std::to_string(WindowFor(bytes, flags.window))},
                               {"direction", "each"},
                               {"reps", r}},
                    .value = *med(Key("echo", bytes)),
                    .unit = "GB/s"});
  }
  if (!have_perftest) return;
  for (bool peer : {true, false}) {
    const std::string pre = peer ? "" : "nofail_";
    const Param mode = {"err_handling", peer ? "peer" : "none"};
    for (size_t bytes : sizes.latency) {
      if (!peer && bytes != 8) continue;
      report->AddRow({.name = "ucx_perftest_ucp_am_lat",
                      .params = {{"tls", tls},
                                 mode,
                                 {"bytes", std::to_string(bytes)},
                                 {"stat", "p50 one-way"},
                                 {"avg_us", Fmt(*med(Key(pre + "am_lat_avg", bytes)))},
                                 {"reps", r}},
                      .value = *med(Key(pre + "am_lat_p50", bytes)),
                      .unit = "us",
                      .better = "lower"});
    }
    report->AddRow({.name = "ucx_perftest_tag_lat",
                    .params = {{"tls", tls},
                               mode,
                               {"bytes", "8"},
                               {"stat", "p50 one-way"},
                               {"avg_us", Fmt(*med(Key(pre + "tag_lat_avg", 8)))},
                               {"reps", r}},
                    .value = *med(Key(pre + "tag_lat_p50", 8)),
                    .unit = "us",
                    .better = "lower"});
    for (const char* test : {"am_bw", "tag_bw"}) {
      for (size_t bytes : sizes.bulk) {
        report->AddRow(
            {.name = std::string("ucx_perftest_") +
                     (std::string(test) == "am_bw" ? "ucp_am_bw" : "tag_bw"),
             .params = {{"tls", tls}, mode, {"bytes", std::to_string(bytes)}, {"reps", r}},
             .value = *med(Key(pre + test, bytes)),
             .unit = "GB/s"});
      }
    }
  }
}

int Run(const Flags& flags) {
  const bool have_perftest = PerftestAvailable();
  if (!have_perftest) {
    std::fprintf(stderr,
                 "\n*** attic-bench-transport: ucx_perftest NOT FOUND (install ucx-utils) ***\n"
                 "*** Attic's figures are reported without their ucx_perftest limits.     ***\n\n");
  }
  const char* inherited = std::getenv("UCX_TLS");
  const std::string inherited_tls = inherited ? inherited : "";
  BenchReport report("transport");
  report.AddHostFact("ucx_tls_inherited", inherited_tls.empty() ? "(unset)" : inherited_tls);
  report.AddHostFact("ucx_perftest", have_perftest ? "yes" : "missing");
  const Sizes sizes;
  const int reps = flags.quick ? 1 : 3;
  for (const std::string& tls : flags.tls) {
    if (tls == "tcp") {
      setenv("UCX_TLS", "tcp", 1);
    } else if (inherited_tls.empty()) {
      unsetenv("UCX_TLS");
    } else {
      setenv("UCX_TLS", inherited_tls.c_str(), 1);
    }
    std::printf("attic-bench-transport: tls=%s (UCX_TLS=%s), %d repetition(s)\n", tls.c_str(),
                std::getenv("UCX_TLS") ? std::getenv("UCX_TLS") : "(unset)", reps);
    std::fflush(stdout);
    Samples samples;
    for (int rep = 0; rep < reps; ++rep) {
      Status s = RunAttic(flags, sizes, &samples);
      if (s.ok() && have_perftest) s = RunPerftests(flags, sizes, &samples);
      if (!s.ok()) {
        std::fprintf(stderr, "attic-bench-transport: tls=%s: %s\n", tls.c_str(),
                     s.ToString().c_str());
        return 1;
      }
    }
    AddRows(tls, sizes, flags, reps, samples, have_perftest, &report);
  }
  return report.Finish(flags.json, "attic-bench-transport");
}

}  // namespace
}  // namespace attic::bench

int main(int argc, char** argv) {
  attic::bench::Flags flags;
  if (!attic::bench::ParseFlags(argc, argv, &flags)) return 0;
  if (!flags.serve_port_file.empty()) return attic::bench::Serve(flags);
  return attic::bench::Run(flags);
}
