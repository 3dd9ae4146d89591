// The fixed frame every Attic data-plane message starts with. It travels as the UCX Active
// Message header; the message's data is `header_bytes` of Cap'n Proto header
// (transport/proto/attic.capnp) followed by `payload_bytes` of raw tensor payload.
//
//   FrameHeader f = MakeRequestFrame(Method::kAttend, request_id, header.size(), payload_size,
//                                    deadline_ms);
//
// Thread safety: plain data.
#pragma once

#include <cstdint>
#include <string_view>

namespace attic::transport {

inline constexpr uint32_t kFrameMagic = 0x43495441;  // "ATIC" little-endian
// Bumped on every incompatible change of frame.h or proto/attic.capnp.
inline constexpr uint16_t kProtocolVersion = 1;

// UCX Active Message ids: requests go to the server's handler, replies to the client's.
inline constexpr uint32_t kRequestAmId = 17;
inline constexpr uint32_t kReplyAmId = 18;

// Numbers are stable: they travel on the wire.
enum class Method : uint16_t {
  kHello = 1,  // handled by the transport itself (handshake)
  kOpenSequence = 2,
  kLookupPrefix = 3,
  kAppendKv = 4,
  kAttend = 5,
  kCloseSequence = 6,
  kStats = 7,
  kEcho = 8,     // transport-level: replies with the request's header and payload (benchmarks)
  kDiscard = 9,  // transport-level: replies with an empty message; the payload is received and
                 // dropped (one-way bandwidth benchmarks)
};
inline constexpr int kMaxMethod = 9;

// "Attend", "AppendKv", ...; "Unknown" otherwise. Used as a metrics label.
std::string_view MethodName(Method m);

enum FrameFlags : uint16_t {
  kFrameReply = 1u << 0,  // a reply; status_code says whether it succeeded
  // The header_bytes of header follow the FrameHeader inside the UCX AM header, and the AM
  // data is the payload alone (so a one-span payload goes as contiguous data, which UCX
  // moves by zero-copy rendezvous; a gather list does not). Sent only to a peer whose Hello
  // (or Hello reply) announced kCapInlineHeader, never in a Hello or its reply.
  kFrameInlineHeader = 1u << 1,
};

// What a peer can receive, announced in the `capabilities` of its Hello or Hello reply.
// Peers that predate a capability send 0 there (the field was reserved), so they are
// simply never sent what they could not read.
enum FrameCapabilities : uint32_t {
  kCapInlineHeader = 1u << 0,
};

struct FrameHeader {
  uint32_t magic = kFrameMagic;
  uint16_t version = kProtocolVersion;
  uint16_t method = 0;         // Method
  uint64_t request_id = 0;     // chosen by the caller, echoed by the reply
  uint32_t header_bytes = 0;   // Cap'n Proto header, or the error text of a failed reply
  uint16_t flags = 0;          // FrameFlags
  int16_t status_code = 0;     // replies: StatusCode number; 0 = OK
  uint64_t payload_bytes = 0;  // raw payload after the header
  uint32_t timeout_ms = 0;     // requests: time left to the caller's deadline when sent
  uint32_t capabilities = 0;   // Hello and its reply: FrameCapabilities of the sender; else 0
};
static_assert(sizeof(FrameHeader) == 40, "FrameHeader is a wire format");

}  // namespace attic::transport
