#include "common/lse_merge.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace attic {
namespace {

// Attention of one head over tokens [begin, end), in double: (o [d], lse).
struct State {
  std::vector<double> o;
  double lse = -INFINITY;
};
State Direct(const std::vector<double>& scores, const std::vector<std::vector<double>>& values,
             size_t begin, size_t end, int d) {
  State s{std::vector<double>(static_cast<size_t>(d), 0.0), -INFINITY};
  if (begin == end) return s;
  double m = -INFINITY;
  for (size_t t = begin; t < end; ++t) m = std::max(m, scores[t]);
  double sum = 0;
  for (size_t t = begin; t < end; ++t) {
    const double w = std::exp(scores[t] - m);
    sum += w;
    for (int i = 0; i < d; ++i)
      s.o[static_cast<size_t>(i)] += w * values[t][static_cast<size_t>(i)];
  }
  for (double& x : s.o) x /= sum;
  s.lse = m + std::log(sum);
  return s;
}

// Splitting the tokens into parts (one empty) and merging the parts gives the direct answer.
TEST(LseMergeTest, MergedPartsEqualDirectAttention) {
  const int heads = 3, d = 32;
  const size_t n = 300;
  const size_t cuts[] = {0, 70, 70, 200, 300};  // parts: [0,70), [70,70) empty, [70,200), [200,300)
  std::mt19937 rng(11);
  std::normal_distribution<double> dist(0.0, 3.0);
  std::vector<float> o_acc(heads * d, 0.0f), lse_acc(heads, -INFINITY);
  std::vector<State> want;
  std::vector<std::vector<State>> parts(heads);
  for (int h = 0; h < heads; ++h) {
    std::vector<double> scores(n);
    std::vector<std::vector<double>> values(n, std::vector<double>(d));
    for (size_t t = 0; t < n; ++t) {
      scores[t] = dist(rng) + (h == 2 ? 80.0 : 0.0);  // one head with large logits
      for (double& x : values[t]) x = dist(rng);
    }
    want.push_back(Direct(scores, values, 0, n, d));
    for (size_t p = 0; p + 1 < std::size(cuts); ++p) {
      parts[static_cast<size_t>(h)].push_back(Direct(scores, values, cuts[p], cuts[p + 1], d));
    }
  }
  // Merge part by part, all heads at once, in reverse order (order must not matter).
  for (size_t p = std::size(cuts) - 1; p-- > 0;) {
    std::vector<float> o(heads * d), lse(heads);
    for (int h = 0; h < heads; ++h) {
      const State& s = parts[static_cast<size_t>(h)][p];
      for (int i = 0; i < d; ++i)
        o[static_cast<size_t>(h * d + i)] = static_cast<float>(s.o[static_cast<size_t>(i)]);
      lse[static_cast<size_t>(h)] = static_cast<float>(s.lse);
    }
    MergeStatesInto(o_acc.data(), lse_acc.data(), o.data(), lse.data(), heads, d);
  }
  for (int h = 0; h < heads; ++h) {
    const State& w = want[static_cast<size_t>(h)];
    EXPECT_NEAR(lse_acc[static_cast<size_t>(h)], w.lse, 1e-4 * std::max(1.0, std::fabs(w.lse)));
    for (int i = 0; i < d; ++i) {
      EXPECT_NEAR(o_acc[static_cast<size_t>(h * d + i)], w.o[static_cast<size_t>(i)], 1e-5)
          << "head " << h << " elem " << i;
    }
  }
}

TEST(LseMergeTest, EmptyPartsAreTheIdentity) {
  const int d = 32;
  std::vector<float> o(d, 0.0f), part(d, 1.5f);
  float lse = -INFINITY;
  const float empty = -INFINITY, some = 2.0f;
  MergeStatesInto(o.data(), &lse, part.data(), &empty, 1, d);
  EXPECT_EQ(lse, -INFINITY);
  EXPECT_EQ(o[0], 0.0f);
  MergeStatesInto(o.data(), &lse, part.data(), &some, 1, d);
  EXPECT_EQ(lse, 2.0f);
  EXPECT_EQ(o[5], 1.5f);
  MergeStatesInto(o.data(), &lse, o.data(), &empty, 1, d);
  EXPECT_EQ(lse, 2.0f);
  EXPECT_EQ(o[31], 1.5f);
}

TEST(LseMergeTest, ExtremeLseDoesNotOverflow) {
  const int d = 32;
  std::vector<float> a(d, 1.0f), b(d, 3.0f);
  float lse_a = 1000.0f;
  const float lse_b = 1000.0f;
  MergeStatesInto(a.data(), &lse_a, b.data(), &lse_b, 1, d);
  EXPECT_FLOAT_EQ(a[0], 2.0f);
  EXPECT_NEAR(lse_a, 1000.0f + std::log(2.0f), 1e-3);
}

}  // namespace
}  // namespace attic
