// RpcClient: connections, pending calls and their deadlines on one reactor thread.
#include "transport/rpc_client.h"

#include <cstring>
#include <map>
#include <optional>
#include <unordered_map>
#include <unordered_set>
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

int64_t MillisSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

}  // namespace

// What a Connection and the reactor share. Fields marked "reactor" are touched only there.
struct ConnShared {
  std::shared_ptr<Mailbox> mailbox;
  RpcClient::Impl* client = nullptr;  // reactor: valid while the mailbox accepts tasks
  uint64_t id = 0;
  std::string peer;  // "host:port" as given to Connect
  std::atomic<bool> connected{false};
  // Written on the reactor before Connect returns the connection; read-only afterwards.
  IncomingMessage hello_reply;
  std::string label;    // reactor: "worker NAME (host:port)", or "worker host:port"
  std::string failure;  // reactor: why the connection ended, for later calls
};

class ConnectionImpl final : public Connection {
 public:
  explicit ConnectionImpl(std::shared_ptr<ConnShared> s) : s_(std::move(s)) {}
  ~ConnectionImpl() override { Close(); }

  using Connection::Call;
  void Call(OutgoingMessage request, Deadline deadline, Callback done) override;
  const IncomingMessage& hello_reply() const override { return s_->hello_reply; }
  const std::string& peer() const override { return s_->peer; }
  bool connected() const override { return s_->connected.load(); }
  void Close() override;
  void CallRawForTesting(const FrameHeader& frame, std::string data, Deadline deadline,
                         Callback done) override;

 private:
  // Posts `start` (which runs `done` itself); if the client is gone runs `done` here.
  void Post(std::function<void()> start, const std::shared_ptr<Callback>& done);
  std::shared_ptr<ConnShared> s_;
};

class RpcClient::Impl : public Reactor::Owner {
 public:
  explicit Impl(const RpcClientOptions& options) : options_(options) {}
  ~Impl() override { Shutdown(); }

  Status Start() {
    ASSIGN_OR_RETURN(reactor_, Reactor::Start("attic-rpc-cli", this,
                                              std::chrono::microseconds(options_.busy_poll_us)));
    return OkStatus();
  }
  void Shutdown() {
    if (reactor_) reactor_->Stop();
  }
  StatusOr<std::shared_ptr<Connection>> Connect(const std::string& address, Deadline deadline);
  StatusOr<std::shared_ptr<void>> RegisterMemory(std::span<std::byte> region);
  const RpcClientStats& stats() const { return stats_; }

  // Reactor thread. A call: `raw` set means send that frame and data as they are.
  struct CallSpec {
    OutgoingMessage request;
    std::optional<FrameHeader> raw_frame;
    Deadline deadline;
    Clock::time_point started;
    std::string error_prefix;  // empty: "<label>: "
  };
  void StartCall(const std::shared_ptr<ConnShared>& conn, CallSpec spec, Connection::Callback done);
  void CloseConnection(uint64_t conn_id, bool force, const std::string& why);

  // Reactor::Owner
  Status OnStart(Reactor& reactor) override;
  Deadline OnTick() override;
  void OnStop() override;

 private:
  struct LoopConn {
    internal::UcpEndpoint ep;
    std::shared_ptr<ConnShared> shared;
    std::unordered_set<uint64_t> calls;
    bool inline_ok = false;  // the worker's Hello reply announced kCapInlineHeader
  };
  struct PendingCall {
    uint64_t conn_id = 0;
    Method method = Method::kEcho;
    Clock::time_point started;
    std::string error_prefix;
    Connection::Callback done;
    std::multimap<Deadline, uint64_t>::iterator timer;
  };

  static void OnEndpointError(void* arg, ucp_ep_h ep, ucs_status_t status);
  static ucs_status_t OnReplyAm(void* arg, const void* header, size_t header_length, void* data,
                                size_t length, const ucp_am_recv_param_t* param);
  ucs_status_t OnReply(const FrameHeader& frame, std::span<const std::byte> inline_header,
                       void* data, size_t length, const ucp_am_recv_param_t* param);
  void StartConnect(std::shared_ptr<ConnShared> conn, internal::SockAddr addr, Deadline deadline,
                    std::shared_ptr<std::promise<Status>> result);
  void FinishConnect(const std::shared_ptr<ConnShared>& conn, StatusOr<IncomingMessage> reply,
                     std::promise<Status>& result);
  void FailConnection(uint64_t conn_id, ucs_status_t reason);
  void CompleteCall(uint64_t id, StatusOr<IncomingMessage> reply);
  // Ends a pending call with `result`; false if it had already ended.
  bool EndCall(uint64_t id, StatusOr<IncomingMessage> result);

