#include "kvstore/ssd/internal/status_map.h"

#include <string>

namespace attic::ssd_internal {

StatusCode CodeOf(const rocksdb::Status& s) {
  if (s.ok()) return StatusCode::kOk;
  // NoSpace is an IOError subcode: test it first.
  if (s.IsNoSpace() || s.IsMemoryLimit()) return StatusCode::kResourceExhausted;
  if (s.IsCorruption()) return StatusCode::kDataLoss;
  if (s.IsNotFound()) return StatusCode::kNotFound;
  if (s.IsIOError() || s.IsShutdownInProgress() || s.IsBusy() || s.IsTryAgain() || s.IsTimedOut() ||
      s.IsIncomplete() || s.IsColumnFamilyDropped()) {
    return StatusCode::kUnavailable;
  }
  if (s.IsInvalidArgument()) return StatusCode::kInvalidArgument;
  if (s.IsNotSupported()) return StatusCode::kFailedPrecondition;
  if (s.IsAborted()) return StatusCode::kAborted;
  return StatusCode::kInternal;
}

Status FromRocks(const rocksdb::Status& s, std::string_view operation, std::string_view path) {
  if (s.ok()) return OkStatus();
  std::string message(operation);
  message += " (";
  message += path;
  message += "): ";
  message += s.ToString();
  return Status(CodeOf(s), std::move(message));
}

}  // namespace attic::ssd_internal
