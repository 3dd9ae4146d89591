#include "transport/control/asio_status.h"

#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <string>

namespace attic::control {
namespace {

namespace asio_error = boost::asio::error;
namespace http = boost::beast::http;

StatusCode ClassifyHttp(const boost::system::error_code& ec) {
  if (ec == http::error::body_limit || ec == http::error::header_limit ||
      ec == http::error::buffer_overflow) {
    return StatusCode::kResourceExhausted;
  }
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) {
    return StatusCode::kUnavailable;
  }
  return StatusCode::kInternal;  // the peer sent something that is not HTTP/1.1
}

StatusCode Classify(const boost::system::error_code& ec) {
  if (ec.category() == http::make_error_code(http::error::end_of_stream).category()) {
    return ClassifyHttp(ec);
  }
  if (ec == boost::beast::error::timeout || ec == asio_error::timed_out) {
    return StatusCode::kDeadlineExceeded;
  }
  if (ec == asio_error::operation_aborted) return StatusCode::kCancelled;
  if (ec == asio_error::access_denied) return StatusCode::kPermissionDenied;
  if (ec == asio_error::invalid_argument) return StatusCode::kInvalidArgument;
  if (ec == asio_error::message_size || ec == asio_error::no_memory ||
      ec == asio_error::no_buffer_space || ec == asio_error::no_descriptors) {
    return StatusCode::kResourceExhausted;
  }
  if (ec == asio_error::address_in_use || ec == asio_error::connection_refused ||
      ec == asio_error::connection_reset || ec == asio_error::connection_aborted ||
      ec == asio_error::broken_pipe || ec == asio_error::eof ||
      ec == asio_error::host_unreachable || ec == asio_error::network_unreachable ||
      ec == asio_error::network_down || ec == asio_error::not_connected ||
      ec == asio_error::shut_down || ec == asio_error::host_not_found ||
      ec == asio_error::host_not_found_try_again || ec == asio_error::service_not_found ||
      ec == asio_error::address_family_not_supported ||
      ec == boost::system::errc::address_not_available) {
    return StatusCode::kUnavailable;
  }
  return StatusCode::kUnknown;
}

}  // namespace

Status AsioStatus(const boost::system::error_code& ec, std::string_view what) {
  if (!ec) return OkStatus();
  return Status(Classify(ec), std::string(what) + ": " + ec.message());
}

}  // namespace attic::control
