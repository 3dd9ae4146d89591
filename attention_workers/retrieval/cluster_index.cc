#include "attention_workers/retrieval/cluster_index.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "attention_workers/retrieval/internal/cluster_set.h"
#include "attention_workers/retrieval/internal/quantizer.h"
#include "attention_workers/thread_pool.h"

namespace attic::retrieval {
namespace {

using internal::ClusterSet;
using internal::kCodeBlock;

constexpr float kSpreadWeights[] = {0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f};

std::vector<float> HeadNorms(const float* q, int group_size, int d) {
  std::vector<float> norms(group_size);
  for (int g = 0; g < group_size; ++g) {
    const float* h = q + static_cast<size_t>(g) * d;
    norms[g] = std::sqrt(std::inner_product(h, h + d, h, 0.0f));
  }
  return norms;
}

// Cluster numbers by descending score.
std::vector<int32_t> RankClusters(const std::vector<float>& scores) {
  std::vector<int32_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  });
  return order;
}

int NumClusters(const ClusterIndexOptions& options, int64_t n) {
  const auto c = static_cast<int64_t>(std::lround(options.clusters_per_sqrt_key *
                                                  std::sqrt(static_cast<double>(n))));
  return static_cast<int>(std::clamp<int64_t>(c, 1, n));
}

class ClusterIndex final : public KeyIndex {
 public:
  ClusterIndex(const ClusterIndexOptions& options, const BuildOptions& build, int head_dim,
               DType dtype)
      : options_(options), build_(build), head_dim_(head_dim), dtype_(dtype) {}

  IndexKind kind() const override { return IndexKind::kCluster; }
  StatusOr<std::unique_ptr<KeyIndex>> Clone() const override {
    return std::unique_ptr<KeyIndex>(new ClusterIndex(*this));
  }
  int64_t size() const override { return size_; }
  int64_t memory_bytes() const override { return set_ ? set_->memory_bytes() : 0; }
  float spread_weight() const { return lambda_; }

  // Builds the clusters from keys [0, keys.count) and chooses lambda on the sample.
  Status Build(const KeyRows& keys, const QuerySample& sample);
  Status Add(const KeyRows& keys) override;
  Status Search(const KeyRows& keys, const GroupScorer& scorer, const SearchParams& params,
                SearchResult* out) const override;

 private:
  struct Probe {
    std::vector<int32_t> positions;
    std::vector<float> approx;
    int64_t bytes = 0;
  };
  // Code-scans the best clusters for queries q until budget keys are probed.
  Probe ProbeClusters(const float* q, int group_size, int64_t budget) const;
  // The lambda whose default budget covers most of the sample's exact top-k.
  float LearnSpreadWeight(const KeyRows& keys, const QuerySample& sample) const;
  // Fraction of top (positions) inside the clusters a budget walk over order visits.
  double Coverage(const std::vector<int32_t>& order, const std::vector<int32_t>& top,
                  int64_t budget) const;

  ClusterIndexOptions options_;
  BuildOptions build_;
  int head_dim_;
  DType dtype_;
  int64_t size_ = 0;
  float lambda_ = 0.0f;
  std::vector<int32_t> cluster_of_;  // [size_] the cluster of every position
  std::optional<ClusterSet> set_;    // absent while no key is indexed
};

Status ClusterIndex::Build(const KeyRows& keys, const QuerySample& sample) {
  lambda_ = options_.spread_weight >= 0 ? options_.spread_weight : options_.default_spread_weight;
  const int64_t n = keys.count;
  if (n == 0) return OkStatus();
  std::vector<float> rows(static_cast<size_t>(n) * head_dim_);
  internal::KeysToFloat(keys, 0, n, rows.data());
  const int64_t sample_rows = options_.query_weighted
                                  ? static_cast<int64_t>(sample.num_queries) * sample.group_size
                                  : 0;
  ASSIGN_OR_RETURN(set_, internal::BuildClusterSet(
                             rows.data(), n, head_dim_, sample.q, sample_rows,
                             {.clusters = NumClusters(options_, n), .bits = options_.bits,
                              .kmeans_iterations = options_.kmeans_iterations,
                              .query_weighted = options_.query_weighted, .seed = build_.seed,
                              .pool = build_.pool, .isa = build_.isa}));
  size_ = n;
  cluster_of_.assign(static_cast<size_t>(n), 0);
  for (int c = 0; c < set_->num_clusters(); ++c) {
    for (int32_t p : set_->members(c)) cluster_of_[p] = c;
  }
  if (options_.spread_weight < 0 && !sample.empty()) lambda_ = LearnSpreadWeight(keys, sample);
  return OkStatus();
}

