#include "attention_workers/retrieval/calibration.h"

#include <algorithm>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "attention_workers/thread_pool.h"

namespace attic::retrieval {
namespace {

void ForEach(ThreadPool* pool, int n, const std::function<void(int64_t)>& fn) {
  if (pool != nullptr) {
    pool->ParallelFor(n, fn);
  } else {
    for (int i = 0; i < n; ++i) fn(i);
  }
}

QuerySample View(const std::vector<float>& q, const std::vector<int32_t>& positions, int group,
                 int d) {
  const int per = group * d;
  return {.q = q.data(),
          .num_queries = per > 0 ? static_cast<int>(q.size() / static_cast<size_t>(per)) : 0,
          .group_size = group,
          .head_dim = d,
          .positions = positions};
}

}  // namespace

QuerySample HeldOutSplit::train() const {
  return View(train_q, train_positions, group_size, head_dim);
}
QuerySample HeldOutSplit::held_out() const {
  return View(held_q, held_positions, group_size, head_dim);
}

HeldOutSplit SplitHeldOut(const QuerySample& sample, int queries) {
  HeldOutSplit s{.group_size = sample.group_size, .head_dim = sample.head_dim};
  const int n = sample.num_queries;
  const int half = n - n / 2;  // the second half: queries [n / 2, n)
  const int held = std::clamp(queries, 0, half);
  const int stride = held > 0 ? std::max(1, half / held) : 1;
  std::vector<uint8_t> is_held(static_cast<size_t>(n), 0);
  for (int i = 0; i < held; ++i) is_held[static_cast<size_t>(n - 1 - i * stride)] = 1;
  const size_t per = static_cast<size_t>(sample.group_size) * sample.head_dim;
  s.train_q.reserve((static_cast<size_t>(n) - held) * per);
  s.held_q.reserve(static_cast<size_t>(held) * per);
  for (int i = 0; i < n; ++i) {
    const float* q = sample.q + static_cast<size_t>(i) * per;
    const bool h = is_held[static_cast<size_t>(i)] != 0;
    (h ? s.held_q : s.train_q).insert((h ? s.held_q : s.train_q).end(), q, q + per);
    if (!sample.positions.empty()) {
      (h ? s.held_positions : s.train_positions).push_back(sample.positions[static_cast<size_t>(i)]);
    }
  }
  return s;
}

StatusOr<Calibration> CalibrateEffort(const KeyIndex& index, const KeyRows& keys,
                                      const QuerySample& held_out,
                                      const CalibrationOptions& options) {
  if (options.efforts.empty() || options.top_k < 1) {
    return InvalidArgumentError("calibration: no efforts, or top_k < 1");
  }
  if (held_out.empty() || held_out.q == nullptr || held_out.head_dim != keys.head_dim) {
    return InvalidArgumentError("calibration: empty sample, or head_dim " +
                                std::to_string(held_out.head_dim) + " for keys of head_dim " +
                                std::to_string(keys.head_dim));
  }
  const int n = held_out.num_queries;
  const int64_t indexed = std::min(index.size(), keys.count);
  // Each query's exact top k, sorted by position for the intersection.
  std::vector<std::vector<int32_t>> truth(static_cast<size_t>(n));
  std::vector<int64_t> limit(static_cast<size_t>(n), indexed);
  if (options.causal_window > 0 && !held_out.positions.empty()) {
    for (int i = 0; i < n; ++i) {
      const int64_t p = held_out.positions[static_cast<size_t>(i)];
      limit[static_cast<size_t>(i)] =
          std::clamp<int64_t>(p + 1 - options.causal_window, 0, indexed);
    }
  }
  ForEach(options.pool, n, [&](int64_t i) {
    const GroupScorer scorer(held_out.query(static_cast<int>(i)), keys.dtype, options.isa);
    const int64_t end = limit[static_cast<size_t>(i)];
    std::vector<float> scores(static_cast<size_t>(end));
    scorer.ScoreRange(keys, 0, end, scores.data());
    std::vector<int32_t> top = TopKPositions(scores, options.top_k);
    std::sort(top.begin(), top.end());
    truth[static_cast<size_t>(i)] = std::move(top);
  });
  // Which truth keys are far (sorted like truth).
  const bool far_check = options.far_distance > 0 && !held_out.positions.empty();
  int64_t far_total = 0, total = 0;
  for (int i = 0; i < n; ++i) {
    const std::vector<int32_t>& t = truth[static_cast<size_t>(i)];
    total += static_cast<int64_t>(t.size());
    if (!far_check) continue;
    const int64_t far_end = limit[static_cast<size_t>(i)] - options.far_distance;
    far_total += std::count_if(t.begin(), t.end(), [far_end](int32_t p) { return p < far_end; });
  }
  const double far_share = total > 0 ? static_cast<double>(far_total) / total : 0.0;
  const bool far_measured = far_check && far_total > 0 && far_share >= options.min_far_share;
  // The calibration at one effort.
  const auto measure = [&](int effort) -> StatusOr<Calibration> {
    std::vector<double> recall(static_cast<size_t>(n), 0.0);
    std::vector<int64_t> far_hits(static_cast<size_t>(n), 0);
    std::vector<Status> status(static_cast<size_t>(n));
    ForEach(options.pool, n, [&](int64_t i) {
      const GroupScorer scorer(held_out.query(static_cast<int>(i)), keys.dtype, options.isa);
      const int64_t end = limit[static_cast<size_t>(i)];
      SearchResult r;
      status[static_cast<size_t>(i)] =
          index.Search(keys, scorer,
                       {.top_k = options.top_k,
                        .effort = effort,
                        .position_limit = end < indexed ? std::max<int64_t>(end, 1) : 0},
                       &r);
      std::erase_if(r.positions, [end](int32_t p) { return p >= end; });
      std::sort(r.positions.begin(), r.positions.end());
      const std::vector<int32_t>& t = truth[static_cast<size_t>(i)];
      std::vector<int32_t> both;
      std::set_intersection(r.positions.begin(), r.positions.end(), t.begin(), t.end(),
                            std::back_inserter(both));
      recall[static_cast<size_t>(i)] =
          t.empty() ? 1.0 : static_cast<double>(both.size()) / static_cast<double>(t.size());
      const int64_t far_end = end - options.far_distance;
      far_hits[static_cast<size_t>(i)] =
          std::count_if(both.begin(), both.end(), [far_end](int32_t p) { return p < far_end; });
    });
    for (const Status& st : status) RETURN_IF_ERROR(st);
    double sum = 0.0;
    for (const double r : recall) sum += r;
    int64_t far = 0;
    for (const int64_t h : far_hits) far += h;
    Calibration c{.queries = n,
                  .effort = effort,
                  .recall = sum / n,
                  .far_share = far_share,
                  .recall_far = far_measured ? static_cast<double>(far) / far_total : -1.0,
                  .target = options.target};
    c.met = c.recall >= options.target && (!far_measured || c.recall_far >= options.target);
    return c;
  };
  // Recall grows with effort: the most effort first (when it misses, nothing meets the
  // target), then a bisection for the cheapest that meets it.
  const std::span<const int> efforts = options.efforts;
  ASSIGN_OR_RETURN(Calibration best, measure(efforts.back()));
  if (!best.met) return best;
  size_t lo = 0, hi = efforts.size() - 1;  // efforts[hi] meets the target
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    ASSIGN_OR_RETURN(Calibration c, measure(efforts[mid]));
    if (c.met) {
      best = c;
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return best;
}

}  // namespace attic::retrieval
