// Short run of the deadline-against-reply race (label `unit`).
#include "tests/transport/rpc_stress.h"

namespace attic::transport::testing {
namespace {

TEST_F(RpcTest, DeadlinesRacingRepliesEndEveryCallOnce) {
  SetHandler(DelayedEchoHandler);
  auto client = NewClient();
  RunDeadlineRace(*client, address_, {.threads = 4, .calls_per_thread = 100, .connections = 2});
}

}  // namespace
}  // namespace attic::transport::testing
