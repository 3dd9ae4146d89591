// The decode-step measurement's store (bench/ssd/decode_step.h): one layer of an activation
// dump in bf16, loaded into a KvStore with an SSD tier in a scratch directory, as one sequence
// of a one-layer model.
//
//   const Bf16Layer data = ToBf16(layer, ds.kv_heads);
//   const ModelSpec spec = DecodeSpec(ds, /*block_size=*/64);
//   ASSIGN_OR_RETURN(auto store, OpenDecodeStore(spec, data.tokens, {.dir = dir + "/db"}));
//   RETURN_IF_ERROR(PrefillBlocks(*store, spec, data, plan.indexed, /*chunk_tokens=*/2048));
//   RETURN_IF_ERROR(AppendTokensUpTo(*store, spec, data, position + 1));   // decode appends
//
// Thread safety: plain functions; the store is the caller's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/retrieval/dataset.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "kvstore/kv_store.h"

namespace attic::retrieval::eval::decode_internal {

// The measured sequence's id in its store.
inline constexpr uint64_t kSequenceId = 1;

// One layer's keys and values per KV head, in bf16 (the store's dtype).
struct Bf16Layer {
  std::vector<std::vector<std::byte>> k;  // [kv_heads] of [tokens, head_dim] bf16
  std::vector<std::vector<std::byte>> v;  // [kv_heads] of [tokens, head_dim] bf16
  int64_t tokens = 0;
  int head_dim = 0;

  int kv_heads() const { return static_cast<int>(k.size()); }
  size_t row_bytes() const { return static_cast<size_t>(head_dim) * 2; }
};

// REQUIRES: layer.has_values().
Bf16Layer ToBf16(const LayerData& layer, int kv_heads);

// One layer (the dump's layer becomes layer 0), the dump's heads, head dimension and softmax
// scale, bf16, blocks of block_size tokens.
ModelSpec DecodeSpec(const Dataset& ds, int block_size);

struct DecodeStoreOptions {
  std::string dir;  // the RocksDB directory (created)
  bool direct_io = true;
  int64_t value_dram_blocks = 0;  // KvStoreOptions::value_dram_blocks; 0 = all
};

// A store sized for `tokens` tokens of every head of spec, with the sequence open.
StatusOr<std::unique_ptr<KvStore>> OpenDecodeStore(const ModelSpec& spec, int64_t tokens,
                                                   const DecodeStoreOptions& options);

// Tokens [length, end) appended block-major (AppendPrefill) in chunks of chunk_tokens, a
// multiple of the block size. REQUIRES: the layer's length is a multiple of the block size.
Status PrefillBlocks(KvStore& store, const ModelSpec& spec, const Bf16Layer& data, int64_t end,
                     int chunk_tokens);

// Tokens [length, end) appended token-major (AppendTokens), as decode steps append them.
Status AppendTokensUpTo(KvStore& store, const ModelSpec& spec, const Bf16Layer& data, int64_t end);

}  // namespace attic::retrieval::eval::decode_internal
