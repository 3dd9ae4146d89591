// ModelSpec: the attention shape of one model, as the KV store and kernels see it.
//
//   ModelSpec spec{.name = "llama-3-8b", .num_layers = 32, .num_q_heads = 32,
//                  .num_kv_heads = 8, .head_dim = 128, .dtype = DType::kBFloat16};
//   RETURN_IF_ERROR(spec.Validate());
//   float scale = spec.EffectiveScale();   // 1/sqrt(128) unless softmax_scale is set
//
// Thread safety: a value type.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/dtype.h"
#include "common/status.h"

namespace attic {

struct ModelSpec {
  // Free-form model name, used in fingerprints and messages.
  std::string name;
  // Transformer layers L. 1..4096.
  int num_layers = 0;
  // Query heads Hq. A multiple of num_kv_heads.
  int num_q_heads = 0;
  // KV heads Hkv. The GQA group size is G = Hq / Hkv, at most kMaxGroupSize.
  int num_kv_heads = 0;
  // Head dimension D. A multiple of 32 in [32, 512] (the kernels' vector width).
  int head_dim = 0;
  // Storage dtype of K and V in the KV cache and on the wire.
  DType dtype = DType::kBFloat16;
  // Tokens per KV block B. A multiple of 16 in [16, 1024]; 64 is the default.
  int block_size = 64;
  // Softmax scale applied to q.k. 0 means the usual 1/sqrt(D).
  float softmax_scale = 0.0f;

  static constexpr int kMaxGroupSize = 128;

  int group_size() const { return num_kv_heads > 0 ? num_q_heads / num_kv_heads : 0; }
  float EffectiveScale() const;
  // Bytes of one K (or V) block: B * D * sizeof(dtype).
  size_t block_bytes() const {
    return static_cast<size_t>(block_size) * static_cast<size_t>(head_dim) * DTypeSize(dtype);
  }
  // Bytes of K and V of one token over every layer and KV head: 2 * L * Hkv * D * sizeof(dtype).
  uint64_t kv_bytes_per_token() const {
    return 2 * static_cast<uint64_t>(num_layers) * static_cast<uint64_t>(num_kv_heads) *
           static_cast<uint64_t>(head_dim) * DTypeSize(dtype);
  }
  // InvalidArgument naming the first field out of range.
  Status Validate() const;
  // A stable 64-bit digest of every field (name included), for prefix-cache scoping.
  uint64_t Fingerprint() const;
  std::string ToString() const;

  friend bool operator==(const ModelSpec&, const ModelSpec&) = default;
};

// The scope prefix-cache blocks are shared within: a digest of tenant, model fingerprint (0 =
// derive from spec) and spec. Workers key their prefix caches by it; the scheduler's prefix
// summaries use it too.
uint64_t ScopeFingerprint(std::string_view tenant, uint64_t model_fingerprint,
                          const ModelSpec& spec);

}  // namespace attic
