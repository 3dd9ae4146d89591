#include "transport/internal/ucp_handles.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <cstring>
#include <utility>

#include "transport/internal/ucx_status.h"

namespace attic::transport::internal {

// ---- UcpContext ----

StatusOr<UcpContext> UcpContext::Create() {
  ucp_config_t* config = nullptr;
  // Reads UCX_* from the environment: UCX_TLS, UCX_NET_DEVICES, ... apply with no code change.
  ucs_status_t s = ucp_config_read(nullptr, nullptr, &config);
  if (s != UCS_OK) return UcsToStatus(s, "ucp_config_read");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
  params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.mt_workers_shared = 0;
  ucp_context_h handle = nullptr;
  s = ucp_init(&params, config, &handle);
  ucp_config_release(config);
  if (s != UCS_OK) return UcsToStatus(s, "ucp_init");
  return UcpContext(handle);
}

UcpContext::UcpContext(UcpContext&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)) {}
UcpContext& UcpContext::operator=(UcpContext&& other) noexcept {
  std::swap(handle_, other.handle_);
  return *this;
}
UcpContext::~UcpContext() {
  if (handle_ != nullptr) ucp_cleanup(handle_);
}

// ---- UcpWorker ----

StatusOr<UcpWorker> UcpWorker::Create(const UcpContext& context) {
  ucp_worker_params_t params{};
  params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  params.thread_mode = UCS_THREAD_MODE_SINGLE;
  ucp_worker_h handle = nullptr;
  ucs_status_t s = ucp_worker_create(context.get(), &params, &handle);
  if (s != UCS_OK) return UcsToStatus(s, "ucp_worker_create");
  int efd = -1;
  s = ucp_worker_get_efd(handle, &efd);
  if (s != UCS_OK) {
    ucp_worker_destroy(handle);
    return UcsToStatus(s, "ucp_worker_get_efd");
  }
  ucp_worker_attr_t attr{};
  attr.field_mask = UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER;
  const size_t max_am_header = ucp_worker_query(handle, &attr) == UCS_OK ? attr.max_am_header : 0;
  return UcpWorker(handle, efd, max_am_header);
}

UcpWorker::UcpWorker(UcpWorker&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)),
      efd_(std::exchange(other.efd_, -1)),
      max_am_header_(other.max_am_header_) {}
UcpWorker& UcpWorker::operator=(UcpWorker&& other) noexcept {
  std::swap(handle_, other.handle_);
  std::swap(efd_, other.efd_);
  std::swap(max_am_header_, other.max_am_header_);
  return *this;
}
UcpWorker::~UcpWorker() {
  if (handle_ != nullptr) ucp_worker_destroy(handle_);
}

// ---- addresses ----

StatusOr<SockAddr> ResolveAddress(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &result);
  if (rc != 0 || result == nullptr) {
    return InvalidArgumentError("cannot resolve '" + host + "': " + gai_strerror(rc));
  }
  SockAddr addr;
  std::memcpy(&addr.storage, result->ai_addr, result->ai_addrlen);
  addr.length = result->ai_addrlen;
  freeaddrinfo(result);
  return addr;
}

StatusOr<SockAddr> ParseHostPort(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return InvalidArgumentError("address '" + address + "' is not host:port");
  }
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port_text = address.substr(colon + 1);
  char* end = nullptr;
  const unsigned long port = std::strtoul(port_text.c_str(), &end, 10);
  if (*end != '\0' || port == 0 || port > 65535) {
    return InvalidArgumentError("address '" + address + "' has no valid port");
  }
  return ResolveAddress(host, static_cast<uint16_t>(port));
}

std::string FormatSockAddr(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    port = ntohs(in6->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  return "unknown-address";
}

// ---- UcpListener ----

StatusOr<UcpListener> UcpListener::Create(ucp_worker_h worker, const std::string& address,
                                          uint16_t port, ucp_listener_conn_callback_t conn_cb,
                                          void* arg) {
  ASSIGN_OR_RETURN(SockAddr addr, ResolveAddress(address, port));
  ucp_listener_params_t params{};
  params.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
  params.sockaddr.addr = addr.get();
  params.sockaddr.addrlen = addr.length;
  params.conn_handler.cb = conn_cb;
  params.conn_handler.arg = arg;
  ucp_listener_h handle = nullptr;
  ucs_status_t s = ucp_listener_create(worker, &params, &handle);
  if (s != UCS_OK) {
    return UcsToStatus(s, "cannot listen on " + address + ":" + std::to_string(port));
  }
  ucp_listener_attr_t attr{};
  attr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
  s = ucp_listener_query(handle, &attr);
  if (s != UCS_OK) {
    ucp_listener_destroy(handle);
    return UcsToStatus(s, "ucp_listener_query");
  }
  uint16_t bound = port;
  if (attr.sockaddr.ss_family == AF_INET) {
    bound = ntohs(reinterpret_cast<const sockaddr_in*>(&attr.sockaddr)->sin_port);
  } else if (attr.sockaddr.ss_family == AF_INET6) {
    bound = ntohs(reinterpret_cast<const sockaddr_in6*>(&attr.sockaddr)->sin6_port);
  }
  return UcpListener(handle, bound);
}

UcpListener::UcpListener(UcpListener&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)), port_(other.port_) {}
UcpListener& UcpListener::operator=(UcpListener&& other) noexcept {
  std::swap(handle_, other.handle_);
  std::swap(port_, other.port_);
  return *this;
}
UcpListener::~UcpListener() {
  if (handle_ != nullptr) ucp_listener_destroy(handle_);
}

