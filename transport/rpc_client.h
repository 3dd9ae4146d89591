// RpcClient and Connection: the caller's side of the data plane. One RpcClient owns a UCX
// context, a worker and its progress thread; it opens any number of Connections.
//
//   ASSIGN_OR_RETURN(auto rpc, RpcClient::Create({.name = "engine-0", .model_fingerprint = fp}));
//   ASSIGN_OR_RETURN(auto conn, rpc->Connect("10.0.0.5:7001", DeadlineAfter(5s)));
//   conn->Call(std::move(request), DeadlineAfter(100ms), [](StatusOr<IncomingMessage> r) {
//     ...   // runs once, on the progress thread: keep it short
//   });
//   StatusOr<IncomingMessage> r = conn->Call(std::move(request), deadline).get();
//
// Every call ends exactly once: with the reply; with the reply's error status (a worker's
// error reply, message prefixed "worker NAME (host:port): "); with DEADLINE_EXCEEDED when the
// deadline passes first (a reply arriving later is dropped); or with UNAVAILABLE naming the
// peer when the connection fails or is closed. Deadlines are enforced by the progress thread,
// which wakes for the earliest one, so nothing waits without a bound.
//
// Thread safety: RpcClient and Connection are safe to use from any number of threads.
// Callbacks run on the progress thread and must not block (no waiting on futures there).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <string>

#include "common/status.h"
#include "transport/message.h"

namespace attic::transport {

struct RpcClientOptions {
  // Names the client in the worker's logs (Hello.clientName).
  std::string name = "attic-client";
  // Sent in every Hello; a worker serving another model refuses the connection. 0 = any.
  uint64_t model_fingerprint = 0;
  // Shared secret sent in every Hello; empty when the workers require none.
  std::string token;
  // Largest reply payload accepted; larger replies fail the call with RESOURCE_EXHAUSTED.
  size_t max_reply_payload_bytes = size_t{1} << 30;
  // After any activity (a message, a completion, a posted task) the progress thread keeps
  // polling UCX for this many microseconds before it arms the worker and sleeps in poll(2).
  // A reply or the next request that comes within the window is seen without a wakeup
  // (~10-30 us of syscalls and scheduling each way); the price is up to this much CPU after
  // each burst. An idle thread still sleeps. 0 = sleep as soon as there is nothing to do.
  uint32_t busy_poll_us = 50;
  // Received messages of 64 KiB and more land in reused, pre-faulted buffers; up to this
  // many bytes of released buffers are kept for reuse (beyond it they are unmapped). Worth
  // about two of the largest messages in flight. 0 = no reuse.
  size_t receive_cache_bytes = size_t{256} << 20;
};

// Counters since creation; read with relaxed loads.
struct RpcClientStats {
  std::atomic<uint64_t> calls_started{0};
  std::atomic<uint64_t> calls_failed{0};  // ended with any error, deadlines included
  std::atomic<uint64_t> deadlines_exceeded{0};
  std::atomic<uint64_t> late_replies{0};       // replies for calls already ended, dropped
  std::atomic<uint64_t> malformed_replies{0};  // replies without a valid frame, dropped
  std::atomic<uint64_t> bytes_sent{0};         // header + payload of requests
  std::atomic<uint64_t> bytes_received{0};     // header + payload of replies
};

class Connection;

class RpcClient {
 public:
  // INTERNAL with UCX's message if UCX cannot be initialized.
  static StatusOr<std::unique_ptr<RpcClient>> Create(const RpcClientOptions& options);
  // Fails every pending call with UNAVAILABLE, closes endpoints, stops the progress thread.
  // Connections outliving the client fail every later call with UNAVAILABLE.
  // REQUIRES: not called from a call's callback (it joins the thread running it).
  ~RpcClient();
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  // "host:port" of a worker's data plane. Connects, sends Hello and waits for its reply:
  // UNAVAILABLE if nothing answers by the deadline or the connection is refused;
  // FAILED_PRECONDITION / PERMISSION_DENIED as the worker refused the handshake.
  // REQUIRES: not called from a call's callback (it blocks until the Hello reply).
  StatusOr<std::shared_ptr<Connection>> Connect(const std::string& address, Deadline deadline);

  // Registers caller memory with UCX (pinned for RDMA) until the returned handle is dropped,
  // so rendezvous transfers from or into it need no registration on the hot path.
  // REQUIRES: not called from a call's callback (it waits for the progress thread).
  StatusOr<std::shared_ptr<void>> RegisterMemory(std::span<std::byte> region);

  const RpcClientStats& stats() const;

  class Impl;

 private:
  explicit RpcClient(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

class Connection {
 public:
  using Callback = std::function<void(StatusOr<IncomingMessage>)>;

  virtual ~Connection() = default;

  // Sends a request; `done` runs exactly once on the progress thread (see the file comment).
  virtual void Call(OutgoingMessage request, Deadline deadline, Callback done) = 0;
  std::future<StatusOr<IncomingMessage>> Call(OutgoingMessage request, Deadline deadline);

  // The worker's reply to Hello (header: a wire::HelloReply).
  virtual const IncomingMessage& hello_reply() const = 0;
  // "host:port" as given to Connect.
  virtual const std::string& peer() const = 0;
  // False once the connection failed or was closed.
  virtual bool connected() const = 0;
  // Closes the endpoint; pending calls fail with UNAVAILABLE.
  virtual void Close() = 0;

  // Tests only: sends `frame` as is (any magic, version, method, sizes) with `data` as the
  // message data, to check the server's frame validation. The call completes as Call does.
  virtual void CallRawForTesting(const FrameHeader& frame, std::string data, Deadline deadline,
                                 Callback done) = 0;
};

}  // namespace attic::transport
