// A worker-like RpcServer for the peer-failure tests: listens on an ephemeral loopback port,
// prints "PORT <n>" on stdout, echoes kEcho and holds every other request unanswered (so the
// client has calls pending), until it is killed.
#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <vector>

#include "transport/rpc_server.h"

int main() {
  using namespace attic::transport;
  std::mutex mu;
  std::vector<Responder> held;
  auto server = RpcServer::Start({.name = "doomed-worker", .listen_address = "127.0.0.1"},
                                 [&](IncomingMessage, Responder r) {
                                   std::lock_guard<std::mutex> l(mu);
                                   held.push_back(std::move(r));
                                 });
  if (!server.ok()) {
    std::fprintf(stderr, "test server: %s\n", server.status().ToString().c_str());
    return 1;
  }
  std::printf("PORT %u\n", static_cast<unsigned>((*server)->port()));
  std::fflush(stdout);
  while (true) pause();
}