// ---- endpoints ----

namespace {

ucp_ep_params_t EndpointParams(ucp_err_handler_cb_t err_cb, void* arg) {
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
  // PEER mode: a dead or unreachable peer is reported through err_cb instead of hanging.
  params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  params.err_handler.cb = err_cb;
  params.err_handler.arg = arg;
  return params;
}

}  // namespace

StatusOr<UcpEndpoint> UcpEndpoint::Connect(ucp_worker_h worker, const SockAddr& addr,
                                           ucp_err_handler_cb_t err_cb, void* arg) {
  ucp_ep_params_t params = EndpointParams(err_cb, arg);
  params.field_mask |= UCP_EP_PARAM_FIELD_SOCK_ADDR | UCP_EP_PARAM_FIELD_FLAGS;
  params.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
  params.sockaddr.addr = addr.get();
  params.sockaddr.addrlen = addr.length;
  ucp_ep_h ep = nullptr;
  ucs_status_t s = ucp_ep_create(worker, &params, &ep);
  if (s != UCS_OK) return UcsToStatus(s, "connect to " + FormatSockAddr(addr.storage));
  return UcpEndpoint(worker, ep);
}

StatusOr<UcpEndpoint> UcpEndpoint::Accept(ucp_worker_h worker, ucp_conn_request_h request,
                                          ucp_err_handler_cb_t err_cb, void* arg) {
  ucp_ep_params_t params = EndpointParams(err_cb, arg);
  params.field_mask |= UCP_EP_PARAM_FIELD_CONN_REQUEST;
  params.conn_request = request;
  ucp_ep_h ep = nullptr;
  ucs_status_t s = ucp_ep_create(worker, &params, &ep);
  if (s != UCS_OK) return UcsToStatus(s, "accept connection");
  return UcpEndpoint(worker, ep);
}

UcpEndpoint::UcpEndpoint(UcpEndpoint&& other) noexcept
    : worker_(other.worker_), handle_(std::exchange(other.handle_, nullptr)) {}
UcpEndpoint& UcpEndpoint::operator=(UcpEndpoint&& other) noexcept {
  std::swap(worker_, other.worker_);
  std::swap(handle_, other.handle_);
  return *this;
}
UcpEndpoint::~UcpEndpoint() {
  if (handle_ == nullptr) return;
  const ucp_ep_h ep = handle_;
  CloseEndpointsBlocking(worker_, std::span<const ucp_ep_h>(&ep, 1), /*force=*/true, kCloseTimeout);
}

ucp_ep_h UcpEndpoint::Release() { return std::exchange(handle_, nullptr); }

void CloseEndpointsBlocking(ucp_worker_h worker, std::span<const ucp_ep_h> eps, bool force,
                            std::chrono::milliseconds timeout) {
  // No completion callback: the requests are polled, so a request left to UCX after the
  // timeout never calls back into a finished stack frame.
  std::vector<void*> open;
  for (ucp_ep_h ep : eps) {
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    ucs_status_ptr_t r = ucp_ep_close_nbx(ep, &param);
    if (UCS_PTR_IS_PTR(r)) {
      open.push_back(r);
    } else if (UCS_PTR_IS_ERR(r) && !IsPeerFailure(UCS_PTR_STATUS(r))) {
      LogWarning(std::string("endpoint close failed: ") + ucs_status_string(UCS_PTR_STATUS(r)));
    }
  }
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!open.empty()) {
    ucp_worker_progress(worker);
    std::erase_if(open, [](void* r) {
      if (ucp_request_check_status(r) == UCS_INPROGRESS) return false;
      ucp_request_free(r);
      return true;
    });
    if (std::chrono::steady_clock::now() >= until) break;
  }
  if (!open.empty()) {
    LogWarning(std::to_string(open.size()) + " endpoint close(s) did not finish within " +
               std::to_string(timeout.count()) + " ms; left to UCX");
    for (void* r : open) ucp_request_free(r);  // UCX frees each when it completes
  }
}

// ---- MemoryRegistration ----

StatusOr<MemoryRegistration> MemoryRegistration::Map(ucp_context_h context,
                                                     std::span<std::byte> region) {
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  params.address = region.data();
  params.length = region.size();
  ucp_mem_h memh = nullptr;
  ucs_status_t s = ucp_mem_map(context, &params, &memh);
  if (s != UCS_OK) {
    return UcsToStatus(s, "ucp_mem_map of " + std::to_string(region.size()) + " bytes");
  }
  return MemoryRegistration(context, memh);
}

MemoryRegistration::MemoryRegistration(MemoryRegistration&& other) noexcept
    : context_(other.context_), handle_(std::exchange(other.handle_, nullptr)) {}
MemoryRegistration& MemoryRegistration::operator=(MemoryRegistration&& other) noexcept {
  std::swap(context_, other.context_);
  std::swap(handle_, other.handle_);
  return *this;
}
MemoryRegistration::~MemoryRegistration() {
  if (handle_ == nullptr) return;
  ucs_status_t s = ucp_mem_unmap(context_, handle_);
  if (s != UCS_OK) LogWarning(std::string("ucp_mem_unmap failed: ") + ucs_status_string(s));
}

}  // namespace attic::transport::internal
