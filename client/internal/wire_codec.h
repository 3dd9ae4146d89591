// The client's side of the wire schema (transport/proto/attic.capnp): request headers out,
// reply headers and payloads in. Every reply is checked against what was asked (item counts,
// sequence ids, head counts, offsets and sizes within the payload); a reply that fails a check
// is INTERNAL ("bad AttendReply: ..."), never a crash or an out-of-bounds read.
//
//   std::string header = EncodeAttend(layer, items);
//   ASSIGN_OR_RETURN(std::vector<AttendPart> parts,
//                    ParseAttendReply(reply.header(), reply.payload(), expected, D));
//
// Thread safety: stateless functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "client/client.h"
#include "common/dtype.h"
#include "common/model_spec.h"
#include "common/status.h"

namespace attic::client_internal {

// resume: take over the sequence the worker recovered (OpenSequenceRequest.resume).
std::string EncodeOpenSequence(uint64_t id, const std::string& tenant, const ModelSpec& spec,
                               uint64_t model_fingerprint, const Shard& shard,
                               bool resume = false);
std::string EncodeLookupPrefix(uint64_t id, std::span<const uint64_t> hashes);
std::string EncodeCloseSequence(uint64_t id);

struct AppendKvHeader {
  uint64_t id = 0;
  int layer = 0;
  bool block_major = true;  // false: token-major
  int64_t num_tokens = 0;
  DType dtype = DType::kFloat32;
  uint64_t k_offset = 0;  // byte offsets into the payload
  uint64_t v_offset = 0;
  // Optional query sample (q [sample_positions.size(), G * h, D] at sample_offset) and build.
  DType sample_dtype = DType::kFloat32;
  uint64_t sample_offset = 0;
  std::vector<int64_t> sample_positions;  // shard-local
  bool build_index = false;
  std::optional<IndexKind> index_kind;  // nullopt: the worker's default
};
std::string EncodeAppendKv(const AppendKvHeader& h);

struct AttendWireItem {
  uint64_t id = 0;
  DType q_dtype = DType::kFloat32;
  uint64_t q_offset = 0;
  bool append_kv = false;
  DType kv_dtype = DType::kFloat32;
  uint64_t k_offset = 0;
  uint64_t v_offset = 0;
  uint64_t token_begin = 0;   // sparse: the shard's first global token
  uint64_t tokens_after = 0;  // sparse: sequence tokens after the shard's
};
std::string EncodeAttend(int layer, std::span<const AttendWireItem> items,
                         AttendMode mode = AttendMode::kDense, const SparseOptions& sparse = {});

// What a worker said about itself in its HelloReply.
struct HelloInfo {
  std::string worker_name;
  ModelSpec spec;
};
// INTERNAL for a malformed reply or a spec outside ModelSpec's ranges.
StatusOr<HelloInfo> ParseHelloReply(std::span<const std::byte> header);

// LookupPrefixReply.matchedTokens; INTERNAL unless it is a multiple of B within the
// num_hashes blocks asked about.
StatusOr<int64_t> ParseLookupPrefixReply(std::span<const std::byte> header, size_t num_hashes,
                                         int block_size);
// A resumed OpenSequenceReply: the shard-local tokens of every layer, and the durable ones.
struct ResumedShard {
  std::vector<int64_t> lengths;  // [L]
  std::vector<int64_t> durable;  // [L]
};
// INTERNAL unless the reply says resumed with num_layers lengths, each durable <= its length.
StatusOr<ResumedShard> ParseResumeReply(std::span<const std::byte> header, int num_layers);

// AppendKvReply: the shard-local tokens the layer holds after the append, and how many of them
// are durable (INTERNAL if more than it holds).
struct AppendAck {
  int64_t length = 0;
  int64_t durable = 0;
};
StatusOr<AppendAck> ParseAppendKvReply(std::span<const std::byte> header);

// What the request asked of one item: the reply must answer it in the same position.
struct AttendExpect {
  uint64_t id = 0;
  int num_q_heads = 0;  // G * h of the shard
};

// One item of an AttendReply: the worker's status for it and, when OK, its partial state.
struct AttendPart {
  uint64_t id = 0;
  Status status;  // the worker's per-item error, if any
  uint64_t keys_scanned = 0;
  uint64_t selected_tokens = 0;
  uint64_t bytes_read = 0;
  uint32_t dense_heads = 0;
  int64_t length = 0;
  int64_t durable_tokens = 0;
  uint64_t ssd_bytes_read = 0;
  uint32_t recall_heads = 0;
  uint64_t recall_exact = 0;
  uint64_t recall_hits = 0;
  uint32_t stand_in_heads = 0;
  // Views into the reply's payload (valid while it lives), when status is OK.
  std::span<const float> o;    // [num_q_heads, D]
  std::span<const float> lse;  // [num_q_heads]
  std::vector<float> unaligned;  // o and lse, copied, when the payload left them unaligned
};

// Parses and checks a whole AttendReply. INTERNAL if the item count, a sequence id, a head
// count, a status code, or an output range (o [numQHeads, D] fp32 at outOffset, then lse
// [numQHeads] fp32) disagrees with the request or the payload.
StatusOr<std::vector<AttendPart>> ParseAttendReply(std::span<const std::byte> header,
                                                   std::span<const std::byte> payload,
                                                   std::span<const AttendExpect> expected,
                                                   int head_dim);

}  // namespace attic::client_internal
