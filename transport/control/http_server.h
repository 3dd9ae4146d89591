// A minimal HTTP/1.1 server and blocking client for Attic's control plane: /metrics, /healthz,
// /readyz and small admin endpoints on the worker, and later the scheduler's API.
//
//   std::map<std::string, HttpHandler> routes;
//   routes["/healthz"] = [](const HttpRequest&) { return HttpResponse{.body = "ok\n"}; };
//   ASSIGN_OR_RETURN(std::unique_ptr<HttpServer> server,
//                    HttpServer::Start({.address = "127.0.0.1", .port = 0}, std::move(routes)));
//   ASSIGN_OR_RETURN(HttpResponse r,
//                    HttpGet("127.0.0.1:" + std::to_string(server->port()), "/healthz",
//                            std::chrono::seconds(1)));
//
// The server runs on Boost.Asio (Beast's HTTP/1.1 parser) with exactly `threads` threads named
// "attic-http" and no others. Handlers run on those threads: a slow handler holds one of them, so
// handlers are expected to answer in milliseconds (they read figures, they do not compute).
// Asio is included only by the .cc files of this component.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/status.h"

namespace attic::control {

struct HttpRequest {
  std::string method;  // "GET" or "POST" (other methods never reach a handler)
  std::string path;    // "/metrics": the target up to '?', not percent-decoded
  std::string query;   // what follows '?', without it; empty if none
  std::string body;
  std::string peer;  // "127.0.0.1:53122"
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Called on a server thread for every request whose path is routed to it. It may be called from
// several threads at once (when threads > 1). An exception that escapes it becomes a 500 response
// and does not reach the server.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  // Address to listen on: an IPv4 or IPv6 literal.
  std::string address = "0.0.0.0";
  // TCP port; 0 picks an ephemeral port (read it back with HttpServer::port()).
  uint16_t port = 0;
  // Threads running the io_context and the handlers. 1..64.
  int threads = 1;
  // Largest request header section, and largest request body, accepted; a request over either
  // gets 413 and the connection is closed. At least 1 KiB.
  size_t max_request_bytes = 64 << 10;
  // Time a connection may take to deliver one request, and to take one response. An idle
  // keep-alive connection is closed after it. At least 1 ms.
  std::chrono::milliseconds io_timeout{5000};
};

// Serves `routes` until destroyed.
//
// Responses: a routed path gets its handler's response; an unknown path 404; a method other than
// GET or POST 405; a request that is not HTTP/1.x 400; a request over max_request_bytes 413; a
// handler that throws 500. Keep-alive is the HTTP/1.1 default; "Connection: close" (or HTTP/1.0
// without keep-alive) closes the connection after the response, as do 400 and 413.
//
// Thread safety: port() may be called from any thread. The destructor must not be called from a
// handler.
class HttpServer {
 public:
  // Binds and listens before returning, so the port is accepting on success.
  // InvalidArgument for bad options or an address that is not an IP literal; Unavailable naming
  // the address when it is in use or not local; PermissionDenied for a privileged port.
  static StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                     std::map<std::string, HttpHandler> routes);

  // Stops accepting, closes every connection (clients see the connection end), waits for running
  // handlers to return and joins the threads.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port (the ephemeral one when options.port was 0).
  uint16_t port() const;

  struct Impl;  // defined in http_server.cc

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Blocking HTTP/1.1 client for tests, tools and the scheduler: one request on a fresh connection
// ("Connection: close"), finished within `timeout` from the call or abandoned.
// `host_port` is "host:port" or "[v6]:port". Name resolution is synchronous and is not bounded
// by the timeout (use IP literals where that matters).
// The response is returned whatever its status (404 is a response, not an error). Errors:
// InvalidArgument for a malformed host_port or path; DeadlineExceeded naming the target when the
// timeout passes; Unavailable when the connection is refused or breaks; Internal when the peer's
// answer is not HTTP; ResourceExhausted when the response body exceeds 64 MiB.
StatusOr<HttpResponse> HttpGet(const std::string& host_port, const std::string& path,
                               std::chrono::milliseconds timeout);
StatusOr<HttpResponse> HttpPost(const std::string& host_port, const std::string& path,
                                const std::string& body, std::chrono::milliseconds timeout,
                                const std::string& content_type = "application/json");

}  // namespace attic::control
