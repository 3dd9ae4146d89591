// RpcServer: listener, handshake, frame checks and replies on one reactor thread.
#include "transport/rpc_server.h"

#include <cstring>
#include <optional>
#include <unordered_map>
#include <utility>

#include "transport/internal/am_io.h"
#include "transport/internal/reactor.h"
#include "transport/internal/server_checks.h"
#include "transport/internal/ucp_handles.h"
#include "transport/internal/ucx_status.h"

namespace attic::transport {

using internal::Mailbox;
using internal::Reactor;

namespace {
constexpr auto kRelaxed = std::memory_order_relaxed;
}  // namespace

// Shared by a Responder and the task its answer posts.
struct Responder::State {
  std::shared_ptr<Mailbox> mailbox;   // reaches the reactor thread while the server lives
  RpcServer::Impl* server = nullptr;  // dereferenced only by posted tasks, on that thread
  uint64_t conn_id = 0;
  FrameHeader request;  // the request's frame (method, id)
  Deadline deadline;
  std::string peer;
  std::string server_name;
  std::atomic<bool> answered{false};
};

class RpcServer::Impl : public Reactor::Owner {
 public:
  Impl(const RpcServerOptions& options, RequestHandler handler)
      : options_(options), handler_(std::move(handler)) {}
  ~Impl() override {
    if (reactor_) reactor_->Stop();
  }

  Status Start() {
    ASSIGN_OR_RETURN(reactor_, Reactor::Start("attic-rpc-srv", this,
                                              std::chrono::microseconds(options_.busy_poll_us)));
    return OkStatus();
  }
  uint16_t port() const { return port_.load(kRelaxed); }
  void StopAccepting() { accepting_.store(false, kRelaxed); }
  const RpcServerStats& stats() const { return stats_; }

  // Reactor thread: sends a reply (or an error reply) for a request of connection conn_id.
  void SendReply(uint64_t conn_id, const FrameHeader& request, OutgoingMessage reply);
  void SendError(uint64_t conn_id, const FrameHeader& request, const Status& status);

  // Reactor::Owner
  Status OnStart(Reactor& reactor) override;
  Deadline OnTick() override { return Deadline::max(); }
  void OnStop() override;

 private:
  struct Peer {
    internal::UcpEndpoint ep;
    std::string address;
    std::string client_name;
    bool hello_done = false;
    bool inline_ok = false;  // its Hello announced kCapInlineHeader
  };

  static void OnConnRequest(ucp_conn_request_h request, void* arg);
  static void OnEndpointError(void* arg, ucp_ep_h ep, ucs_status_t status);
  static ucs_status_t OnRequestAm(void* arg, const void* header, size_t header_length, void* data,
                                  size_t length, const ucp_am_recv_param_t* param);
  void Accept(ucp_conn_request_h request);
  ucs_status_t OnRequest(const FrameHeader& frame, std::span<const std::byte> inline_header,
                         void* data, size_t length, const ucp_am_recv_param_t* param);
  void Dispatch(uint64_t conn_id, Deadline deadline, StatusOr<IncomingMessage> message);
  void HandleHello(uint64_t conn_id, Peer& peer, const IncomingMessage& hello);
  void HandleEcho(uint64_t conn_id, IncomingMessage request);
  // Forgets a connection and closes its endpoint (force for a failed peer, else flush).
  void DropPeer(uint64_t conn_id, bool force);
  Peer* FindPeer(uint64_t conn_id);
  // How much of a reply may travel as the AM header: nothing for a Hello (whatever the
  // peer's version, it must be able to read the verdict) or a peer without the capability.
  size_t MaxInline(const Peer& peer, const FrameHeader& request) const {
    const bool ok = peer.inline_ok && request.method != static_cast<uint16_t>(Method::kHello);
    return ok ? r_->max_inline_am_header() : 0;
  }