Status ClusterIndex::Add(const KeyRows& keys) {
  RETURN_IF_ERROR(ValidateKeyRows(keys));
  if (keys.count < size_ || keys.head_dim != head_dim_ || keys.dtype != dtype_) {
    return InvalidArgumentError("cluster index: rows do not extend the indexed keys");
  }
  if (keys.count == size_) return OkStatus();
  if (!set_) return Build(keys, QuerySample{});  // the first keys: cluster them
  const int64_t n = keys.count - size_;
  std::vector<float> rows(static_cast<size_t>(n) * head_dim_);
  internal::KeysToFloat(keys, size_, keys.count, rows.data());
  const int before = set_->num_clusters();
  std::vector<size_t> old_sizes(before);
  for (int c = 0; c < before; ++c) old_sizes[c] = set_->members(c).size();
  set_->AddRows(rows.data(), n, static_cast<int32_t>(size_), build_.pool, build_.isa);
  cluster_of_.resize(static_cast<size_t>(keys.count));
  for (int c = 0; c < before; ++c) {
    const auto& m = set_->members(c);
    for (size_t i = old_sizes[c]; i < m.size(); ++i) cluster_of_[m[i]] = c;
  }
  size_ = keys.count;
  return OkStatus();
}

ClusterIndex::Probe ClusterIndex::ProbeClusters(const float* q, int group_size,
                                                int64_t budget) const {
  const ClusterSet& set = *set_;
  const std::vector<float> dots = set.CentroidDots(q, group_size, build_.isa);
  std::vector<float> scores(set.num_clusters());
  set.CombineScores(dots, HeadNorms(q, group_size, head_dim_), lambda_, scores.data());
  const internal::ScanQuery sq =
      set.quantizer().PrepareQuery({.q = q, .group_size = group_size, .head_dim = head_dim_});
  Probe probe;
  probe.bytes = set.ranking_bytes();
  std::vector<float> block_scores;
  for (int32_t c : RankClusters(scores)) {
    if (static_cast<int64_t>(probe.positions.size()) >= budget) break;
    const auto& members = set.members(c);
    if (members.empty()) continue;
    const auto& codes = set.codes(c);
    block_scores.resize(static_cast<size_t>(codes.num_blocks()) * kCodeBlock);
    set.quantizer().Scan(sq, codes.data(), codes.num_blocks(), block_scores.data(), build_.isa);
    probe.positions.insert(probe.positions.end(), members.begin(), members.end());
    probe.approx.insert(probe.approx.end(), block_scores.begin(),
                        block_scores.begin() + static_cast<ptrdiff_t>(members.size()));
    probe.bytes += codes.bytes() + static_cast<int64_t>(members.size()) * 4;
  }
  return probe;
}

Status ClusterIndex::Search(const KeyRows& keys, const GroupScorer& scorer,
                            const SearchParams& params, SearchResult* out) const {
  RETURN_IF_ERROR(ValidateSearch(keys, size_, scorer, params));
  if (params.position_limit > 0) {
    return InvalidArgumentError("cluster index: position_limit is not supported");
  }
  SearchResult r;
  if (size_ > 0) {
    std::vector<float> q(static_cast<size_t>(scorer.group_size()) * head_dim_);
    scorer.CopyQueries(q.data());
    const int64_t budget = params.effort > 0 ? params.effort : DefaultClusterProbe(options_, size_);
    Probe probe = ProbeClusters(q.data(), scorer.group_size(), budget);
    const auto count = static_cast<int64_t>(probe.positions.size());
    const int64_t rerank = std::min<int64_t>(count, std::max(params.top_k, options_.rerank));
    std::vector<int32_t> idx(static_cast<size_t>(count));
    std::iota(idx.begin(), idx.end(), 0);
    std::nth_element(idx.begin(), idx.begin() + rerank, idx.end(),
                     [&](int32_t a, int32_t b) { return probe.approx[a] > probe.approx[b]; });
    std::vector<int32_t> cand(static_cast<size_t>(rerank));
    for (int64_t i = 0; i < rerank; ++i) cand[i] = probe.positions[idx[i]];
    std::vector<float> exact(cand.size());
    scorer.ScorePositions(keys, cand, exact.data());
    for (int32_t i : TopKPositions(exact, params.top_k)) {
      r.positions.push_back(cand[static_cast<size_t>(i)]);
      r.scores.push_back(exact[static_cast<size_t>(i)]);
    }
    r.stats = {.keys_scored = rerank,
               .bytes_read = probe.bytes + rerank * static_cast<int64_t>(keys.row_bytes())};
  }
  *out = std::move(r);
  return OkStatus();
}

