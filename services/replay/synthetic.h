// Deterministic synthetic K/V/Q for trace replay.
//
// Traces carry lengths and prefix-block ids, not tokens. attic-replay turns them into KV contents
// that are functions of (block hash chain, position, layer, KV head, seed) only, never of the
// request: a block two requests share through the prefix cache holds exactly what a fresh
// prefill would have written, so a replay's attention does not depend on which request
// prefilled a block first.
//
//   PromptHashes h = PromptBlockHashes(r.hash_ids, r.input_tokens, spec.block_size,
//                                      /*unique=*/r.index + 1, seed);
//   SyntheticKv gen(spec, seed);
//   gen.FillPrompt(h, layer, first, n, k_bytes, v_bytes);  // [n, Hkv, D] in spec.dtype
//   gen.FillDecode(h.tail, position, layer, k_tok, v_tok, q_tok);
//
// Trace blocks are 512 tokens (kTraceBlockTokens): one trace hash id maps to 512 / B blocks of B
// tokens, each with its own chained hash HashCombine(previous, HashCombine(id, sub-block)). (A
// block size that does not divide 512 uses the block's token offset in its trace block for
// sub-block and folds in the ids of every further trace block it reaches.) The chain starts
// from the seed, so two replays with the same seed share the same hashes.
// Requests without hash ids (Azure) get ids derived from `unique` (distinct per request), so
// they share nothing. Tokens past the last full B-block (and decode tokens) take their content
// from the tail hash, HashCombine(last chain hash, unique): private to the request.
//
// Values: keys uniform in [-2, 2), values and queries uniform in [-1, 1), 16 random bits each
// (so q.k / sqrt(D) has a standard deviation of about 0.67: softmax is neither flat nor one-hot),
// converted to the dtype by truncation toward zero (fp16 flushes magnitudes below 2^-14 to
// zero). The bytes are the same on every machine: a replay with the same seed and spec
// synthesizes the same cache. A counter-based generator (one 64-bit multiply per four values)
// and vectorized conversions fill several GB/s per core.
//
// Thread safety: SyntheticKv is immutable; its methods may run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/model_spec.h"

namespace attic::replay {

inline constexpr int kTraceBlockTokens = 512;

struct PromptHashes {
  // One chained hash per full B-token block of the prompt (the prefix-cache keys).
  std::vector<uint64_t> blocks;
  // Content key of the prompt's partial last block and of every decode token.
  uint64_t tail = 0;
};

// hash_ids may cover fewer tokens than input_tokens (the rest is treated as unique to the
// request) or more (the extra ids are ignored). input_tokens / block_tokens full blocks.
// REQUIRES: block_tokens > 0, input_tokens >= 0.
PromptHashes PromptBlockHashes(std::span<const uint64_t> hash_ids, int64_t input_tokens,
                               int block_tokens, uint64_t unique, uint64_t seed);

class SyntheticKv {
 public:
  // REQUIRES: spec.Validate() is OK (head_dim a multiple of 32 up to 512).
  SyntheticKv(const ModelSpec& spec, uint64_t seed);

  // K and V of prompt tokens [first, first + n) of one layer, token-major [n, Hkv, D] in
  // spec.dtype, written to k and v (n * Hkv * D * DTypeSize(spec.dtype) bytes each). Token p
  // takes its content from hashes.blocks[p / B] when that block is full, else from hashes.tail.
  void FillPrompt(const PromptHashes& hashes, int layer, int64_t first, int64_t n, std::byte* k,
                  std::byte* v) const;

  // One decode token at `position`: k and v [Hkv, D] and q [Hq, D], all in spec.dtype.
  void FillDecode(uint64_t tail, int64_t position, int layer, std::byte* k, std::byte* v,
                  std::byte* q) const;

  const ModelSpec& spec() const { return spec_; }

 private:
  ModelSpec spec_;
  uint64_t seed_;
};

}  // namespace attic::replay
