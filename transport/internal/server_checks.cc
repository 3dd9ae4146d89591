#include "transport/internal/server_checks.h"

#include <capnp/message.h>

#include <cstdio>

#include "transport/capnp_codec.h"
#include "transport/proto/attic.capnp.h"

namespace attic::transport::internal {

std::string Hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

Status CheckRequestFrame(const FrameHeader& frame, size_t data_length,
                         const RequestLimits& limits) {
  const std::string name(limits.server_name);
  if (frame.magic != kFrameMagic) {
    return FailedPreconditionError(name + ": bad frame magic " + Hex64(frame.magic) +
                                   " (not an Attic peer?)");
  }
  if (frame.version != kProtocolVersion) {
    return FailedPreconditionError(name + ": protocol version mismatch: client speaks " +
                                   std::to_string(frame.version) + ", worker speaks " +
                                   std::to_string(kProtocolVersion));
  }
  if (!limits.accepting) return UnavailableError(name + " is shutting down");
  if (frame.method == 0 || frame.method > kMaxMethod) {
    return UnimplementedError(name + ": unknown method " + std::to_string(frame.method));
  }
  const std::string method(MethodName(static_cast<Method>(frame.method)));
  if (frame.header_bytes > limits.max_header_bytes) {
    return ResourceExhaustedError(name + ": " + method + " header of " +
                                  std::to_string(frame.header_bytes) + " bytes exceeds the " +
                                  std::to_string(limits.max_header_bytes) + "-byte limit");
  }
  if (frame.payload_bytes > limits.max_payload_bytes) {
    return ResourceExhaustedError(name + ": " + method + " payload of " +
                                  std::to_string(frame.payload_bytes) + " bytes exceeds the " +
                                  std::to_string(limits.max_payload_bytes) + "-byte limit");
  }
  // Written so that no sum can wrap around, whatever the limits are.
  if (frame.payload_bytes > data_length ||
      data_length - frame.payload_bytes != frame.header_bytes) {
    return InvalidArgumentError(name + ": " + method + " frame announces " +
                                std::to_string(frame.header_bytes) + " header + " +
                                std::to_string(frame.payload_bytes) + " payload bytes but " +
                                std::to_string(data_length) + " arrived");
  }
  if (!limits.hello_done && frame.method != static_cast<uint16_t>(Method::kHello)) {
    return FailedPreconditionError(name + ": " + method + " before a successful Hello");
  }
  return OkStatus();
}

StatusOr<HelloFields> ParseHello(std::span<const std::byte> header) {
  ASSIGN_OR_RETURN(CapnpMessage msg, CapnpMessage::Parse(header));
  HelloFields out;
  RETURN_IF_ERROR(CatchKj("Hello", [&] {
    auto h = msg.Root<wire::Hello>();
    out.protocol_version = h.getProtocolVersion();
    out.model_fingerprint = h.getModelFingerprint();
    out.token = h.getToken().cStr();
    out.client_name = h.getClientName().cStr();
  }));
  return out;
}

std::string EncodeHello(const HelloFields& hello) {
  capnp::MallocMessageBuilder builder;
  auto h = builder.initRoot<wire::Hello>();
  h.setProtocolVersion(hello.protocol_version);
  h.setModelFingerprint(hello.model_fingerprint);
  h.setToken(hello.token);
  h.setClientName(hello.client_name);
  return EncodeCapnp(builder);
}

std::string WorkerNameOfHelloReply(std::span<const std::byte> header) {
  if (header.empty()) return "";
  StatusOr<CapnpMessage> msg = CapnpMessage::Parse(header);
  if (!msg.ok()) return "";
  std::string name;
  Status s =
      CatchKj("HelloReply", [&] { name = msg->Root<wire::HelloReply>().getWorkerName().cStr(); });
  return s.ok() ? name : "";
}

Status CheckHello(const HelloFields& hello, const HelloPolicy& policy) {
  const std::string name(policy.server_name);
  if (hello.protocol_version != kProtocolVersion) {
    return FailedPreconditionError(name + ": protocol version mismatch: client speaks " +
                                   std::to_string(hello.protocol_version) + ", worker speaks " +
                                   std::to_string(kProtocolVersion));
  }
  if (policy.model_fingerprint != 0 && hello.model_fingerprint != 0 &&
      policy.model_fingerprint != hello.model_fingerprint) {
    return FailedPreconditionError(name + ": model fingerprint mismatch: client " +
                                   Hex64(hello.model_fingerprint) + ", worker " +
                                   Hex64(policy.model_fingerprint));
  }
  if (!policy.token.empty() && hello.token != policy.token) {
    return PermissionDeniedError(name + ": wrong token from client '" + hello.client_name + "'");
  }
  return OkStatus();
}

}  // namespace attic::transport::internal
