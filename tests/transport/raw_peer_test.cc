// A hand-driven UCX peer built from transport/internal's wrappers (context, worker,
// endpoint, AM send and receive), progressed by the test thread itself. It does what the
// RpcClient never does: send requests on a connection that has not said Hello.
#include <cstring>
#include <optional>

#include "tests/transport/rpc_fixture.h"
#include "transport/internal/am_io.h"
#include "transport/internal/server_checks.h"
#include "transport/internal/ucp_handles.h"

namespace attic::transport::testing {
namespace {

using internal::UcpContext;
using internal::UcpEndpoint;
using internal::UcpWorker;

class RawPeer {
 public:
  Status Connect(const std::string& address) {
    ASSIGN_OR_RETURN(UcpContext context, UcpContext::Create());
    context_.emplace(std::move(context));
    ASSIGN_OR_RETURN(UcpWorker worker, UcpWorker::Create(*context_));
    worker_.emplace(std::move(worker));
    RETURN_IF_ERROR(internal::SetAmHandler(worker_->get(), kReplyAmId, &RawPeer::OnReply, this));
    ASSIGN_OR_RETURN(internal::SockAddr addr, internal::ParseHostPort(address));
    ASSIGN_OR_RETURN(UcpEndpoint ep,
                     UcpEndpoint::Connect(worker_->get(), addr, &RawPeer::OnError, this));
    ep_.emplace(std::move(ep));
    return OkStatus();
  }

  // Sends one request and progresses until its reply (or an error) arrives.
  StatusOr<IncomingMessage> Call(Method method, uint64_t id, std::string header) {
    FrameHeader frame;
    frame.method = static_cast<uint16_t>(method);
    frame.request_id = id;
    frame.header_bytes = static_cast<uint32_t>(header.size());
    frame.timeout_ms = 5000;
    reply_.reset();
    internal::SendAm(ep_->get(), kRequestAmId, frame, std::move(header), {}, nullptr,
                     /*reply_flag=*/true, /*max_inline=*/0, {});
    // A refusing server closes the endpoint right after its reply, so an endpoint error
    // may be seen in the same progress call as the reply: the reply wins.
    auto until = Clock::now() + 5s;
    while (!reply_ && Clock::now() < until) {
      ucp_worker_progress(worker_->get());
      if (failed_) until = std::min(until, Clock::now() + 100ms);
    }
    if (!reply_)
      return failed_ ? UnavailableError("endpoint failed") : DeadlineExceededError("no reply");
    return std::move(*reply_);
  }

  ~RawPeer() {
    ep_.reset();  // reverse order of creation: endpoint, worker, context
    worker_.reset();
    context_.reset();
  }

 private:
  static ucs_status_t OnReply(void* arg, const void* header, size_t header_length, void* data,
                              size_t length, const ucp_am_recv_param_t* param) {
    auto* self = static_cast<RawPeer*>(arg);
    FrameHeader frame;
    if (header_length != sizeof(frame)) return UCS_OK;
    std::memcpy(&frame, header, sizeof(frame));
    return internal::ReceiveAm(self->worker_->get(), nullptr, frame, {}, data, length, param,
                               [self](StatusOr<IncomingMessage> m) {
                                 if (m.ok()) self->reply_ = std::move(m).value();
                               });
  }
  static void OnError(void* arg, ucp_ep_h, ucs_status_t) {
    static_cast<RawPeer*>(arg)->failed_ = true;
  }

  std::optional<UcpContext> context_;
  std::optional<UcpWorker> worker_;
  std::optional<UcpEndpoint> ep_;
  std::optional<IncomingMessage> reply_;
  bool failed_ = false;
};

TEST_F(RpcTest, RequestBeforeHelloIsFailedPreconditionUntilTheHandshake) {
  RawPeer peer;
  ASSERT_TRUE(peer.Connect(address_).ok());
  auto r = peer.Call(Method::kEcho, 1, Header("too early"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->frame().request_id, 1u);
  EXPECT_EQ(r->frame().status_code, static_cast<int>(StatusCode::kFailedPrecondition));
  EXPECT_EQ(ToString(r->header()), "worker-0: Echo before a successful Hello");
  EXPECT_EQ(server_->stats().requests_rejected.load(), 1u);

  // After a Hello the same connection is served.
  auto hello =
      peer.Call(Method::kHello, 2, internal::EncodeHello({kProtocolVersion, 0, "", "raw-peer"}));
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_EQ(hello->frame().status_code, 0);
  auto echo = peer.Call(Method::kEcho, 3, Header("now"));
  ASSERT_TRUE(echo.ok()) << echo.status();
  EXPECT_EQ(echo->frame().status_code, 0);
  EXPECT_EQ(ToString(echo->header()), Header("now"));
}

TEST_F(RpcTest, MalformedHelloIsRefusedAndTheConnectionClosed) {
  RawPeer peer;
  ASSERT_TRUE(peer.Connect(address_).ok());
  auto r = peer.Call(Method::kHello, 1, "not capnp");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->frame().status_code, static_cast<int>(StatusCode::kInvalidArgument));
  EXPECT_TRUE(WaitFor([&] { return server_->stats().handshakes_refused.load() == 1; }));
  EXPECT_TRUE(WaitFor([&] { return server_->stats().connections_open.load() == 0; }));
}

}  // namespace
}  // namespace attic::transport::testing
