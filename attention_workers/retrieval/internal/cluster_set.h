// ClusterSet: the data of the cluster index (cluster_index.h) — centroids, per-cluster spreads,
// member positions and member codes — with its build, growth and cluster scoring. Private to
// cluster_index.cc and its tests.
//
//   ASSIGN_OR_RETURN(ClusterSet set, BuildClusterSet(rows, n, d, sample_rows, m, options));
//   std::vector<float> dots = set.CentroidDots(q, group_size, isa);   // [group_size, clusters]
//   set.CombineScores(dots, norms, lambda, scores);                    // [clusters]
//
// Thread safety: const methods may run concurrently; AddRows needs exclusive access.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "attention_workers/isa.h"
#include "attention_workers/retrieval/internal/quantizer.h"
#include "common/status.h"

namespace attic {
class ThreadPool;
}

namespace attic::retrieval::internal {

struct ClusterSetOptions {
  int clusters = 1;  // REQUIRES 1 <= clusters <= n
  int bits = 4;
  int kmeans_iterations = 6;
  bool query_weighted = true;
  uint64_t seed = 1;
  ThreadPool* pool = nullptr;
  IsaLevel isa = ActiveIsa();
};

class ClusterSet {
 public:
  int num_clusters() const { return static_cast<int>(spread_.size()); }
  int head_dim() const { return head_dim_; }
  const ScalarQuantizer& quantizer() const { return quant_; }
  const std::vector<int32_t>& members(int c) const { return members_[c]; }
  const CodeStore& codes(int c) const { return codes_[c]; }
  float spread(int c) const { return spread_[c]; }

  // Bytes a search reads to rank the clusters: bf16 centroid rows, spread and member count.
  int64_t ranking_bytes() const;
  int64_t memory_bytes() const;

  // dots[g * clusters + c] = q_g . mu_c for queries q [group_size, head_dim] fp32.
  std::vector<float> CentroidDots(const float* q, int group_size, IsaLevel isa) const;
  // scores[c] = max_g (dots[g][c] + lambda * norms[g] * spread_c).
  void CombineScores(const std::vector<float>& dots, const std::vector<float>& norms,
                     float lambda, float* scores) const;

  // Appends rows [n, head_dim] fp32 (positions first, first + 1, ...) to their nearest clusters.
  void AddRows(const float* rows, int64_t n, int32_t first, ThreadPool* pool, IsaLevel isa);

 private:
  friend StatusOr<ClusterSet> BuildClusterSet(const float*, int64_t, int, const float*, int64_t,
                                              const ClusterSetOptions&);

  void Append(int c, const float* row, const float* mapped, int32_t position);

  int head_dim_ = 0;
  std::vector<float> transform_;         // [D, D] query-weighted metric; empty = identity
  std::vector<float> mapped_centroids_;  // [C, D] fp32, in the metric (assignment)
  std::vector<uint16_t> centroids_;      // [C, D] bf16 (scoring)
  std::vector<const std::byte*> centroid_rows_;
  std::vector<float> spread_;            // [C] RMS member distance in the metric
  std::vector<double> sum_sq_;           // [C] sum of members' squared distances
  std::vector<std::vector<int32_t>> members_;
  std::vector<CodeStore> codes_;
  ScalarQuantizer quant_;
};

// Clusters rows [n, d] fp32 (positions 0..n-1). sample_rows [m, d] are the query rows of the
// metric (m = 0: Euclidean). InvalidArgument for bad bits or head_dim.
StatusOr<ClusterSet> BuildClusterSet(const float* rows, int64_t n, int d,
                                     const float* sample_rows, int64_t m,
                                     const ClusterSetOptions& options);

}  // namespace attic::retrieval::internal
