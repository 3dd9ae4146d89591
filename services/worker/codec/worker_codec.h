// The worker's side of the wire schema (transport/proto/attic.capnp): request headers decoded
// into plain structs, replies encoded. It is the only part of the worker that sees Cap'n Proto;
// every handler past it works on the structs below. Every size, count and index field is
// checked here against the worker's model and CodecLimits, so a handler never sees a layer out
// of range, an unknown dtype or index kind, an unaligned tensor offset, a descending sample or a
// list longer than the limits: each is a specific Status naming the field.
//
//   ASSIGN_OR_RETURN(WorkerCall call, DecodeCall(request.method(), request.header(), ctx));
//   if (auto* attend = std::get_if<AttendCall>(&call)) { ... }
//   reply.header = EncodeAppendKvReply({.length = n, .durable = d});
//
// Tensor payloads are not copied: the structs carry byte offsets, and PayloadSlice checks an
// offset and size against the payload once the sizes (which depend on the sequence's held
// heads) are known.
//
// Thread safety: stateless functions. A small library of its own (attic::worker_codec), so a
// fuzzer can link it alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/dtype.h"
#include "common/index_kind.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "transport/frame.h"

namespace attic::worker_codec {

// Bounds on what one request may ask for. A request beyond them is refused whole.
struct CodecLimits {
  int max_attend_items = 4096;           // sequences in one Attend
  int max_lookup_hashes = 1 << 20;       // block hashes in one LookupPrefix
  int max_sequence_tokens = 1 << 28;     // tokens in one AppendKv, sample positions
  int max_sample_queries = 1 << 20;      // prefill queries in one AppendKv sample
  int max_selection_tokens = 1 << 20;    // sparse sinks, window, top-k
  size_t max_tenant_bytes = 1024;
};

// What a request is checked against: the worker's model and the limits.
struct CodecContext {
  ModelSpec spec;
  CodecLimits limits;
};

struct OpenSequenceCall {
  uint64_t id = 0;
  std::string tenant;
  ModelSpec spec;  // as sent: the handler compares it with the worker's
  uint64_t model_fingerprint = 0;
  int kv_head_begin = 0;  // [begin, end) within spec.num_kv_heads
  int kv_head_end = 0;
  uint64_t token_begin = 0;
  bool resume = false;
};

struct LookupPrefixCall {
  uint64_t id = 0;
  std::vector<uint64_t> hashes;
};

struct AppendKvCall {
  uint64_t id = 0;
  int layer = 0;  // < spec.num_layers
  bool block_major = true;
  int num_tokens = 0;
  DType dtype = DType::kFloat32;
  uint64_t k_offset = 0;  // aligned to dtype
  uint64_t v_offset = 0;
  // The optional prefill query sample: positions ascending, shard-local.
  DType sample_dtype = DType::kFloat32;
  uint64_t sample_offset = 0;  // aligned to sample_dtype
  std::vector<int32_t> sample_positions;
  bool build_index = false;
  std::optional<IndexKind> index_kind;  // nullopt: the worker's default
};

// A sparse Attend's parameters as sent: negative values (and no index kind) take the worker's
// retrieval settings; each is at most limits.max_selection_tokens.
struct SparseCall {
  int sinks = -1;
  int window = -1;
  int top_k = -1;
  std::optional<IndexKind> index_kind;
  int effort = -1;
  bool exclude_window = false;
  bool force_sparse = false;
};

struct AttendItemCall {
  uint64_t id = 0;
  // A field the item alone gets wrong (an unknown dtype, an unaligned offset, a duplicate
  // sequence): the item fails with it, the rest of the batch is served. The message does not
  // name the sequence (the handler adds it).
  Status status;
  DType q_dtype = DType::kFloat32;
  uint64_t q_offset = 0;
  bool append_kv = false;
  DType kv_dtype = DType::kFloat32;
  uint64_t k_offset = 0;
  uint64_t v_offset = 0;
  uint64_t token_begin = 0;
  uint64_t tokens_after = 0;
};

struct AttendCall {
  int layer = 0;  // < spec.num_layers
  std::optional<SparseCall> sparse;  // nullopt: dense
  std::vector<AttendItemCall> items;
};

struct CloseSequenceCall {
  uint64_t id = 0;
};

struct StatsCall {};

using WorkerCall = std::variant<OpenSequenceCall, LookupPrefixCall, AppendKvCall, AttendCall,
                                CloseSequenceCall, StatsCall>;

// Decodes the header of a request of `method`. INVALID_ARGUMENT for a malformed header or a
// field out of its range (OUT_OF_RANGE for a layer beyond the model), UNIMPLEMENTED for a
// method the worker does not serve; messages name the request and the field, and the sequence
// when it is known.
StatusOr<WorkerCall> DecodeCall(transport::Method method, std::span<const std::byte> header,
                                const CodecContext& ctx);

// The sequences a call touches, in the order the request names them (empty for Stats). The
// worker runs calls that share a sequence in arrival order.
void CallSequences(const WorkerCall& call, std::vector<uint64_t>* out);

// The `bytes` bytes at `offset` of the payload. INVALID_ARGUMENT naming `what` if they do not
// lie inside it (overflow-safe).
StatusOr<const std::byte*> PayloadSlice(std::span<const std::byte> payload, uint64_t offset,
                                        uint64_t bytes, std::string_view what);

// ---- Replies ----

// A resumed sequence's per-layer lengths (both [L]).
struct ResumedReply {
  std::vector<int> lengths;
  std::vector<int> durable;
};
std::string EncodeOpenSequenceReply(const ResumedReply* resumed);  // nullptr: a plain open
std::string EncodeLookupPrefixReply(int matched_blocks, int matched_tokens);
std::string EncodeAppendKvReply(int length, int durable);
std::string EncodeCloseSequenceReply();

// One item of an AttendReply.
struct AttendItemReply {
  uint64_t id = 0;
  Status status;
  uint64_t out_offset = 0;  // bytes: o [num_q_heads, D] fp32, then lse [num_q_heads] fp32
  int num_q_heads = 0;
  uint64_t keys_scanned = 0;
  int length = 0;
  uint64_t selected_tokens = 0;
  uint64_t bytes_read = 0;
  int dense_heads = 0;
  int durable_tokens = 0;
  uint64_t ssd_bytes_read = 0;
  int recall_heads = 0;  // online recall: heads checked, their k summed, hits among those
  uint64_t recall_exact = 0;
  uint64_t recall_hits = 0;
  int stand_in_heads = 0;  // sparse heads searched through a stand-in index
};
std::string EncodeAttendReply(std::span<const AttendItemReply> items);

struct StatsFigures {
  std::string worker_name;
  uint64_t sequences = 0;
  uint64_t k_blocks_used = 0;
  uint64_t k_blocks_capacity = 0;
  uint64_t v_blocks_used = 0;
  uint64_t v_blocks_capacity = 0;
  uint64_t block_bytes = 0;
  uint64_t prefix_blocks = 0;
  uint64_t cached_blocks = 0;
  uint64_t prefix_hits = 0;
  bool ssd_tier = false;
  uint64_t value_dram_blocks = 0;
  uint64_t v_resident_blocks = 0;
  uint64_t v_spilled_blocks = 0;
  uint64_t spilled_blocks_total = 0;
  uint64_t ssd_bytes_read = 0;
  uint64_t ssd_bytes_written = 0;
  uint64_t durability_errors = 0;
  uint64_t pending_durable_blocks = 0;
  uint64_t recovered_sequences = 0;
};
std::string EncodeStatsReply(const StatsFigures& s);

// The HelloReply header the transport sends on an accepted handshake.
std::string EncodeHelloReply(uint32_t protocol_version, const std::string& worker_name,
                             uint64_t model_fingerprint, const ModelSpec& spec);

}  // namespace attic::worker_codec
