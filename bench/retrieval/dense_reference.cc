#include "bench/retrieval/dense_reference.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "attention_workers/decode_attention.h"
#include "bench/bench_report.h"

namespace attic::retrieval::eval {
CacheEvictor::CacheEvictor() : buffer_(3 * bench::LastLevelCacheBytes() / sizeof(uint64_t), 1) {}

// Reads and writes (so the lines are owned) one word per cache line.
void CacheEvictor::Evict() {
  uint64_t sum = 0;
  for (size_t i = 0; i < buffer_.size(); i += 8) {
    sum += buffer_[i];
    buffer_[i] = sum;
  }
}

StatusOr<double> DenseLatencyUs(const Dataset& ds, const LayerData& layer, int kv_head,
                                int64_t context, int reps, bool cold) {
  if (context > layer.num_tokens || context < 1) {
    return InvalidArgumentError("dense reference: context " + std::to_string(context) +
                                " outside the dump");
  }
  CacheEvictor evict;
  const KeyRows keys = layer.key_rows(kv_head);
  const KvRun run{.k = keys.blocks[0], .v = layer.values_or_keys(kv_head),
                  .num_tokens = static_cast<int>(context)};
  const float* q = layer.q_decode.data() + static_cast<size_t>(kv_head) * ds.group_size * ds.head_dim;
  std::vector<float> out(static_cast<size_t>(ds.group_size) * ds.head_dim);
  std::vector<float> lse(static_cast<size_t>(ds.group_size));
  std::vector<double> us;
  const auto pass = [&] {
    return DecodeAttention({.q = q, .group_size = ds.group_size, .head_dim = ds.head_dim,
                            .dtype = keys.dtype, .scale = ds.scale,
                            .runs = std::span<const KvRun>(&run, 1), .out = out.data(),
                            .lse = lse.data()});
  };
  if (!cold) RETURN_IF_ERROR(pass());
  for (int r = 0; r < std::max(1, reps); ++r) {
    if (cold) evict.Evict();
    const auto t0 = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(pass());
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                     .count());
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

}  // namespace attic::retrieval::eval
