// Failure semantics over real UCX: deadlines and late replies, dropped responders,
// StopAccepting, the server's frame checks (each answered while other connections keep
// being served), closing connections, and destroying the client with calls pending.
#include <cstring>
#include <vector>

#include "tests/transport/rpc_fixture.h"

namespace attic::transport::testing {
namespace {

// A handler that keeps every request's Responder unanswered until the test answers it.
class HeldResponders {
 public:
  RequestHandler Handler() {
    return [this](IncomingMessage, Responder r) {
      MutexLock l(&mu_);
      held_.push_back(std::move(r));
    };
  }
  bool WaitForCount(size_t n) EXCLUDES(mu_) {
    return WaitFor([&] {
      MutexLock l(&mu_);
      return held_.size() == n;
    });
  }
  // Runs f on the held responders under the lock.
  template <typename F>
  void With(F&& f) EXCLUDES(mu_) {
    MutexLock l(&mu_);
    f(held_);
  }

 private:
  Mutex mu_;
  std::vector<Responder> held_ GUARDED_BY(mu_);
};

OutgoingMessage Request(Method method, const std::string& text) {
  OutgoingMessage m;
  m.method = method;
  m.header = Header(text);
  return m;
}

TEST_F(RpcTest, DeadlineExceededThenLateReplyIsDropped) {
  HeldResponders held;
  SetHandler(held.Handler());
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  const auto start = Clock::now();
  auto r = conn->Call(Request(Method::kAttend, "slow"), DeadlineAfter(150ms)).get();
  const auto took = Clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_NE(r.status().message().find("waiting for Attend from worker"), std::string::npos)
      << r.status();
  EXPECT_NE(r.status().message().find(address_), std::string::npos) << r.status();
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 1s);
  held.With([](std::vector<Responder>& held_responders) {
    ASSERT_EQ(held_responders.size(), 1u);
    // The announced deadline is about the caller's (the server counts from the request's
    // arrival, a little after the caller started its clock).
    EXPECT_LT(held_responders[0].deadline(), Clock::now() + 50ms);
    EXPECT_FALSE(held_responders[0].peer().empty());
    held_responders[0].Reply(Request(Method::kAttend, "too late"));
  });
  EXPECT_TRUE(WaitFor([&] { return client->stats().late_replies.load() == 1; }));
  EXPECT_EQ(client->stats().deadlines_exceeded.load(), 1u);
  // The connection is still good.
  EXPECT_TRUE(Echo(*conn, Header("after"), "").ok());
}

TEST_F(RpcTest, ResponderDroppedUnansweredIsInternal) {
  SetHandler([](IncomingMessage, Responder) {});  // the Responder dies here
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  auto r = conn->Call(Request(Method::kStats, "x"), DeadlineAfter(5s)).get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal) << r.status();
  EXPECT_NE(r.status().message().find("worker-0: request dropped"), std::string::npos)
      << r.status();
}

TEST_F(RpcTest, HandlerErrorCarriesCodeAndWorkerName) {
  SetHandler([](IncomingMessage, Responder r) { r.Fail(NotFoundError("sequence 42")); });
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  auto r = conn->Call(Request(Method::kAttend, "x"), DeadlineAfter(5s)).get();
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "worker " + address_ + ": sequence 42");
}

TEST_F(RpcTest, StopAcceptingAnswersUnavailableButFinishesHandedRequests) {
  HeldResponders held;
  SetHandler(held.Handler());
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  auto in_flight = conn->Call(Request(Method::kAttend, "before"), DeadlineAfter(5s));
  ASSERT_TRUE(held.WaitForCount(1));
  server_->StopAccepting();
  auto r = Echo(*conn, Header("after"), "");
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status();
  EXPECT_NE(r.status().message().find("worker-0 is shutting down"), std::string::npos);
  // A new connection's Hello is refused the same way.
  auto other = NewClient();
  EXPECT_EQ(other->Connect(address_, DeadlineAfter(5s)).status().code(), StatusCode::kUnavailable);
  held.With([](std::vector<Responder>& rs) { rs[0].Reply(Request(Method::kAttend, "finished")); });
  auto done = in_flight.get();
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(ToString(done->header()), Header("finished"));
}

struct BadFrame {
  std::string name;
  std::function<void(FrameHeader&)> mutate;
  size_t data_bytes;
  StatusCode code;
  std::string text;
};

// gtest prints the parameter by name, not as bytes.
void PrintTo(const BadFrame& f, std::ostream* os) { *os << f.name; }

class MalformedFrameTest : public RpcTest, public ::testing::WithParamInterface<BadFrame> {};

TEST_P(MalformedFrameTest, GetsAnErrorReplyAndServerKeepsServing) {
  const BadFrame& bad = GetParam();
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  auto bystander = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  ASSERT_NE(bystander, nullptr);
  FrameHeader frame;
  frame.method = static_cast<uint16_t>(Method::kEcho);
  frame.header_bytes = static_cast<uint32_t>(bad.data_bytes);
  frame.timeout_ms = 5000;
  bad.mutate(frame);
  std::promise<StatusOr<IncomingMessage>> p;
  conn->CallRawForTesting(frame, Pattern(bad.data_bytes, 9), DeadlineAfter(5s),
                          [&](StatusOr<IncomingMessage> r) { p.set_value(std::move(r)); });
  auto r = p.get_future().get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), bad.code) << r.status();
  EXPECT_NE(r.status().message().find(bad.text), std::string::npos) << r.status();
  EXPECT_EQ(server_->stats().requests_rejected.load(), 1u);
  // Both the offending connection and another one are still served.
  auto again = Echo(*conn, Header("again"), "payload");
  ASSERT_TRUE(again.ok()) << again.status();
  auto other = Echo(*bystander, Header("other"), "payload");
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(ToString(other->payload()), "payload");
}

