#include "transport/control/http_server.h"

#include <pthread.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <exception>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "transport/control/asio_status.h"

namespace attic::control {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr char kThreadName[] = "attic-http";
constexpr int kMaxThreads = 64;
constexpr size_t kMinRequestBytes = 1024;

std::string FormatEndpoint(const tcp::endpoint& ep) {
  const std::string address = ep.address().to_string();
  const std::string host = ep.address().is_v6() ? "[" + address + "]" : address;
  return host + ":" + std::to_string(ep.port());
}

Status ValidateOptions(const HttpServerOptions& options,
                       const std::map<std::string, HttpHandler>& routes) {
  if (options.threads < 1 || options.threads > kMaxThreads) {
    return InvalidArgumentError("http server: threads = " + std::to_string(options.threads) +
                                " not in [1, 64]");
  }
  if (options.max_request_bytes < kMinRequestBytes) {
    return InvalidArgumentError("http server: max_request_bytes = " +
                                std::to_string(options.max_request_bytes) + " is below 1024");
  }
  if (options.io_timeout.count() < 1) {
    return InvalidArgumentError("http server: io_timeout must be at least 1 ms");
  }
  for (const auto& [path, handler] : routes) {
    if (path.empty() || path[0] != '/') {
      return InvalidArgumentError("http server: route '" + path + "' does not start with '/'");
    }
    if (!handler) return InvalidArgumentError("http server: route '" + path + "' has no handler");
  }
  return OkStatus();
}

}  // namespace

struct HttpServer::Impl {
  Impl(const HttpServerOptions& opts, std::map<std::string, HttpHandler> r)
      : options(opts), routes(std::move(r)), ioc(opts.threads) {}

  Status Listen();
  void Accept();
  void RunThread();

  // Read-only after Start, shared by every session.
  const HttpServerOptions options;
  const std::map<std::string, HttpHandler> routes;
  uint16_t port = 0;
  // Declared after what sessions read: destroying the io_context destroys the sessions its
  // pending handlers own, before options and routes go.
  net::io_context ioc;
  // The acceptor's operations run on one strand; each connection gets its own.
  tcp::acceptor acceptor{net::make_strand(ioc)};
  net::steady_timer accept_retry{acceptor.get_executor()};
  std::vector<std::thread> threads;
};

namespace {

// One connection: reads a request, answers it, and repeats while the connection is kept alive.
// Every operation of a session runs on its strand, so a session is never entered concurrently.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HttpServer::Impl& server)
      : stream_(std::move(socket)), server_(server) {
    boost::system::error_code ec;
    const tcp::endpoint remote = stream_.socket().remote_endpoint(ec);
    if (!ec) peer_ = FormatEndpoint(remote);
  }

