// Sparse decode attention: exact attention over a sorted selection of positions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "attention_workers/decode_attention.h"
#include "attention_workers/reference_attention.h"
#include "tests/attention_workers/kv_fixture.h"

namespace attic {
namespace {

using testing::BlockedKv;
using testing::RandomBlockedKv;
using testing::RandomNormal;

std::vector<int32_t> RandomSelection(int tokens, int count, uint64_t seed) {
  std::vector<int32_t> all(static_cast<size_t>(tokens));
  for (int i = 0; i < tokens; ++i) all[static_cast<size_t>(i)] = i;
  std::mt19937_64 rng(seed);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(static_cast<size_t>(count));
  std::sort(all.begin(), all.end());
  return all;
}

class SparseSelections : public ::testing::TestWithParam<std::tuple<int, DType>> {};

TEST_P(SparseSelections, MatchesReferenceOverSelectedTokens) {
  const auto [count, dtype] = GetParam();
  const int d = 128, g = 4, tokens = 3000;
  const BlockedKv kv = RandomBlockedKv(tokens, d, 64, dtype, 11);
  auto positions = RandomSelection(tokens, count, 12 + count);
  // Sinks and a local window: contiguous ranges mixed with scattered picks.
  for (int i = 0; i < 4; ++i) positions.push_back(i);
  for (int i = tokens - 70; i < tokens; ++i) positions.push_back(i);
  std::sort(positions.begin(), positions.end());
  positions.erase(std::unique(positions.begin(), positions.end()), positions.end());

  std::vector<KvRun> selected;
  for (int32_t p : positions) selected.push_back({kv.KRow(p), kv.VRow(p), 1});
  const auto q = RandomNormal(static_cast<size_t>(g) * d, 3, 2.0f);
  std::vector<double> o_ref(static_cast<size_t>(g) * d), lse_ref(static_cast<size_t>(g));
  ReferenceAttention(q.data(), g, d, 0.0884f, dtype, selected, o_ref.data(), lse_ref.data());

  for (IsaLevel isa : SupportedIsaLevels()) {
    SCOPED_TRACE(std::string(IsaName(isa)));
    std::vector<float> out(static_cast<size_t>(g) * d), lse(static_cast<size_t>(g));
    const Status s = SparseDecodeAttention(
        {.q = q.data(), .group_size = g, .head_dim = d, .dtype = dtype, .scale = 0.0884f,
         .blocks = kv.runs, .block_size = 64, .positions = positions, .out = out.data(),
         .lse = lse.data()},
        isa);
    ASSERT_TRUE(s.ok()) << s;
    for (int h = 0; h < g; ++h) {
      EXPECT_LT(RelativeError(out.data() + h * d, o_ref.data() + h * d, d),
                dtype == DType::kFloat32 ? 1e-3 : 5e-3);
      EXPECT_NEAR(lse[static_cast<size_t>(h)], lse_ref[static_cast<size_t>(h)], 1e-3);
    }
  }
}

std::string SelectionName(const ::testing::TestParamInfo<std::tuple<int, DType>>& info) {
  return "k" + std::to_string(std::get<0>(info.param)) + "_" +
         std::string(DTypeName(std::get<1>(info.param)));
}

INSTANTIATE_TEST_SUITE_P(Kernels, SparseSelections,
                         ::testing::Combine(::testing::Values(0, 1, 37, 100, 2000),
                                            ::testing::Values(DType::kFloat32, DType::kBFloat16,
                                                              DType::kFloat16)),
                         SelectionName);

TEST(SparseDecodeAttention, RejectsBadPositions) {
  const int d = 64, g = 2;
  const BlockedKv kv = RandomBlockedKv(100, d, 64, DType::kBFloat16, 1);
  const auto q = RandomNormal(static_cast<size_t>(g) * d, 1);
  std::vector<float> out(static_cast<size_t>(g) * d), lse(static_cast<size_t>(g));
  auto run = [&](std::vector<int32_t> pos, int block_size = 64) {
    return SparseDecodeAttention({.q = q.data(), .group_size = g, .head_dim = d,
                                  .dtype = DType::kBFloat16, .scale = 0.1f, .blocks = kv.runs,
                                  .block_size = block_size, .positions = pos,
                                  .out = out.data(), .lse = lse.data()})
        .code();
  };
  EXPECT_EQ(run({1, 5, 99}), StatusCode::kOk);
  EXPECT_EQ(run({5, 1}), StatusCode::kInvalidArgument);
  EXPECT_EQ(run({5, 5}), StatusCode::kInvalidArgument);
  EXPECT_EQ(run({-1}), StatusCode::kInvalidArgument);
  EXPECT_EQ(run({100}), StatusCode::kOutOfRange);
  EXPECT_EQ(run({1}, 0), StatusCode::kInvalidArgument);
  EXPECT_EQ(run({1}, 32), StatusCode::kInvalidArgument);  // blocks hold 64, not 32
}

}  // namespace
}  // namespace attic
