// The worker's encoding of a (sequence, layer)'s prefill query sample, the bytes it stores with
// the sequence on the SSD tier (KvStore::StoreSample) so that a restarted worker can rebuild the
// layer's retrieval indexes as the live worker built them.
//
//   std::string blob;                                   // one per (sequence, layer)
//   AppendQuerySample({.q_heads = G * h, .head_dim = D, .dtype = DType::kBFloat16,
//                      .positions = {0, 64, 128}, .q = q_bytes}, &blob);
//   AppendQuerySample({.build = true, .index_kind = 0}, &blob);   // BuildIndex, no queries
//   RETURN_IF_ERROR(store->StoreSample(seq, layer, blob));
//   ...after a restart:
//   ASSIGN_OR_RETURN(std::vector<QuerySampleRecord> records, DecodeQuerySamples(blob));
//
// A blob is a concatenation of records, one per AppendKv request that carried a sample or asked
// for a build, in arrival order, so a blob grows by appending. Each record: magic "AQS1",
// query count n, query heads, head dim, dtype (common/dtype.h number), flags (bit 0: build),
// index kind (the wire's IndexKind number, 0 = worker default), n int32 shard-local positions,
// the queries [n, q_heads, head_dim] in dtype as they came over the wire, then a Hash64 of
// everything before it in the record. Integers are little-endian.
//
// Thread safety: stateless functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"

namespace attic::worker_internal {

struct QuerySampleRecord {
  int q_heads = 0;  // G * h: the query heads of the held KV heads
  int head_dim = 0;
  DType dtype = DType::kFloat32;
  std::vector<int32_t> positions;  // shard-local, ascending; may be empty (a build alone)
  std::string q;                   // [positions.size(), q_heads, head_dim] in dtype
  bool build = false;              // the layer's index build was requested here
  int index_kind = 0;              // wire IndexKind number; 0 = the worker's default
};

// REQUIRES: q.size() == positions.size() * q_heads * head_dim * DTypeSize(dtype).
void AppendQuerySample(const QuerySampleRecord& record, std::string* blob);

// The records of a blob, in order. DATA_LOSS naming the record and byte offset for a blob that
// is truncated, has a bad magic, checksum or dtype, or sizes that do not add up.
StatusOr<std::vector<QuerySampleRecord>> DecodeQuerySamples(std::string_view blob);

}  // namespace attic::worker_internal
