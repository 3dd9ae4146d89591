// Sending and receiving one Attic message as a UCX Active Message.
//
// Send: the FrameHeader is the AM header. When the peer takes inline headers and the
// Cap'n Proto header fits (max_inline), it follows the FrameHeader in the AM header
// (kFrameInlineHeader) and the data is the payload alone; otherwise the data is the header
// followed by the payload. Data of one piece goes as contiguous memory, several pieces as a
// UCP_DATATYPE_IOV gather list (nothing is copied into a single buffer). Eager or
// rendezvous is UCX's choice.
//
// Receive: an eager message is copied out of UCX's buffer; a rendezvous one is received
// (ucp_am_recv_data_nbx) straight into a buffer allocated for it. Either way the buffer is
// 64-byte aligned, the header starts 8-byte aligned and the payload 64-byte aligned.
// Buffers of BufferPool::kMinPooledBytes and more come from the reactor's BufferPool
// (reused, pre-faulted); smaller ones from the heap.
//
// Thread safety: reactor thread only.
#pragma once

#include <ucp/api/ucp.h>

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "transport/frame.h"
#include "transport/internal/buffer_pool.h"
#include "transport/message.h"

namespace attic::transport::internal {

// Called once with the send's final status (UCS_OK or an error), on the reactor thread,
// possibly before SendAm returns.
using SendDone = std::function<void(ucs_status_t)>;

// Sends frame + header + payload on `ep` to handler `am_id`. `reply_flag` adds
// UCP_AM_SEND_FLAG_REPLY so the receiver learns the reply endpoint. `max_inline`: largest
// FrameHeader + header sent as the AM header (0: never inline; the peer must have announced
// kCapInlineHeader otherwise). `keepalive`, the header and the payload spans stay alive until
// the send completes; `done` (may be empty) then runs.
void SendAm(ucp_ep_h ep, unsigned am_id, const FrameHeader& frame, std::string header,
            std::vector<std::span<const std::byte>> payload, std::shared_ptr<const void> keepalive,
            bool reply_flag, size_t max_inline, SendDone done);

// Memory for one received message.
struct MessageBuffer {
  std::shared_ptr<std::byte> storage;  // 64-byte aligned allocation
  std::byte* data = nullptr;           // where the message data starts inside storage
  std::span<const std::byte> header;
  std::span<const std::byte> payload;
};
// Allocates room for header_bytes + payload_bytes so that the header is 8-byte aligned and,
// when header_bytes is a multiple of 8, the payload is 64-byte aligned; from `pool` (may be
// null) when large enough. Null storage if the allocation failed.
MessageBuffer AllocateMessage(size_t header_bytes, size_t payload_bytes, BufferPool* pool);

using ReceiveDone = std::function<void(StatusOr<IncomingMessage>)>;

// Takes the data of an AM whose frame was already checked (inline_header.size() + data
// length == header_bytes + payload_bytes, both within limits; inline_header is empty or
// exactly header_bytes long). `done` runs once: at once for eager data, on completion of the
// rendezvous receive otherwise. Returns what the AM handler must return.
ucs_status_t ReceiveAm(ucp_worker_h worker, BufferPool* pool, const FrameHeader& frame,
                       std::span<const std::byte> inline_header, void* data, size_t length,
                       const ucp_am_recv_param_t* param, ReceiveDone done);

// Splits a received AM header into frame and inline header. False if it is not a frame:
// shorter than a FrameHeader, or longer without kFrameInlineHeader.
bool ParseAmHeader(const void* header, size_t header_length, FrameHeader* frame,
                   std::span<const std::byte>* inline_header);

// Registers `cb(arg, ...)` as the handler of AM id `am_id` on the worker.
Status SetAmHandler(ucp_worker_h worker, unsigned am_id, ucp_am_recv_callback_t cb, void* arg);

}  // namespace attic::transport::internal