  const RpcServerOptions options_;
  const RequestHandler handler_;
  const std::shared_ptr<internal::BufferPool> pool_ =
      internal::BufferPool::Create(options_.receive_cache_bytes);
  RpcServerStats stats_;
  std::atomic<bool> accepting_{true};
  std::atomic<uint16_t> port_{0};
  std::unique_ptr<Reactor> reactor_;  // owned here; used on the caller's thread only to stop
  // Reactor thread only; r_ is set first thing in OnStart, before any UCX callback can run
  // (reactor_ is assigned on the starting thread, possibly after the loop began).
  // The rest is declared in creation order, so it is released in reverse.
  Reactor* r_ = nullptr;
  std::vector<internal::MemoryRegistration> regions_;
  std::optional<internal::UcpListener> listener_;
  std::unordered_map<uint64_t, Peer> peers_;  // by connection id
  std::unordered_map<ucp_ep_h, uint64_t> conn_of_ep_;
  uint64_t next_conn_id_ = 1;
};

// ---- start and stop ----

Status RpcServer::Impl::OnStart(Reactor& reactor) {
  r_ = &reactor;
  for (std::span<std::byte> region : options_.register_regions) {
    ASSIGN_OR_RETURN(auto reg, internal::MemoryRegistration::Map(reactor.context(), region));
    regions_.push_back(std::move(reg));
  }
  RETURN_IF_ERROR(internal::SetAmHandler(reactor.worker(), kRequestAmId, &Impl::OnRequestAm, this));
  ASSIGN_OR_RETURN(auto listener,
                   internal::UcpListener::Create(reactor.worker(), options_.listen_address,
                                                 options_.port, &Impl::OnConnRequest, this));
  port_.store(listener.port(), kRelaxed);
  listener_.emplace(std::move(listener));
  return OkStatus();
}

void RpcServer::Impl::OnStop() {
  listener_.reset();  // no new connections while the others close
  std::vector<ucp_ep_h> eps;
  for (auto& [id, peer] : peers_) eps.push_back(peer.ep.Release());
  internal::CloseEndpointsBlocking(r_->worker(), eps, /*force=*/false,
                                   internal::UcpEndpoint::kCloseTimeout);
  stats_.connections_open.store(0, kRelaxed);
  peers_.clear();
  conn_of_ep_.clear();
  while (!regions_.empty()) regions_.pop_back();  // reverse order of registration
}

// ---- connections ----

void RpcServer::Impl::OnConnRequest(ucp_conn_request_h request, void* arg) {
  static_cast<Impl*>(arg)->Accept(request);
}

void RpcServer::Impl::Accept(ucp_conn_request_h request) {
  ucp_conn_request_attr_t attr{};
  attr.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR;
  std::string address = "unknown-peer";
  if (ucp_conn_request_query(request, &attr) == UCS_OK) {
    address = internal::FormatSockAddr(attr.client_address);
  }
  StatusOr<internal::UcpEndpoint> ep =
      internal::UcpEndpoint::Accept(r_->worker(), request, &Impl::OnEndpointError, this);
  if (!ep.ok()) {
    internal::LogWarning(options_.name + ": cannot accept " + address + ": " +
                         ep.status().ToString());
    return;
  }
  const uint64_t id = next_conn_id_++;
  conn_of_ep_[ep->get()] = id;
  peers_.emplace(id, Peer{std::move(ep).value(), std::move(address), "", false, false});
  stats_.connections_accepted.fetch_add(1, kRelaxed);
  stats_.connections_open.fetch_add(1, kRelaxed);
}

void RpcServer::Impl::OnEndpointError(void* arg, ucp_ep_h ep, ucs_status_t /*status*/) {
  auto* self = static_cast<Impl*>(arg);
  auto it = self->conn_of_ep_.find(ep);
  if (it == self->conn_of_ep_.end()) return;
  const uint64_t id = it->second;
  // A client going away is routine for a server: drop its state without logging.
  self->r_->Defer([self, id] { self->DropPeer(id, /*force=*/true); });
}

void RpcServer::Impl::DropPeer(uint64_t conn_id, bool force) {
  auto it = peers_.find(conn_id);
  if (it == peers_.end()) return;
  ucp_ep_h ep = it->second.ep.Release();
  conn_of_ep_.erase(ep);
  peers_.erase(it);
  stats_.connections_open.fetch_sub(1, kRelaxed);
  r_->CloseInBackground(ep, force);
}

RpcServer::Impl::Peer* RpcServer::Impl::FindPeer(uint64_t conn_id) {
  auto it = peers_.find(conn_id);
  return it == peers_.end() ? nullptr : &it->second;
}

// ---- requests ----

ucs_status_t RpcServer::Impl::OnRequestAm(void* arg, const void* header, size_t header_length,
                                          void* data, size_t length,
                                          const ucp_am_recv_param_t* param) {
  auto* self = static_cast<Impl*>(arg);
  FrameHeader frame;
  std::span<const std::byte> inline_header;
  if (!internal::ParseAmHeader(header, header_length, &frame, &inline_header)) {
    // Without a frame there is no request id to answer: count it and drop it.
    self->stats_.requests_rejected.fetch_add(1, kRelaxed);
    internal::LogWarning(self->options_.name + ": dropped a message with a " +
                         std::to_string(header_length) + "-byte frame");
    return UCS_OK;
  }
  return self->OnRequest(frame, inline_header, data, length, param);
}

ucs_status_t RpcServer::Impl::OnRequest(const FrameHeader& frame,
                                        std::span<const std::byte> inline_header, void* data,
                                        size_t length, const ucp_am_recv_param_t* param) {
  stats_.requests_received.fetch_add(1, kRelaxed);
  const bool has_ep = (param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) != 0;
  auto conn = has_ep ? conn_of_ep_.find(param->reply_ep) : conn_of_ep_.end();
  if (conn == conn_of_ep_.end()) {
    stats_.requests_rejected.fetch_add(1, kRelaxed);
    internal::LogWarning(options_.name + ": dropped a request from an unknown endpoint");
    return UCS_OK;
  }
  const uint64_t conn_id = conn->second;
  internal::RequestLimits limits{options_.name, options_.max_header_bytes,
                                 options_.max_payload_bytes, accepting_.load(kRelaxed),
                                 peers_.at(conn_id).hello_done};
  Status check = internal::CheckRequestFrame(frame, inline_header.size() + length, limits);
  if (check.ok() && !inline_header.empty() && inline_header.size() != frame.header_bytes) {
    check = InvalidArgumentError(options_.name + ": inline header of " +
                                 std::to_string(inline_header.size()) + " bytes, frame says " +
                                 std::to_string(frame.header_bytes));
  }
  if (!check.ok()) {
    // Rejected before receiving: a rendezvous payload is never transferred.
    stats_.requests_rejected.fetch_add(1, kRelaxed);
    r_->Defer([this, conn_id, frame, check] { SendError(conn_id, frame, check); });
    return UCS_OK;
  }
  stats_.bytes_received.fetch_add(inline_header.size() + length, kRelaxed);
  const uint32_t timeout_ms = frame.timeout_ms != 0 ? frame.timeout_ms : options_.default_timeout_ms;
  const Deadline deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  return internal::ReceiveAm(r_->worker(), pool_.get(), frame, inline_header, data, length, param,
                             [this, conn_id, deadline](StatusOr<IncomingMessage> m) {
                               r_->Defer([this, conn_id, deadline, m = std::move(m)]() mutable {
                                 Dispatch(conn_id, deadline, std::move(m));
                               });
                             });
}

void RpcServer::Impl::Dispatch(uint64_t conn_id, Deadline deadline,
                               StatusOr<IncomingMessage> message) {
  Peer* peer = FindPeer(conn_id);
  if (peer == nullptr) return;  // the client went away while its data arrived
  if (!message.ok()) {
    internal::LogWarning(options_.name + ": request from " + peer->address +
                         " lost: " + message.status().ToString());
    return;
  }
  switch (message->method()) {
    case Method::kHello:
      HandleHello(conn_id, *peer, *message);
      return;
    case Method::kEcho:
      HandleEcho(conn_id, std::move(message).value());
      return;
    case Method::kDiscard:
      // The request's buffer goes when `message` does; the reply carries nothing.
      SendReply(conn_id, message->frame(), OutgoingMessage{.method = Method::kDiscard});
      return;
    default:
      break;
  }
  if (!handler_) {
    SendError(conn_id, message->frame(),
              UnimplementedError(options_.name + ": no handler for " +
                                 std::string(MethodName(message->method()))));
    return;
  }
  auto state = std::make_shared<Responder::State>();
  state->mailbox = r_->mailbox();
  state->server = this;
  state->conn_id = conn_id;
  state->request = message->frame();
  state->deadline = deadline;
  state->peer = peer->address;
  state->server_name = options_.name;
  handler_(std::move(message).value(), Responder(std::move(state)));
}

void RpcServer::Impl::HandleHello(uint64_t conn_id, Peer& peer, const IncomingMessage& hello) {
  StatusOr<internal::HelloFields> fields = internal::ParseHello(hello.header());
  Status verdict = fields.ok()
                       ? internal::CheckHello(
                             *fields, {options_.name, options_.model_fingerprint, options_.token})
                       : fields.status().WithContext(options_.name);
  if (verdict.ok()) {
    peer.hello_done = true;
    peer.client_name = fields->client_name;
    peer.inline_ok = (hello.frame().capabilities & kCapInlineHeader) != 0;
    OutgoingMessage reply;
    reply.method = Method::kHello;
    reply.header = options_.hello_reply_header;
    SendReply(conn_id, hello.frame(), std::move(reply));
    return;
  }
  stats_.handshakes_refused.fetch_add(1, kRelaxed);
  internal::LogWarning(options_.name + ": refused Hello from " + peer.address +
                       (fields.ok() ? " ('" + fields->client_name + "')" : std::string()) + ": " +
                       verdict.ToString());
  SendError(conn_id, hello.frame(), verdict);
  // A flush close: the error reply goes out before the endpoint is torn down.
  DropPeer(conn_id, /*force=*/false);
}

void RpcServer::Impl::HandleEcho(uint64_t conn_id, IncomingMessage request) {
  OutgoingMessage reply;
  reply.method = Method::kEcho;
  reply.header.assign(reinterpret_cast<const char*>(request.header().data()),
                      request.header().size());
  reply.payload = {request.payload()};
  // The request's buffer stays alive until the echo has been sent; no copy of the payload.
  auto owner = std::make_shared<IncomingMessage>(std::move(request));
  reply.keepalive = owner;
  SendReply(conn_id, owner->frame(), std::move(reply));
}

// ---- replies ----

void RpcServer::Impl::SendReply(uint64_t conn_id, const FrameHeader& request,
                                OutgoingMessage reply) {
  Peer* peer = FindPeer(conn_id);
  if (peer == nullptr) return;  // answering a gone client is a no-op
  FrameHeader frame;
  frame.method = request.method;
  frame.request_id = request.request_id;
  frame.flags = kFrameReply;
  frame.header_bytes = static_cast<uint32_t>(reply.header.size());
  frame.payload_bytes = reply.payload_bytes();
  if (request.method == static_cast<uint16_t>(Method::kHello))
    frame.capabilities = kCapInlineHeader;
  stats_.bytes_sent.fetch_add(reply.header.size() + frame.payload_bytes, kRelaxed);
  internal::SendAm(peer->ep.get(), kReplyAmId, frame, std::move(reply.header),
                   std::move(reply.payload), std::move(reply.keepalive),
                   /*reply_flag=*/false, MaxInline(*peer, request), {});
}

void RpcServer::Impl::SendError(uint64_t conn_id, const FrameHeader& request,
                                const Status& status) {
  Peer* peer = FindPeer(conn_id);
  if (peer == nullptr) return;
  FrameHeader frame;
  frame.method = request.method;
  frame.request_id = request.request_id;
  frame.flags = kFrameReply;
  frame.status_code = static_cast<int16_t>(status.code_number());
  std::string text(status.message());
  frame.header_bytes = static_cast<uint32_t>(text.size());
  stats_.bytes_sent.fetch_add(text.size(), kRelaxed);
  internal::SendAm(peer->ep.get(), kReplyAmId, frame, std::move(text), {}, nullptr,
                   /*reply_flag=*/false, MaxInline(*peer, request), {});
}

// ---- Responder ----

Responder::Responder(std::shared_ptr<State> state) : state_(std::move(state)) {}
Responder::Responder(Responder&&) noexcept = default;
Responder& Responder::operator=(Responder&& other) noexcept {
  if (this != &other) {
    if (state_ && !state_->answered.load()) {
      Fail(InternalError(state_->server_name + ": request dropped"));
    }
    state_ = std::move(other.state_);
  }
  return *this;
}

Responder::~Responder() {
  if (state_ && !state_->answered.load()) {
    Fail(InternalError(state_->server_name + ": request dropped"));
  }
}

void Responder::Reply(OutgoingMessage reply) {
  if (!state_ || state_->answered.exchange(true)) return;
  std::shared_ptr<State> s = state_;
  s->mailbox->Post([s, reply = std::move(reply)]() mutable {
    s->server->SendReply(s->conn_id, s->request, std::move(reply));
  });
}

void Responder::Fail(const Status& status) {
  if (!state_ || state_->answered.exchange(true)) return;
  Status error = status.ok() ? InternalError("handler failed with an OK status") : status;
  std::shared_ptr<State> s = state_;
  s->mailbox->Post(
      [s, error = std::move(error)] { s->server->SendError(s->conn_id, s->request, error); });
}

Deadline Responder::deadline() const { return state_ ? state_->deadline : Deadline::min(); }

const std::string& Responder::peer() const {
  static const std::string kNone;
  return state_ ? state_->peer : kNone;
}

// ---- RpcServer ----

StatusOr<std::unique_ptr<RpcServer>> RpcServer::Start(const RpcServerOptions& options,
                                                      RequestHandler handler) {
  auto impl = std::make_unique<Impl>(options, std::move(handler));
  RETURN_IF_ERROR(impl->Start());
  return std::unique_ptr<RpcServer>(new RpcServer(std::move(impl)));
}

RpcServer::RpcServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RpcServer::~RpcServer() = default;
uint16_t RpcServer::port() const { return impl_->port(); }
void RpcServer::StopAccepting() { impl_->StopAccepting(); }
const RpcServerStats& RpcServer::stats() const { return impl_->stats(); }

}  // namespace attic::transport
