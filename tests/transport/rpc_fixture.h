// Test helpers for the transport: a real RpcServer and RpcClient on loopback, with the
// request handler swappable per test, and small waits with deadlines.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/thread_annotations.h"
#include "transport/rpc_client.h"
#include "transport/rpc_server.h"

namespace attic::transport::testing {

using namespace std::chrono_literals;

// Bytes 0, 1, 2, ... (mod 251, so that shifted copies differ) starting at `seed`.
inline std::string Pattern(size_t n, uint8_t seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((seed + i) % 251);
  return s;
}

inline std::string ToString(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

inline std::span<const std::byte> AsBytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// Polls `pred` until it holds or `timeout` passes; returns its last value.
inline bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5s) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return pred();
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// An 8-byte-multiple header made of text, as a Cap'n Proto header would be.
inline std::string Header(const std::string& text) {
  std::string h = text;
  h.resize((h.size() + 7) / 8 * 8, '\0');
  return h;
}

class RpcTest : public ::testing::Test {
 protected:
  // Replaced by tests that need a handler; the default replies with the request's header.
  using Handler = std::function<void(IncomingMessage, Responder)>;

  void SetUp() override { StartServer(RpcServerOptions{.name = "worker-0"}); }

  void StartServer(RpcServerOptions options) {
    options.listen_address = "127.0.0.1";
    auto server = RpcServer::Start(options, [this](IncomingMessage m, Responder r) {
      Handler h;
      {
        MutexLock l(&mu_);
        h = handler_;
      }
      if (h) {
        h(std::move(m), std::move(r));
      } else {
        OutgoingMessage reply;
        reply.header = ToString(m.header());
        r.Reply(std::move(reply));
      }
    });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
    address_ = "127.0.0.1:" + std::to_string(server_->port());
  }

  void SetHandler(Handler h) EXCLUDES(mu_) {
    MutexLock l(&mu_);
    handler_ = std::move(h);
  }

  std::unique_ptr<RpcClient> NewClient(RpcClientOptions options = {}) {
    auto client = RpcClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(client).value() : nullptr;
  }

  std::shared_ptr<Connection> ConnectOrDie(RpcClient& client) {
    auto conn = client.Connect(address_, DeadlineAfter(5s));
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? *conn : nullptr;
  }

  StatusOr<IncomingMessage> Echo(Connection& conn, const std::string& header,
                                 const std::string& payload,
                                 std::chrono::milliseconds timeout = 10s) {
    OutgoingMessage m;
    m.method = Method::kEcho;
    m.header = header;
    if (!payload.empty()) m.payload = {AsBytes(payload)};
    return conn.Call(std::move(m), DeadlineAfter(timeout)).get();
  }

  Mutex mu_;
  Handler handler_ GUARDED_BY(mu_);
  std::unique_ptr<RpcServer> server_;
  std::string address_;
};

}  // namespace attic::transport::testing
