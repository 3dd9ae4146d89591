#include "attention_workers/retrieval/internal/kmeans.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "attention_workers/retrieval/internal/code_scan_abi.h"
#include "attention_workers/thread_pool.h"

namespace attic::retrieval::internal {
namespace {

constexpr int64_t kRowsPerTask = 256;

void Dot(const float* x, int64_t rows, const float* y, int cols, int d, float* out, IsaLevel isa) {
  const kernels::DotArgs args{.x = x, .y = y, .head_dim = d, .num_rows = static_cast<int>(rows),
                              .num_cols = cols, .out = out};
  if (isa >= IsaLevel::kAvx512) {
    kernels::DotAvx512(args);
  } else if (isa >= IsaLevel::kAvx2) {
    kernels::DotAvx2(args);
  } else {
    kernels::DotScalar(args);
  }
}

// Runs fn(begin, end) over [0, n) in tasks of kRowsPerTask rows.
template <typename Fn>
void ForRowTasks(int64_t n, ThreadPool* pool, const Fn& fn) {
  const int64_t tasks = (n + kRowsPerTask - 1) / kRowsPerTask;
  auto run = [&](int64_t t) { fn(t * kRowsPerTask, std::min(n, (t + 1) * kRowsPerTask)); };
  if (pool == nullptr || tasks <= 1) {
    for (int64_t t = 0; t < tasks; ++t) run(t);
  } else {
    pool->ParallelFor(tasks, run);
  }
}

void UpdateCentroids(const float* rows, int64_t n, int d, const int32_t* assign, int k,
                     std::mt19937_64& rng, float* centroids) {
  std::vector<double> sum(static_cast<size_t>(k) * d, 0.0);
  std::vector<int64_t> count(k, 0);
  for (int64_t i = 0; i < n; ++i) {
    double* s = sum.data() + static_cast<size_t>(assign[i]) * d;
    for (int j = 0; j < d; ++j) s[j] += rows[i * d + j];
    ++count[assign[i]];
  }
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  for (int c = 0; c < k; ++c) {
    float* mu = centroids + static_cast<size_t>(c) * d;
    if (count[c] == 0) {  // an empty cluster restarts at a random row
      const float* seed = rows + pick(rng) * d;
      std::copy(seed, seed + d, mu);
      continue;
    }
    for (int j = 0; j < d; ++j) {
      mu[j] = static_cast<float>(sum[static_cast<size_t>(c) * d + j] / static_cast<double>(count[c]));
    }
  }
}

}  // namespace

void AssignNearest(const float* rows, int64_t n, int d, const float* centroids, int k,
                   int32_t* assign, ThreadPool* pool, IsaLevel isa) {
  std::vector<float> half_norm(k);
  for (int c = 0; c < k; ++c) {
    const float* mu = centroids + static_cast<size_t>(c) * d;
    half_norm[c] = 0.5f * std::inner_product(mu, mu + d, mu, 0.0f);
  }
  ForRowTasks(n, pool, [&](int64_t begin, int64_t end) {
    std::vector<float> dots(static_cast<size_t>(end - begin) * k);
    Dot(rows + begin * d, end - begin, centroids, k, d, dots.data(), isa);
    for (int64_t i = begin; i < end; ++i) {
      const float* row = dots.data() + (i - begin) * k;
      int best = 0;
      float best_v = -std::numeric_limits<float>::infinity();
      for (int c = 0; c < k; ++c) {
        const float v = row[c] - half_norm[c];  // argmax x.mu - |mu|^2/2 = argmin |x - mu|
        if (v > best_v) {
          best_v = v;
          best = c;
        }
      }
      assign[i] = best;
    }
  });
}

KMeansResult KMeans(const float* rows, int64_t n, int d, const KMeansOptions& options) {
  const int k = options.clusters;
  std::mt19937_64 rng(options.seed);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  for (int c = 0; c < k; ++c) {  // a partial Fisher-Yates shuffle: k distinct seeds
    std::uniform_int_distribution<int64_t> pick(c, n - 1);
    std::swap(order[c], order[pick(rng)]);
  }
  KMeansResult r;
  r.centroids.resize(static_cast<size_t>(k) * d);
  for (int c = 0; c < k; ++c) {
    std::copy(rows + order[c] * d, rows + order[c] * d + d, r.centroids.data() + static_cast<size_t>(c) * d);
  }
  r.assign.resize(static_cast<size_t>(n));
  for (int it = 0; it < options.iterations; ++it) {
    AssignNearest(rows, n, d, r.centroids.data(), k, r.assign.data(), options.pool, options.isa);
    UpdateCentroids(rows, n, d, r.assign.data(), k, rng, r.centroids.data());
  }
  AssignNearest(rows, n, d, r.centroids.data(), k, r.assign.data(), options.pool, options.isa);
  return r;
}

std::vector<float> QueryWeightedTransform(const float* queries, int64_t num_queries, int d,
                                          double ridge) {
  std::vector<float> t(static_cast<size_t>(d) * d, 0.0f);
  if (num_queries == 0) {
    for (int i = 0; i < d; ++i) t[static_cast<size_t>(i) * d + i] = 1.0f;
    return t;
  }
  std::vector<double> m(static_cast<size_t>(d) * d, 0.0);
  for (int64_t s = 0; s < num_queries; ++s) {
    const float* q = queries + s * d;
    for (int i = 0; i < d; ++i) {
      for (int j = 0; j <= i; ++j) m[static_cast<size_t>(i) * d + j] += double{q[i]} * q[j];
    }
  }
  double trace = 0.0;
  for (int i = 0; i < d; ++i) trace += m[static_cast<size_t>(i) * d + i];
  const double add = ridge * trace / d + 1e-12;
  for (int i = 0; i < d; ++i) m[static_cast<size_t>(i) * d + i] += add;
  // Cholesky M = L L^T (lower triangle of m); then T = L^T satisfies T^T T = M.
  std::vector<double> l(static_cast<size_t>(d) * d, 0.0);
  for (int i = 0; i < d; ++i) {
    for (int j = 0; j <= i; ++j) {
      double s = m[static_cast<size_t>(i) * d + j];
      for (int p = 0; p < j; ++p) s -= l[static_cast<size_t>(i) * d + p] * l[static_cast<size_t>(j) * d + p];
      l[static_cast<size_t>(i) * d + j] =
          i == j ? std::sqrt(std::max(s, 1e-30)) : s / l[static_cast<size_t>(j) * d + j];
    }
  }
  const double norm = std::sqrt(trace / static_cast<double>(num_queries));  // keeps values O(|x|)
  for (int i = 0; i < d; ++i) {
    for (int j = 0; j < d; ++j) {
      t[static_cast<size_t>(i) * d + j] =
          static_cast<float>(l[static_cast<size_t>(j) * d + i] / std::sqrt(double(num_queries)) / norm);
    }
  }
  return t;
}

void ApplyTransform(const float* transform, const float* rows, int64_t n, int d, float* out,
                    ThreadPool* pool, IsaLevel isa) {
  ForRowTasks(n, pool, [&](int64_t begin, int64_t end) {
    Dot(rows + begin * d, end - begin, transform, d, d, out + begin * d, isa);
  });
}

}  // namespace attic::retrieval::internal
