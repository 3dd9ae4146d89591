// Messages as the RPC layer hands them to Attic code: a Cap'n Proto header plus raw payload.
//
//   OutgoingMessage m;
//   m.method = Method::kAttend;
//   m.header = EncodeCapnp(builder);                 // capnp_codec.h
//   m.payload = {{q.data(), q.size()}, {k.data(), k.size()}};
//   m.keepalive = owner;                             // keeps q and k alive until sent
//
// Thread safety: value types; an IncomingMessage's storage is owned by the message.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "transport/frame.h"

namespace attic::transport {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline Deadline DeadlineAfter(std::chrono::milliseconds timeout) { return Clock::now() + timeout; }

struct OutgoingMessage {
  Method method = Method::kEcho;
  // A serialized Cap'n Proto message (EncodeCapnp), sent first. May be empty.
  std::string header;
  // Raw payload, sent after the header in this order (a gather list: nothing is copied into
  // one buffer before sending). The memory must stay valid and unchanged until the send
  // completes; `keepalive` is released only then, so tie the buffers' owner to it.
  std::vector<std::span<const std::byte>> payload;
  std::shared_ptr<const void> keepalive;

  size_t payload_bytes() const {
    size_t n = 0;
    for (const auto& p : payload) n += p.size();
    return n;
  }
};

// A received request or reply. header() is 8-byte aligned (Cap'n Proto can read it in place);
// payload() is 64-byte aligned when it came by rendezvous into a buffer the transport chose.
class IncomingMessage {
 public:
  IncomingMessage() = default;
  IncomingMessage(const FrameHeader& frame, std::shared_ptr<const void> storage,
                  std::span<const std::byte> header, std::span<const std::byte> payload)
      : frame_(frame), storage_(std::move(storage)), header_(header), payload_(payload) {}

  const FrameHeader& frame() const { return frame_; }
  Method method() const { return static_cast<Method>(frame_.method); }
  std::span<const std::byte> header() const { return header_; }
  std::span<const std::byte> payload() const { return payload_; }

 private:
  FrameHeader frame_{};
  std::shared_ptr<const void> storage_;  // owns header_ and payload_
  std::span<const std::byte> header_;
  std::span<const std::byte> payload_;
};

}  // namespace attic::transport
