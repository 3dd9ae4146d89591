// ShardPlan factories and validation (client/client.h).
#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "client/client.h"

namespace attic {
namespace {

std::string ShardName(size_t index, const Shard& s) {
  return "shard " + std::to_string(index) + " (worker " + std::to_string(s.worker) + ")";
}

std::string Range(int64_t begin, int64_t end) {
  return "[" + std::to_string(begin) + ", " + (end < 0 ? "inf" : std::to_string(end)) + ")";
}

Status PlanError(const std::string& what) { return InvalidArgumentError("shard plan: " + what); }

// The per-shard rules: indices in range and token bounds B-aligned.
Status CheckShard(size_t index, const Shard& s, const ModelSpec& spec, int num_workers) {
  const std::string name = ShardName(index, s);
  if (s.worker < 0 || s.worker >= num_workers) {
    return PlanError(name + ": worker index is not in [0, " + std::to_string(num_workers) + ")");
  }
  if (s.kv_head_begin < 0 || s.kv_head_begin >= s.kv_head_end ||
      s.kv_head_end > spec.num_kv_heads) {
    return PlanError(name + ": KV heads " + Range(s.kv_head_begin, s.kv_head_end) +
                     " are not a non-empty range within [0, " + std::to_string(spec.num_kv_heads) +
                     ")");
  }
  const int64_t b = spec.block_size;
  const bool end_ok = s.token_end == -1 || (s.token_end > s.token_begin && s.token_end % b == 0);
  if (s.token_begin < 0 || s.token_begin % b != 0 || !end_ok) {
    return PlanError(
        name + ": tokens " + Range(s.token_begin, s.token_end) +
        " are not a non-empty range with bounds that are multiples of B = " + std::to_string(b));
  }
  return OkStatus();
}

// A worker keys a sequence by its id, so it can hold one shard of a sequence at most.
Status CheckOneShardPerWorker(const std::vector<Shard>& shards) {
  std::map<int, size_t> first_shard;
  for (size_t i = 0; i < shards.size(); ++i) {
    auto [it, inserted] = first_shard.emplace(shards[i].worker, i);
    if (!inserted) {
      return PlanError(ShardName(it->second, shards[it->second]) + " and " +
                       ShardName(i, shards[i]) +
                       " are on the same worker, which can hold one shard of a sequence");
    }
  }
  return OkStatus();
}

// Distinct head ranges must be disjoint and cover [0, Hkv) (token shards merge per range).
Status CheckHeadRanges(const std::vector<Shard>& shards, int num_kv_heads) {
  std::vector<std::pair<int, int>> ranges;
  for (const Shard& s : shards) ranges.emplace_back(s.kv_head_begin, s.kv_head_end);
  std::sort(ranges.begin(), ranges.end());
  ranges.erase(std::unique(ranges.begin(), ranges.end()), ranges.end());
  int covered = 0;
  for (const auto& [begin, end] : ranges) {
    if (begin < covered) {
      return PlanError("KV head ranges overlap at head " + std::to_string(begin) +
                       " without being equal");
    }
    if (begin > covered) return PlanError("KV head " + std::to_string(covered) + " has no shard");
    covered = end;
  }
  if (covered != num_kv_heads) {
    return PlanError("KV head " + std::to_string(covered) + " has no shard");
  }
  return OkStatus();
}

// The shards of one head range must tile [0, inf): contiguous, the last one open-ended.
Status CheckTokenTiling(const std::vector<Shard>& shards, std::vector<size_t> members) {
  std::sort(members.begin(), members.end(),
            [&](size_t a, size_t b) { return shards[a].token_begin < shards[b].token_begin; });
  const Shard& first = shards[members.front()];
  const std::string heads = "KV heads " + Range(first.kv_head_begin, first.kv_head_end);
  int64_t next = 0;
  for (size_t i : members) {
    const Shard& s = shards[i];
    if (next == -1 || s.token_begin != next) {
      return PlanError(heads + ": " + ShardName(i, s) + " holds tokens " +
                       Range(s.token_begin, s.token_end) + " but the previous shards end at " +
                       (next == -1 ? std::string("inf") : std::to_string(next)));
    }
    next = s.token_end;
  }
  if (next != -1) {
    return PlanError(heads + ": tokens from " + std::to_string(next) + " on have no shard");
  }
  return OkStatus();
}

}  // namespace

ShardPlan ShardPlan::Single(const ModelSpec& spec, int worker) {
  return ShardPlan{.shards = {Shard{.worker = worker, .kv_head_end = spec.num_kv_heads}}};
}

ShardPlan ShardPlan::SplitHeads(const ModelSpec& spec, const std::vector<int>& workers) {
  ShardPlan plan;
  const int n = std::min(static_cast<int>(workers.size()), spec.num_kv_heads);
  if (n <= 0) return plan;
  // The first (Hkv % n) workers take one head more than the others.
  const int base = spec.num_kv_heads / n;
  const int extra = spec.num_kv_heads % n;
  int begin = 0;
  for (int i = 0; i < n; ++i) {
    const int end = begin + base + (i < extra ? 1 : 0);
    plan.shards.push_back(Shard{
        .worker = workers[static_cast<size_t>(i)], .kv_head_begin = begin, .kv_head_end = end});
    begin = end;
  }
  return plan;
}

ShardPlan ShardPlan::SplitTokens(const ModelSpec& spec, const std::vector<int>& workers,
                                 const std::vector<int64_t>& bounds) {
  ShardPlan plan;
  if (bounds.size() != workers.size()) return plan;
  for (size_t i = 0; i < workers.size(); ++i) {
    plan.shards.push_back(Shard{.worker = workers[i],
                                .kv_head_end = spec.num_kv_heads,
                                .token_begin = bounds[i],
                                .token_end = i + 1 < bounds.size() ? bounds[i + 1] : -1});
  }
  return plan;
}

Status ShardPlan::Validate(const ModelSpec& spec, int num_workers) const {
  RETURN_IF_ERROR(spec.Validate());
  if (shards.empty()) return PlanError("no shards");
  for (size_t i = 0; i < shards.size(); ++i) {
    RETURN_IF_ERROR(CheckShard(i, shards[i], spec, num_workers));
  }
  RETURN_IF_ERROR(CheckOneShardPerWorker(shards));
  RETURN_IF_ERROR(CheckHeadRanges(shards, spec.num_kv_heads));
  std::map<std::pair<int, int>, std::vector<size_t>> by_heads;
  for (size_t i = 0; i < shards.size(); ++i) {
    by_heads[{shards[i].kv_head_begin, shards[i].kv_head_end}].push_back(i);
  }
  for (auto& [heads, members] : by_heads) {
    RETURN_IF_ERROR(CheckTokenTiling(shards, std::move(members)));
  }
  return OkStatus();
}

}  // namespace attic
