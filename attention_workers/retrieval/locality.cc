#include "attention_workers/retrieval/locality.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <utility>

namespace attic::retrieval {
namespace {

// What one step knows about the blocks [0, num_blocks): residency (asked once per block), reads
// and use. Flags per block, so a step allocates one byte per block of the context and no hash
// tables.
class StepBlocks {
 public:
  StepBlocks(const ResidencyFn& resident, int64_t num_blocks)
      : resident_(resident), flags_(static_cast<size_t>(std::max<int64_t>(num_blocks, 0))) {}

  int64_t num_blocks() const { return static_cast<int64_t>(flags_.size()); }
  bool Resident(int b) {
    uint8_t& f = flags_[static_cast<size_t>(b)];
    if (!(f & kAsked)) f |= kAsked | (resident_(b) ? kResident : 0);
    return f & kResident;
  }
  bool Available(int b) { return (flags_[static_cast<size_t>(b)] & kFetched) || Resident(b); }
  void Fetch(int b) { flags_[static_cast<size_t>(b)] |= kFetched; }
  void Use(int b) {
    uint8_t& f = flags_[static_cast<size_t>(b)];
    if (!(f & kUsed)) used_.push_back(b);
    f |= kUsed;
  }
  // Marks b as prefetched; false if it already was.
  bool MarkPrefetched(int b) {
    uint8_t& f = flags_[static_cast<size_t>(b)];
    if (f & kPrefetched) return false;
    f |= kPrefetched;
    return true;
  }

  std::vector<int> UsedSorted() const {
    std::vector<int> v = used_;
    std::sort(v.begin(), v.end());
    return v;
  }

 private:
  static constexpr uint8_t kAsked = 1, kResident = 2, kFetched = 4, kUsed = 8, kPrefetched = 16;
  const ResidencyFn& resident_;
  std::vector<uint8_t> flags_;
  std::vector<int> used_;
};

struct Candidate {
  int32_t position;
  float score;
};

// Valid, distinct candidates in their given order (a repeated position keeps its first place).
std::vector<Candidate> ValidCandidates(const LocalityStepInput& in) {
  const size_t n = std::min(in.candidates.size(), in.scores.size());
  std::vector<std::pair<int32_t, size_t>> by_position;
  by_position.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const int32_t p = in.candidates[i];
    if (p >= 0 && p < in.length) by_position.push_back({p, i});
  }
  std::sort(by_position.begin(), by_position.end());
  std::vector<size_t> keep;
  keep.reserve(by_position.size());
  for (size_t j = 0; j < by_position.size(); ++j) {
    if (j == 0 || by_position[j].first != by_position[j - 1].first) {
      keep.push_back(by_position[j].second);
    }
  }
  std::sort(keep.begin(), keep.end());
  std::vector<Candidate> out;
  out.reserve(keep.size());
  for (size_t i : keep) out.push_back({in.candidates[i], in.scores[i]});
  return out;
}

// Candidates in the order they are considered: score, plus the slack bonus for those whose
// block is available before any of them is chosen; ties keep the search's order.
std::vector<size_t> PreferenceOrder(const std::vector<Candidate>& c, int top_k,
                                    const LocalityParams& p, StepBlocks* blocks) {
  std::vector<size_t> order(c.size());
  std::iota(order.begin(), order.end(), size_t{0});
  const size_t k = std::min(c.size(), static_cast<size_t>(std::max(top_k, 0)));
  if (k == 0 || p.score_slack <= 0.0f) return order;
  const double bonus = p.score_slack * std::max(0.0, double{c[0].score} - double{c[k - 1].score});
  if (!(bonus > 0.0)) return order;
  std::vector<double> eff(c.size());
  for (size_t i = 0; i < c.size(); ++i) {
    eff[i] = c[i].score + (blocks->Available(c[i].position / p.block_size) ? bonus : 0.0);
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return eff[a] > eff[b]; });
  return order;
}

// Neighbours of the blocks read for candidates, while the budget lasts.
std::vector<int> Prefetch(const std::vector<int>& read_for_candidates, int64_t budget_left,
                          StepBlocks* blocks) {
  std::vector<int> out;
  for (int b : read_for_candidates) {
    for (int nb : {b - 1, b + 1}) {
      if (budget_left <= 0) return out;
      if (nb < 0 || nb >= blocks->num_blocks() || blocks->Available(nb) ||
          !blocks->MarkPrefetched(nb)) {
        continue;
      }
      out.push_back(nb);
      --budget_left;
    }
  }
  return out;
}

}  // namespace

