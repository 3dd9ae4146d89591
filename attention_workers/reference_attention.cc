#include "attention_workers/reference_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace attic {
namespace {

// fp64 dot product with four independent partial sums (instruction-level parallelism; the
// rounding of a 4-way fp64 sum is far below what the comparisons resolve).
double Dot(const float* a, const float* b, int n) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += static_cast<double>(a[i]) * b[i];
    s1 += static_cast<double>(a[i + 1]) * b[i + 1];
    s2 += static_cast<double>(a[i + 2]) * b[i + 2];
    s3 += static_cast<double>(a[i + 3]) * b[i + 3];
  }
  for (; i < n; ++i) s0 += static_cast<double>(a[i]) * b[i];
  return (s0 + s1) + (s2 + s3);
}

}  // namespace

void ReferenceAttention(const float* q, int group_size, int head_dim, float scale, DType dtype,
                        std::span<const KvRun> runs, double* out, double* lse) {
  const int g_total = group_size, d = head_dim;
  const size_t row_bytes = static_cast<size_t>(d) * DTypeSize(dtype);
  std::vector<float> row(static_cast<size_t>(d));
  // Pass 1: every score (token-major, [tokens][G]) and each head's maximum.
  std::vector<double> scores;
  std::vector<double> m(static_cast<size_t>(g_total), -std::numeric_limits<double>::infinity());
  for (const KvRun& run : runs) {
    for (int t = 0; t < run.num_tokens; ++t) {
      ConvertToFloat(dtype, static_cast<const std::byte*>(run.k) + t * row_bytes, row.data(),
                     row.size());
      for (int g = 0; g < g_total; ++g) {
        const double s = Dot(q + g * d, row.data(), d) * scale;
        scores.push_back(s);
        m[static_cast<size_t>(g)] = std::max(m[static_cast<size_t>(g)], s);
      }
    }
  }
  for (int i = 0; i < g_total * d; ++i) out[i] = 0.0;
  if (scores.empty()) {
    for (int g = 0; g < g_total; ++g) lse[g] = -std::numeric_limits<double>::infinity();
    return;
  }
  // Pass 2: weights relative to the maximum (exp never overflows) and the weighted values.
  std::vector<double> l(static_cast<size_t>(g_total), 0.0);
  size_t idx = 0;
  for (const KvRun& run : runs) {
    for (int t = 0; t < run.num_tokens; ++t) {
      ConvertToFloat(dtype, static_cast<const std::byte*>(run.v) + t * row_bytes, row.data(),
                     row.size());
      for (int g = 0; g < g_total; ++g) {
        const double p = std::exp(scores[idx++] - m[static_cast<size_t>(g)]);
        l[static_cast<size_t>(g)] += p;
        double* o = out + static_cast<size_t>(g) * d;
        for (int i = 0; i < d; ++i) o[i] += p * row[static_cast<size_t>(i)];
      }
    }
  }
  for (int g = 0; g < g_total; ++g) {
    double* o = out + static_cast<size_t>(g) * d;
    for (int i = 0; i < d; ++i) o[i] /= l[static_cast<size_t>(g)];
    lse[g] = m[static_cast<size_t>(g)] + std::log(l[static_cast<size_t>(g)]);
  }
}

double RelativeError(const float* a, const double* b, int n) {
  double num = 0.0, den = 0.0;
  for (int i = 0; i < n; ++i) {
    const double e = static_cast<double>(a[i]) - b[i];
    num += e * e;
    den += b[i] * b[i];
  }
  if (den == 0.0) return num == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}

}  // namespace attic
