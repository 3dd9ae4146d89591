// The one adapter from UCX's ucs_status_t to attic::Status, and the transport's log lines
// (common/log.h, component "transport").
//
//   ucs_status_t s = ucp_worker_create(context, &params, &worker);
//   if (s != UCS_OK) return UcsToStatus(s, "ucp_worker_create");
//   // -> INTERNAL "ucp_worker_create: <UCX's message>"
//
// Thread safety: pure functions; each log call writes one whole line.
#pragma once

#include <ucs/type/status.h>

#include <string_view>

#include "common/status.h"

namespace attic::transport::internal {

// Maps a UCX error to the Attic code a caller can act on:
//   peer gone or refused (UNREACHABLE, CONNECTION_RESET, NOT_CONNECTED, REJECTED, TIMED_OUT,
//   link / endpoint failures, ENDPOINT_TIMEOUT, BUSY on a listening port) -> UNAVAILABLE;
//   NO_MEMORY, NO_RESOURCE, EXCEEDS_LIMIT -> RESOURCE_EXHAUSTED; CANCELED -> CANCELLED;
//   anything else -> INTERNAL.
// The message is "<context>: <ucs_status_string>". UCS_OK gives OK.
Status UcsToStatus(ucs_status_t status, std::string_view context);

// True for the statuses that mean "the peer is gone or cannot be reached".
bool IsPeerFailure(ucs_status_t status);

// One log line at warning level (a peer or resource problem the operator may want to see) or
// info level (an expected event worth a trace, such as a refused handshake).
void LogWarning(std::string_view text);
void LogInfo(std::string_view text);

}  // namespace attic::transport::internal
