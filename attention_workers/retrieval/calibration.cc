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

}  // namespace

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
  Calibration c{.queries = n, .target = options.target};
  for (const int effort : options.efforts) {
    std::vector<double> recall(static_cast<size_t>(n), 0.0);
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
    });
    for (const Status& s : status) RETURN_IF_ERROR(s);
    double sum = 0.0;
    for (const double r : recall) sum += r;
    c.effort = effort;
    c.recall = sum / n;
    if (c.recall >= options.target) {
      c.met = true;
      break;
    }
  }
  return c;
}

}  // namespace attic::retrieval
