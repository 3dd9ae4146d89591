// Decode attention kernels against the fp64 reference, on every ISA level this CPU has.
#include "attention_workers/decode_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "attention_workers/reference_attention.h"
#include "tests/attention_workers/attention_check.h"
#include "tests/attention_workers/kv_fixture.h"

namespace attic {
namespace {

using testing::BlockedKv;
using testing::ExpectMatchesReference;
using testing::RandomBlockedKv;
using testing::RandomNormal;

using Shape = std::tuple<int /*context*/, int /*D*/, int /*G*/, DType>;

class DenseShapes : public ::testing::TestWithParam<Shape> {};

TEST_P(DenseShapes, MatchesFp64Reference) {
  const auto [context, d, g, dtype] = GetParam();
  const BlockedKv kv = RandomBlockedKv(context, d, 64, dtype, 1000 + context + d + g);
  // sigma 2 makes the softmax peaky enough that the running max moves often.
  const auto q = RandomNormal(static_cast<size_t>(g) * d, 7 + context, 2.0f);
  ExpectMatchesReference(kv, q, g, 1.0f / std::sqrt(static_cast<float>(d)), kv.runs);
}

std::string ShapeName(const ::testing::TestParamInfo<Shape>& info) {
  const auto [context, d, g, dtype] = info.param;
  return "ctx" + std::to_string(context) + "_d" + std::to_string(d) + "_g" + std::to_string(g) +
         "_" + std::string(DTypeName(dtype));
}

INSTANTIATE_TEST_SUITE_P(
    Kernels, DenseShapes,
    ::testing::Combine(::testing::Values(1, 5, 64, 65, 127, 1000, 4097),
                       ::testing::Values(64, 128, 256), ::testing::Values(1, 4, 8),
                       ::testing::Values(DType::kFloat32, DType::kBFloat16, DType::kFloat16)),
    ShapeName);

// Group sizes that need several head tiles (and D values between the common ones).
INSTANTIATE_TEST_SUITE_P(
    OddGroups, DenseShapes,
    ::testing::Combine(::testing::Values(300), ::testing::Values(96, 128),
                       ::testing::Values(2, 3, 6, 12, 16, 128),
                       ::testing::Values(DType::kBFloat16, DType::kFloat16)),
    ShapeName);

// Long contexts: 16K here, 64K in long_context_test.cc (label `slow`).
INSTANTIATE_TEST_SUITE_P(
    Long, DenseShapes,
    ::testing::Combine(::testing::Values(16384 + 17), ::testing::Values(128),
                       ::testing::Values(4), ::testing::Values(DType::kBFloat16)),
    ShapeName);

TEST(DecodeAttention, RunBoundariesDoNotMatter) {
  const int d = 128, g = 4;
  const BlockedKv kv = RandomBlockedKv(1000, d, 64, DType::kBFloat16, 5);
  // Split the same tokens into irregular runs (1, 2, 3, ... tokens) across block boundaries.
  std::vector<KvRun> runs;
  for (int t = 0, want = 1; t < kv.tokens; ++want) {
    const int n = std::min({want, kv.tokens - t, kv.block - t % kv.block});
    runs.push_back({kv.KRow(t), kv.VRow(t), n});
    t += n;
  }
  const auto q = RandomNormal(static_cast<size_t>(g) * d, 3);
  ExpectMatchesReference(kv, q, g, 0.088f, runs);
}

TEST(DecodeAttention, EmptyContextIsTheMergeIdentity) {
  const int d = 64, g = 4;
  const auto q = RandomNormal(static_cast<size_t>(g) * d, 1);
  for (IsaLevel isa : SupportedIsaLevels()) {
    std::vector<float> out(static_cast<size_t>(g) * d, 5.0f), lse(static_cast<size_t>(g), 5.0f);
    ASSERT_TRUE(DecodeAttention({.q = q.data(), .group_size = g, .head_dim = d,
                                 .dtype = DType::kBFloat16, .scale = 0.125f, .runs = {},
                                 .out = out.data(), .lse = lse.data()},
                                isa)
                    .ok());
    for (float x : out) EXPECT_EQ(x, 0.0f);
    for (float x : lse) EXPECT_EQ(x, -INFINITY);
  }
}

TEST(DecodeAttention, ExtremeScoresStayFinite) {
  // Large q makes scores in the hundreds (exp would overflow fp32 without the running max).
  const int d = 128, g = 4;
  const BlockedKv kv = RandomBlockedKv(700, d, 64, DType::kFloat32, 9);
  const auto q = RandomNormal(static_cast<size_t>(g) * d, 4, 30.0f);
  ExpectMatchesReference(kv, q, g, 1.0f, kv.runs);
}

TEST(DecodeAttention, RejectsBadArguments) {
  const int d = 128, g = 4;
  const auto q = RandomNormal(static_cast<size_t>(g) * d, 1);
  std::vector<float> out(static_cast<size_t>(g) * d), lse(static_cast<size_t>(g));
  const BlockedKv kv = RandomBlockedKv(10, d, 64, DType::kBFloat16, 2);
  DecodeAttentionParams p{.q = q.data(), .group_size = g, .head_dim = d,
                          .dtype = DType::kBFloat16, .scale = 0.1f, .runs = kv.runs,
                          .out = out.data(), .lse = lse.data()};
  ASSERT_TRUE(DecodeAttention(p).ok());
  const std::vector<KvRun> neg = {{kv.runs[0].k, kv.runs[0].v, -1}};
  const std::vector<KvRun> null_run = {{nullptr, kv.runs[0].v, 3}};
  // Each case breaks one field of the valid parameters.
  const std::vector<std::pair<const char*, void (*)(DecodeAttentionParams&)>> cases = {
      {"null q", [](DecodeAttentionParams& b) { b.q = nullptr; }},
      {"group 0", [](DecodeAttentionParams& b) { b.group_size = 0; }},
      {"group 129", [](DecodeAttentionParams& b) { b.group_size = 129; }},
      {"head_dim 48", [](DecodeAttentionParams& b) { b.head_dim = 48; }},
      {"scale 0", [](DecodeAttentionParams& b) { b.scale = 0.0f; }},
      {"scale NaN", [](DecodeAttentionParams& b) { b.scale = NAN; }},
      {"dtype 9", [](DecodeAttentionParams& b) { b.dtype = static_cast<DType>(9); }},
  };
  for (const auto& [what, breaker] : cases) {
    DecodeAttentionParams bad = p;
    breaker(bad);
    EXPECT_EQ(DecodeAttention(bad).code(), StatusCode::kInvalidArgument) << what;
  }
  for (const auto* runs : {&neg, &null_run}) {
    DecodeAttentionParams bad = p;
    bad.runs = *runs;
    EXPECT_EQ(DecodeAttention(bad).code(), StatusCode::kInvalidArgument);
  }
}

TEST(DecodeAttention, RejectsIsaTheCpuLacks) {
  if (DetectIsa() == IsaLevel::kAvx512Bf16) GTEST_SKIP() << "this CPU supports every level";
  const int d = 64, g = 1;
  const auto q = RandomNormal(static_cast<size_t>(g) * d, 1);
  std::vector<float> out(static_cast<size_t>(d)), lse(1);
  EXPECT_EQ(DecodeAttention({.q = q.data(), .group_size = g, .head_dim = d,
                             .dtype = DType::kBFloat16, .scale = 0.1f, .runs = {},
                             .out = out.data(), .lse = lse.data()},
                            IsaLevel::kAvx512Bf16)
                .code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace attic
