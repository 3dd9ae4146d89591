// RAII owners of UCP handles: context, worker, listener, endpoint, memory registration.
// No threads and no hidden progress except where a destructor must finish a close (bounded).
//
//   ASSIGN_OR_RETURN(UcpContext ctx, UcpContext::Create());
//   ASSIGN_OR_RETURN(UcpWorker worker, UcpWorker::Create(ctx));
//   ASSIGN_OR_RETURN(UcpListener l, UcpListener::Create(worker.get(), "0.0.0.0", 0, OnConn, this));
//   ... // destroy in reverse order: l, worker, ctx
//
// Contract: every handle must be destroyed before the handle it was created from (an
// endpoint before its worker, a worker before its context); owners declare members in
// creation order so that C++ destroys them in reverse. Destructors log failures (one stderr
// line) and never throw.
//
// Thread safety: none. All of these belong to the one thread that drives the worker.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <ucp/api/ucp.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace attic::transport::internal {

class UcpContext {
 public:
  // ucp_init with AM and WAKEUP. Configuration comes from ucp_config_read, so UCX_TLS,
  // UCX_NET_DEVICES and every other UCX_* variable select transports without code changes.
  static StatusOr<UcpContext> Create();
  UcpContext(UcpContext&& other) noexcept;
  UcpContext& operator=(UcpContext&& other) noexcept;
  ~UcpContext();
  ucp_context_h get() const { return handle_; }

 private:
  explicit UcpContext(ucp_context_h h) : handle_(h) {}
  ucp_context_h handle_ = nullptr;
};

class UcpWorker {
 public:
  // A UCS_THREAD_MODE_SINGLE worker: only its owning thread may call UCX on it.
  static StatusOr<UcpWorker> Create(const UcpContext& context);
  UcpWorker(UcpWorker&& other) noexcept;
  UcpWorker& operator=(UcpWorker&& other) noexcept;
  ~UcpWorker();
  ucp_worker_h get() const { return handle_; }
  // The worker's event fd (ucp_worker_get_efd): readable after ucp_worker_arm returned OK
  // and an event arrived. Owned by the worker.
  int event_fd() const { return efd_; }
  // Largest user header ucp_am_send_nbx accepts on this worker (0 if UCX did not say).
  size_t max_am_header() const { return max_am_header_; }

 private:
  UcpWorker(ucp_worker_h h, int efd, size_t max_am_header)
      : handle_(h), efd_(efd), max_am_header_(max_am_header) {}
  ucp_worker_h handle_ = nullptr;
  int efd_ = -1;
  size_t max_am_header_ = 0;
};

// A parsed "host:port" or (host, port) socket address.
struct SockAddr {
  sockaddr_storage storage{};
  socklen_t length = 0;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};
// Resolves a numeric or named IPv4/IPv6 host. INVALID_ARGUMENT if it cannot be resolved.
StatusOr<SockAddr> ResolveAddress(const std::string& host, uint16_t port);
// Splits "host:port" ("[v6]:port" for IPv6) and resolves it.
StatusOr<SockAddr> ParseHostPort(const std::string& address);
// "host:port" of a socket address.
std::string FormatSockAddr(const sockaddr_storage& addr);

class UcpListener {
 public:
  // Listens on address:port (0 = ephemeral) and calls conn_cb(conn_request, arg) on the
  // worker's thread for every incoming connection. UNAVAILABLE if the port is taken.
  static StatusOr<UcpListener> Create(ucp_worker_h worker, const std::string& address,
                                      uint16_t port, ucp_listener_conn_callback_t conn_cb,
                                      void* arg);
  UcpListener(UcpListener&& other) noexcept;
  UcpListener& operator=(UcpListener&& other) noexcept;
  ~UcpListener();
  // The bound port, from ucp_listener_query (so an ephemeral port is known).
  uint16_t port() const { return port_; }

 private:
  UcpListener(ucp_listener_h h, uint16_t port) : handle_(h), port_(port) {}
  ucp_listener_h handle_ = nullptr;
  uint16_t port_ = 0;
};

// Starts ucp_ep_close_nbx on every endpoint (force: drop outstanding operations, for failed
// peers; otherwise flush them first) and progresses the worker until all closes completed
// or the timeout passed. Requests still open then are released to UCX.
void CloseEndpointsBlocking(ucp_worker_h worker, std::span<const ucp_ep_h> eps, bool force,
                            std::chrono::milliseconds timeout);

class UcpEndpoint {
 public:
  // Client side: connects to a listener through UCX's sockaddr connection establishment.
  // err_cb(arg, ep, status) runs on the worker's thread when the peer fails.
  static StatusOr<UcpEndpoint> Connect(ucp_worker_h worker, const SockAddr& addr,
                                       ucp_err_handler_cb_t err_cb, void* arg);
  // Server side: accepts a connection request from a listener's conn handler.
  static StatusOr<UcpEndpoint> Accept(ucp_worker_h worker, ucp_conn_request_h request,
                                      ucp_err_handler_cb_t err_cb, void* arg);
  UcpEndpoint() = default;
  UcpEndpoint(UcpEndpoint&& other) noexcept;
  UcpEndpoint& operator=(UcpEndpoint&& other) noexcept;
  // Closes an endpoint still held (force, bounded by kCloseTimeout).
  ~UcpEndpoint();

  ucp_ep_h get() const { return handle_; }
  // Gives up ownership (the caller closes the handle, e.g. in the background).
  ucp_ep_h Release();

  static constexpr std::chrono::milliseconds kCloseTimeout{1000};

 private:
  UcpEndpoint(ucp_worker_h w, ucp_ep_h h) : worker_(w), handle_(h) {}
  ucp_worker_h worker_ = nullptr;
  ucp_ep_h handle_ = nullptr;
};

class MemoryRegistration {
 public:
  // ucp_mem_map of existing memory (pinned and registered with every transport).
  static StatusOr<MemoryRegistration> Map(ucp_context_h context, std::span<std::byte> region);
  MemoryRegistration(MemoryRegistration&& other) noexcept;
  MemoryRegistration& operator=(MemoryRegistration&& other) noexcept;
  ~MemoryRegistration();
  ucp_mem_h get() const { return handle_; }

 private:
  MemoryRegistration(ucp_context_h c, ucp_mem_h h) : context_(c), handle_(h) {}
  ucp_context_h context_ = nullptr;
  ucp_mem_h handle_ = nullptr;
};

}  // namespace attic::transport::internal
