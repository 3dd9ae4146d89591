// Progress threads and CPU: an idle server and client sleep (about no CPU over a second),
// the busy-poll window keeps a thread polling after activity and then lets it sleep; the
// transport's Discard method; inline headers of every size.
#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "tests/transport/rpc_fixture.h"

namespace attic::transport::testing {
namespace {

// CPU time (user + system, in clock ticks) of this process's threads named attic-rpc-*.
long RpcThreadTicks() {
  long ticks = 0;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const std::string task = std::string("/proc/self/task/") + e->d_name;
    std::string comm;
    std::getline(std::ifstream(task + "/comm"), comm);
    if (comm.rfind("attic-rpc-", 0) != 0) continue;
    std::string stat;
    std::getline(std::ifstream(task + "/stat"), stat);
    // Fields after "(comm) ": state is field 3; utime and stime are fields 14 and 15.
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::stol(field);
      if (i == 15) stime = std::stol(field);
    }
    ticks += utime + stime;
  }
  closedir(dir);
  return ticks;
}

class BusyPollTest : public RpcTest {
 protected:
  void SetUp() override {}  // each test starts its own server
};

TEST_F(BusyPollTest, IdleServerAndClientThreadsSleep) {
  StartServer(RpcServerOptions{.name = "worker-0", .busy_poll_us = 50});
  auto client = NewClient(RpcClientOptions{.busy_poll_us = 50});
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(Echo(*conn, Header("warm"), "x").ok());
  std::this_thread::sleep_for(100ms);  // well past the window
  const long before = RpcThreadTicks();
  ASSERT_GE(before, 0);
  std::this_thread::sleep_for(1s);
  const long used = RpcThreadTicks() - before;
  // A spinning thread would use ~100 ticks (USER_HZ = 100) in that second.
  EXPECT_LE(used, 5) << "idle progress threads used " << used << " ticks in 1 s";
}

TEST_F(BusyPollTest, WindowKeepsPollingAfterActivityThenSleeps) {
  // A 300 ms window makes the spin measurable in clock ticks.
  StartServer(RpcServerOptions{.name = "worker-0", .busy_poll_us = 300000});
  auto client = NewClient(RpcClientOptions{.busy_poll_us = 300000});
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  std::this_thread::sleep_for(500ms);  // both windows over: asleep
  const long t0 = RpcThreadTicks();
  ASSERT_TRUE(Echo(*conn, Header("wake"), "x").ok());
  std::this_thread::sleep_for(600ms);  // two threads spin ~300 ms each, then sleep
  const long t1 = RpcThreadTicks();
  std::this_thread::sleep_for(1s);
  const long t2 = RpcThreadTicks();
  EXPECT_GE(t1 - t0, 20) << "the busy-poll window did not keep the threads polling";
  EXPECT_LE(t2 - t1, 5) << "the threads kept polling after the window";
}

TEST_F(BusyPollTest, ZeroWindowServesCallsAndSleeps) {
  StartServer(RpcServerOptions{.name = "worker-0", .busy_poll_us = 0});
  auto client = NewClient(RpcClientOptions{.busy_poll_us = 0});
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  for (int i = 0; i < 200; ++i) {
    auto r = Echo(*conn, Header("h"), Pattern(100, static_cast<uint8_t>(i)));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(ToString(r->payload()), Pattern(100, static_cast<uint8_t>(i)));
  }
}

TEST_F(RpcTest, DiscardReceivesThePayloadAndRepliesEmpty) {
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  for (size_t n : {size_t{0}, size_t{8}, size_t{4} << 20}) {
    const std::string payload = Pattern(n, 3);
    const uint64_t before = server_->stats().bytes_received.load();
    OutgoingMessage m;
    m.method = Method::kDiscard;
    m.header = Header("dropped");
    if (n > 0) m.payload = {AsBytes(payload)};
    auto r = conn->Call(std::move(m), DeadlineAfter(10s)).get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->method(), Method::kDiscard);
    EXPECT_TRUE(r->header().empty());
    EXPECT_TRUE(r->payload().empty());
    EXPECT_EQ(server_->stats().bytes_received.load() - before, Header("dropped").size() + n);
  }
  EXPECT_EQ(MethodName(Method::kDiscard), "Discard");
}

// Headers below and above the inline limit (2 KiB with the frame), with small and
// rendezvous-sized payloads, come back intact and aligned.
TEST_F(RpcTest, HeadersOfEverySizeWithLargeAndSmallPayloads) {
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  for (size_t h : {size_t{8}, size_t{1000}, size_t{2000}, size_t{2008}, size_t{8192}}) {
    for (size_t n : {size_t{0}, size_t{64}, size_t{1} << 20}) {
      const std::string header = Pattern(h, 11);
      const std::string payload = Pattern(n, 5);
      auto r = Echo(*conn, header, payload);
      ASSERT_TRUE(r.ok()) << r.status() << " header " << h << " payload " << n;
      EXPECT_TRUE(ToString(r->header()) == header) << "header " << h;
      EXPECT_TRUE(ToString(r->payload()) == payload) << "payload " << n;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(r->header().data()) % 8, 0u);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(r->payload().data()) % 64, 0u);
    }
  }
}

}  // namespace
}  // namespace attic::transport::testing
