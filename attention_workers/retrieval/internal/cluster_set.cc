#include "attention_workers/retrieval/internal/cluster_set.h"

#include <algorithm>
#include <cmath>

#include "attention_workers/retrieval/internal/kmeans.h"
#include "attention_workers/retrieval/scoring.h"
#include "common/dtype.h"

namespace attic::retrieval::internal {
namespace {

// Ridge added to the query second moment, relative to its mean eigenvalue: keeps directions
// the sample never used from collapsing to zero distance.
constexpr double kMetricRidge = 0.05;

float SquaredDistance(const float* a, const float* b, int d) {
  float s = 0.0f;
  for (int j = 0; j < d; ++j) s += (a[j] - b[j]) * (a[j] - b[j]);
  return s;
}

// Means of rows per cluster: out [k, d].
std::vector<float> ClusterMeans(const float* rows, int64_t n, int d, const int32_t* assign,
                                int k) {
  std::vector<double> sum(static_cast<size_t>(k) * d, 0.0);
  std::vector<int64_t> count(k, 0);
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) sum[static_cast<size_t>(assign[i]) * d + j] += rows[i * d + j];
    ++count[assign[i]];
  }
  std::vector<float> out(sum.size(), 0.0f);
  for (size_t i = 0; i < sum.size(); ++i) {
    const int64_t c = count[i / static_cast<size_t>(d)];
    if (c > 0) out[i] = static_cast<float>(sum[i] / static_cast<double>(c));
  }
  return out;
}

}  // namespace

int64_t ClusterSet::ranking_bytes() const {
  return num_clusters() * (static_cast<int64_t>(head_dim_) * 2 + 8);
}

int64_t ClusterSet::memory_bytes() const {
  int64_t bytes = static_cast<int64_t>(transform_.size() + mapped_centroids_.size()) * 4 +
                  static_cast<int64_t>(centroids_.size()) * 2 + num_clusters() * 16;
  for (int c = 0; c < num_clusters(); ++c) {
    bytes += static_cast<int64_t>(members_[c].size()) * 4 + codes_[c].bytes();
  }
  return bytes;
}

std::vector<float> ClusterSet::CentroidDots(const float* q, int group_size, IsaLevel isa) const {
  const int k = num_clusters();
  std::vector<float> dots(static_cast<size_t>(group_size) * k);
  for (int g = 0; g < group_size; ++g) {
    const GroupScorer head({.q = q + static_cast<size_t>(g) * head_dim_, .group_size = 1,
                            .head_dim = head_dim_},
                           DType::kBFloat16, isa);
    head.ScoreRows(centroid_rows_, dots.data() + static_cast<size_t>(g) * k);
  }
  return dots;
}

void ClusterSet::CombineScores(const std::vector<float>& dots, const std::vector<float>& norms,
                               float lambda, float* scores) const {
  const int k = num_clusters();
  std::fill(scores, scores + k, -INFINITY);
  for (size_t g = 0; g < norms.size(); ++g) {
    const float w = lambda * norms[g];
    const float* row = dots.data() + g * k;
    for (int c = 0; c < k; ++c) scores[c] = std::max(scores[c], row[c] + w * spread_[c]);
  }
}

void ClusterSet::Append(int c, const float* row, const float* mapped, int32_t position) {
  members_[c].push_back(position);
  codes_[c].Append(quant_, row);
  sum_sq_[c] += SquaredDistance(mapped, mapped_centroids_.data() + static_cast<size_t>(c) * head_dim_,
                                head_dim_);
  spread_[c] = static_cast<float>(std::sqrt(sum_sq_[c] / static_cast<double>(members_[c].size())));
}

void ClusterSet::AddRows(const float* rows, int64_t n, int32_t first, ThreadPool* pool,
                         IsaLevel isa) {
  const int d = head_dim_;
  std::vector<float> mapped;
  const float* m = rows;
  if (!transform_.empty()) {
    mapped.resize(static_cast<size_t>(n) * d);
    ApplyTransform(transform_.data(), rows, n, d, mapped.data(), pool, isa);
    m = mapped.data();
  }
  std::vector<int32_t> assign(static_cast<size_t>(n));
  AssignNearest(m, n, d, mapped_centroids_.data(), num_clusters(), assign.data(), pool, isa);
  for (int64_t i = 0; i < n; ++i) {
    Append(assign[i], rows + i * d, m + i * d, first + static_cast<int32_t>(i));
  }
}

StatusOr<ClusterSet> BuildClusterSet(const float* rows, int64_t n, int d,
                                     const float* sample_rows, int64_t m,
                                     const ClusterSetOptions& options) {
  ClusterSet s;
  s.head_dim_ = d;
  ASSIGN_OR_RETURN(s.quant_, ScalarQuantizer::Fit(rows, n, d, options.bits));
  std::vector<float> mapped;
  const float* x = rows;
  if (options.query_weighted && m > 0) {
    s.transform_ = QueryWeightedTransform(sample_rows, m, d, kMetricRidge);
    mapped.resize(static_cast<size_t>(n) * d);
    ApplyTransform(s.transform_.data(), rows, n, d, mapped.data(), options.pool, options.isa);
    x = mapped.data();
  }
  const int k = options.clusters;
  const KMeansResult km = KMeans(x, n, d, {.clusters = k, .iterations = options.kmeans_iterations,
                                           .seed = options.seed, .pool = options.pool,
                                           .isa = options.isa});
  s.mapped_centroids_ = km.centroids;
  const std::vector<float> mu = ClusterMeans(rows, n, d, km.assign.data(), k);
  s.centroids_.resize(mu.size());
  for (size_t i = 0; i < mu.size(); ++i) s.centroids_[i] = FloatToBf16(mu[i]);
  for (int c = 0; c < k; ++c) {
    s.centroid_rows_.push_back(
        reinterpret_cast<const std::byte*>(s.centroids_.data() + static_cast<size_t>(c) * d));
  }
  s.spread_.assign(k, 0.0f);
  s.sum_sq_.assign(k, 0.0);
  s.members_.resize(k);
  s.codes_.assign(k, CodeStore(s.quant_));
  for (int64_t i = 0; i < n; ++i) {
    s.Append(km.assign[i], rows + i * d, x + i * d, static_cast<int32_t>(i));
  }
  return s;
}

}  // namespace attic::retrieval::internal
