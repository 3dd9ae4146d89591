#include "transport/capnp_codec.h"

#include <kj/exception.h>

#include <cstring>
#include <exception>

namespace attic::transport {

std::string EncodeCapnp(capnp::MessageBuilder& builder) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

StatusOr<CapnpMessage> CapnpMessage::Parse(std::span<const std::byte> bytes) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    return InvalidArgumentError("malformed header: " + std::to_string(bytes.size()) +
                                " bytes is not a whole number of 8-byte words");
  }
  CapnpMessage msg;
  const size_t words = bytes.size() / sizeof(capnp::word);
  kj::ArrayPtr<const capnp::word> view;
  if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(capnp::word) == 0) {
    view = kj::arrayPtr(reinterpret_cast<const capnp::word*>(bytes.data()), words);
  } else {
    msg.aligned_ =
        std::make_shared<kj::Array<capnp::word>>(kj::heapArray<capnp::word>(words));
    std::memcpy(msg.aligned_->begin(), bytes.data(), bytes.size());
    view = *msg.aligned_;
  }
  capnp::ReaderOptions options;
  options.traversalLimitInWords = kTraversalLimitWords;
  options.nestingLimit = 16;
  Status status = CatchKj("header", [&] {
    msg.reader_ = std::make_shared<capnp::FlatArrayMessageReader>(view, options);
  });
  if (!status.ok()) return status;
  return msg;
}

Status CatchKjImpl(std::string_view what, const std::function<Status()>& f) {
  try {
    return f();
  } catch (const kj::Exception& e) {
    return InvalidArgumentError("malformed " + std::string(what) + ": " +
                                std::string(e.getDescription().cStr()));
  } catch (const std::exception& e) {
    return InvalidArgumentError("malformed " + std::string(what) + ": " + e.what());
  }
}

}  // namespace attic::transport