  const RpcClientOptions options_;
  const std::shared_ptr<internal::BufferPool> pool_ =
      internal::BufferPool::Create(options_.receive_cache_bytes);
  RpcClientStats stats_;
  std::unique_ptr<Reactor> reactor_;
  // Reactor thread only (r_ is set first in OnStart, before any callback can run).
  Reactor* r_ = nullptr;
  std::unordered_map<uint64_t, internal::MemoryRegistration> regions_;
  std::unordered_map<uint64_t, LoopConn> conns_;
  std::unordered_map<ucp_ep_h, uint64_t> conn_of_ep_;
  std::unordered_map<uint64_t, PendingCall> calls_;
  std::multimap<Deadline, uint64_t> timers_;
  uint64_t next_request_id_ = 1;
  std::atomic<uint64_t> next_id_{1};  // connections and registrations, chosen by callers
};

// ---- start, stop, ticks ----

Status RpcClient::Impl::OnStart(Reactor& reactor) {
  r_ = &reactor;
  return internal::SetAmHandler(reactor.worker(), kReplyAmId, &Impl::OnReplyAm, this);
}

void RpcClient::Impl::OnStop() {
  std::vector<uint64_t> ids;
  for (const auto& [id, conn] : conns_) ids.push_back(id);
  for (uint64_t id : ids) CloseConnection(id, /*force=*/false, "the RPC client was destroyed");
  while (!regions_.empty()) regions_.erase(regions_.begin());
}

Deadline RpcClient::Impl::OnTick() {
  const Deadline now = Clock::now();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    const uint64_t id = timers_.begin()->second;
    const PendingCall& call = calls_.at(id);
    const std::string label = conns_.count(call.conn_id) != 0
                                  ? conns_.at(call.conn_id).shared->label
                                  : std::string("a closed connection");
    stats_.deadlines_exceeded.fetch_add(1, kRelaxed);
    EndCall(id, DeadlineExceededError(
                    "deadline exceeded after " + std::to_string(MillisSince(call.started)) +
                    " ms waiting for " + std::string(MethodName(call.method)) + " from " + label));
  }
  return timers_.empty() ? Deadline::max() : timers_.begin()->first;
}

// ---- connections ----

StatusOr<std::shared_ptr<Connection>> RpcClient::Impl::Connect(const std::string& address,
                                                               Deadline deadline) {
  if (reactor_->OnReactorThread()) {
    // Connect waits for the Hello reply, which only this thread could deliver.
    return FailedPreconditionError("Connect called from an RPC callback would deadlock");
  }
  ASSIGN_OR_RETURN(internal::SockAddr addr, internal::ParseHostPort(address));
  auto shared = std::make_shared<ConnShared>();
  shared->mailbox = reactor_->mailbox();
  shared->client = this;
  shared->id = next_id_.fetch_add(1);
  shared->peer = address;
  shared->label = "worker " + address;
  auto result = std::make_shared<std::promise<Status>>();
  std::future<Status> done = result->get_future();
  if (!shared->mailbox->Post([this, shared, addr, deadline, result] {
        StartConnect(shared, addr, deadline, result);
      })) {
    return UnavailableError(address + ": the RPC client is shut down");
  }
  // Bounded: the reactor ends the Hello call by its deadline at the latest.
  RETURN_IF_ERROR(done.get());
  return std::shared_ptr<Connection>(std::make_shared<ConnectionImpl>(std::move(shared)));
}

void RpcClient::Impl::StartConnect(std::shared_ptr<ConnShared> conn, internal::SockAddr addr,
                                   Deadline deadline,
                                   std::shared_ptr<std::promise<Status>> result) {
  StatusOr<internal::UcpEndpoint> ep =
      internal::UcpEndpoint::Connect(r_->worker(), addr, &Impl::OnEndpointError, this);
  if (!ep.ok()) {
    result->set_value(UnavailableError(conn->peer + ": " + std::string(ep.status().message())));
    return;
  }
  conn_of_ep_[ep->get()] = conn->id;
  conns_.emplace(conn->id, LoopConn{std::move(ep).value(), conn, {}});
  CallSpec spec;
  spec.request.method = Method::kHello;
  spec.request.header = internal::EncodeHello(
      {kProtocolVersion, options_.model_fingerprint, options_.token, options_.name});
  spec.deadline = deadline;
  spec.started = Clock::now();
  spec.error_prefix = conn->peer + ": ";
  StartCall(conn, std::move(spec), [this, conn, result](StatusOr<IncomingMessage> r) {
    FinishConnect(conn, std::move(r), *result);
  });
}

