#include "services/worker/payload.h"

#include <string>

namespace attic::worker_internal {

StatusOr<const std::byte*> PayloadSlice(std::span<const std::byte> payload, uint64_t offset,
                                        uint64_t bytes, std::string_view what) {
  if (offset > payload.size() || bytes > payload.size() - offset) {
    return InvalidArgumentError(std::string(what) + " at payload offset " +
                                std::to_string(offset) + " (" + std::to_string(bytes) +
                                " bytes) lies outside the " + std::to_string(payload.size()) +
                                "-byte payload");
  }
  return payload.data() + offset;
}

}  // namespace attic::worker_internal
