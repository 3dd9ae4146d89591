#include "attention_workers/retrieval/head_profile.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <vector>

#include "attention_workers/thread_pool.h"

namespace attic::retrieval {
namespace {

struct QueryStats {
  std::vector<double> key_fraction;  // per head
  std::vector<double> oracle_mass;   // per head
  int64_t context = 0;
};

// Softmax probabilities of scale * logits, in place.
void Softmax(float scale, std::vector<float>& v) {
  const float top = *std::max_element(v.begin(), v.end());
  double sum = 0.0;
  for (float& x : v) {
    x = std::exp(scale * (x - top));
    sum += x;
  }
  for (float& x : v) x = static_cast<float>(x / sum);
}

// Fraction of probs needed, largest first, to reach target mass.

QueryStats ProfileQuery(const KeyRows& keys, const QueryGroup& group, int64_t length,
                        float scale, const ProfileOptions& options) {
  QueryStats s;
  s.context = length;
  std::vector<std::vector<float>> head(group.group_size, std::vector<float>(length));
  std::vector<float> group_max(static_cast<size_t>(length), -INFINITY);
  for (int g = 0; g < group.group_size; ++g) {
    const GroupScorer scorer({.q = group.q + static_cast<size_t>(g) * group.head_dim,
                              .group_size = 1, .head_dim = group.head_dim},
                             keys.dtype);
    scorer.ScoreRange(keys, 0, length, head[g].data());
    for (int64_t t = 0; t < length; ++t) group_max[t] = std::max(group_max[t], head[g][t]);
  }
  const std::vector<int32_t> top = TopKPositions(group_max, options.selection.top_k);
  SelectionParams sel = options.selection;
  sel.exclude_window = false;
  const std::vector<int32_t> chosen =
      BuildSelection({.length = length, .indexed = length, .retrieved = top}, sel);
  for (int g = 0; g < group.group_size; ++g) {
    Softmax(scale, head[g]);
    double mass = 0.0;
    for (int32_t t : chosen) mass += head[g][t];
    s.oracle_mass.push_back(mass);
    s.key_fraction.push_back(KeyFractionForMass(std::move(head[g]), options.mass_target));
  }
  return s;
}

HeadProfile Summarize(const std::vector<QueryStats>& stats, const ProfileOptions& options) {
  HeadProfile p;
  p.min_oracle_mass = 1.0;
  int64_t heads = 0;
  for (const QueryStats& s : stats) {
    if (s.context == 0) continue;
    ++p.queries;
    p.mean_context += static_cast<double>(s.context);
    for (size_t g = 0; g < s.key_fraction.size(); ++g, ++heads) {
      p.key_fraction += s.key_fraction[g];
      p.oracle_mass += s.oracle_mass[g];
      p.max_key_fraction = std::max(p.max_key_fraction, s.key_fraction[g]);
      p.min_oracle_mass = std::min(p.min_oracle_mass, s.oracle_mass[g]);
    }
  }
  if (p.queries == 0) return HeadProfile{};
  p.has_evidence = true;
  p.mean_context /= p.queries;
  p.key_fraction /= static_cast<double>(heads);
  p.oracle_mass /= static_cast<double>(heads);
  p.dense = p.oracle_mass < options.min_oracle_mass || p.key_fraction > options.max_key_fraction;
  return p;
}

Status ValidateProfile(const KeyRows& keys, const QuerySample& sample,
                       const ProfileOptions& options) {
  RETURN_IF_ERROR(ValidateKeyRows(keys));
  RETURN_IF_ERROR(ValidateSelectionParams(options.selection));
  if (options.scale < 0 || options.max_queries < 0 || !(options.mass_target > 0) ||
      options.mass_target > 1) {
    return InvalidArgumentError("head profile: invalid scale, query count or mass target");
  }
  if (!sample.empty() &&
      (sample.q == nullptr || sample.head_dim != keys.head_dim || sample.group_size < 1 ||
       sample.group_size > 128 ||
       (!sample.positions.empty() &&
        static_cast<int>(sample.positions.size()) != sample.num_queries))) {
    return InvalidArgumentError("head profile: query sample does not match the keys");
  }
  return OkStatus();
}

}  // namespace

// A selection rather than a sort (the profile runs on every build, and sorting every query
// head's context dominated it): halve the range with nth_element, keep the upper half whole
// when it holds less than the mass still needed, else look only inside it; sort the last
// few. Expected linear time.
double KeyFractionForMass(std::vector<float> probs, double target) {
  const size_t n = probs.size();
  if (n == 0) return 0.0;
  size_t lo = 0, hi = n;  // [0, lo) taken, each >= everything in [lo, n); answer in (lo, hi]
  double need = target;
  while (hi - lo > 64) {
    const size_t mid = lo + (hi - lo) / 2;
    std::nth_element(probs.begin() + static_cast<std::ptrdiff_t>(lo),
                     probs.begin() + static_cast<std::ptrdiff_t>(mid),
                     probs.begin() + static_cast<std::ptrdiff_t>(hi), std::greater<>());
    double upper = 0.0;
    for (size_t i = lo; i < mid; ++i) upper += probs[i];
    if (upper >= need) {
      hi = mid;
    } else {
      need -= upper;
      lo = mid;
    }
  }
  std::sort(probs.begin() + static_cast<std::ptrdiff_t>(lo),
            probs.begin() + static_cast<std::ptrdiff_t>(hi), std::greater<>());
  double mass = 0.0;
  size_t i = lo;
  while (i < hi && mass < need) mass += probs[i++];
  return static_cast<double>(i) / static_cast<double>(n);
}

std::string HeadProfile::ToString() const {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "dense=%d evidence=%d queries=%d ctx=%.0f keys90=%.3f keys90_max=%.3f "
                "oracle_mass=%.3f oracle_mass_min=%.3f",
                dense ? 1 : 0, has_evidence ? 1 : 0, queries, mean_context, key_fraction,
                max_key_fraction, oracle_mass, min_oracle_mass);
  return buf;
}

StatusOr<HeadProfile> ProfileHead(const KeyRows& keys, const QuerySample& sample,
                                  const ProfileOptions& options) {
  RETURN_IF_ERROR(ValidateProfile(keys, sample, options));
  const float scale = options.scale > 0 ? options.scale
                                        : 1.0f / std::sqrt(static_cast<float>(keys.head_dim));
  // The last max_queries sample queries whose context is long enough.
  std::vector<int> chosen;
  for (int s = sample.num_queries - 1;
       s >= 0 && static_cast<int>(chosen.size()) < options.max_queries; --s) {
    const int64_t pos = sample.positions.empty() ? keys.count - 1 : sample.positions[s];
    if (pos >= options.min_position && pos < keys.count) chosen.push_back(s);
  }
  std::vector<QueryStats> stats(chosen.size());
  auto one = [&](int64_t i) {
    const int s = chosen[static_cast<size_t>(i)];
    const int64_t pos = sample.positions.empty() ? keys.count - 1 : sample.positions[s];
    stats[static_cast<size_t>(i)] = ProfileQuery(keys, sample.query(s), pos + 1, scale, options);
  };
  if (options.pool != nullptr) {
    options.pool->ParallelFor(static_cast<int64_t>(chosen.size()), one);
  } else {
    for (size_t i = 0; i < chosen.size(); ++i) one(static_cast<int64_t>(i));
  }
  return Summarize(stats, options);
}

}  // namespace attic::retrieval