  void Start() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&Session::ReadRequest, shared_from_this()));
  }

 private:
  void ReadRequest() {
    parser_.emplace();
    const size_t limit = server_.options.max_request_bytes;
    parser_->header_limit(static_cast<std::uint32_t>(std::min<size_t>(limit, UINT32_MAX)));
    parser_->body_limit(limit);
    stream_.expires_after(server_.options.io_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t /*bytes*/) {
    if (ec == http::error::body_limit || ec == http::error::header_limit ||
        ec == http::error::buffer_overflow) {
      return SendError(
          http::status::payload_too_large,
          "request exceeds " + std::to_string(server_.options.max_request_bytes) + " bytes\n");
    }
    if (ec && ec.category() == http::make_error_code(http::error::bad_method).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return SendError(http::status::bad_request, "malformed request: " + ec.message() + "\n");
    }
    if (ec) return Close();  // peer closed, reset, or idle past io_timeout
    http::request<http::string_body> req = parser_->release();
    Send(Dispatch(req), req.version(), req.keep_alive());
  }

  http::response<http::string_body> Dispatch(const http::request<http::string_body>& req) {
    const std::string_view target(req.target().data(), req.target().size());
    if (target.empty() || target[0] != '/') {
      return MakeResponse(HttpResponse{.status = 400, .body = "request target must be a path\n"});
    }
    const bool known_method = req.method() == http::verb::get || req.method() == http::verb::post;
    if (!known_method) {
      auto res = MakeResponse(HttpResponse{.status = 405, .body = "method not allowed\n"});
      res.set(http::field::allow, "GET, POST");
      return res;
    }
    HttpRequest request;
    request.method = std::string(req.method_string());
    const size_t q = target.find('?');
    request.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) request.query = std::string(target.substr(q + 1));
    const auto route = server_.routes.find(request.path);
    if (route == server_.routes.end()) {
      return MakeResponse(
          HttpResponse{.status = 404, .body = "no route for " + request.path + "\n"});
    }
    request.body = req.body();
    request.peer = peer_;
    return MakeResponse(CallHandler(route->second, request));
  }

  static HttpResponse CallHandler(const HttpHandler& handler, const HttpRequest& request) {
    try {
      HttpResponse response = handler(request);
      if (response.status < 100 || response.status > 599) {
        return HttpResponse{
            .status = 500,
            .body = "handler returned status " + std::to_string(response.status) + "\n"};
      }
      return response;
    } catch (const std::exception& e) {
      return HttpResponse{.status = 500, .body = std::string("handler failed: ") + e.what() + "\n"};
    } catch (...) {
      return HttpResponse{.status = 500, .body = "handler failed\n"};
    }
  }

  static http::response<http::string_body> MakeResponse(HttpResponse r) {
    http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
    res.set(http::field::server, "attic");
    res.set(http::field::content_type, r.content_type);
    res.body() = std::move(r.body);
    return res;
  }

  void Send(http::response<http::string_body> res, unsigned version, bool keep_alive) {
    res.version(version);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    response_ = std::move(res);
    stream_.expires_after(server_.options.io_timeout);
    http::async_write(stream_, *response_,
                      beast::bind_front_handler(&Session::OnWrite, shared_from_this(),
                                                /*drain=*/false));
  }

  // An answer after which the connection cannot be read on: the request's end is unknown.
  void SendError(http::status status, std::string body) {
    auto res =
        MakeResponse(HttpResponse{.status = static_cast<int>(status), .body = std::move(body)});
    res.keep_alive(false);
    res.prepare_payload();
    response_ = std::move(res);
    stream_.expires_after(server_.options.io_timeout);
    http::async_write(stream_, *response_,
                      beast::bind_front_handler(&Session::OnWrite, shared_from_this(),
                                                /*drain=*/true));
  }

  void OnWrite(bool drain, beast::error_code ec, size_t /*bytes*/) {
    const bool keep_alive = response_->keep_alive();
    response_.reset();
    if (ec) return Close();
    if (drain) return Drain();
    if (!keep_alive) return Close();
    ReadRequest();
  }

  // Half-closes and reads what the peer still sends until it closes (bounded by io_timeout):
  // closing with unread bytes would reset the connection and could destroy the error response
  // before the peer reads it.
  void Drain() {
    boost::system::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    buffer_.clear();
    stream_.expires_after(server_.options.io_timeout);
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](beast::error_code ec, size_t /*bytes*/) {
                              if (ec) return self->Close();
                              self->Drain();
                            });
  }

  void Close() {
    boost::system::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  const HttpServer::Impl& server_;
  std::string peer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> response_;
};

}  // namespace

Status HttpServer::Impl::Listen() {
  boost::system::error_code ec;
  const net::ip::address address = net::ip::make_address(options.address, ec);
  if (ec) {
    return InvalidArgumentError("http server: address '" + options.address +
                                "' is not an IPv4 or IPv6 address");
  }
  const tcp::endpoint endpoint(address, options.port);
  const std::string where = FormatEndpoint(endpoint);
  acceptor.open(endpoint.protocol(), ec);
  RETURN_IF_ERROR(AsioStatus(ec, "http server: open socket for " + where));
  acceptor.set_option(net::socket_base::reuse_address(true), ec);
  RETURN_IF_ERROR(AsioStatus(ec, "http server: set SO_REUSEADDR on " + where));
  acceptor.bind(endpoint, ec);
  RETURN_IF_ERROR(AsioStatus(ec, "http server: bind " + where));
  acceptor.listen(net::socket_base::max_listen_connections, ec);
  RETURN_IF_ERROR(AsioStatus(ec, "http server: listen on " + where));
  port = acceptor.local_endpoint(ec).port();
  return AsioStatus(ec, "http server: local address of " + where);
}

void HttpServer::Impl::Accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted) return;
    if (ec) {
      // Out of descriptors or a transient network error: retry shortly rather than spin.
      accept_retry.expires_after(std::chrono::milliseconds(50));
      accept_retry.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec) Accept();
      });
      return;
    }
    std::make_shared<Session>(std::move(socket), *this)->Start();
    Accept();
  });
}

void HttpServer::Impl::RunThread() {
  for (;;) {
    try {
      ioc.run();
      return;
    } catch (...) {
      // Handlers catch their own exceptions; this only keeps a thread alive after bad_alloc.
    }
  }
}

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                        std::map<std::string, HttpHandler> routes) {
  RETURN_IF_ERROR(ValidateOptions(options, routes));
  auto impl = std::make_unique<Impl>(options, std::move(routes));
  RETURN_IF_ERROR(impl->Listen());
  impl->Accept();
  Impl* raw = impl.get();
  for (int i = 0; i < options.threads; ++i) {
    std::thread& t = raw->threads.emplace_back([raw] { raw->RunThread(); });
    // Named here rather than by the thread itself, so the name is in place when Start returns.
    pthread_setname_np(t.native_handle(), kThreadName);
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  impl_->ioc.stop();
  for (std::thread& t : impl_->threads) t.join();
  // impl_'s members go in reverse order: the acceptor, then the io_context, whose destruction
  // destroys the pending handlers and with them every session and its socket.
}

uint16_t HttpServer::port() const { return impl_->port; }

}  // namespace attic::control