void RpcClient::Impl::FinishConnect(const std::shared_ptr<ConnShared>& conn,
                                    StatusOr<IncomingMessage> reply, std::promise<Status>& result) {
  if (reply.ok()) {
    auto loop_conn = conns_.find(conn->id);
    if (loop_conn != conns_.end()) {
      loop_conn->second.inline_ok = (reply->frame().capabilities & kCapInlineHeader) != 0;
    }
    conn->hello_reply = std::move(reply).value();
    const std::string name = internal::WorkerNameOfHelloReply(conn->hello_reply.header());
    if (!name.empty()) conn->label = "worker " + name + " (" + conn->peer + ")";
    conn->connected.store(true);
    result.set_value(OkStatus());
    return;
  }
  Status status = std::move(reply).status();
  if (status.code() == StatusCode::kDeadlineExceeded) {
    status = UnavailableError(conn->peer + ": no answer to Hello by the deadline (" +
                              std::string(status.message()) + ")");
  }
  // The worker closes a refused connection itself; ours is closed without waiting.
  r_->Defer([this, id = conn->id] { CloseConnection(id, /*force=*/true, "handshake failed"); });
  result.set_value(std::move(status));
}

void RpcClient::Impl::OnEndpointError(void* arg, ucp_ep_h ep, ucs_status_t status) {
  auto* self = static_cast<Impl*>(arg);
  auto it = self->conn_of_ep_.find(ep);
  if (it == self->conn_of_ep_.end()) return;
  const uint64_t id = it->second;
  self->r_->Defer([self, id, status] { self->FailConnection(id, status); });
}

void RpcClient::Impl::FailConnection(uint64_t conn_id, ucs_status_t reason) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  const std::string why =
      it->second.shared->label + " is unreachable: " + ucs_status_string(reason);
  internal::LogWarning(why);
  CloseConnection(conn_id, /*force=*/true, why);
}

void RpcClient::Impl::CloseConnection(uint64_t conn_id, bool force, const std::string& why) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  LoopConn conn = std::move(it->second);
  conns_.erase(it);
  conn.shared->connected.store(false);
  conn.shared->failure = why;
  const Status status = UnavailableError(why);
  for (uint64_t id : conn.calls) EndCall(id, status);
  ucp_ep_h ep = conn.ep.Release();
  conn_of_ep_.erase(ep);
  r_->CloseInBackground(ep, force);
}

// ---- calls ----

void RpcClient::Impl::StartCall(const std::shared_ptr<ConnShared>& conn, CallSpec spec,
                                Connection::Callback done) {
  stats_.calls_started.fetch_add(1, kRelaxed);
  const Method method =
      spec.raw_frame ? static_cast<Method>(spec.raw_frame->method) : spec.request.method;
  auto it = conns_.find(conn->id);
  if (it == conns_.end()) {
    stats_.calls_failed.fetch_add(1, kRelaxed);
    done(UnavailableError(conn->failure.empty() ? conn->label + ": connection closed"
                                                : conn->failure));
    return;
  }
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(spec.deadline - Clock::now());
  if (left.count() <= 0) {
    stats_.calls_failed.fetch_add(1, kRelaxed);
    stats_.deadlines_exceeded.fetch_add(1, kRelaxed);
    done(DeadlineExceededError("deadline exceeded before " + std::string(MethodName(method)) +
                               " was sent to " + conn->label));
    return;
  }
  const uint64_t id = next_request_id_++;
  PendingCall call{
      conn->id,        method,
      spec.started,    spec.error_prefix.empty() ? conn->label + ": " : spec.error_prefix,
      std::move(done), timers_.emplace(spec.deadline, id)};
  calls_.emplace(id, std::move(call));
  it->second.calls.insert(id);

  FrameHeader frame;
  if (spec.raw_frame) {
    frame = *spec.raw_frame;
  } else {
    frame.method = static_cast<uint16_t>(method);
    frame.header_bytes = static_cast<uint32_t>(spec.request.header.size());
    frame.payload_bytes = spec.request.payload_bytes();
    frame.timeout_ms = static_cast<uint32_t>(std::min<int64_t>(left.count(), UINT32_MAX));
    if (method == Method::kHello) frame.capabilities = kCapInlineHeader;
  }
  // Inline headers only to a worker that announced them, and never in a Hello.
  const size_t max_inline = it->second.inline_ok && !spec.raw_frame && method != Method::kHello
                                ? r_->max_inline_am_header()
                                : 0;
  frame.request_id = id;
  stats_.bytes_sent.fetch_add(spec.request.header.size() + spec.request.payload_bytes(), kRelaxed);
  internal::SendAm(it->second.ep.get(), kRequestAmId, frame, std::move(spec.request.header),
                   std::move(spec.request.payload), std::move(spec.request.keepalive),
                   /*reply_flag=*/true, max_inline, [this, id](ucs_status_t s) {
                     if (s == UCS_OK) return;
                     r_->Defer([this, id, s] {
                       auto c = calls_.find(id);
                       if (c == calls_.end()) return;
                       const auto conn_it = conns_.find(c->second.conn_id);
                       const std::string label = conn_it != conns_.end()
                                                     ? conn_it->second.shared->label
                                                     : std::string("worker");
                       EndCall(id, internal::UcsToStatus(s, "sending to " + label));
                     });
                   });
}

