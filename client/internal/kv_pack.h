// Shape checks and the copies that turn the engine's tensors into wire payloads.
//
// The engine hands K/V token-major ([n, Hkv, D], any dtype, any strides); the wire wants each
// shard's heads block-major in the storage dtype ([h, blocks, B, D], transport/proto/
// attic.capnp, AppendKvRequest.blockMajor). Decode-step tensors ([Hq, D] queries, [Hkv, D]
// k/v) travel as contiguous row slices.
//
//   RETURN_IF_ERROR(CheckView("k", k, {n, spec.num_kv_heads, spec.head_dim}));
//   std::vector<std::byte> buf(BlockMajorBytes(t1 - t0, h1 - h0, B, D, spec.dtype));
//   PackBlockMajor(k, t0, t1, h0, h1, B, spec.dtype, buf.data());
//
// Thread safety: stateless functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>

#include "common/dtype.h"
#include "common/status.h"
#include "common/tensor_view.h"

namespace attic::client_internal {

// INVALID_ARGUMENT naming `what` unless `view` has exactly `shape` (a dim of -1 matches any
// size >= 0), a known dtype, non-negative strides, and data unless it is empty.
Status CheckView(std::string_view what, const TensorView& view,
                 std::initializer_list<int64_t> shape);

// Bytes of a [heads, ceil(tokens / block_size), block_size, head_dim] block-major tensor.
size_t BlockMajorBytes(int64_t tokens, int heads, int block_size, int head_dim, DType dtype);

// Copies tokens [t0, t1) and heads [h0, h1) of src ([n, Hkv, D], any dtype and strides) to
// dst as [h1 - h0, ceil((t1 - t0) / B), B, D] in `to`; tail rows of a partial last block are
// zero. REQUIRES: src passed CheckView, 0 <= t0 <= t1 <= n, 0 <= h0 <= h1 <= Hkv, dst holds
// BlockMajorBytes(t1 - t0, h1 - h0, B, D, to) bytes.
void PackBlockMajor(const TensorView& src, int64_t t0, int64_t t1, int h0, int h1, int block_size,
                    DType to, std::byte* dst);

// Copies rows [r0, r1) of src ([rows, D], any dtype and strides) contiguously to dst in `to`:
// [r1 - r0, D]. REQUIRES: src passed CheckView, 0 <= r0 <= r1 <= rows, dst holds
// (r1 - r0) * D * DTypeSize(to) bytes.
void PackRows(const TensorView& src, int64_t r0, int64_t r1, DType to, std::byte* dst);

}  // namespace attic::client_internal
