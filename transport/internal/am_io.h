// Sending and receiving one Attic message as a UCX Active Message.
//
// Send: the FrameHeader is the AM header; the data is the Cap'n Proto header followed by the
// payload spans, passed to ucp_am_send_nbx as one UCP_DATATYPE_IOV gather list (nothing is
// copied into a single buffer). Eager or rendezvous is UCX's choice.
//
// Receive: an eager message is copied out of UCX's buffer; a rendezvous one is received
// (ucp_am_recv_data_nbx) straight into a buffer allocated for it. Either way the buffer is
// 64-byte aligned, the header starts 8-byte aligned and the payload 64-byte aligned.
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
#include "transport/message.h"

namespace attic::transport::internal {

// Called once with the send's final status (UCS_OK or an error), on the reactor thread,
// possibly before SendAm returns.
using SendDone = std::function<void(ucs_status_t)>;

// Sends frame + header + payload on `ep` to handler `am_id`. `reply_flag` adds
// UCP_AM_SEND_FLAG_REPLY so the receiver learns the reply endpoint. `keepalive`, the header
// and the payload spans stay alive until the send completes; `done` (may be empty) then runs.
void SendAm(ucp_ep_h ep, unsigned am_id, const FrameHeader& frame, std::string header,
            std::vector<std::span<const std::byte>> payload, std::shared_ptr<const void> keepalive,
            bool reply_flag, SendDone done);

// Memory for one received message.
struct MessageBuffer {
  std::shared_ptr<std::byte> storage;  // 64-byte aligned allocation
  std::byte* data = nullptr;           // where the message data starts inside storage
  std::span<const std::byte> header;
  std::span<const std::byte> payload;
};
// Allocates room for header_bytes + payload_bytes so that the header is 8-byte aligned and,
// when header_bytes is a multiple of 8, the payload is 64-byte aligned. Null storage if
// the allocation failed.
MessageBuffer AllocateMessage(size_t header_bytes, size_t payload_bytes);

using ReceiveDone = std::function<void(StatusOr<IncomingMessage>)>;

// Takes the data of an AM whose frame was already checked (data length == header_bytes +
// payload_bytes, both within limits). `done` runs once: at once for eager data, on
// completion of the rendezvous receive otherwise. Returns what the AM handler must return.
ucs_status_t ReceiveAm(ucp_worker_h worker, const FrameHeader& frame, void* data, size_t length,
                       const ucp_am_recv_param_t* param, ReceiveDone done);

// Registers `cb(arg, ...)` as the handler of AM id `am_id` on the worker.
Status SetAmHandler(ucp_worker_h worker, unsigned am_id, ucp_am_recv_callback_t cb, void* arg);

}  // namespace attic::transport::internal