bool RpcClient::Impl::EndCall(uint64_t id, StatusOr<IncomingMessage> result) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return false;
  PendingCall call = std::move(it->second);
  calls_.erase(it);
  timers_.erase(call.timer);
  auto conn = conns_.find(call.conn_id);
  if (conn != conns_.end()) conn->second.calls.erase(id);
  if (!result.ok()) stats_.calls_failed.fetch_add(1, kRelaxed);
  call.done(std::move(result));
  return true;
}

ucs_status_t RpcClient::Impl::OnReplyAm(void* arg, const void* header, size_t header_length,
                                        void* data, size_t length,
                                        const ucp_am_recv_param_t* param) {
  auto* self = static_cast<Impl*>(arg);
  FrameHeader frame;
  std::span<const std::byte> inline_header;
  if (!internal::ParseAmHeader(header, header_length, &frame, &inline_header)) {
    self->stats_.malformed_replies.fetch_add(1, kRelaxed);
    return UCS_OK;
  }
  return self->OnReply(frame, inline_header, data, length, param);
}

ucs_status_t RpcClient::Impl::OnReply(const FrameHeader& frame,
                                      std::span<const std::byte> inline_header, void* data,
                                      size_t length, const ucp_am_recv_param_t* param) {
  const uint64_t id = frame.request_id;
  if (calls_.count(id) == 0) {
    stats_.late_replies.fetch_add(1, kRelaxed);  // its call already ended; data dropped
    return UCS_OK;
  }
  Status bad;
  const size_t total = inline_header.size() + length;
  if (frame.magic != kFrameMagic || (frame.flags & kFrameReply) == 0 ||
      (!inline_header.empty() && inline_header.size() != frame.header_bytes)) {
    bad = InternalError("malformed reply frame");
  } else if (frame.payload_bytes > options_.max_reply_payload_bytes) {
    bad = ResourceExhaustedError("reply payload of " + std::to_string(frame.payload_bytes) +
                                 " bytes exceeds the client's limit of " +
                                 std::to_string(options_.max_reply_payload_bytes));
  } else if (frame.payload_bytes > total || total - frame.payload_bytes != frame.header_bytes) {
    bad = InvalidArgumentError("reply frame announces " +
                               std::to_string(frame.header_bytes + frame.payload_bytes) +
                               " bytes but " + std::to_string(total) + " arrived");
  }
  if (!bad.ok()) {
    stats_.malformed_replies.fetch_add(1, kRelaxed);
    r_->Defer([this, id, bad] { EndCall(id, bad); });
    return UCS_OK;
  }
  stats_.bytes_received.fetch_add(total, kRelaxed);
  return internal::ReceiveAm(
      r_->worker(), pool_.get(), frame, inline_header, data, length, param,
      [this, id](StatusOr<IncomingMessage> m) {
        r_->Defer([this, id, m = std::move(m)]() mutable { CompleteCall(id, std::move(m)); });
      });
}

void RpcClient::Impl::CompleteCall(uint64_t id, StatusOr<IncomingMessage> reply) {
  auto it = calls_.find(id);
  if (it == calls_.end()) {
    stats_.late_replies.fetch_add(1, kRelaxed);  // ended while its data was arriving
    return;
  }
  if (it->second.timer->first <= Clock::now()) {
    // The deadline passed while the reply made its way through the reactor (a busy or
    // starved progress thread): the deadline came first, so the call ends DEADLINE_EXCEEDED
    // and the reply counts as late, as it would a moment later.
    stats_.late_replies.fetch_add(1, kRelaxed);
    OnTick();
    return;
  }
  if (reply.ok() && reply->frame().status_code != 0) {
    const auto code = StatusCodeFromNumber(reply->frame().status_code);
    const std::span<const std::byte> text = reply->header();
    std::string message = it->second.error_prefix;
    message.append(reinterpret_cast<const char*>(text.data()), text.size());
    EndCall(id, Status(code.value_or(StatusCode::kUnknown), std::move(message)));
    return;
  }
  EndCall(id, std::move(reply));
}

