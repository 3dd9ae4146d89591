#include "transport/internal/ucx_status.h"

#include <string>

#include "common/log.h"

namespace attic::transport::internal {

bool IsPeerFailure(ucs_status_t status) {
  switch (status) {
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_REJECTED:
    case UCS_ERR_TIMED_OUT:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_IO_ERROR:
      return true;
    default:
      return UCS_IS_LINK_ERROR(status) || UCS_IS_ENDPOINT_ERROR(status);
  }
}

Status UcsToStatus(ucs_status_t status, std::string_view context) {
  if (status == UCS_OK) return OkStatus();
  std::string message = std::string(context) + ": " + ucs_status_string(status);
  if (IsPeerFailure(status) || status == UCS_ERR_BUSY) {
    // BUSY comes back from ucp_listener_create when the port is taken.
    return UnavailableError(std::move(message));
  }
  switch (status) {
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_NO_RESOURCE:
    case UCS_ERR_EXCEEDS_LIMIT:
      return ResourceExhaustedError(std::move(message));
    case UCS_ERR_CANCELED:
      return CancelledError(std::move(message));
    default:
      return InternalError(std::move(message));
  }
}

void LogWarning(std::string_view text) { ATTIC_LOG(kWarn, "transport") << text; }
void LogInfo(std::string_view text) { ATTIC_LOG(kInfo, "transport") << text; }

}  // namespace attic::transport::internal