INSTANTIATE_TEST_SUITE_P(
    Frames, MalformedFrameTest,
    ::testing::Values(
        BadFrame{"BadMagic", [](FrameHeader& f) { f.magic = 0xdeadbeef; }, 16,
                 StatusCode::kFailedPrecondition, "worker-0: bad frame magic"},
        BadFrame{"WrongVersion", [](FrameHeader& f) { f.version = kProtocolVersion + 1; }, 16,
                 StatusCode::kFailedPrecondition, "client speaks 2, worker speaks 1"},
        BadFrame{"UnknownMethod", [](FrameHeader& f) { f.method = 99; }, 16,
                 StatusCode::kUnimplemented, "worker-0: unknown method 99"},
        BadFrame{"ZeroMethod", [](FrameHeader& f) { f.method = 0; }, 16, StatusCode::kUnimplemented,
                 "unknown method 0"},
        BadFrame{"SizesDisagreeWithData", [](FrameHeader& f) { f.payload_bytes = 8; }, 16,
                 StatusCode::kInvalidArgument, "but 16 arrived"},
        BadFrame{"HeaderLongerThanData", [](FrameHeader& f) { f.header_bytes = 4096; }, 16,
                 StatusCode::kInvalidArgument, "but 16 arrived"},
        BadFrame{"OversizedPayloadClaim",
                 [](FrameHeader& f) { f.payload_bytes = (uint64_t{1} << 30) + 1; }, 16,
                 StatusCode::kResourceExhausted, "exceeds the 1073741824-byte limit"},
        BadFrame{"OversizedHeaderClaim", [](FrameHeader& f) { f.header_bytes = 1u << 21; }, 16,
                 StatusCode::kResourceExhausted, "header of 2097152 bytes"},
        // Large enough for rendezvous: rejected from the frame, the data never received.
        BadFrame{"OversizedRendezvousPayload",
                 [](FrameHeader& f) {
                   f.header_bytes = 0;
                   f.payload_bytes = (uint64_t{1} << 30) + 4;
                 },
                 size_t{4} << 20, StatusCode::kResourceExhausted, "payload of"}),
    [](const auto& p) { return p.param.name; });

TEST_F(RpcTest, OversizedRequestIsRejectedWithoutReceivingIt) {
  server_.reset();
  StartServer({.name = "worker-0", .max_payload_bytes = 1 << 20});
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  const std::string big = Pattern(size_t{8} << 20, 1);
  auto r = Echo(*conn, Header("big"), big);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status();
  EXPECT_LT(server_->stats().bytes_received.load(), big.size());
  EXPECT_TRUE(Echo(*conn, Header("small"), Pattern(1000, 2)).ok());
}

TEST_F(RpcTest, ClosedConnectionFailsLaterCallsAndServerForgetsIt) {
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  EXPECT_EQ(server_->stats().connections_open.load(), 1u);
  conn->Close();
  EXPECT_FALSE(conn->connected());
  auto r = Echo(*conn, Header("x"), "");
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status();
  EXPECT_TRUE(WaitFor([&] { return server_->stats().connections_open.load() == 0; }));
}

TEST_F(RpcTest, CloseFailsPendingCallsUnavailable) {
  SetHandler([](IncomingMessage, Responder r) {
    std::thread([r = std::move(r)]() mutable {
      std::this_thread::sleep_for(2s);
      r.Fail(InternalError("should not be seen"));
    }).detach();
  });
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  auto pending = conn->Call(Request(Method::kAttend, "x"), DeadlineAfter(10s));
  std::this_thread::sleep_for(50ms);
  conn->Close();
  auto r = pending.get();
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status();
}

TEST_F(RpcTest, DestroyingClientFailsPendingCallsAndLaterOnes) {
  HeldResponders held;
  SetHandler(held.Handler());
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  auto pending = conn->Call(Request(Method::kAttend, "x"), DeadlineAfter(10s));
  ASSERT_TRUE(held.WaitForCount(1));
  const auto start = Clock::now();
  client.reset();
  auto r = pending.get();
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status();
  EXPECT_LT(Clock::now() - start, 3s);
  EXPECT_FALSE(conn->connected());
  auto later = Echo(*conn, Header("x"), "");
  EXPECT_EQ(later.status().code(), StatusCode::kUnavailable) << later.status();
  // Answering after the client is gone is harmless.
  held.With([](std::vector<Responder>& rs) {
    rs[0].Reply(Request(Method::kAttend, "nobody listens"));
  });
}

TEST_F(RpcTest, DestroyingServerWithUnansweredRespondersIsSafe) {
  HeldResponders held;
  SetHandler(held.Handler());
  auto client = NewClient();
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  auto pending = conn->Call(Request(Method::kAttend, "x"), DeadlineAfter(10s));
  ASSERT_TRUE(held.WaitForCount(1));
  const auto start = Clock::now();
  server_.reset();
  // The client learns the worker closed the connection well before the deadline.
  auto r = pending.get();
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status();
  EXPECT_LT(Clock::now() - start, 5s);
  held.With([](std::vector<Responder>& rs) { rs.clear(); });  // "request dropped" goes nowhere
}

}  // namespace
}  // namespace attic::transport::testing
