#include "client/internal/routing.h"

#include <algorithm>
#include <limits>
#include <map>
#include <string>
#include <utility>

namespace attic::client_internal {
namespace {

int64_t TokenEnd(const Shard& s) {
  return s.token_end < 0 ? std::numeric_limits<int64_t>::max() : s.token_end;
}

}  // namespace

std::vector<HeadRange> HeadRanges(const ShardPlan& plan) {
  std::map<std::pair<int, int>, HeadRange> by_heads;
  for (size_t i = 0; i < plan.shards.size(); ++i) {
    const Shard& s = plan.shards[i];
    HeadRange& r = by_heads[{s.kv_head_begin, s.kv_head_end}];
    r.kv_head_begin = s.kv_head_begin;
    r.kv_head_end = s.kv_head_end;
    r.shards.push_back(i);
  }
  std::vector<HeadRange> ranges;
  for (auto& [heads, r] : by_heads) {
    std::sort(r.shards.begin(), r.shards.end(), [&](size_t a, size_t b) {
      return plan.shards[a].token_begin < plan.shards[b].token_begin;
    });
    ranges.push_back(std::move(r));
  }
  return ranges;
}

size_t OpenEndedShard(const ShardPlan& plan, const HeadRange& range) {
  for (size_t i : range.shards) {
    if (plan.shards[i].token_end < 0) return i;
  }
  return range.shards.back();  // unreachable for a validated plan
}

std::span<const uint64_t> ShardHashes(const Shard& shard, std::span<const uint64_t> hashes,
                                      int block_size) {
  const auto size = static_cast<int64_t>(hashes.size());
  const int64_t begin = std::min(shard.token_begin / block_size, size);
  const int64_t end = shard.token_end < 0 ? size : std::min(shard.token_end / block_size, size);
  return hashes.subspan(static_cast<size_t>(begin), static_cast<size_t>(end - begin));
}

int64_t CombinePrefixMatch(const ShardPlan& plan, const std::vector<HeadRange>& ranges,
                           std::span<const int64_t> matched) {
  int64_t best = std::numeric_limits<int64_t>::max();
  for (const HeadRange& r : ranges) {
    int64_t contiguous = 0;
    for (size_t i : r.shards) {
      const Shard& s = plan.shards[i];
      contiguous += matched[i];
      // A later shard's hits are not contiguous with token 0 unless this one is full.
      if (s.token_end < 0 || matched[i] < s.token_end - s.token_begin) break;
    }
    best = std::min(best, contiguous);
  }
  return ranges.empty() ? 0 : best;
}

Status CheckPrefillStart(int64_t first, int64_t length, int64_t prefix) {
  if (first == length || (first >= 0 && first < length && length <= prefix)) return OkStatus();
  return FailedPreconditionError("prefill starts at token " + std::to_string(first) +
                                 " but the layer holds " + std::to_string(length) + " tokens");
}

StatusOr<std::vector<ShardSlice>> RoutePrefill(const ShardPlan& plan,
                                               std::span<const int64_t> local_len, int64_t first,
                                               int64_t n) {
  std::vector<ShardSlice> slices;
  for (size_t i = 0; i < plan.shards.size(); ++i) {
    const Shard& s = plan.shards[i];
    const int64_t held_end = s.token_begin + local_len[i];
    const int64_t begin = std::max(first, held_end);
    const int64_t end = std::min(first + n, TokenEnd(s));
    if (end <= begin) continue;
    const std::string who = "shard " + std::to_string(i) + " (worker " + std::to_string(s.worker) +
                            ") holds tokens [" + std::to_string(s.token_begin) + ", " +
                            std::to_string(held_end) + ")";
    if (begin != held_end) {
      return FailedPreconditionError(who + ": a prefill from token " + std::to_string(begin) +
                                     " would leave a gap");
    }
    slices.push_back(ShardSlice{.shard = i, .begin = begin, .end = end});
  }
  return slices;
}

int64_t TokensPerMessage(int heads, int block_size, int head_dim, DType dtype,
                         size_t max_payload_bytes) {
  const size_t block_pair_bytes = 2 * static_cast<size_t>(heads) * static_cast<size_t>(block_size) *
                                  static_cast<size_t>(head_dim) * DTypeSize(dtype);
  const size_t blocks = std::max<size_t>(1, max_payload_bytes / block_pair_bytes);
  return static_cast<int64_t>(blocks) * block_size;
}

}  // namespace attic::client_internal
