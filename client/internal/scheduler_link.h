// The client's side of the scheduler's control plane: placement, location and release of
// sequences, and the fleet listing, each one HTTP POST / GET whose Cap'n Proto body is encoded
// and decoded by transport/control/scheduler_protocol.h. A refusal keeps the code the scheduler
// gave it and names the scheduler; a malformed answer is INVALID_ARGUMENT from the decoder,
// named likewise.
//
//   ASSIGN_OR_RETURN(scheduler::Placement p,
//                    SchedulerPlace("127.0.0.1:7100", options, scope, fingerprint, timeout));
//
// Thread safety: stateless functions (each call opens its own connection).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "client/client.h"
#include "common/status.h"
#include "transport/control/scheduler_protocol.h"

namespace attic::client_internal {

StatusOr<scheduler::Placement> SchedulerPlace(const std::string& scheduler,
                                              const PlaceOptions& options, uint64_t prefix_scope,
                                              uint64_t model_fingerprint,
                                              std::chrono::milliseconds timeout);
StatusOr<scheduler::Placement> SchedulerLocate(const std::string& scheduler, uint64_t id,
                                               std::chrono::milliseconds timeout);
Status SchedulerRelease(const std::string& scheduler, uint64_t id,
                        std::chrono::milliseconds timeout);

}  // namespace attic::client_internal
