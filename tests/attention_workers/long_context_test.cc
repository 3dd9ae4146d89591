// 64K-token contexts for every head size, group size and dtype (label `slow`).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>

#include "tests/attention_workers/attention_check.h"

namespace attic {
namespace {

using Shape = std::tuple<int /*D*/, int /*G*/, DType>;
class LongContext : public ::testing::TestWithParam<Shape> {};

TEST_P(LongContext, MatchesFp64Reference) {
  const auto [d, g, dtype] = GetParam();
  const int context = 65536 + 33;  // not a multiple of the block size
  const auto kv = testing::RandomBlockedKv(context, d, 64, dtype, 77 + d + g);
  const auto q = testing::RandomNormal(static_cast<size_t>(g) * d, 5 + g, 2.0f);
  testing::ExpectMatchesReference(kv, q, g, 1.0f / std::sqrt(static_cast<float>(d)), kv.runs);
}

std::string LongName(const ::testing::TestParamInfo<Shape>& info) {
  return "d" + std::to_string(std::get<0>(info.param)) + "_g" +
         std::to_string(std::get<1>(info.param)) + "_" +
         std::string(DTypeName(std::get<2>(info.param)));
}

INSTANTIATE_TEST_SUITE_P(Kernels, LongContext,
                         ::testing::Combine(::testing::Values(64, 128, 256),
                                            ::testing::Values(1, 4, 8),
                                            ::testing::Values(DType::kFloat32, DType::kBFloat16,
                                                              DType::kFloat16)),
                         LongName);

}  // namespace
}  // namespace attic
