// The handshake over real UCX: accepted Hellos, refusals seen from both sides, and Connect
// bounded by its deadline when nothing (or nothing useful) listens.
#include <arpa/inet.h>
#include <capnp/message.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/transport/rpc_fixture.h"
#include "transport/capnp_codec.h"
#include "transport/proto/attic.capnp.h"

namespace attic::transport::testing {
namespace {

constexpr uint64_t kWorkerFp = 0x1111222233334444ULL;
constexpr uint64_t kOtherFp = 0xaaaabbbbccccddddULL;

std::string HelloReplyHeader(const std::string& worker_name) {
  capnp::MallocMessageBuilder b;
  auto r = b.initRoot<wire::HelloReply>();
  r.setProtocolVersion(kProtocolVersion);
  r.setWorkerName(worker_name);
  r.setModelFingerprint(kWorkerFp);
  return EncodeCapnp(b);
}

class HandshakeTest : public RpcTest {
 protected:
  void SetUp() override {
    StartServer({.name = "worker-7",
                 .model_fingerprint = kWorkerFp,
                 .token = "sesame",
                 .hello_reply_header = HelloReplyHeader("worker-7")});
  }
};

TEST_F(HandshakeTest, AcceptedHelloReturnsTheWorkersReply) {
  auto client = NewClient({.name = "engine-0", .model_fingerprint = kWorkerFp, .token = "sesame"});
  auto conn = ConnectOrDie(*client);
  ASSERT_NE(conn, nullptr);
  EXPECT_EQ(conn->peer(), address_);
  auto msg = CapnpMessage::Parse(conn->hello_reply().header());
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(std::string(msg->Root<wire::HelloReply>().getWorkerName().cStr()), "worker-7");
  EXPECT_EQ(server_->stats().handshakes_refused.load(), 0u);
}

TEST_F(HandshakeTest, ZeroFingerprintOnEitherSideIsAccepted) {
  auto client = NewClient({.model_fingerprint = 0, .token = "sesame"});
  EXPECT_NE(ConnectOrDie(*client), nullptr);
}

TEST_F(HandshakeTest, FingerprintMismatchIsFailedPreconditionOnBothSides) {
  auto client = NewClient({.model_fingerprint = kOtherFp, .token = "sesame"});
  auto conn = client->Connect(address_, DeadlineAfter(5s));
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), StatusCode::kFailedPrecondition) << conn.status();
  const std::string text(conn.status().message());
  EXPECT_EQ(text.rfind(address_ + ": worker-7: ", 0), 0u) << text;
  EXPECT_NE(text.find("0xaaaabbbbccccdddd"), std::string::npos) << text;
  EXPECT_NE(text.find("0x1111222233334444"), std::string::npos) << text;
  EXPECT_TRUE(WaitFor([&] { return server_->stats().handshakes_refused.load() == 1; }));
  // The refused endpoint is closed by the worker.
  EXPECT_TRUE(WaitFor([&] { return server_->stats().connections_open.load() == 0; }));
}

TEST_F(HandshakeTest, WrongTokenIsPermissionDeniedAndNotEchoed) {
  auto client = NewClient({.model_fingerprint = kWorkerFp, .token = "open-please"});
  auto conn = client->Connect(address_, DeadlineAfter(5s));
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), StatusCode::kPermissionDenied) << conn.status();
  const std::string text(conn.status().message());
  EXPECT_EQ(text.find("open-please"), std::string::npos) << text;
  EXPECT_EQ(text.find("sesame"), std::string::npos) << text;
  EXPECT_TRUE(WaitFor([&] { return server_->stats().handshakes_refused.load() == 1; }));
}

TEST_F(HandshakeTest, MissingTokenIsPermissionDenied) {
  auto client = NewClient({.model_fingerprint = kWorkerFp});
  auto conn = client->Connect(address_, DeadlineAfter(5s));
  EXPECT_EQ(conn.status().code(), StatusCode::kPermissionDenied) << conn.status();
}

TEST_F(HandshakeTest, RefusedClientDoesNotDisturbOthers) {
  auto bad = NewClient({.model_fingerprint = kOtherFp, .token = "sesame"});
  auto good = NewClient({.model_fingerprint = kWorkerFp, .token = "sesame"});
  auto conn = ConnectOrDie(*good);
  ASSERT_NE(conn, nullptr);
  EXPECT_FALSE(bad->Connect(address_, DeadlineAfter(5s)).ok());
  auto r = Echo(*conn, Header("still here"), "x");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ToString(r->payload()), "x");
}

// A port that was just bound and released: nothing listens there.
uint16_t DeadPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

TEST(ConnectTest, NoListenerFailsUnavailableWithinDeadline) {
  auto client = RpcClient::Create({});
  ASSERT_TRUE(client.ok()) << client.status();
  const std::string address = "127.0.0.1:" + std::to_string(DeadPort());
  const auto start = Clock::now();
  auto conn = (*client)->Connect(address, DeadlineAfter(2s));
  const auto took = Clock::now() - start;
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), StatusCode::kUnavailable) << conn.status();
  EXPECT_NE(conn.status().message().find(address), std::string::npos) << conn.status();
  EXPECT_LT(took, 2500ms);
}

TEST(ConnectTest, SilentListenerFailsUnavailableAtTheDeadline) {
  // A TCP socket that listens but never speaks UCX: the connection is never established.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  auto client = RpcClient::Create({});
  ASSERT_TRUE(client.ok()) << client.status();
  const std::string address = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  const auto start = Clock::now();
  auto conn = (*client)->Connect(address, DeadlineAfter(300ms));
  const auto took = Clock::now() - start;
  close(fd);
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), StatusCode::kUnavailable) << conn.status();
  EXPECT_NE(conn.status().message().find(address), std::string::npos) << conn.status();
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 1500ms);
}

TEST(ConnectTest, BadAddressIsInvalidArgument) {
  auto client = RpcClient::Create({});
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->Connect("no-port-here", DeadlineAfter(1s)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ((*client)->Connect("127.0.0.1:99999", DeadlineAfter(1s)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ServerStartTest, TakenPortIsUnavailable) {
  auto first = RpcServer::Start({.listen_address = "127.0.0.1"}, nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second =
      RpcServer::Start({.listen_address = "127.0.0.1", .port = (*first)->port()}, nullptr);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable) << second.status();
}

}  // namespace
}  // namespace attic::transport::testing
