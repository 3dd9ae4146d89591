// Validation of the arguments of KvStore's appends and reads, done before any lock is taken
// (a sequence's configuration is immutable). Every failure is InvalidArgument (OutOfRange for
// a sequence that would grow too long) naming the operation, what was expected and what came:
//
//   RETURN_IF_ERROR(CheckLayer(config, layer, "AppendTokens"));
//   ASSIGN_OR_RETURN(int n, CheckTokenRows(config, layer, k, v, "AppendTokens"));
//
// Thread safety: stateless functions.
#pragma once

#include <string_view>

#include "common/status.h"
#include "common/tensor_view.h"
#include "kvstore/internal/sequence.h"

namespace attic::kv_internal {

Status CheckLayer(const SequenceConfig& c, int layer, std::string_view op);
// kv_head is absolute: it must lie in the sequence's held range.
Status CheckKvHead(const SequenceConfig& c, int kv_head, std::string_view op);

// k, v: [num_heads, blocks, B, D] in the storage dtype with strides [*, *, D, 1];
// num_tokens in ((blocks-1)*B, blocks*B] (0 with 0 blocks). Returns blocks.
StatusOr<int> CheckPrefillChunk(const SequenceConfig& c, int layer, const TensorView& k,
                                const TensorView& v, int num_tokens);

// k, v: [n, num_heads, D], any dtype each, stride 1 along D. Returns n.
StatusOr<int> CheckTokenRows(const SequenceConfig& c, int layer, const TensorView& k,
                             const TensorView& v, std::string_view op);

// k, v: [num_heads, D], any dtype each, stride 1 along D.
Status CheckDecodeRow(const SequenceConfig& c, int layer, const TensorView& k, const TensorView& v);
// [num_heads, D] seen as [1, num_heads, D].
TensorView AsOneTokenRows(const TensorView& row);

// OutOfRange when length + num_tokens would pass KvStore::kMaxSequenceTokens.
Status CheckRoom(const SequenceConfig& c, int layer, int length, int num_tokens,
                 std::string_view op);

}  // namespace attic::kv_internal
