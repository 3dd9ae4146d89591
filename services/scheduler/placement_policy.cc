#include "services/scheduler/placement_policy.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <iterator>
#include <optional>
#include <tuple>
#include <utility>

namespace attic::scheduler {
namespace {

uint64_t Minus(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

std::string SeqName(uint64_t id) { return "sequence " + std::to_string(id); }

// "1.5 GiB", "800 MiB", "512 B".
std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  size_t unit = 0;
  while (v >= 1024.0 && unit + 1 < std::size(kUnits)) {
    v /= 1024.0;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), unit == 0 ? "%.0f %s" : "%.3g %s", v, kUnits[unit]);
  return buf;
}

// A candidate worker with what this request needs of it.
struct Candidate {
  size_t index = 0;
  const WorkerView* view = nullptr;
  uint64_t room = 0;       // KV bytes it can take, spilling to its SSD tier included
  uint64_t dram_room = 0;  // ... without spilling
  int run = 0;             // leading prompt blocks it probably holds
};

uint64_t Step(uint64_t room, uint64_t capacity, double step) {
  const double unit = static_cast<double>(capacity) * step;
  return unit >= 1.0 ? static_cast<uint64_t>(static_cast<double>(room) / unit) : 0;
}

// The headroom-then-load order: true when a should be preferred to b.
bool Better(const Candidate& a, const Candidate& b, double step) {
  const WorkerFigures& fa = a.view->figures;
  const WorkerFigures& fb = b.view->figures;
  const auto key = [step](const Candidate& c, const WorkerFigures& f) {
    return std::make_tuple(Step(c.dram_room, f.dram_capacity_bytes, step),
                           Step(c.room, f.dram_capacity_bytes, step));
  };
  const auto ka = key(a, fa);
  const auto kb = key(b, fb);
  if (ka != kb) return ka > kb;
  if (fa.queue_depth != fb.queue_depth) return fa.queue_depth < fb.queue_depth;
  if (fa.sequences != fb.sequences) return fa.sequences < fb.sequences;
  if (fa.attend_p99_us != fb.attend_p99_us) return fa.attend_p99_us < fb.attend_p99_us;
  if (a.room != b.room) return a.room > b.room;
  return a.view->name < b.view->name;
}

std::string Unavailable(const PlacementInput& in, std::span<const WorkerView> workers) {
  std::string why;
  for (const WorkerView& w : workers) {
    why += why.empty() ? "" : ", ";
    if (!w.alive) {
      why += w.name + " dead";
    } else if (!w.ready) {
      why += w.name + " not ready";
    } else {
      char fp[24];
      std::snprintf(fp, sizeof(fp), "0x%016" PRIx64, w.model_fingerprint);
      why += w.name + " serves model " + fp;
    }
  }
  return SeqName(in.sequence_id) + ": no live, ready worker serves its model" +
         (workers.empty() ? " (no worker registered)"
                          : " (" + std::to_string(workers.size()) + " known: " + why + ")");
}

}  // namespace

DefaultPlacementPolicy::DefaultPlacementPolicy(DefaultPlacementOptions options)
    : options_(options) {
  options_.min_prefix_blocks = std::max(options_.min_prefix_blocks, 1);
  options_.head_shard_workers = std::max(options_.head_shard_workers, 1);
  options_.headroom_step = std::clamp(options_.headroom_step, 1e-6, 1.0);
}

