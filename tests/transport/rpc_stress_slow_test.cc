// Long run of the deadline-against-reply race (label `slow`): more threads, calls and
// connections, to shake out rare interleavings.
#include "tests/transport/rpc_stress.h"

namespace attic::transport::testing {
namespace {

// Under ThreadSanitizer every instruction costs several times more, and on a 2-core machine
// eight caller threads building payloads leave the server too little CPU to answer the "sure"
// calls within their 10 s: the same race at a load the instrumented server can keep up with.
#if defined(__SANITIZE_THREAD__)
constexpr StressParams kLongRun{.threads = 4, .calls_per_thread = 1500, .connections = 4};
#else
constexpr StressParams kLongRun{.threads = 8, .calls_per_thread = 5000, .connections = 4};
#endif

TEST_F(RpcTest, DeadlinesRacingRepliesLongRun) {
  SetHandler(DelayedEchoHandler);
  auto client = NewClient();
  RunDeadlineRace(*client, address_, kLongRun);
}

}  // namespace
}  // namespace attic::transport::testing
