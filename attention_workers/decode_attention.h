// Decode attention for one GQA group on the CPU: dense over runs of KV rows, or sparse over
// a sorted list of token positions. The building blocks of the attention worker.
//
//   // G query heads sharing one KV head, over a sequence's blocks:
//   std::vector<KvRun> runs;      // one per KV block: {k [n, D], v [n, D], n}
//   float out[4 * 128], lse[4];
//   RETURN_IF_ERROR(DecodeAttention({.q = q, .group_size = 4, .head_dim = 128,
//                                    .dtype = DType::kBFloat16, .scale = 0.0884f,
//                                    .runs = runs, .out = out, .lse = lse}));
//
// Numerics: q, accumulation, out and lse are fp32; K/V are read in their storage dtype
// (fp32, bf16 or fp16) and widened exactly. out[g] is the normalized attention output of query
// head g; lse[g] = ln(sum_t exp(scale * q_g . k_t)) (natural log, as FlashAttention's
// softmax_lse), so partial results over disjoint token sets merge exactly (common/lse_merge.h). With no
// tokens at all, out is zero and lse is -inf: the identity of the merge.
// A block-and-range selection ("block b, tokens [i, j)") is a KvRun pointing into the block.
//
// Performance: streams K and V once, prefetching rows a fixed distance ahead. With every core busy it runs
// at the DRAM read limit from 16K tokens on; one core alone reaches about 0.7 of it, its
// compute and memory time adding up rather than overlapping (docs/kernels.md,
// bench/kernels_bench.cc). Nothing allocates on the dense path.
// Thread safety: stateless; concurrent calls with distinct outputs are safe.
#pragma once

#include <cstdint>
#include <span>

#include "attention_workers/internal/kernel_abi.h"
#include "attention_workers/isa.h"
#include "common/dtype.h"
#include "common/status.h"

namespace attic {

// A run of consecutive tokens of one (layer, KV head): k and v are [num_tokens, D] row-major
// in the storage dtype, e.g. one KV block (the kvstore's BlockView) or a range inside one.
using KvRun = kernels::KvRun;

struct DecodeAttentionParams {
  const float* q = nullptr;  // [G, D] fp32, row-major
  int group_size = 0;        // G, 1..128
  int head_dim = 0;          // D, a multiple of 32 in [32, 512]
  DType dtype = DType::kBFloat16;  // storage dtype of K and V
  float scale = 0.0f;              // softmax scale, > 0
  std::span<const KvRun> runs;     // attention covers the concatenation of all runs
  float* out = nullptr;            // [G, D] fp32, written
  float* lse = nullptr;            // [G] fp32, written
};

// InvalidArgument for a null pointer, a bad G, D, dtype or scale, or a negative run length.
// `isa` must be supported by the CPU (isa.h); InvalidArgument otherwise.
Status DecodeAttention(const DecodeAttentionParams& params, IsaLevel isa = ActiveIsa());

struct SparseDecodeAttentionParams {
  const float* q = nullptr;  // [G, D] fp32, row-major
  int group_size = 0;
  int head_dim = 0;
  DType dtype = DType::kBFloat16;
  float scale = 0.0f;
  // The sequence's blocks in order; every block holds block_size tokens except the last.
  // Blocks no position falls in may have null K or V.
  std::span<const KvRun> blocks;
  int block_size = 0;
  // Token positions to attend to: strictly increasing, each below the total token count.
  std::span<const int32_t> positions;
  float* out = nullptr;  // [G, D] fp32
  float* lse = nullptr;  // [G] fp32
};

// Exact attention over the selected positions only. Consecutive positions inside one block
// are read as one run. InvalidArgument as DecodeAttention, plus OutOfRange for a position
// past the end and InvalidArgument for unsorted or repeated positions.
Status SparseDecodeAttention(const SparseDecodeAttentionParams& params,
                             IsaLevel isa = ActiveIsa());

}  // namespace attic