namespace {

// The whole decision for one request; a class so that the steps share the candidates.
class Planner {
 public:
  Planner(const DefaultPlacementOptions& options, const PlacementInput& in,
          std::span<const WorkerView> workers)
      : o_(options), in_(in), workers_(workers) {
    tokens_ = std::max<uint64_t>({in.expected_tokens, in.prompt_tokens, 1});
    for (size_t i = 0; i < workers.size(); ++i) {
      const WorkerView& w = workers[i];
      if (!w.alive || !w.ready) continue;
      if (in.model_fingerprint != 0 && w.model_fingerprint != in.model_fingerprint) continue;
      const WorkerFigures& f = w.figures;
      Candidate c{.index = i,
                  .view = &w,
                  .room = Minus(std::max(f.kv_free_bytes, f.dram_free_bytes), w.reserved_bytes),
                  .dram_room = Minus(f.dram_free_bytes, w.reserved_bytes)};
      const int summary_run =
          w.prefix != nullptr ? w.prefix->LeadingRun(in.prefix_scope, in.prompt_hashes) : 0;
      c.run = std::max(summary_run, w.recent_prefix_blocks);
      candidates_.push_back(c);
    }
    // Affine workers first (longest run), then the headroom-then-load order.
    std::sort(candidates_.begin(), candidates_.end(),
              [this](const Candidate& a, const Candidate& b) {
                const int ra = a.run >= o_.min_prefix_blocks ? a.run : 0;
                const int rb = b.run >= o_.min_prefix_blocks ? b.run : 0;
                if (ra != rb) return ra > rb;
                return Better(a, b, o_.headroom_step);
              });
  }

  StatusOr<PlacementDecision> Run() {
    if (candidates_.empty()) return UnavailableError(Unavailable(in_, workers_));
    if (std::optional<PlacementDecision> d = HeadShard()) return *d;
    if (std::optional<PlacementDecision> d = Affinity()) return *d;
    if (std::optional<PlacementDecision> d = Headroom()) return *d;
    if (std::optional<PlacementDecision> d = TokenSplit()) return *d;
    return Exhausted();
  }

 private:
  uint64_t Need(const Candidate& c, uint64_t tokens, uint32_t heads, uint32_t of_heads) const {
    const uint64_t bytes = tokens * c.view->figures.kv_bytes_per_token;
    return of_heads == 0 ? bytes : bytes / of_heads * heads;
  }
  uint64_t Need(const Candidate& c) const { return Need(c, tokens_, 0, 0); }

  PlacementDecision Single(const Candidate& c, std::string reason) const {
    PlacementDecision d;
    d.shards.push_back({.worker = c.index,
                        .kv_head_begin = 0,
                        .kv_head_end = c.view->num_kv_heads,
                        .bytes = Need(c)});
    d.prefix_blocks_matched = static_cast<uint64_t>(c.run);
    d.reason = std::move(reason);
    return d;
  }

  std::optional<PlacementDecision> HeadShard() const {
    if (o_.head_shard_min_tokens == 0 || tokens_ < o_.head_shard_min_tokens) return std::nullopt;
    const uint32_t heads = candidates_.front().view->num_kv_heads;
    const size_t most = std::min({static_cast<size_t>(o_.head_shard_workers),
                                  static_cast<size_t>(heads), candidates_.size()});
    for (size_t n = most; n >= 2; --n) {
      const auto per = static_cast<uint32_t>((heads + n - 1) / n);  // the largest share
      std::vector<const Candidate*> chosen;
      for (const Candidate& c : candidates_) {
        if (c.view->num_kv_heads == heads && c.room >= Need(c, tokens_, per, heads)) {
          chosen.push_back(&c);
        }
        if (chosen.size() == n) break;
      }
      if (chosen.size() < n) continue;
      PlacementDecision d;
      uint32_t begin = 0;
      for (size_t i = 0; i < n; ++i) {
        // The first heads % n shares get one head more.
        const auto share = static_cast<uint32_t>(heads / n + (i < heads % n ? 1 : 0));
        d.shards.push_back({.worker = chosen[i]->index,
                            .kv_head_begin = begin,
                            .kv_head_end = begin + share,
                            .bytes = Need(*chosen[i], tokens_, share, heads)});
        begin += share;
      }
      d.prefix_blocks_matched = static_cast<uint64_t>(chosen[0]->run);
      d.reason = "head-shard";
      return d;
    }
    return std::nullopt;
  }

  std::optional<PlacementDecision> Affinity() const {
    uint64_t shortest = UINT64_MAX;
    for (const Candidate& c : candidates_) {
      shortest = std::min(shortest, c.view->figures.queue_depth);
    }
    // Candidates are sorted by run first: the first affine one that qualifies has the longest.
    for (const Candidate& c : candidates_) {
      if (c.run < o_.min_prefix_blocks) break;
      if (c.room < Need(c)) continue;
      if (c.view->figures.queue_depth > shortest + o_.affinity_max_queue_gap) continue;
      return Single(c, "prefix-affinity");
    }
    return std::nullopt;
  }

