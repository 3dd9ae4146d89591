// Bounds-checked access to a request's raw payload: every tensor a request points at is
// checked against the payload's length before anything reads it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "common/status.h"

namespace attic::worker_internal {

// The `bytes` bytes at `offset` of the payload. INVALID_ARGUMENT naming `what` if they do
// not lie inside it (overflow-safe).
StatusOr<const std::byte*> PayloadSlice(std::span<const std::byte> payload, uint64_t offset,
                                        uint64_t bytes, std::string_view what);

}  // namespace attic::worker_internal
