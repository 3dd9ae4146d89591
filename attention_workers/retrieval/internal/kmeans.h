// k-means over fp32 rows for the cluster index (cluster_index.h): random distinct seeds, Lloyd
// iterations, assignments computed on a thread pool with the per-ISA dot kernel
// (code_scan_abi.h). Plus the query-weighted metric the index clusters in.
//
//   KMeansResult km = KMeans(rows, n, 128, {.clusters = 256, .iterations = 6, .pool = &pool});
//   // km.assign[i] = cluster of row i; km.centroids [256, 128]
//
// Query weighting: with M the second moment of a query sample, clustering rows x' = T x with
// T^T T = M makes the squared distance (x - mu)^T M (x - mu) = mean over the queries of
// (q . x - q . mu)^2, i.e. clusters are tight in the directions queries actually look.
// Thread safety: stateless functions.
#pragma once

#include <cstdint>
#include <vector>

#include "attention_workers/isa.h"

namespace attic {
class ThreadPool;
}

namespace attic::retrieval::internal {

struct KMeansOptions {
  int clusters = 1;    // REQUIRES 1 <= clusters <= number of rows
  int iterations = 6;  // Lloyd iterations after seeding
  uint64_t seed = 1;
  ThreadPool* pool = nullptr;  // nullptr = the calling thread
  IsaLevel isa = ActiveIsa();
};

struct KMeansResult {
  std::vector<float> centroids;  // [clusters, d]
  std::vector<int32_t> assign;   // [n]
};

// REQUIRES: n >= options.clusters >= 1, d a positive multiple of 16.
KMeansResult KMeans(const float* rows, int64_t n, int d, const KMeansOptions& options);

// assign[i] = the centroid nearest row i (Euclidean), for rows [n, d] and centroids [k, d].
void AssignNearest(const float* rows, int64_t n, int d, const float* centroids, int k,
                   int32_t* assign, ThreadPool* pool, IsaLevel isa);

// T [d, d] row-major with T^T T = M + ridge * trace(M) / d * I for M = the mean of q q^T over
// queries [num_queries, d]; the identity when num_queries is 0.
std::vector<float> QueryWeightedTransform(const float* queries, int64_t num_queries, int d,
                                          double ridge);

// out [n, d] = rows [n, d] transformed by T [d, d] (out_i = T x_i).
void ApplyTransform(const float* transform, const float* rows, int64_t n, int d, float* out,
                    ThreadPool* pool, IsaLevel isa);

}  // namespace attic::retrieval::internal
