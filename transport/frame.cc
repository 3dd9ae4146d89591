#include "transport/frame.h"

namespace attic::transport {

std::string_view MethodName(Method m) {
  switch (m) {
    case Method::kHello:
      return "Hello";
    case Method::kOpenSequence:
      return "OpenSequence";
    case Method::kLookupPrefix:
      return "LookupPrefix";
    case Method::kAppendKv:
      return "AppendKv";
    case Method::kAttend:
      return "Attend";
    case Method::kCloseSequence:
      return "CloseSequence";
    case Method::kStats:
      return "Stats";
    case Method::kEcho:
      return "Echo";
    case Method::kDiscard:
      return "Discard";
  }
  return "Unknown";
}

}  // namespace attic::transport
