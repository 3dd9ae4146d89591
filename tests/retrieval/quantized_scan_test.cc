#include "attention_workers/retrieval/quantized_scan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "attention_workers/retrieval/internal/quantizer.h"
#include "tests/retrieval/key_fixture.h"

namespace attic::retrieval {
namespace {

// Gaussian keys with one large dimension (as real keys have), stored in dtype.
TestKeys RandomKeys(int64_t n, int d, DType dtype, uint64_t seed) {
  std::vector<float> f = Gaussian(n, d, 0.0f, seed);
  for (size_t i = 3; i < f.size(); i += static_cast<size_t>(d)) f[i] += 4.0f;
  return MakeTestKeys(std::move(f), d, dtype);
}

TEST(ScalarQuantizer, CodesDecodeWithinTheQuantizationError) {
  const int d = 64;
  const TestKeys keys = RandomKeys(40, d, DType::kFloat32, 3);
  for (int bits : {4, 1}) {
    auto quant = internal::ScalarQuantizer::Fit(keys.f.data(), 40, d, bits);
    ASSERT_TRUE(quant.ok());
    internal::CodeStore store(*quant);
    for (int i = 0; i < 40; ++i) store.Append(*quant, keys.f.data() + i * d);
    EXPECT_EQ(store.num_blocks(), 3);
    EXPECT_EQ(store.bytes(), 3 * quant->block_bytes());
    double err = 0.0, spread = 0.0;
    for (int i = 0; i < 40; ++i) {
      const uint8_t* block = store.data() + (i / 16) * quant->block_bytes();
      for (int j = 0; j < d; ++j) {
        const float x = keys.f[static_cast<size_t>(i) * d + j];
        const float y = quant->Decode(block, i % 16, j);
        if (bits == 4) {
          // Half a step: the range of a dimension over 15 steps, at most ~2 * 4.5 sigma / 15.
          EXPECT_LE(std::abs(x - y), 0.5f * 12.0f / 15.0f + 1e-4f) << i << " " << j;
        }
        err += (x - y) * (x - y);
        spread += (x - (j == 3 ? 4.0 : 0.0)) * (x - (j == 3 ? 4.0 : 0.0));
      }
    }
    // 1 bit keeps the sign around the mean: the error is well below the spread itself.
    EXPECT_LT(err, (bits == 4 ? 0.02 : 0.5) * spread) << bits;
  }
}

TEST(ScalarQuantizer, EveryIsaScansTheSameApproximateScores) {
  const int d = 128;
  const TestKeys keys = RandomKeys(50, d, DType::kFloat32, 5);
  for (int bits : {4, 1}) {
    auto quant = internal::ScalarQuantizer::Fit(keys.f.data(), 50, d, bits);
    ASSERT_TRUE(quant.ok());
    internal::CodeStore store(*quant);
    for (int i = 0; i < 50; ++i) store.Append(*quant, keys.f.data() + i * d);
    for (int g : {1, 4, 11}) {
      const std::vector<float> q = Gaussian(g, d, 0.0f, 9 + g);
      const internal::ScanQuery sq =
          quant->PrepareQuery({.q = q.data(), .group_size = g, .head_dim = d});
      std::vector<float> want(64);
      quant->Scan(sq, store.data(), store.num_blocks(), want.data(), IsaLevel::kScalar);
      for (int i = 0; i < 50; ++i) {  // the scalar kernel is exact arithmetic on decoded keys
        double best = -INFINITY;
        for (int h = 0; h < g; ++h) {
          double s = 0;
          for (int j = 0; j < d; ++j) {
            s += q[static_cast<size_t>(h) * d + j] *
                 quant->Decode(store.data() + (i / 16) * quant->block_bytes(), i % 16, j);
          }
          best = std::max(best, s);
        }
        EXPECT_NEAR(want[i], best, 1e-3 * (1 + std::abs(best)));
      }
      for (IsaLevel isa : SupportedIsaLevels()) {
        std::vector<float> got(64);
        quant->Scan(sq, store.data(), store.num_blocks(), got.data(), isa);
        for (int i = 0; i < 50; ++i) {
          EXPECT_NEAR(got[i], want[i], 1e-3 * (1 + std::abs(want[i]))) << IsaName(isa);
        }
      }
    }
  }
}

TEST(QuantizedScan, RecallIsOneWhenEveryKeyIsReranked) {
  const TestKeys keys = RandomKeys(700, 128, DType::kBFloat16, 11);
  for (int bits : {4, 1}) {
    auto index = BuildQuantizedScan(keys.rows, {.bits = bits});
    ASSERT_TRUE(index.ok());
    EXPECT_EQ((*index)->kind(), IndexKind::kQuantized);
    const std::vector<float> q = Gaussian(4, 128, 0.0f, 12);
    const GroupScorer scorer({.q = q.data(), .group_size = 4, .head_dim = 128}, keys.rows.dtype);
    std::vector<float> exact(700);
    scorer.ScoreRange(keys.rows, 0, 700, exact.data());
    const std::vector<int32_t> truth = TopKPositions(exact, 20);
    SearchResult r;
    ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 20, .effort = 700}, &r).ok());
    EXPECT_EQ(r.positions, truth);
    // Codes of every key (44 blocks of 16) + every re-ranked row.
    EXPECT_EQ(r.stats.keys_scored, 700);
    EXPECT_EQ(r.stats.bytes_read, 44 * 128 * 16 * bits / 8 + 700 * 256);
    ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 20, .effort = 60}, &r).ok());
    EXPECT_EQ(r.stats.keys_scored, 60);
    EXPECT_EQ(r.positions.size(), 20u);
    EXPECT_GE(Recall(r.positions, truth), bits == 4 ? 0.9 : 0.5) << bits;
  }
}

