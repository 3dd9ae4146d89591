// ClusterIndex (IndexKind::kCluster): query-aware k-means clusters of the keys, members stored
// as compact codes (internal/quantizer.h). A search ranks every cluster by an optimistic,
// query-aware score, scans the codes of the best clusters until a budget of keys is probed,
// and re-ranks the best approximate candidates exactly.
//
//   ASSIGN_OR_RETURN(auto index, BuildClusterIndex(keys, sample, {}, {.pool = &pool}));
//   RETURN_IF_ERROR(index->Search(keys, scorer, {.top_k = 100}, &r));   // default budget
//   RETURN_IF_ERROR(index->Add(keys_now));   // new keys join their nearest cluster
//
// Why query-aware: decode queries are out of distribution for the keys, so q . centroid alone
// ranks clusters poorly. Two things use the prefill query sample:
//  - the clustering metric: k-means runs on keys mapped by T with T^T T = the sample's query
//    second moment (internal/kmeans.h), so clusters are tight along the directions queries
//    look and q . centroid is a good estimate of q . member;
//  - the cluster score  max_g (q_g . mu_c + lambda * |q_g| * r_c),  r_c the RMS spread of the
//    cluster's members in that metric: lambda is chosen on the sample's last queries so that
//    their exact top-k keys fall in the clusters the default budget probes.
// With an empty sample the metric is Euclidean and lambda is options.default_spread_weight
// (query-agnostic).
//
// Clusters grow sub-linearly with n (clusters_per_sqrt_key * sqrt(n)) and the default budget
// is probe_per_sqrt_key * sqrt(n) keys (at least min_probe), so the bytes a search reads fall
// as a fraction of a dense pass as the context grows (measurements: docs/retrieval-cluster.md).
//
// effort = keys probed (code-scanned); 0 = the default budget. Whole clusters are scanned, so
// a search may probe up to one cluster more than the budget.
// SearchStats: keys_scored = keys re-ranked exactly; bytes_read = every centroid row (bf16)
// with its per-cluster scalars + the code blocks and 4-byte positions of the probed clusters +
// the re-ranked key rows.
// Add assigns each new key to its nearest cluster (no re-clustering; spreads are updated).
// Thread safety: as KeyIndex.
#pragma once

#include <memory>

#include "attention_workers/retrieval/key_index.h"

namespace attic::retrieval {

struct ClusterIndexOptions {
  // Member code bits: 4 or 1 (internal/quantizer.h).
  int bits = 4;
  // Number of clusters = clusters_per_sqrt_key * sqrt(n), at least 1 and at most n. Centroid
  // bytes then grow as sqrt(n); more clusters make each probe more selective.
  double clusters_per_sqrt_key = 2.0;
  // Lloyd iterations of the build's k-means.
  int kmeans_iterations = 6;
  // Cluster in the sample's query-weighted metric (see above); false = Euclidean.
  bool query_weighted = true;
  // Default budget: max(min_probe, probe_per_sqrt_key * sqrt(n)) keys probed per search.
  double probe_per_sqrt_key = 24.0;
  int min_probe = 512;
  // Best approximate candidates re-scored exactly (at least top_k).
  int rerank = 150;
  // lambda of the cluster score; < 0 = learned from the sample, from {0, 0.25, ..., 4}.
  float spread_weight = -1.0f;
  // lambda when it is to be learned but the sample is empty.
  float default_spread_weight = 1.0f;
  // Sample queries (the last ones) lambda is learned on, and the top-k they must cover.
  int train_queries = 64;
  int train_top_k = 100;
};

// InvalidArgument for invalid keys or sample (see BuildKeyIndex), bits other than 1 or 4,
// non-positive cluster, probe or re-rank counts.
StatusOr<std::unique_ptr<KeyIndex>> BuildClusterIndex(const KeyRows& keys,
                                                      const QuerySample& sample,
                                                      const ClusterIndexOptions& options = {},
                                                      const BuildOptions& build = {});

// The default budget for n indexed keys (keys probed when effort is 0).
int64_t DefaultClusterProbe(const ClusterIndexOptions& options, int64_t n);

}  // namespace attic::retrieval
