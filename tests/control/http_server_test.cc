// HttpServer and HttpGet/HttpPost over real loopback sockets. Raw POSIX sockets drive the cases
// a well-behaved client cannot produce (malformed, oversized, pipelined, half-sent requests).
#include "transport/control/http_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace attic::control {
namespace {

using std::chrono::milliseconds;

// A blocking client socket on 127.0.0.1 with a 5 s receive timeout.
class RawConnection {
 public:
  explicit RawConnection(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    timeval tv{.tv_sec = 5, .tv_usec = 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~RawConnection() { close(fd_); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return connected_; }

  bool Send(const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  struct Response {
    int status = 0;
    std::string head;  // status line and headers
    std::string body;
  };

  // One response framed by Content-Length; nullopt if the connection ends or times out first.
  std::optional<Response> ReadResponse() {
    size_t end;
    while ((end = pending_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return std::nullopt;
    }
    Response r;
    r.head = pending_.substr(0, end);
    pending_.erase(0, end + 4);
    if (r.head.rfind("HTTP/1.", 0) != 0 || r.head.size() < 12) return std::nullopt;
    r.status = std::stoi(r.head.substr(9, 3));
    size_t length = 0;
    const size_t cl = r.head.find("Content-Length: ");
    if (cl != std::string::npos) length = std::stoul(r.head.substr(cl + 16));
    while (pending_.size() < length) {
      if (!Fill()) return std::nullopt;
    }
    r.body = pending_.substr(0, length);
    pending_.erase(0, length);
    return r;
  }

  // True when the peer closes (or resets) the connection within the receive timeout, with no
  // further bytes.
  bool PeerClosed() {
    char c;
    const ssize_t n = recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

 private:
  bool Fill() {
    char buf[4096];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    pending_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string pending_;
};

std::string Target(const HttpServer& server) {
  return "127.0.0.1:" + std::to_string(server.port());
}

HttpResponse Echo(const HttpRequest& r) {
  return HttpResponse{
      .content_type = "application/json",
      .body = r.method + "|" + r.path + "|" + r.query + "|" + r.body + "|" + r.peer};
}

std::map<std::string, HttpHandler> DefaultRoutes() {
  std::map<std::string, HttpHandler> routes;
  routes["/healthz"] = [](const HttpRequest&) { return HttpResponse{.body = "ok\n"}; };
  routes["/echo"] = Echo;
  routes["/throw"] = [](const HttpRequest&) -> HttpResponse {
    throw std::runtime_error("handler exploded");
  };
  return routes;
}

std::unique_ptr<HttpServer> StartServer(HttpServerOptions options = {}) {
  options.address = "127.0.0.1";
  StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options, DefaultRoutes());
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(server).value() : nullptr;
}

// Threads of this process whose name is `name`, and all of them.
std::pair<int, int> CountThreads(const std::string& name) {
  int named = 0, all = 0;
  DIR* dir = opendir("/proc/self/task");
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    ++all;
    std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string line;
    std::getline(comm, line);
    if (line == name) ++named;
  }
  closedir(dir);
  return {named, all};
}

TEST(HttpServerTest, ServesRoutesWithMethodPathQueryBodyAndPeer) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  EXPECT_NE(server->port(), 0);

  StatusOr<HttpResponse> health = HttpGet(Target(*server), "/healthz", milliseconds(2000));
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");
  EXPECT_EQ(health->content_type, "text/plain; charset=utf-8");

  StatusOr<HttpResponse> get = HttpGet(Target(*server), "/echo?a=1&b=2", milliseconds(2000));
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->content_type, "application/json");
  EXPECT_EQ(get->body.rfind("GET|/echo|a=1&b=2||127.0.0.1:", 0), 0u) << get->body;

  StatusOr<HttpResponse> post =
      HttpPost(Target(*server), "/echo", "{\"x\": 1}", milliseconds(2000));
  ASSERT_TRUE(post.ok()) << post.status();
  EXPECT_EQ(post->body.rfind("POST|/echo||{\"x\": 1}|127.0.0.1:", 0), 0u) << post->body;
}

TEST(HttpServerTest, UnknownPathIs404) {
  auto server = StartServer();
  StatusOr<HttpResponse> r = HttpGet(Target(*server), "/nope", milliseconds(2000));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 404);
  EXPECT_NE(r->body.find("/nope"), std::string::npos);
  // Routes are exact: a prefix or a trailing slash is another path.
  EXPECT_EQ(HttpGet(Target(*server), "/healthz/", milliseconds(2000))->status, 404);
}

TEST(HttpServerTest, OtherMethodsAre405WithAllow) {
  auto server = StartServer();
  for (const char* method : {"PUT", "DELETE", "HEAD", "OPTIONS"}) {
    RawConnection c(server->port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.Send(std::string(method) + " /healthz HTTP/1.1\r\nHost: t\r\n\r\n"));
    auto r = c.ReadResponse();
    ASSERT_TRUE(r.has_value()) << method;
    EXPECT_EQ(r->status, 405) << method;
    EXPECT_NE(r->head.find("Allow: GET, POST"), std::string::npos) << r->head;
  }
}

TEST(HttpServerTest, OversizedBodyIs413AndCloses) {
  auto server = StartServer({.max_request_bytes = 4096});
  RawConnection c(server->port());
  const std::string body(10000, 'x');
  ASSERT_TRUE(c.Send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\n\r\n" + body));
  auto r = c.ReadResponse();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  EXPECT_NE(r->head.find("Connection: close"), std::string::npos) << r->head;
  EXPECT_TRUE(c.PeerClosed());
}

TEST(HttpServerTest, BodyAtTheLimitIsAccepted) {
  auto server = StartServer({.max_request_bytes = 4096});
  StatusOr<HttpResponse> r =
      HttpPost(Target(*server), "/echo", std::string(4096, 'y'), milliseconds(2000));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
}

TEST(HttpServerTest, OversizedHeadersAre413) {
  auto server = StartServer({.max_request_bytes = 2048});
  RawConnection c(server->port());
  ASSERT_TRUE(
      c.Send("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(4000, 'h') + "\r\n\r\n"));
  auto r = c.ReadResponse();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
}

TEST(HttpServerTest, MalformedRequestsAre400) {
  auto server = StartServer();
  for (const std::string& bad :
       {std::string("GARBAGE\r\n\r\n"), std::string("GET /healthz HTTP/9.9\r\n\r\n"),
        std::string("GET healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
        std::string("GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n"),
        std::string("POST /echo HTTP/1.1\r\nContent-Length: zz\r\n\r\n")}) {
    RawConnection c(server->port());
    ASSERT_TRUE(c.Send(bad));
    auto r = c.ReadResponse();
    ASSERT_TRUE(r.has_value()) << bad;
    EXPECT_EQ(r->status, 400) << bad;
  }
  // The server is still serving.
  EXPECT_EQ(HttpGet(Target(*server), "/healthz", milliseconds(2000))->status, 200);
}

TEST(HttpServerTest, ThrowingHandlerIs500AndServerCarriesOn) {
  auto server = StartServer();
  StatusOr<HttpResponse> r = HttpGet(Target(*server), "/throw", milliseconds(2000));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("handler exploded"), std::string::npos);
  EXPECT_EQ(HttpGet(Target(*server), "/healthz", milliseconds(2000))->status, 200);
}

TEST(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnectionThenHonoursClose) {
  auto server = StartServer();
  RawConnection c(server->port());
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto first = c.ReadResponse();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(first->body, "ok\n");
  ASSERT_TRUE(c.Send("POST /echo?n=2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"));
  auto second = c.ReadResponse();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->body.rfind("POST|/echo|n=2|abc|", 0), 0u) << second->body;
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
  auto third = c.ReadResponse();
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->status, 200);
  EXPECT_TRUE(c.PeerClosed());
}

TEST(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  auto server = StartServer();
  RawConnection c(server->port());
  ASSERT_TRUE(
      c.Send("GET /echo?i=1 HTTP/1.1\r\nHost: t\r\n\r\n"
             "GET /echo?i=2 HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto a = c.ReadResponse();
  auto b = c.ReadResponse();
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(a->body.rfind("GET|/echo|i=1|", 0), 0u);
  EXPECT_EQ(b->body.rfind("GET|/echo|i=2|", 0), 0u);
}

TEST(HttpServerTest, Http10WithoutKeepAliveCloses) {
  auto server = StartServer();
  RawConnection c(server->port());
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.0\r\n\r\n"));
  auto r = c.ReadResponse();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->head.rfind("HTTP/1.0 200", 0), 0u) << r->head;
  EXPECT_TRUE(c.PeerClosed());
}

TEST(HttpServerTest, IdleConnectionIsClosedAfterIoTimeout) {
  auto server = StartServer({.io_timeout = milliseconds(200)});
  RawConnection c(server->port());
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"));
  ASSERT_TRUE(c.ReadResponse().has_value());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.PeerClosed());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST(HttpServerTest, ConcurrentClientsAllServed) {
  std::atomic<int> calls{0};
  std::map<std::string, HttpHandler> routes;
  routes["/count"] = [&calls](const HttpRequest& r) {
    calls.fetch_add(1);
    return HttpResponse{.body = r.query};
  };
  StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Start({.address = "127.0.0.1", .threads = 2}, std::move(routes));
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string target = Target(**server);
  constexpr int kClients = 8, kRequests = 20;
  std::atomic<int> good{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < kRequests; ++i) {
        const std::string q = std::to_string(t) + "-" + std::to_string(i);
        StatusOr<HttpResponse> r = HttpGet(target, "/count?" + q, milliseconds(5000));
        if (r.ok() && r->status == 200 && r->body == q) good.fetch_add(1);
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(good.load(), kClients * kRequests);
  EXPECT_EQ(calls.load(), kClients * kRequests);
}

TEST(HttpServerTest, PortInUseIsUnavailableNamingTheAddress) {
  auto first = StartServer();
  ASSERT_NE(first, nullptr);
  StatusOr<std::unique_ptr<HttpServer>> second =
      HttpServer::Start({.address = "127.0.0.1", .port = first->port()}, DefaultRoutes());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable) << second.status();
  EXPECT_NE(second.status().message().find("127.0.0.1:" + std::to_string(first->port())),
            std::string::npos)
      << second.status();
}

TEST(HttpServerTest, BadOptionsAreInvalidArgument) {
  const std::pair<HttpServerOptions, const char*> cases[] = {
      {{.address = "127.0.0.1", .threads = 0}, "threads"},
      {{.address = "127.0.0.1", .threads = 65}, "threads"},
      {{.address = "127.0.0.1", .max_request_bytes = 10}, "max_request_bytes"},
      {{.address = "127.0.0.1", .io_timeout = milliseconds(0)}, "io_timeout"},
      {{.address = "localhost-ish"}, "localhost-ish"},
  };
  for (const auto& [options, field] : cases) {
    StatusOr<std::unique_ptr<HttpServer>> s = HttpServer::Start(options, DefaultRoutes());
    ASSERT_FALSE(s.ok()) << field;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << s.status();
    EXPECT_NE(s.status().message().find(field), std::string::npos) << s.status();
  }
  std::map<std::string, HttpHandler> bad_route;
  bad_route["metrics"] = Echo;
  EXPECT_EQ(HttpServer::Start({.address = "127.0.0.1"}, bad_route).status().code(),
            StatusCode::kInvalidArgument);
}

#if defined(__SANITIZE_THREAD__)
constexpr bool kUnderThreadSanitizer = true;
#else
constexpr bool kUnderThreadSanitizer = false;
#endif

TEST(HttpServerTest, RunsExactlyItsNamedThreadsAndJoinsThem) {
  const auto [named_before, all_before] = CountThreads("attic-http");
  EXPECT_EQ(named_before, 0);
  {
    auto server = StartServer({.threads = 3});
    ASSERT_NE(server, nullptr);
    ASSERT_EQ(HttpGet(Target(*server), "/healthz", milliseconds(2000))->status, 200);
    const auto [named, all] = CountThreads("attic-http");
    EXPECT_EQ(named, 3);
    // No hidden threads (the client starts none either). ThreadSanitizer starts a thread of
    // its own at some point, so the total is only compared without it.
    if (!kUnderThreadSanitizer) {
      EXPECT_EQ(all, all_before + 3);
    }
  }
  EXPECT_EQ(CountThreads("attic-http").first, 0);
  if (!kUnderThreadSanitizer) {
    EXPECT_EQ(CountThreads("attic-http").second, all_before);
  }
}

TEST(HttpServerTest, ShutdownWithClientsConnectedIsPromptAndEndsTheirConnections) {
  auto server = StartServer({.io_timeout = milliseconds(30000)});
  RawConnection idle(server->port());
  ASSERT_TRUE(idle.Send("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"));
  ASSERT_TRUE(idle.ReadResponse().has_value());
  RawConnection half(server->port());
  ASSERT_TRUE(half.Send("GET /healthz HTTP/1.1\r\nHo"));  // a request cut in the middle
  std::this_thread::sleep_for(milliseconds(50));          // let the server start reading it
  const auto start = std::chrono::steady_clock::now();
  server.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_TRUE(idle.PeerClosed());
  EXPECT_TRUE(half.PeerClosed());
}

TEST(HttpClientTest, DeadlineExceededWhenThePeerNeverAnswers) {
  // A listening socket that never accepts: connect succeeds (backlog), no answer ever comes.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string target = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  const auto start = std::chrono::steady_clock::now();
  StatusOr<HttpResponse> r = HttpGet(target, "/metrics", milliseconds(150));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  close(fd);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_NE(r.status().message().find(target + "/metrics"), std::string::npos) << r.status();
  EXPECT_GE(elapsed, milliseconds(140));
  EXPECT_LT(elapsed, milliseconds(2000));
}

TEST(HttpClientTest, ConnectionRefusedIsUnavailable) {
  uint16_t port;
  {
    auto server = StartServer();
    port = server->port();
  }  // closed: nothing listens there now
  StatusOr<HttpResponse> r =
      HttpGet("127.0.0.1:" + std::to_string(port), "/healthz", milliseconds(2000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status();
}

TEST(HttpClientTest, BadTargetsAreInvalidArgument) {
  for (const auto& [host_port, path] :
       std::vector<std::pair<std::string, std::string>>{{"127.0.0.1", "/x"},
                                                        {"127.0.0.1:0", "/x"},
                                                        {"127.0.0.1:99999", "/x"},
                                                        {":80", "/x"},
                                                        {"[::1", "/x"},
                                                        {"127.0.0.1:80", "x"},
                                                        {"127.0.0.1:80", "/a b"}}) {
    StatusOr<HttpResponse> r = HttpGet(host_port, path, milliseconds(100));
    ASSERT_FALSE(r.ok()) << host_port << path;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status();
  }
}

TEST(HttpClientTest, Ipv6LiteralTarget) {
  StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Start({.address = "::1"}, DefaultRoutes());
  if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << server.status();
  StatusOr<HttpResponse> r =
      HttpGet("[::1]:" + std::to_string((*server)->port()), "/healthz", milliseconds(2000));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "ok\n");
}

}  // namespace
}  // namespace attic::control
