// The server's decisions on a request, as pure functions: the frame checks every request
// passes before its data is received, and the handshake check of a Hello.
//
//   Status s = CheckRequestFrame(frame, data_length, limits);
//   if (!s.ok()) ReplyError(frame, s);   // nothing was received yet
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "transport/frame.h"

namespace attic::transport::internal {

struct RequestLimits {
  std::string_view server_name;  // starts every error text ("worker-0: ...")
  size_t max_header_bytes = 0;
  size_t max_payload_bytes = 0;
  bool accepting = true;    // false after StopAccepting
  bool hello_done = false;  // the connection completed its handshake
};

// In this order: bad magic or version -> FAILED_PRECONDITION; not accepting -> UNAVAILABLE;
// unknown method -> UNIMPLEMENTED; header or payload over the limits -> RESOURCE_EXHAUSTED;
// header_bytes + payload_bytes != data_length -> INVALID_ARGUMENT; a method other than Hello
// before the handshake -> FAILED_PRECONDITION.
Status CheckRequestFrame(const FrameHeader& frame, size_t data_length, const RequestLimits& limits);

struct HelloPolicy {
  std::string_view server_name;
  uint64_t model_fingerprint = 0;  // 0 = accept any
  std::string_view token;          // empty = none required
};

// The fields of a received wire::Hello.
struct HelloFields {
  uint32_t protocol_version = 0;
  uint64_t model_fingerprint = 0;
  std::string token;
  std::string client_name;
};

// Parses a wire::Hello header. INVALID_ARGUMENT if it is not one.
StatusOr<HelloFields> ParseHello(std::span<const std::byte> header);
// Serializes a wire::Hello (the client's side of the handshake).
std::string EncodeHello(const HelloFields& hello);
// The worker name of an encoded wire::HelloReply; empty if it cannot be read.
std::string WorkerNameOfHelloReply(std::span<const std::byte> header);

// Version mismatch -> FAILED_PRECONDITION naming both versions; fingerprints both nonzero
// and different -> FAILED_PRECONDITION naming both in hex; wrong token -> PERMISSION_DENIED
// (the tokens are never printed).
Status CheckHello(const HelloFields& hello, const HelloPolicy& policy);

// "0x0123456789abcdef".
std::string Hex64(uint64_t v);

}  // namespace attic::transport::internal
