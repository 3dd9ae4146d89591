// Decode attention on the real activations of the reference model (shared/data/qkv), against
// fp64 attention over the same stored values, on every ISA level.
//
// Every kStepStride-th decode step is checked (16 in the default run; the `slow` binary
// checks all 256). Skips with a message when ../shared is absent.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "attention_workers/decode_attention.h"
#include "attention_workers/reference_attention.h"
#include "common/npy.h"
#include "tests/attention_workers/kv_fixture.h"
#include "tests/testing/shared_data.h"

#ifndef ATTIC_REAL_STEP_STRIDE
#define ATTIC_REAL_STEP_STRIDE 16
#endif

namespace attic {
namespace {

constexpr int kStepStride = ATTIC_REAL_STEP_STRIDE;
constexpr int kFirstDecodePosition = 16128;
constexpr float kScale = 0.08838834764831845f;

std::vector<float> ToFloat(const NpyArray& a) {
  std::vector<float> out(static_cast<size_t>(a.num_elements()));
  ConvertToFloat(a.dtype, a.data.data(), out.data(), out.size());
  return out;
}

class RealActivations : public ::testing::TestWithParam<std::tuple<int, DType>> {};

TEST_P(RealActivations, DecodeStepsMatchFp64Attention) {
  const auto dir = testing::QkvDir();
  if (!dir) GTEST_SKIP() << testing::kNoSharedDataMessage;
  const auto [layer, dtype] = GetParam();
  const std::string prefix = *dir + "/L" + std::to_string(layer) + "_";
  auto k_npy = ReadNpy(prefix + "k.npy");
  auto v_npy = ReadNpy(prefix + "v.npy");
  auto q_npy = ReadNpy(prefix + "q_decode.npy");
  ASSERT_TRUE(k_npy.ok() && v_npy.ok() && q_npy.ok()) << k_npy.status() << v_npy.status();
  ASSERT_EQ(k_npy->shape, (std::vector<int64_t>{16384, 2, 128}));
  ASSERT_EQ(q_npy->shape, (std::vector<int64_t>{256, 8, 128}));
  const int tokens = 16384, hkv = 2, hq = 8, d = 128, g = hq / hkv;
  const auto k = ToFloat(*k_npy), v = ToFloat(*v_npy), q = ToFloat(*q_npy);

  double worst = 0.0;
  for (int h = 0; h < hkv; ++h) {
    const auto kv = testing::MakeBlockedKv(k.data() + h * d, v.data() + h * d, tokens, d,
                                           static_cast<size_t>(hkv) * d, 64, dtype);
    for (int step = 0; step < 256; step += kStepStride) {
      // Causal: the query at position p attends to keys 0..p.
      const int context = kFirstDecodePosition + step + 1;
      std::vector<KvRun> runs(kv.runs.begin(), kv.runs.begin() + (context + 63) / 64);
      runs.back().num_tokens = context - 64 * (static_cast<int>(runs.size()) - 1);
      const float* qg = q.data() + (static_cast<size_t>(step) * hq + h * g) * d;
      std::vector<double> o_ref(static_cast<size_t>(g) * d), lse_ref(static_cast<size_t>(g));
      ReferenceAttention(qg, g, d, kScale, dtype, runs, o_ref.data(), lse_ref.data());
      for (IsaLevel isa : SupportedIsaLevels()) {
        std::vector<float> out(static_cast<size_t>(g) * d), lse(static_cast<size_t>(g));
        ASSERT_TRUE(DecodeAttention({.q = qg, .group_size = g, .head_dim = d, .dtype = dtype,
                                     .scale = kScale, .runs = runs, .out = out.data(),
                                     .lse = lse.data()},
                                    isa)
                        .ok());
        for (int i = 0; i < g; ++i) {
          const double err = RelativeError(out.data() + i * d, o_ref.data() + i * d, d);
          worst = std::max(worst, err);
          EXPECT_LT(err, dtype == DType::kFloat32 ? 1e-3 : 5e-3)
              << "layer " << layer << " kv head " << h << " step " << step << " head " << i
              << " isa " << IsaName(isa);
          EXPECT_NEAR(lse[static_cast<size_t>(i)], lse_ref[static_cast<size_t>(i)], 1e-3)
              << "step " << step << " isa " << IsaName(isa);
        }
      }
    }
  }
  RecordProperty("worst_relative_error", std::to_string(worst));
}

std::string LayerName(const ::testing::TestParamInfo<std::tuple<int, DType>>& info) {
  return "L" + std::to_string(std::get<0>(info.param)) + "_" +
         std::string(DTypeName(std::get<1>(info.param)));
}

INSTANTIATE_TEST_SUITE_P(Layers, RealActivations,
                         ::testing::Combine(::testing::Values(1, 4),
                                            ::testing::Values(DType::kFloat32, DType::kBFloat16,
                                                              DType::kFloat16)),
                         LayerName);

}  // namespace
}  // namespace attic
