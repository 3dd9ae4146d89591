// A worker process killed with SIGKILL while calls are pending: every call fails UNAVAILABLE
// naming the worker well within its deadline, later calls fail at once, and connecting to
// the dead address fails within the connect deadline. The worker is transport_test_server,
// launched with posix_spawn.
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "tests/transport/rpc_fixture.h"

extern char** environ;

namespace attic::transport::testing {
namespace {

class SpawnedServer {
 public:
  // Launches the server and reads the port it prints. False (with a failure) if it fails.
  bool Start() {
    int fds[2];
    if (pipe(fds) != 0) return false;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    char* argv[] = {const_cast<char*>(ATTIC_TEST_SERVER), nullptr};
    const int rc = posix_spawn(&pid_, ATTIC_TEST_SERVER, &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      ADD_FAILURE() << "posix_spawn " << ATTIC_TEST_SERVER << ": " << rc;
      return false;
    }
    std::string out;
    const auto until = Clock::now() + 10s;
    while (out.find('\n') == std::string::npos && Clock::now() < until) {
      pollfd p{fds[0], POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buf[64];
      const ssize_t n = read(fds[0], buf, sizeof(buf));
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    close(fds[0]);
    if (out.rfind("PORT ", 0) != 0) {
      ADD_FAILURE() << "test server printed '" << out << "'";
      return false;
    }
    port_ = static_cast<uint16_t>(std::atoi(out.c_str() + 5));
    return true;
  }

  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  ~SpawnedServer() { Kill(); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

TEST(PeerFailureTest, KilledWorkerFailsPendingCallsWellWithinTheirDeadline) {
  SpawnedServer worker;
  ASSERT_TRUE(worker.Start());
  auto client = RpcClient::Create({});
  ASSERT_TRUE(client.ok()) << client.status();
  auto conn = (*client)->Connect(worker.address(), DeadlineAfter(5s));
  ASSERT_TRUE(conn.ok()) << conn.status();
  OutgoingMessage ping;
  ping.method = Method::kEcho;
  ping.header = Header("ping");
  ASSERT_TRUE((*conn)->Call(std::move(ping), DeadlineAfter(5s)).get().ok());

  std::vector<std::future<StatusOr<IncomingMessage>>> pending;
  for (int i = 0; i < 3; ++i) {
    OutgoingMessage m;
    m.method = Method::kAttend;  // held by the server, never answered
    m.header = Header("held");
    pending.push_back((*conn)->Call(std::move(m), DeadlineAfter(20s)));
  }
  std::this_thread::sleep_for(100ms);  // let the requests reach the worker
  const auto killed = Clock::now();
  worker.Kill();
  const std::string expected = "worker doomed-worker (" + worker.address() + ") is unreachable: ";
  for (auto& f : pending) {
    ASSERT_EQ(f.wait_for(10s), std::future_status::ready) << "call still pending";
    auto r = f.get();
    EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status();
    EXPECT_EQ(r.status().message().rfind(expected, 0), 0u) << r.status();
  }
  EXPECT_LT(Clock::now() - killed, 10s);
  EXPECT_FALSE((*conn)->connected());

  // Later calls fail at once, with the same reason.
  OutgoingMessage later;
  later.method = Method::kEcho;
  const auto start = Clock::now();
  auto r = (*conn)->Call(std::move(later), DeadlineAfter(20s)).get();
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status();
  EXPECT_EQ(r.status().message().rfind(expected, 0), 0u) << r.status();
  EXPECT_LT(Clock::now() - start, 1s);

  // And the dead address refuses new connections within the connect deadline.
  const auto connect_start = Clock::now();
  auto again = (*client)->Connect(worker.address(), DeadlineAfter(2s));
  EXPECT_EQ(again.status().code(), StatusCode::kUnavailable) << again.status();
  EXPECT_LT(Clock::now() - connect_start, 2500ms);
}

}  // namespace
}  // namespace attic::transport::testing