// ---- memory ----

StatusOr<std::shared_ptr<void>> RpcClient::Impl::RegisterMemory(std::span<std::byte> region) {
  if (reactor_->OnReactorThread()) {
    return FailedPreconditionError("RegisterMemory called from an RPC callback would deadlock");
  }
  const uint64_t id = next_id_.fetch_add(1);
  auto result = std::make_shared<std::promise<Status>>();
  std::future<Status> done = result->get_future();
  std::shared_ptr<Mailbox> mailbox = reactor_->mailbox();
  if (!mailbox->Post([this, id, region, result] {
        auto reg = internal::MemoryRegistration::Map(r_->context(), region);
        if (!reg.ok()) {
          result->set_value(reg.status());
          return;
        }
        regions_.emplace(id, std::move(reg).value());
        result->set_value(OkStatus());
      })) {
    return UnavailableError("the RPC client is shut down");
  }
  RETURN_IF_ERROR(done.get());
  // The handle unregisters through the reactor; once the client is gone there is nothing
  // left to release (its context went with it).
  struct Token {};
  return std::shared_ptr<void>(new Token, [mailbox, this, id](Token* t) {
    delete t;
    mailbox->Post([this, id] { regions_.erase(id); });
  });
}

// ---- Connection ----

void ConnectionImpl::Post(std::function<void()> start, const std::shared_ptr<Callback>& done) {
  if (!s_->mailbox->Post(std::move(start))) {
    // No reactor to run the callback on any more: it runs here, once.
    (*done)(UnavailableError(s_->label + ": the RPC client was destroyed"));
  }
}

void ConnectionImpl::Call(OutgoingMessage request, Deadline deadline, Callback done) {
  auto cb = std::make_shared<Callback>(std::move(done));
  RpcClient::Impl::CallSpec spec{std::move(request), std::nullopt, deadline, Clock::now(), ""};
  Post([s = s_, spec = std::move(spec),
        cb]() mutable { s->client->StartCall(s, std::move(spec), std::move(*cb)); },
       cb);
}

void ConnectionImpl::CallRawForTesting(const FrameHeader& frame, std::string data,
                                       Deadline deadline, Callback done) {
  auto cb = std::make_shared<Callback>(std::move(done));
  RpcClient::Impl::CallSpec spec;
  spec.request.header = std::move(data);  // sent as the data, whatever frame says
  spec.raw_frame = frame;
  spec.deadline = deadline;
  spec.started = Clock::now();
  Post([s = s_, spec = std::move(spec),
        cb]() mutable { s->client->StartCall(s, std::move(spec), std::move(*cb)); },
       cb);
}

void ConnectionImpl::Close() {
  s_->connected.store(false);
  s_->mailbox->Post([s = s_] {
    s->client->CloseConnection(s->id, /*force=*/false, "connection to " + s->label + " was closed");
  });
}

std::future<StatusOr<IncomingMessage>> Connection::Call(OutgoingMessage request,
                                                        Deadline deadline) {
  auto promise = std::make_shared<std::promise<StatusOr<IncomingMessage>>>();
  std::future<StatusOr<IncomingMessage>> future = promise->get_future();
  Call(std::move(request), deadline,
       [promise](StatusOr<IncomingMessage> r) { promise->set_value(std::move(r)); });
  return future;
}

// ---- RpcClient ----

StatusOr<std::unique_ptr<RpcClient>> RpcClient::Create(const RpcClientOptions& options) {
  auto impl = std::make_shared<Impl>(options);
  RETURN_IF_ERROR(impl->Start());
  return std::unique_ptr<RpcClient>(new RpcClient(std::move(impl)));
}

RpcClient::RpcClient(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
RpcClient::~RpcClient() { impl_->Shutdown(); }

StatusOr<std::shared_ptr<Connection>> RpcClient::Connect(const std::string& address,
                                                         Deadline deadline) {
  return impl_->Connect(address, deadline);
}

StatusOr<std::shared_ptr<void>> RpcClient::RegisterMemory(std::span<std::byte> region) {
  return impl_->RegisterMemory(region);
}

const RpcClientStats& RpcClient::stats() const { return impl_->stats(); }

}  // namespace attic::transport
