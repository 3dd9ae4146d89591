// Echo over real UCX on loopback: sizes from empty to 64 MiB (eager and rendezvous), gather
// lists, alignment of what arrives, keep-alive release, and concurrent callers.
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "tests/transport/rpc_fixture.h"

namespace attic::transport::testing {
namespace {

TEST_F(RpcTest, EchoesHeaderWithoutPayload) {
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  EXPECT_TRUE(conn->connected());
  auto r = Echo(*conn, Header("hello"), "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ToString(r->header()), Header("hello"));
  EXPECT_TRUE(r->payload().empty());
  EXPECT_EQ(r->method(), Method::kEcho);
  EXPECT_EQ(r->frame().flags & kFrameReply, kFrameReply);
}

class EchoSizeTest : public RpcTest, public ::testing::WithParamInterface<size_t> {};

TEST_P(EchoSizeTest, PayloadComesBackIntactAndAligned) {
  const size_t n = GetParam();
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  const std::string payload = Pattern(n, 7);
  auto r = Echo(*conn, Header("sized"), payload);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ToString(r->header()), Header("sized"));
  ASSERT_EQ(r->payload().size(), n);
  EXPECT_TRUE(ToString(r->payload()) == payload) << "payload differs";
  EXPECT_EQ(reinterpret_cast<uintptr_t>(r->header().data()) % 8, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(r->payload().data()) % 64, 0u);
  EXPECT_GE(server_->stats().bytes_received.load(), n);
  EXPECT_GE(server_->stats().bytes_sent.load(), n);
}

INSTANTIATE_TEST_SUITE_P(Sizes, EchoSizeTest,
                         ::testing::Values(size_t{1}, size_t{4096}, size_t{64} << 10,
                                           size_t{1} << 20, size_t{64} << 20),
                         [](const auto& p) { return std::to_string(p.param) + "B"; });

TEST_F(RpcTest, GatherListIsSentInOrderAndKeepaliveReleasedAfterSend) {
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  // Five spans of different sizes (one empty, one large enough for rendezvous) owned by
  // one object that only the message keeps alive.
  auto parts = std::make_shared<std::vector<std::string>>(std::vector<std::string>{
      Pattern(3, 1), Pattern(0, 2), Pattern(1000, 3), Pattern(300000, 4), Pattern(17, 5)});
  std::weak_ptr<std::vector<std::string>> watch = parts;
  std::string expected;
  OutgoingMessage m;
  m.method = Method::kEcho;
  m.header = Header("gather");
  for (const auto& p : *parts) {
    m.payload.push_back(AsBytes(p));
    expected += p;
  }
  m.keepalive = std::move(parts);
  auto r = conn->Call(std::move(m), DeadlineAfter(10s)).get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(ToString(r->payload()) == expected);
  EXPECT_TRUE(WaitFor([&] { return watch.expired(); })) << "keepalive outlived the send";
}

TEST_F(RpcTest, ManyConcurrentCallsFromFourThreads) {
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  constexpr int kThreads = 4;
  constexpr int kCallsPerThread = 200;
  std::atomic<int> ok{0};
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::future<StatusOr<IncomingMessage>>> futures;
      std::vector<std::string> payloads;
      for (int i = 0; i < kCallsPerThread; ++i) {
        payloads.push_back(Pattern(static_cast<size_t>(i * 97 % 5000), uint8_t(t * 31 + i)));
      }
      for (int i = 0; i < kCallsPerThread; ++i) {
        OutgoingMessage m;
        m.method = Method::kEcho;
        m.header = Header("t" + std::to_string(t) + "i" + std::to_string(i));
        m.payload = {AsBytes(payloads[i])};
        futures.push_back(conn->Call(std::move(m), DeadlineAfter(20s)));
      }
      for (int i = 0; i < kCallsPerThread; ++i) {
        auto r = futures[i].get();
        const bool good =
            r.ok() && ToString(r->payload()) == payloads[i] &&
            ToString(r->header()) == Header("t" + std::to_string(t) + "i" + std::to_string(i));
        (good ? ok : wrong).fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kThreads * kCallsPerThread);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(client->stats().late_replies.load(), 0u);
}

TEST_F(RpcTest, HandlerRepliesFromAnotherThread) {
  SetHandler([](IncomingMessage m, Responder r) {
    std::thread([m = std::move(m), r = std::move(r)]() mutable {
      OutgoingMessage reply;
      reply.method = m.method();
      reply.header = Header("done:" + std::to_string(m.payload().size()));
      r.Reply(std::move(reply));
    }).detach();
  });
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  OutgoingMessage m;
  m.method = Method::kStats;
  m.header = Header("x");
  const std::string payload = Pattern(123, 0);
  m.payload = {AsBytes(payload)};
  auto r = conn->Call(std::move(m), DeadlineAfter(5s)).get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ToString(r->header()), Header("done:123"));
  EXPECT_EQ(server_->stats().connections_open.load(), 1u);
  EXPECT_EQ(server_->stats().connections_accepted.load(), 1u);
}

}  // namespace
}  // namespace attic::transport::testing

namespace attic::transport::testing {
namespace {

TEST_F(RpcTest, RegisteredMemoryOnBothSidesCarriesPayloads) {
  std::vector<std::byte> pool(size_t{4} << 20);
  server_.reset();
  StartServer({.name = "worker-0", .register_regions = {std::span<std::byte>(pool)}});
  auto client = NewClient();
  std::vector<std::byte> staging(size_t{2} << 20);
  auto handle = client->RegisterMemory(staging);
  ASSERT_TRUE(handle.ok()) << handle.status();
  ASSERT_NE(*handle, nullptr);
  const std::string pattern = Pattern(staging.size(), 3);
  std::memcpy(staging.data(), pattern.data(), pattern.size());
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  OutgoingMessage m;
  m.method = Method::kEcho;
  m.payload = {std::span<const std::byte>(staging)};
  auto r = conn->Call(std::move(m), DeadlineAfter(10s)).get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(ToString(r->payload()) == pattern);
  handle->reset();  // unregisters on the progress thread; the client keeps working
  EXPECT_TRUE(Echo(*conn, Header("after"), "x").ok());
}

}  // namespace
}  // namespace attic::transport::testing
