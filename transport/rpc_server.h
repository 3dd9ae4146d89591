// RpcServer: the data-plane listener of an attention worker. Accepts UCX connections, runs
// the handshake, checks every frame, and hands well-formed requests to one handler.
//
//   RpcServerOptions opts{.name = "worker-0", .port = 7001, .model_fingerprint = fp,
//                         .hello_reply_header = EncodeCapnp(hello_reply)};
//   ASSIGN_OR_RETURN(auto server, RpcServer::Start(opts, [&](IncomingMessage req,
//                                                              Responder resp) {
//     pool.Submit([req = std::move(req), resp = std::move(resp)]() mutable {
//       resp.Reply(Handle(req));   // or resp.Fail(status)
//     });
//   }));
//   ...
//   server->StopAccepting();        // SIGTERM: new requests get UNAVAILABLE
//   // wait for in-flight replies, then destroy
//
// Threading: one named progress thread ("attic-rpc-srv") owns the UCX context, worker,
// listener and endpoints, and is the only thread that calls into UCX. It sleeps on the
// worker's event fd (ucp_worker_arm) when idle. Replies may be sent from any thread: they are
// queued and the progress thread is woken (through an eventfd it polls beside the worker's).
//
// Frame checks (each ends in an error reply to the sender, and the server keeps serving):
// bad magic or version -> FAILED_PRECONDITION; unknown method -> UNIMPLEMENTED; header or
// payload over the limits -> RESOURCE_EXHAUSTED; sizes that disagree with the received data
// -> INVALID_ARGUMENT; any request before a successful Hello -> FAILED_PRECONDITION; after
// StopAccepting -> UNAVAILABLE. A refused Hello (FAILED_PRECONDITION for a version or model
// mismatch, PERMISSION_DENIED for a wrong token) is answered, logged, and the endpoint closed.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "transport/message.h"

namespace attic::transport {

struct RpcServerOptions {
  // Names the server in logs and in errors sent to clients ("worker-0 is shutting down").
  std::string name = "attic-worker";
  // Address to listen on; "0.0.0.0" for every interface.
  std::string listen_address = "0.0.0.0";
  // TCP port of the UCX listener (UCX's sockaddr connection establishment). 0 = ephemeral.
  uint16_t port = 0;
  // Handshake: a Hello with a different nonzero fingerprint is refused. 0 = accept any model.
  uint64_t model_fingerprint = 0;
  // Handshake: when non-empty, a Hello must carry exactly this token.
  std::string token;
  // Sent as the header of the reply to an accepted Hello (an encoded wire::HelloReply).
  std::string hello_reply_header;
  // Limits on one request; larger ones are refused with RESOURCE_EXHAUSTED.
  size_t max_header_bytes = size_t{1} << 20;
  size_t max_payload_bytes = size_t{1} << 30;
  // Memory registered with UCX for the server's lifetime (the KV pools), so rendezvous
  // transfers touching it need no registration on the hot path.
  std::vector<std::span<std::byte>> register_regions;
  // After any activity (a message, a completion, a posted task) the progress thread keeps
  // polling UCX for this many microseconds before it arms the worker and sleeps in poll(2).
  // A reply or the next request that comes within the window is seen without a wakeup
  // (~10-30 us of syscalls and scheduling each way); the price is up to this much CPU after
  // each burst. An idle thread still sleeps. 0 = sleep as soon as there is nothing to do.
  uint32_t busy_poll_us = 50;
  // Deadline given to a request whose frame carries none (timeout_ms = 0), ms.
  uint32_t default_timeout_ms = 10000;
  // Received messages of 64 KiB and more land in reused, pre-faulted buffers; up to this
  // many bytes of released buffers are kept for reuse (beyond it they are unmapped). Worth
  // about two of the largest messages in flight. 0 = no reuse.
  size_t receive_cache_bytes = size_t{256} << 20;
};

// Counters since start; read with relaxed loads.
struct RpcServerStats {
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_open{0};
  std::atomic<uint64_t> handshakes_refused{0};
  std::atomic<uint64_t> requests_received{0};
  std::atomic<uint64_t> requests_rejected{0};  // refused by the frame checks above
  std::atomic<uint64_t> bytes_received{0};     // header + payload of requests
  std::atomic<uint64_t> bytes_sent{0};         // header + payload of replies
};

// The one way to answer a request. Move-only; exactly one of Reply or Fail should be called,
// from any thread. Destroying it unanswered sends INTERNAL "request dropped", so a request
// never waits for its deadline because of a lost reply. Answering after the client's
// connection is gone is a no-op.
class Responder {
 public:
  Responder() = default;
  Responder(Responder&&) noexcept;
  Responder& operator=(Responder&&) noexcept;
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  ~Responder();

  void Reply(OutgoingMessage reply);
  void Fail(const Status& status);

  // The caller's deadline as the request announced it (time of arrival + timeout_ms).
  Deadline deadline() const;
  // "host:port" of the client, for logs.
  const std::string& peer() const;

  struct State;  // private to the implementation
  explicit Responder(std::shared_ptr<State> state);

 private:
  std::shared_ptr<State> state_;
};

// Runs on the progress thread: must not block or compute. Hand the work to another thread.
using RequestHandler = std::function<void(IncomingMessage request, Responder responder)>;

class RpcServer {
 public:
  // Creates the UCX context and worker, registers the regions, listens, and starts the
  // progress thread. UNAVAILABLE if the port is taken; INTERNAL for other UCX failures,
  // with UCX's own message.
  static StatusOr<std::unique_ptr<RpcServer>> Start(const RpcServerOptions& options,
                                                    RequestHandler handler);
  // Closes every endpoint, stops the progress thread and releases UCX resources in reverse
  // order of creation. Unanswered responders become no-ops.
  // REQUIRES: not called from the request handler (it joins the thread running it).
  ~RpcServer();
  RpcServer(const RpcServer&) = delete;
  RpcServer& operator=(const RpcServer&) = delete;

  // The bound port (the ephemeral one when options.port was 0).
  uint16_t port() const;
  // From now on every new request, Hello included, is answered UNAVAILABLE; requests already
  // handed to the handler still get their replies.
  void StopAccepting();
  const RpcServerStats& stats() const;

  class Impl;

 private:
  explicit RpcServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace attic::transport
