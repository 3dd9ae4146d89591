// A worker-like RpcServer for the peer-failure tests: listens on an ephemeral loopback port,
// prints "PORT <n>" on stdout, echoes kEcho and holds every other request unanswered (so the
// client has calls pending), until it is killed.
#include <capnp/message.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "common/thread_annotations.h"
#include "transport/capnp_codec.h"
#include "transport/proto/attic.capnp.h"
#include "transport/rpc_server.h"

int main() {
  using namespace attic::transport;
  capnp::MallocMessageBuilder b;
  auto reply = b.initRoot<attic::wire::HelloReply>();
  reply.setProtocolVersion(kProtocolVersion);
  reply.setWorkerName("doomed-worker");
  attic::Mutex mu;
  std::vector<Responder> held;  // guarded by mu
  RpcServerOptions options{
      .name = "doomed-worker", .listen_address = "127.0.0.1", .hello_reply_header = EncodeCapnp(b)};
  auto server = RpcServer::Start(options, [&](IncomingMessage, Responder r) {
    attic::MutexLock l(&mu);
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
