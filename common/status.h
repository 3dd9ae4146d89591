// Status and StatusOr<T>: the one error vocabulary of Attic.
//
// Codes are the 17 gRPC status codes: their numbers travel on the wire unchanged and their
// UPPER_SNAKE names appear in JSON and logs. No Attic core code throws; every call that can fail
// returns a Status or a StatusOr<T>, and the caller must look at it ([[nodiscard]]).
//
//   StatusOr<int> ParsePort(std::string_view s);
//   Status Listen(std::string_view s) {
//     ASSIGN_OR_RETURN(int port, ParsePort(s));
//     RETURN_IF_ERROR(Bind(port));
//     return OkStatus();
//   }
//
// Thread safety: Status and StatusOr are values; distinct objects may be used from any threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

namespace attic {

enum class StatusCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

inline constexpr int kNumStatusCodes = 17;

// "INVALID_ARGUMENT" for kInvalidArgument; "UNKNOWN_CODE" for numbers outside the enum.
std::string_view StatusCodeName(StatusCode code);
// The code for a wire number; nullopt if the number is not one of the 17 codes.
std::optional<StatusCode> StatusCodeFromNumber(int number);
// The code for an UPPER_SNAKE name ("NOT_FOUND"); nullopt if unknown.
std::optional<StatusCode> StatusCodeFromName(std::string_view name);

class [[nodiscard]] Status {
 public:
  // OK.
  Status() = default;
  // REQUIRES: code != kOk or message is empty (an OK status carries no message).
  Status(StatusCode code, std::string message);

  Status(const Status& other);
  Status& operator=(const Status& other);
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;
  ~Status() = default;

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  int code_number() const { return static_cast<int>(code()); }
  std::string_view message() const { return rep_ ? std::string_view(rep_->message) : ""; }

  // "OK" or "NOT_FOUND: sequence 42 is not open".
  std::string ToString() const;

  // A copy with "context: " put in front of the message; OK stays OK.
  Status WithContext(std::string_view context) const;

  // Marks a status as deliberately not inspected.
  void IgnoreError() const {}

  friend bool operator==(const Status& a, const Status& b) {
    return a.code() == b.code() && a.message() == b.message();
  }

 private:
  struct Rep {
    StatusCode code;
    std::string message;
  };
  std::unique_ptr<Rep> rep_;  // null means OK, so the success path never allocates
};

std::ostream& operator<<(std::ostream& os, const Status& s);

inline Status OkStatus() { return Status(); }
Status CancelledError(std::string message);
Status UnknownError(std::string message);
Status InvalidArgumentError(std::string message);
Status DeadlineExceededError(std::string message);
Status NotFoundError(std::string message);
Status AlreadyExistsError(std::string message);
Status PermissionDeniedError(std::string message);
Status ResourceExhaustedError(std::string message);
Status FailedPreconditionError(std::string message);
Status AbortedError(std::string message);
Status OutOfRangeError(std::string message);
Status UnimplementedError(std::string message);
Status InternalError(std::string message);
Status UnavailableError(std::string message);
Status DataLossError(std::string message);
Status UnauthenticatedError(std::string message);

// Either a value of T or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  // REQUIRES: !status.ok(); an OK status without a value becomes an INTERNAL error.
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (status_.ok()) status_ = InternalError("StatusOr constructed from an OK status");
  }
  StatusOr(const T& value) : value_(value) {}  // NOLINT(google-explicit-constructor)
  StatusOr(T&& value) : value_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  template <typename U>
    requires(std::is_convertible_v<U &&, T> && !std::is_same_v<std::decay_t<U>, Status> &&
             !std::is_same_v<std::decay_t<U>, T> &&
             !std::is_same_v<std::decay_t<U>, StatusOr<T>>)
  StatusOr(U&& value) : value_(std::forward<U>(value)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return value_.has_value(); }
  const Status& status() const& { return status_; }
  Status status() && { return std::move(status_); }

  // REQUIRES: ok().
  const T& value() const& { return *value_; }
  T& value() & { return *value_; }
  T&& value() && { return std::move(*value_); }
  const T& operator*() const& { return *value_; }
  T& operator*() & { return *value_; }
  T&& operator*() && { return std::move(*value_); }
  const T* operator->() const { return &*value_; }
  T* operator->() { return &*value_; }

 private:
  Status status_;  // OK whenever value_ holds a value
  std::optional<T> value_;
};

}  // namespace attic

#define ATTIC_STATUS_CONCAT_INNER(a, b) a##b
#define ATTIC_STATUS_CONCAT(a, b) ATTIC_STATUS_CONCAT_INNER(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                                 \
  do {                                                        \
    ::attic::Status attic_status_tmp_ = (expr);               \
    if (!attic_status_tmp_.ok()) return attic_status_tmp_;    \
  } while (false)

// `ASSIGN_OR_RETURN(auto x, Foo());` declares x from Foo()'s value or returns its status.
// NOLINTNEXTLINE(bugprone-macro-parentheses): lhs is a declaration, it cannot be parenthesized
#define ASSIGN_OR_RETURN(lhs, expr) \
  ATTIC_ASSIGN_OR_RETURN_IMPL(ATTIC_STATUS_CONCAT(attic_statusor_, __LINE__), lhs, expr)
// NOLINTNEXTLINE(bugprone-macro-parentheses)
#define ATTIC_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return std::move(tmp).status();    \
  lhs = std::move(tmp).value()
