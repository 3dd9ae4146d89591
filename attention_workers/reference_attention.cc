#include "attention_workers/reference_attention.h"

#include <cmath>
#include <limits>
#include <vector>

namespace attic {

void ReferenceAttention(const float* q, int group_size, int head_dim, float scale, DType dtype,
                        std::span<const KvRun> runs, double* out, double* lse) {
  const int d = head_dim;
  const size_t row_bytes = static_cast<size_t>(d) * DTypeSize(dtype);
  std::vector<float> k(static_cast<size_t>(d)), v(static_cast<size_t>(d));
  for (int g = 0; g < group_size; ++g) {
    double* o = out + static_cast<size_t>(g) * d;
    for (int i = 0; i < d; ++i) o[i] = 0.0;
    // Two passes: the maximum score first, so exp never overflows.
    double m = -std::numeric_limits<double>::infinity();
    std::vector<double> scores;
    for (const KvRun& run : runs) {
      for (int t = 0; t < run.num_tokens; ++t) {
        ConvertToFloat(dtype, static_cast<const std::byte*>(run.k) + t * row_bytes, k.data(),
                       static_cast<size_t>(d));
        double s = 0.0;
        for (int i = 0; i < d; ++i) s += static_cast<double>(q[g * d + i]) * k[i];
        s *= scale;
        scores.push_back(s);
        if (s > m) m = s;
      }
    }
    if (scores.empty()) {
      lse[g] = -std::numeric_limits<double>::infinity();
      continue;
    }
    double l = 0.0;
    size_t idx = 0;
    for (const KvRun& run : runs) {
      for (int t = 0; t < run.num_tokens; ++t) {
        const double p = std::exp(scores[idx++] - m);
        l += p;
        ConvertToFloat(dtype, static_cast<const std::byte*>(run.v) + t * row_bytes, v.data(),
                       static_cast<size_t>(d));
        for (int i = 0; i < d; ++i) o[i] += p * v[i];
      }
    }
    for (int i = 0; i < d; ++i) o[i] /= l;
    lse[g] = m + std::log(l);
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
