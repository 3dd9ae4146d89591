#include "common/status.h"

#include <array>

namespace attic {
namespace {

constexpr std::array<std::string_view, kNumStatusCodes> kCodeNames = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

}  // namespace

std::string_view StatusCodeName(StatusCode code) {
  const int n = static_cast<int>(code);
  if (n < 0 || n >= kNumStatusCodes) return "UNKNOWN_CODE";
  return kCodeNames[static_cast<size_t>(n)];
}

std::optional<StatusCode> StatusCodeFromNumber(int number) {
  if (number < 0 || number >= kNumStatusCodes) return std::nullopt;
  return static_cast<StatusCode>(number);
}

std::optional<StatusCode> StatusCodeFromName(std::string_view name) {
  for (size_t i = 0; i < kCodeNames.size(); ++i) {
    if (kCodeNames[i] == name) return static_cast<StatusCode>(i);
  }
  return std::nullopt;
}

Status::Status(StatusCode code, std::string message) {
  if (code != StatusCode::kOk) rep_ = std::make_unique<Rep>(Rep{code, std::move(message)});
}

Status::Status(const Status& other)
    : rep_(other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr) {}

Status& Status::operator=(const Status& other) {
  if (this != &other) rep_ = other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr;
  return *this;
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(StatusCodeName(code()));
  if (!rep_->message.empty()) {
    out += ": ";
    out += rep_->message;
  }
  return out;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string message(context);
  message += ": ";
  message += rep_->message;
  return Status(code(), std::move(message));
}

std::ostream& operator<<(std::ostream& os, const Status& s) { return os << s.ToString(); }

#define ATTIC_DEFINE_ERROR(Name, Code) \
  Status Name(std::string message) { return Status(StatusCode::Code, std::move(message)); }
ATTIC_DEFINE_ERROR(CancelledError, kCancelled)
ATTIC_DEFINE_ERROR(UnknownError, kUnknown)
ATTIC_DEFINE_ERROR(InvalidArgumentError, kInvalidArgument)
ATTIC_DEFINE_ERROR(DeadlineExceededError, kDeadlineExceeded)
ATTIC_DEFINE_ERROR(NotFoundError, kNotFound)
ATTIC_DEFINE_ERROR(AlreadyExistsError, kAlreadyExists)
ATTIC_DEFINE_ERROR(PermissionDeniedError, kPermissionDenied)
ATTIC_DEFINE_ERROR(ResourceExhaustedError, kResourceExhausted)
ATTIC_DEFINE_ERROR(FailedPreconditionError, kFailedPrecondition)
ATTIC_DEFINE_ERROR(AbortedError, kAborted)
ATTIC_DEFINE_ERROR(OutOfRangeError, kOutOfRange)
ATTIC_DEFINE_ERROR(UnimplementedError, kUnimplemented)
ATTIC_DEFINE_ERROR(InternalError, kInternal)
ATTIC_DEFINE_ERROR(UnavailableError, kUnavailable)
ATTIC_DEFINE_ERROR(DataLossError, kDataLoss)
ATTIC_DEFINE_ERROR(UnauthenticatedError, kUnauthenticated)
#undef ATTIC_DEFINE_ERROR

}  // namespace attic
