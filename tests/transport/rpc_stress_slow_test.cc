// Long run of the deadline-against-reply race (label `slow`): more threads, calls and
// connections, to shake out rare interleavings.
#include "tests/transport/rpc_stress.h"

namespace attic::transport::testing {
namespace {

TEST_F(RpcTest, DeadlinesRacingRepliesLongRun) {
  SetHandler(DelayedEchoHandler);
  auto client = NewClient();
  RunDeadlineRace(*client, address_, {.threads = 8, .calls_per_thread = 5000, .connections = 4});
}

}  // namespace
}  // namespace attic::transport::testing
