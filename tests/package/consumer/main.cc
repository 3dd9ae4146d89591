// Uses the installed Attic client the way an engine would: plans a sequence and connects.
// Exit status 0 only if the plan checks and an unreachable worker behave as documented.
#include <chrono>
#include <cstdio>
#include <memory>

#include "client/client.h"

namespace {

int Fail(const char* what, const attic::Status& s) {
  std::fprintf(stderr, "attic_consumer: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

}  // namespace

int main() {
  const attic::ModelSpec spec{.name = "consumer",
                              .num_layers = 2,
                              .num_q_heads = 8,
                              .num_kv_heads = 4,
                              .head_dim = 64,
                              .dtype = attic::DType::kBFloat16};
  const attic::ShardPlan plan = attic::ShardPlan::SplitHeads(spec, {0, 1});
  if (plan.shards.size() != 2) return Fail("SplitHeads", attic::InternalError("not 2 shards"));
  if (attic::Status s = plan.Validate(spec, 2); !s.ok()) return Fail("Validate", s);
  const attic::Status same_worker = attic::ShardPlan::SplitHeads(spec, {0, 0}).Validate(spec, 2);
  if (same_worker.code() != attic::StatusCode::kInvalidArgument) {
    return Fail("Validate of two shards on one worker", same_worker);
  }

  attic::ClientOptions options;
  options.workers = {"127.0.0.1:1"};  // nothing listens there
  options.spec = spec;
  options.connect_timeout = std::chrono::milliseconds(2000);
  attic::StatusOr<std::unique_ptr<attic::Client>> client = attic::Client::Connect(options);
  if (client.ok()) return Fail("Connect", attic::InternalError("connected to nothing"));
  if (client.status().code() != attic::StatusCode::kUnavailable) {
    return Fail("Connect", client.status());
  }
  std::printf("attic_consumer: ok (%s)\n", client.status().ToString().c_str());
  return 0;
}
