// The client's side of the scheduler's control plane (transport/proto/control.capnp): placement,
// location and release of sequences, and the fleet listing, each one HTTP POST / GET with a
// Cap'n Proto body. A refusal ("<CODE>: <message>" with a non-200 status) keeps its code and
// gains the scheduler's name; a malformed answer is INTERNAL.
//
//   ASSIGN_OR_RETURN(PlacedSequence p,
//                    SchedulerPlace("127.0.0.1:7100", options, scope, fingerprint, timeout));
//
// Thread safety: stateless functions (each call opens its own connection).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "client/client.h"
#include "common/status.h"

namespace attic::client_internal {

struct PlacedShardAddress {
  std::string worker_name;
  std::string data_address;
  int kv_head_begin = 0;
  int kv_head_end = 0;
  int64_t token_begin = 0;
  int64_t token_end = -1;
};

struct PlacedSequence {
  uint64_t id = 0;
  std::vector<PlacedShardAddress> shards;
  int64_t prefix_blocks_matched = 0;
  std::string reason;
};

StatusOr<PlacedSequence> SchedulerPlace(const std::string& scheduler, const PlaceOptions& options,
                                        uint64_t prefix_scope, uint64_t model_fingerprint,
                                        std::chrono::milliseconds timeout);
StatusOr<PlacedSequence> SchedulerLocate(const std::string& scheduler, uint64_t id,
                                         std::chrono::milliseconds timeout);
Status SchedulerRelease(const std::string& scheduler, uint64_t id,
                        std::chrono::milliseconds timeout);

}  // namespace attic::client_internal