Status ValidateLocalityParams(const LocalityParams& p) {
  if (p.block_size < 1) {
    return InvalidArgumentError("locality: block_size " + std::to_string(p.block_size) +
                                " must be at least 1");
  }
  if (p.resident_blocks < 0 || p.fetch_budget < 0 || p.candidates < 0) {
    return InvalidArgumentError("locality: resident_blocks " + std::to_string(p.resident_blocks) +
                                ", fetch_budget " + std::to_string(p.fetch_budget) +
                                " and candidates " + std::to_string(p.candidates) +
                                " must not be negative");
  }
  if (!std::isfinite(p.score_slack) || p.score_slack < 0.0f) {
    return InvalidArgumentError("locality: score_slack " + std::to_string(p.score_slack) +
                                " must be finite and not negative");
  }
  return OkStatus();
}

int CandidateDepth(const LocalityParams& p, int top_k) {
  const int want = p.candidates > 0 ? p.candidates : 2 * top_k;
  return std::max(want, top_k);
}

ResidentSet::ResidentSet(int capacity) : capacity_(std::max(capacity, 0)) {}

bool ResidentSet::Touch(int block) {
  auto it = where_.find(block);
  if (it == where_.end()) return false;
  order_.splice(order_.begin(), order_, it->second);
  return true;
}

std::vector<int> ResidentSet::Insert(int block) {
  if (Touch(block)) return {};
  if (capacity_ == 0) return {block};
  std::vector<int> evicted;
  while (size() >= capacity_) {
    evicted.push_back(order_.back());
    where_.erase(order_.back());
    order_.pop_back();
  }
  order_.push_front(block);
  where_[block] = order_.begin();
  return evicted;
}

FetchPlan PlanLocalityFetch(const LocalityStepInput& in, const LocalityParams& p,
                            const ResidencyFn& resident) {
  FetchPlan plan;
  const int bs = p.block_size;
  StepBlocks blocks(resident, (std::max<int64_t>(in.length, 0) + bs - 1) / bs);
  const int64_t budget = p.fetch_budget > 0 ? p.fetch_budget : std::numeric_limits<int64_t>::max();
  int64_t reads = 0;
  // The fixed part is read whatever the budget says.
  for (int32_t pos : in.fixed) {
    if (pos < 0 || pos >= in.length) continue;
    const int b = pos / bs;
    blocks.Use(b);
    if (!blocks.Available(b)) {
      blocks.Fetch(b);
      ++reads;
    }
  }
  const std::vector<Candidate> cand = ValidCandidates(in);
  std::vector<int> read_for_candidates;
  const size_t top_k = static_cast<size_t>(std::max(in.top_k, 0));
  for (size_t i : PreferenceOrder(cand, in.top_k, p, &blocks)) {
    if (plan.retrieved.size() >= top_k) break;
    const int b = cand[i].position / bs;
    if (!blocks.Available(b)) {
      if (reads >= budget) {
        ++plan.dropped;
        continue;
      }
      blocks.Fetch(b);
      read_for_candidates.push_back(b);
      ++reads;
    }
    blocks.Use(b);
    plan.retrieved.push_back(cand[i].position);
  }
  plan.blocks_selected = blocks.UsedSorted();
  for (int b : plan.blocks_selected) {
    (blocks.Resident(b) ? plan.blocks_resident : plan.blocks_fetched).push_back(b);
  }
  if (p.prefetch_neighbours) {
    plan.blocks_prefetched = Prefetch(read_for_candidates, budget - reads, &blocks);
    std::sort(plan.blocks_prefetched.begin(), plan.blocks_prefetched.end());
  }
  return plan;
}

FetchPlan PlanLocalityFetch(const LocalityStepInput& input, const LocalityParams& params,
                            const ResidentSet& resident) {
  return PlanLocalityFetch(input, params, [&resident](int b) { return resident.Contains(b); });
}

std::vector<int> ApplyFetchPlan(const FetchPlan& plan, ResidentSet* resident) {
  // Touch the used resident blocks first so the insertions below cannot evict them (unless
  // the step needs more blocks than the set holds), and again at the end so they end on top.
  for (int b : plan.blocks_resident) resident->Touch(b);
  std::vector<int> evicted;
  auto insert = [&](const std::vector<int>& bs) {
    for (int b : bs) {
      for (int e : resident->Insert(b)) evicted.push_back(e);
    }
  };
  insert(plan.blocks_prefetched);
  insert(plan.blocks_fetched);
  for (int b : plan.blocks_resident) resident->Touch(b);
  return evicted;
}

}  // namespace attic::retrieval