TEST(QuantizedScan, AddMakesNewKeysSearchable) {
  TestKeys keys = RandomKeys(300, 128, DType::kFloat32, 13);
  auto index = BuildQuantizedScan(keys.rows.prefix(0), {});
  ASSERT_TRUE(index.ok());
  EXPECT_EQ((*index)->size(), 0);
  const std::vector<float> q = Gaussian(2, 128, 0.0f, 14);
  const GroupScorer scorer({.q = q.data(), .group_size = 2, .head_dim = 128}, DType::kFloat32);
  SearchResult r;
  ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 5}, &r).ok());
  EXPECT_TRUE(r.positions.empty());
  ASSERT_TRUE((*index)->Add(keys.rows.prefix(200)).ok());
  // Key 250 becomes the query's best match, far outside the fitted range: clamped, yet found.
  for (int j = 0; j < 128; ++j) keys.f[250 * 128 + j] = 50.0f * q[j];
  std::memcpy(keys.data.data() + 250 * 128 * 4, keys.f.data() + 250 * 128, 128 * 4);
  ASSERT_TRUE((*index)->Add(keys.rows).ok());
  EXPECT_EQ((*index)->size(), 300);
  ASSERT_TRUE((*index)->Search(keys.rows, scorer, {.top_k = 5}, &r).ok());
  ASSERT_FALSE(r.positions.empty());
  EXPECT_EQ(r.positions[0], 250);
}

TEST(QuantizedScan, RejectsInvalidArguments) {
  const TestKeys keys = RandomKeys(10, 128, DType::kBFloat16, 15);
  EXPECT_FALSE(BuildQuantizedScan(keys.rows, {.bits = 2}).ok());
  EXPECT_FALSE(BuildQuantizedScan(keys.rows, {.rerank = 0}).ok());
  auto index = BuildQuantizedScan(keys.rows, {});
  ASSERT_TRUE(index.ok());
  EXPECT_FALSE((*index)->Add(keys.rows.prefix(5)).ok());
  const std::vector<float> q = Gaussian(4, 128, 0.0f, 16);
  const GroupScorer scorer({.q = q.data(), .group_size = 4, .head_dim = 128}, DType::kBFloat16);
  SearchResult r;
  EXPECT_FALSE((*index)->Search(keys.rows, scorer, {.top_k = 0}, &r).ok());
  EXPECT_FALSE((*index)->Search(keys.rows.prefix(3), scorer, {.top_k = 1}, &r).ok());
  const GroupScorer fp32({.q = q.data(), .group_size = 4, .head_dim = 128}, DType::kFloat32);
  EXPECT_FALSE((*index)->Search(keys.rows, fp32, {.top_k = 1}, &r).ok());
}

}  // namespace
}  // namespace attic::retrieval
