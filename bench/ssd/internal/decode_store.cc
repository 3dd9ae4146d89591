#include "bench/ssd/internal/decode_store.h"

#include <algorithm>
#include <cstring>

#include "common/dtype.h"
#include "common/tensor_view.h"

namespace attic::retrieval::eval::decode_internal {

Bf16Layer ToBf16(const LayerData& layer, int kv_heads) {
  Bf16Layer out;
  out.tokens = layer.num_tokens;
  out.head_dim = layer.head_dim;
  const size_t n = static_cast<size_t>(layer.num_tokens) * static_cast<size_t>(layer.head_dim);
  for (int h = 0; h < kv_heads; ++h) {
    for (auto [src, dst] : {std::pair{&layer.keys, &out.k}, std::pair{&layer.values, &out.v}}) {
      std::vector<std::byte>& b = dst->emplace_back(n * 2);
      ConvertDType(layer.dtype, (*src)[static_cast<size_t>(h)].data(), DType::kBFloat16, b.data(),
                   n);
    }
  }
  return out;
}

ModelSpec DecodeSpec(const Dataset& ds, int block_size) {
  return ModelSpec{.name = "decode-step",
                   .num_layers = 1,
                   .num_q_heads = ds.q_heads,
                   .num_kv_heads = ds.kv_heads,
                   .head_dim = ds.head_dim,
                   .dtype = DType::kBFloat16,
                   .block_size = block_size,
                   .softmax_scale = ds.scale};
}

StatusOr<std::unique_ptr<KvStore>> OpenDecodeStore(const ModelSpec& spec, int64_t tokens,
                                                   const DecodeStoreOptions& options) {
  const int64_t blocks_per_head = (tokens + spec.block_size - 1) / spec.block_size;
  KvStoreOptions o;
  o.block_bytes = spec.block_bytes();
  // Twice the sequence: value_dram_blocks = 0 (the whole V pool) then stays below the spill
  // watermark, so every value is kept. With a tier the V slab is address space only.
  o.k_pool_blocks = o.v_pool_blocks = 2 * (blocks_per_head + 1) * spec.num_kv_heads;
  o.ssd.path = options.dir;
  o.ssd.direct_io = options.direct_io;
  o.value_dram_blocks = options.value_dram_blocks;
  ASSIGN_OR_RETURN(std::unique_ptr<KvStore> store, KvStore::Open(o));
  RETURN_IF_ERROR(store->OpenSequence({.id = kSequenceId, .tenant = "bench", .spec = spec}));
  return store;
}

namespace {

// Tokens [begin, begin + n) of every head as a block-major chunk [Hkv, blocks, B, D], the
// partial last block zero-padded.
void GatherChunk(const std::vector<std::vector<std::byte>>& heads, const Bf16Layer& data,
                 int64_t begin, int64_t n, int64_t blocks, int block_size,
                 std::vector<std::byte>* out) {
  const size_t row = data.row_bytes();
  const size_t head_bytes = static_cast<size_t>(blocks) * static_cast<size_t>(block_size) * row;
  out->assign(head_bytes * heads.size(), std::byte{0});
  for (size_t h = 0; h < heads.size(); ++h) {
    std::memcpy(out->data() + h * head_bytes, heads[h].data() + static_cast<size_t>(begin) * row,
                static_cast<size_t>(n) * row);
  }
}

}  // namespace

Status PrefillBlocks(KvStore& store, const ModelSpec& spec, const Bf16Layer& data, int64_t end,
                     int chunk_tokens) {
  ASSIGN_OR_RETURN(int length, store.Length(kSequenceId, 0));
  std::vector<std::byte> k, v;
  const int64_t b = spec.block_size;
  for (int64_t begin = length; begin < end; begin += chunk_tokens) {
    const int64_t n = std::min<int64_t>(chunk_tokens, end - begin);
    const int64_t blocks = (n + b - 1) / b;
    GatherChunk(data.k, data, begin, n, blocks, spec.block_size, &k);
    GatherChunk(data.v, data, begin, n, blocks, spec.block_size, &v);
    const std::initializer_list<int64_t> shape = {spec.num_kv_heads, blocks, b, spec.head_dim};
    RETURN_IF_ERROR(store.AppendPrefill(kSequenceId, 0, TensorView(k.data(), spec.dtype, shape),
                                        TensorView(v.data(), spec.dtype, shape),
                                        static_cast<int>(n)));
  }
  return OkStatus();
}

Status AppendTokensUpTo(KvStore& store, const ModelSpec& spec, const Bf16Layer& data, int64_t end) {
  ASSIGN_OR_RETURN(int length, store.Length(kSequenceId, 0));
  if (end <= length) return OkStatus();
  const int64_t n = end - length;
  const size_t row = data.row_bytes();
  const size_t heads = static_cast<size_t>(data.kv_heads());
  // Token-major [n, Hkv, D].
  std::vector<std::byte> k(static_cast<size_t>(n) * heads * row);
  std::vector<std::byte> v(k.size());
  for (int64_t t = 0; t < n; ++t) {
    for (size_t h = 0; h < heads; ++h) {
      const size_t src = static_cast<size_t>(length + t) * row;
      const size_t dst = (static_cast<size_t>(t) * heads + h) * row;
      std::memcpy(k.data() + dst, data.k[h].data() + src, row);
      std::memcpy(v.data() + dst, data.v[h].data() + src, row);
    }
  }
  const std::initializer_list<int64_t> shape = {n, spec.num_kv_heads, spec.head_dim};
  return store.AppendTokens(kSequenceId, 0, TensorView(k.data(), spec.dtype, shape),
                            TensorView(v.data(), spec.dtype, shape));
}

}  // namespace attic::retrieval::eval::decode_internal
