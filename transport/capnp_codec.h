// Cap'n Proto at the edge: encoding a header message to bytes, parsing received bytes with
// limits, and turning kj exceptions into Status (Cap'n Proto reports malformed input by
// throwing, lazily, when a bad field is read).
//
//   capnp::MallocMessageBuilder b;
//   auto req = b.initRoot<wire::AttendRequest>();
//   std::string header = EncodeCapnp(b);
//   ...
//   ASSIGN_OR_RETURN(CapnpMessage msg, CapnpMessage::Parse(incoming.header()));
//   RETURN_IF_ERROR(CatchKj("AttendRequest", [&] {
//     auto r = msg.Root<wire::AttendRequest>();
//     ...   // every read of r happens in here
//   }));
//
// Thread safety: CapnpMessage is read-only after Parse; concurrent reads are safe.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstddef>
#include <functional>
#include <type_traits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"

namespace attic::transport {

// The flat (unpacked) serialization of a builder's message.
std::string EncodeCapnp(capnp::MessageBuilder& builder);

class CapnpMessage {
 public:
  // Words a header may traverse: bounds the work a hostile message can cause.
  static constexpr size_t kTraversalLimitWords = size_t{8} << 20;

  // INVALID_ARGUMENT if bytes is not a whole Cap'n Proto flat message (size not a multiple of
  // 8, bad segment table). Copies into aligned storage only when bytes is not 8-byte aligned;
  // otherwise reads in place, so bytes must outlive the message.
  static StatusOr<CapnpMessage> Parse(std::span<const std::byte> bytes);

  template <typename T>
  typename T::Reader Root() const {
    return reader_->getRoot<T>();
  }

 private:
  std::shared_ptr<kj::Array<capnp::word>> aligned_;
  std::shared_ptr<capnp::FlatArrayMessageReader> reader_;
};

// Runs f(); a kj::Exception or std::exception escaping it becomes INVALID_ARGUMENT
// "malformed <what>: <description>". f returns void or Status.
Status CatchKjImpl(std::string_view what, const std::function<Status()>& f);
template <typename F>
Status CatchKj(std::string_view what, F&& f) {
  return CatchKjImpl(what, [&]() -> Status {
    if constexpr (std::is_void_v<decltype(f())>) {
      f();
      return OkStatus();
    } else {
      return f();
    }
  });
}

}  // namespace attic::transport
