// The blocking HTTP/1.1 client of http_server.h: one request per connection, one deadline.
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <string>

#include "transport/control/asio_status.h"
#include "transport/control/http_server.h"

namespace attic::control {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr uint64_t kMaxResponseBodyBytes = uint64_t{64} << 20;

struct HostPort {
  std::string host;
  std::string port;
};

// "host:port" or "[v6]:port"; the port a number in [1, 65535].
StatusOr<HostPort> SplitHostPort(const std::string& host_port) {
  auto bad = [&host_port](const char* why) {
    return InvalidArgumentError("'" + host_port + "' is not host:port: " + why);
  };
  HostPort out;
  size_t colon;
  if (!host_port.empty() && host_port[0] == '[') {
    const size_t close = host_port.find(']');
    if (close == std::string::npos) return bad("unterminated '['");
    out.host = host_port.substr(1, close - 1);
    colon = close + 1;
    if (colon >= host_port.size() || host_port[colon] != ':') return bad("no port");
  } else {
    colon = host_port.rfind(':');
    if (colon == std::string::npos) return bad("no port");
    out.host = host_port.substr(0, colon);
  }
  out.port = host_port.substr(colon + 1);
  if (out.host.empty()) return bad("no host");
  if (out.port.empty() || out.port.size() > 5 ||
      out.port.find_first_not_of("0123456789") != std::string::npos || std::stoul(out.port) < 1 ||
      std::stoul(out.port) > 65535) {
    return bad("port is not a number in [1, 65535]");
  }
  return out;
}

Status ValidatePath(const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return InvalidArgumentError("http path '" + path + "' does not start with '/'");
  }
  for (const char c : path) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
      return InvalidArgumentError("http path '" + path + "' holds a space or control character");
    }
  }
  return OkStatus();
}

StatusOr<HttpResponse> Call(http::verb verb, const std::string& host_port, const std::string& path,
                            const std::string* body, const std::string& content_type,
                            std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(const HostPort target, SplitHostPort(host_port));
  RETURN_IF_ERROR(ValidatePath(path));
  const std::string what = std::string(http::to_string(verb)) + " " + host_port + path;
  if (timeout.count() <= 0) return DeadlineExceededError(what + ": no time left");
  const auto deadline = std::chrono::steady_clock::now() + timeout;

  net::io_context ioc(1);
  tcp::resolver resolver(ioc);
  boost::system::error_code ec;
  // Synchronous: Asio's asynchronous resolver would start a hidden thread.
  const tcp::resolver::results_type endpoints = resolver.resolve(target.host, target.port, ec);
  RETURN_IF_ERROR(AsioStatus(ec, what + ": resolve " + target.host));

  http::request<http::string_body> req{verb, path, 11};
  req.set(http::field::host, target.host);
  req.set(http::field::user_agent, "attic-control");
  req.keep_alive(false);
  if (body != nullptr) {
    req.set(http::field::content_type, content_type);
    req.body() = *body;
  }
  req.prepare_payload();

  beast::tcp_stream stream(ioc);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxResponseBodyBytes);
  Status result = InternalError(what + ": did not complete");
  auto finish = [&](beast::error_code op_ec, const char* step) {
    result = AsioStatus(
        op_ec, what + ": " + step + " (deadline " + std::to_string(timeout.count()) + " ms)");
  };
  // One absolute deadline covers connect, write and read.
  stream.expires_at(deadline);
  stream.async_connect(endpoints, [&](beast::error_code connect_ec, const tcp::endpoint&) {
    if (connect_ec) return finish(connect_ec, "connect");
    http::async_write(stream, req, [&](beast::error_code write_ec, size_t) {
      if (write_ec) return finish(write_ec, "send request");
      http::async_read(stream, buffer, parser, [&](beast::error_code read_ec, size_t) {
        finish(read_ec, "read response");
      });
    });
  });
  ioc.run();
  RETURN_IF_ERROR(result);

  http::response<http::string_body> res = parser.release();
  HttpResponse out;
  out.status = static_cast<int>(res.result_int());
  out.content_type = std::string(res[http::field::content_type]);
  out.body = std::move(res.body());
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  return out;
}

}  // namespace

StatusOr<HttpResponse> HttpGet(const std::string& host_port, const std::string& path,
                               std::chrono::milliseconds timeout) {
  return Call(http::verb::get, host_port, path, nullptr, "", timeout);
}

StatusOr<HttpResponse> HttpPost(const std::string& host_port, const std::string& path,
                                const std::string& body, std::chrono::milliseconds timeout,
                                const std::string& content_type) {
  return Call(http::verb::post, host_port, path, &body, content_type, timeout);
}

}  // namespace attic::control
