// How the client reaches one worker and names it in errors, and the counters behind
// Client::Stats(). Both are shared with in-flight transport callbacks, which may run after the
// Client is gone (the RpcClient fails pending calls when it is destroyed).
//
//   SendRequest(link, counters, Method::kAttend, std::move(header), std::move(payload),
//               deadline, [](StatusOr<transport::IncomingMessage> reply) { ... });
//   Status e = NameError(status, 42, link.label);
//   // "sequence 42 on worker w1 (127.0.0.1:7101): NOT_FOUND: sequence 42 is not open"
//
// Thread safety: WorkerLink is immutable after Connect; Counters are atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "transport/message.h"
#include "transport/rpc_client.h"

namespace attic::client_internal {

struct WorkerLink {
  std::shared_ptr<transport::Connection> conn;
  std::string name;   // HelloReply.workerName
  std::string label;  // WorkerLabel(name, host:port)
};

struct Counters {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> bytes_received{0};
};

// "worker <name> (<address>)", or "worker <address>" when the worker gave no name.
std::string WorkerLabel(std::string_view name, std::string_view address);

// The same code with the message "sequence <id> on <label>: <CODE>: <message>". A leading
// "<label>: " that the transport already put on a worker's error reply is not repeated.
Status NameError(const Status& status, uint64_t id, std::string_view label);

// A payload buffer and the header that describes it, ready to send.
struct Request {
  transport::Method method = transport::Method::kEcho;
  std::string header;
  std::shared_ptr<const std::vector<std::byte>> payload;  // may be null
};

// Sends `request` on `link` with the deadline; `done` runs once on the transport's callback
// thread. Counts the request, its bytes, the reply's bytes and a failure.
void SendRequest(const WorkerLink& link, const std::shared_ptr<Counters>& counters, Request request,
                 transport::Deadline deadline, transport::Connection::Callback done);

}  // namespace attic::client_internal
