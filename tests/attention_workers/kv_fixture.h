// Test fixtures for the attention kernels: random KV caches laid out as blocks, as the
// kvstore holds them, and random queries.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "attention_workers/decode_attention.h"
#include "common/dtype.h"

namespace attic::testing {

// A context of `tokens` tokens of one (layer, KV head) in blocks of `block` tokens.
struct BlockedKv {
  DType dtype = DType::kBFloat16;
  int head_dim = 0;
  int block = 0;
  int tokens = 0;
  std::vector<std::vector<std::byte>> k_blocks, v_blocks;  // each [block, D] storage dtype
  std::vector<KvRun> runs;                                  // one per block

  const std::byte* KRow(int t) const {
    return k_blocks[static_cast<size_t>(t / block)].data() +
           static_cast<size_t>(t % block) * head_dim * DTypeSize(dtype);
  }
  const std::byte* VRow(int t) const {
    return v_blocks[static_cast<size_t>(t / block)].data() +
           static_cast<size_t>(t % block) * head_dim * DTypeSize(dtype);
  }
};

// Fills from a token-major fp32 source: k_src/v_src [tokens, D] with row stride `stride`.
inline BlockedKv MakeBlockedKv(const float* k_src, const float* v_src, int tokens, int d,
                               size_t stride, int block, DType dtype) {
  BlockedKv kv;
  kv.dtype = dtype;
  kv.head_dim = d;
  kv.block = block;
  kv.tokens = tokens;
  const size_t row_bytes = static_cast<size_t>(d) * DTypeSize(dtype);
  for (int t0 = 0; t0 < tokens; t0 += block) {
    const int n = tokens - t0 < block ? tokens - t0 : block;
    std::vector<std::byte> kb(static_cast<size_t>(block) * row_bytes);
    std::vector<std::byte> vb(static_cast<size_t>(block) * row_bytes);
    for (int t = 0; t < n; ++t) {
      ConvertFromFloat(dtype, k_src + (t0 + t) * stride, kb.data() + t * row_bytes,
                       static_cast<size_t>(d));
      ConvertFromFloat(dtype, v_src + (t0 + t) * stride, vb.data() + t * row_bytes,
                       static_cast<size_t>(d));
    }
    kv.k_blocks.push_back(std::move(kb));
    kv.v_blocks.push_back(std::move(vb));
    kv.runs.push_back({kv.k_blocks.back().data(), kv.v_blocks.back().data(), n});
  }
  // Blocks moved into place: refresh the pointers.
  for (size_t b = 0; b < kv.runs.size(); ++b) {
    kv.runs[b].k = kv.k_blocks[b].data();
    kv.runs[b].v = kv.v_blocks[b].data();
  }
  return kv;
}

inline std::vector<float> RandomNormal(size_t n, uint64_t seed, float sigma = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(n);
  for (auto& v : x) v = dist(rng);
  return x;
}

inline BlockedKv RandomBlockedKv(int tokens, int d, int block, DType dtype, uint64_t seed) {
  const auto k = RandomNormal(static_cast<size_t>(tokens) * d, seed);
  const auto v = RandomNormal(static_cast<size_t>(tokens) * d, seed + 1);
  return MakeBlockedKv(k.data(), v.data(), tokens, d, static_cast<size_t>(d), block, dtype);
}

}  // namespace attic::testing