  std::optional<PlacementDecision> Headroom() const {
    const Candidate* best = nullptr;
    for (const Candidate& c : candidates_) {
      if (c.room < Need(c)) continue;
      if (best == nullptr || Better(c, *best, o_.headroom_step)) best = &c;
    }
    if (best == nullptr) return std::nullopt;
    return Single(*best, "headroom");
  }

  std::optional<PlacementDecision> TokenSplit() const;
  Status Exhausted() const;

  const DefaultPlacementOptions& o_;
  const PlacementInput& in_;
  std::span<const WorkerView> workers_;
  uint64_t tokens_ = 0;
  std::vector<Candidate> candidates_;
};

std::optional<PlacementDecision> Planner::TokenSplit() const {
  std::vector<const Candidate*> by_room;
  for (const Candidate& c : candidates_) {
    if (c.room > 0 && c.view->figures.kv_bytes_per_token > 0) by_room.push_back(&c);
  }
  std::sort(by_room.begin(), by_room.end(), [](const Candidate* a, const Candidate* b) {
    return a->room != b->room ? a->room > b->room : a->view->name < b->view->name;
  });
  // The fewest workers whose room covers the need.
  const uint64_t bpt = by_room.empty() ? 0 : by_room.front()->view->figures.kv_bytes_per_token;
  const uint64_t need = tokens_ * bpt;
  uint64_t total = 0;
  size_t n = 0;
  while (n < by_room.size() && total < need) total += by_room[n++]->room;
  if (n < 2 || total < need) return std::nullopt;
  const uint64_t block = std::max<uint64_t>(by_room.front()->view->figures.block_tokens, 1);
  PlacementDecision d;
  uint64_t before = 0;  // room of the shards placed so far
  for (size_t i = 0; i < n; ++i) {
    const Candidate& c = *by_room[i];
    // Bounds proportional to room, aligned down to whole blocks.
    const auto begin =
        static_cast<uint64_t>(static_cast<long double>(tokens_) * before / total) / block * block;
    before += c.room;
    const auto end =
        static_cast<uint64_t>(static_cast<long double>(tokens_) * before / total) / block * block;
    if (i + 1 < n && end <= begin) continue;  // a share under one block: the next one takes it
    if (!d.shards.empty()) d.shards.back().token_end = static_cast<int64_t>(begin);
    d.shards.push_back({.worker = c.index,
                        .kv_head_begin = 0,
                        .kv_head_end = c.view->num_kv_heads,
                        .token_begin = begin,
                        .token_end = -1,
                        .bytes = (i + 1 < n ? end - begin : tokens_ - begin) * bpt});
  }
  if (d.shards.size() < 2) return std::nullopt;
  const Candidate& first = *by_room.front();
  d.prefix_blocks_matched = std::min<uint64_t>(
      static_cast<uint64_t>(first.run), static_cast<uint64_t>(d.shards[0].token_end) / block);
  d.reason = "token-split";
  return d;
}

Status Planner::Exhausted() const {
  const Candidate* best = &candidates_.front();
  uint64_t total = 0;
  for (const Candidate& c : candidates_) {
    total += c.room;
    if (c.room > best->room) best = &c;
  }
  const uint64_t bpt = best->view->figures.kv_bytes_per_token;
  return ResourceExhaustedError(SeqName(in_.sequence_id) + " needs " + HumanBytes(tokens_ * bpt) +
                                " (" + std::to_string(tokens_) + " tokens x " +
                                std::to_string(bpt) + " bytes): the most room on one worker is " +
                                HumanBytes(best->room) + " (" + best->view->name + "), " +
                                HumanBytes(total) + " over " + std::to_string(candidates_.size()) +
                                " live workers");
}

}  // namespace

StatusOr<PlacementDecision> DefaultPlacementPolicy::Place(
    const PlacementInput& input, std::span<const WorkerView> workers) const {
  return Planner(options_, input, workers).Run();
}

}  // namespace attic::scheduler