double ClusterIndex::Coverage(const std::vector<int32_t>& order, const std::vector<int32_t>& top,
                              int64_t budget) const {
  std::vector<char> visited(order.size(), 0);
  int64_t probed = 0;
  for (int32_t c : order) {
    if (probed >= budget) break;
    visited[c] = 1;
    probed += static_cast<int64_t>(set_->members(c).size());
  }
  int64_t hits = 0;
  for (int32_t p : top) hits += visited[cluster_of_[p]];
  return top.empty() ? 1.0 : static_cast<double>(hits) / static_cast<double>(top.size());
}

float ClusterIndex::LearnSpreadWeight(const KeyRows& keys, const QuerySample& sample) const {
  const int num = std::min(sample.num_queries, std::max(options_.train_queries, 1));
  const int first = sample.num_queries - num;
  const int64_t budget = DefaultClusterProbe(options_, size_);
  constexpr int kWeights = sizeof(kSpreadWeights) / sizeof(kSpreadWeights[0]);
  std::vector<double> coverage(static_cast<size_t>(num) * kWeights, 0.0);
  auto one = [&](int64_t i) {
    const int s = first + static_cast<int>(i);
    const QueryGroup group = sample.query(s);
    // A prefill query attends causally: its top-k is among the keys up to its position.
    int64_t visible = size_;
    if (!sample.positions.empty()) visible = std::min<int64_t>(size_, sample.positions[s] + 1);
    if (visible <= 0) return;
    const GroupScorer scorer(group, keys.dtype, build_.isa);
    std::vector<float> exact(static_cast<size_t>(visible));
    scorer.ScoreRange(keys, 0, visible, exact.data());
    const std::vector<int32_t> top = TopKPositions(exact, options_.train_top_k);
    const std::vector<float> dots = set_->CentroidDots(group.q, group.group_size, build_.isa);
    const std::vector<float> norms = HeadNorms(group.q, group.group_size, head_dim_);
    std::vector<float> scores(set_->num_clusters());
    for (int w = 0; w < kWeights; ++w) {
      set_->CombineScores(dots, norms, kSpreadWeights[w], scores.data());
      coverage[static_cast<size_t>(i) * kWeights + w] = Coverage(RankClusters(scores), top, budget);
    }
  };
  if (build_.pool != nullptr) {
    build_.pool->ParallelFor(num, one);
  } else {
    for (int i = 0; i < num; ++i) one(i);
  }
  int best = 0;
  double best_mean = -1.0;
  for (int w = 0; w < kWeights; ++w) {
    double mean = 0.0;
    for (int i = 0; i < num; ++i) mean += coverage[static_cast<size_t>(i) * kWeights + w];
    if (mean > best_mean + 1e-9) {
      best_mean = mean;
      best = w;
    }
  }
  return kSpreadWeights[best];
}

Status ValidateOptions(const ClusterIndexOptions& o) {
  if (o.bits != 1 && o.bits != 4) {
    return InvalidArgumentError("cluster index: bits " + std::to_string(o.bits) + " is not 1 or 4");
  }
  if (!(o.clusters_per_sqrt_key > 0) || !(o.probe_per_sqrt_key > 0) || o.min_probe < 1 ||
      o.rerank < 1 || o.kmeans_iterations < 0 || o.train_top_k < 1) {
    return InvalidArgumentError("cluster index: cluster, probe and re-rank counts must be positive");
  }
  return OkStatus();
}

}  // namespace

int64_t DefaultClusterProbe(const ClusterIndexOptions& options, int64_t n) {
  const auto probe = static_cast<int64_t>(
      std::ceil(options.probe_per_sqrt_key * std::sqrt(static_cast<double>(n))));
  return std::max<int64_t>(options.min_probe, probe);
}

StatusOr<std::unique_ptr<KeyIndex>> BuildClusterIndex(const KeyRows& keys,
                                                      const QuerySample& sample,
                                                      const ClusterIndexOptions& options,
                                                      const BuildOptions& build) {
  RETURN_IF_ERROR(ValidateKeyRows(keys));
  RETURN_IF_ERROR(ValidateOptions(options));
  if (!sample.empty() && (sample.q == nullptr || sample.head_dim != keys.head_dim ||
                          sample.group_size < 1 || sample.group_size > 128 ||
                          (!sample.positions.empty() &&
                           static_cast<int>(sample.positions.size()) != sample.num_queries))) {
    return InvalidArgumentError("cluster index: query sample does not match the keys");
  }
  auto index = std::make_unique<ClusterIndex>(options, build, keys.head_dim, keys.dtype);
  RETURN_IF_ERROR(index->Build(keys, sample));
  return std::unique_ptr<KeyIndex>(std::move(index));
}

}  // namespace attic::retrieval
