#include "client/internal/worker_link.h"

#include <utility>

namespace attic::client_internal {

std::string WorkerLabel(std::string_view name, std::string_view address) {
  // The transport's label for a worker that gave no name, so its prefixes match ours.
  if (name.empty()) return "worker " + std::string(address);
  return "worker " + std::string(name) + " (" + std::string(address) + ")";
}

Status NameError(const Status& status, uint64_t id, std::string_view label) {
  if (status.ok()) return status;
  std::string_view message = status.message();
  const std::string transport_prefix = std::string(label) + ": ";
  if (message.starts_with(transport_prefix)) message.remove_prefix(transport_prefix.size());
  return Status(status.code(), "sequence " + std::to_string(id) + " on " + std::string(label) +
                                   ": " + std::string(StatusCodeName(status.code())) + ": " +
                                   std::string(message));
}

void SendRequest(const WorkerLink& link, const std::shared_ptr<Counters>& counters, Request request,
                 transport::Deadline deadline, transport::Connection::Callback done) {
  transport::OutgoingMessage m;
  m.method = request.method;
  m.header = std::move(request.header);
  if (request.payload && !request.payload->empty()) {
    m.payload.emplace_back(request.payload->data(), request.payload->size());
  }
  m.keepalive = std::move(request.payload);
  counters->requests.fetch_add(1, std::memory_order_relaxed);
  counters->bytes_sent.fetch_add(m.header.size() + m.payload_bytes(), std::memory_order_relaxed);
  link.conn->Call(std::move(m), deadline,
                  [counters, done = std::move(done)](StatusOr<transport::IncomingMessage> r) {
                    if (r.ok()) {
                      counters->bytes_received.fetch_add(r->header().size() + r->payload().size(),
                                                         std::memory_order_relaxed);
                    } else {
                      counters->errors.fetch_add(1, std::memory_order_relaxed);
                    }
                    done(std::move(r));
                  });
}

}  // namespace attic::client_internal
