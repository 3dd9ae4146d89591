// The one adapter from boost::system::error_code (Asio, Beast) to attic::Status.
//
//   boost::system::error_code ec;
//   acceptor.bind(endpoint, ec);
//   RETURN_IF_ERROR(AsioStatus(ec, "bind 0.0.0.0:7180"));
//   // -> UNAVAILABLE: bind 0.0.0.0:7180: Address already in use
//
// Only control-plane sources include this header (it pulls in boost/system, not Asio).
//
// Thread safety: a stateless function.
#pragma once

#include <boost/system/error_code.hpp>
#include <string_view>

#include "common/status.h"

namespace attic::control {

// OK when `ec` holds no error. Otherwise the status code that matches the error's meaning
// (address in use, refused, reset, eof -> UNAVAILABLE; timed out -> DEADLINE_EXCEEDED; aborted ->
// CANCELLED; access denied -> PERMISSION_DENIED; HTTP size limits -> RESOURCE_EXHAUSTED; HTTP
// parse errors -> INTERNAL (a broken peer); anything else -> UNKNOWN) with the message
// "<what>: <error text>".
Status AsioStatus(const boost::system::error_code& ec, std::string_view what);

}  // namespace attic::control
