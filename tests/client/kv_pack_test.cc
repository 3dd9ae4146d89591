#include "client/internal/kv_pack.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace attic::client_internal {
namespace {

constexpr DType kDTypes[] = {DType::kFloat32, DType::kBFloat16, DType::kFloat16};

// Random values stored in `dtype`: n elements of raw bytes.
std::vector<std::byte> RandomTensor(DType dtype, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
  std::vector<float> f(n);
  for (float& x : f) x = dist(rng);
  std::vector<std::byte> out(n * DTypeSize(dtype));
  ConvertFromFloat(dtype, f.data(), out.data(), n);
  return out;
}

// The expected bytes of one element converted from `from` to `to`.
std::vector<std::byte> ConvertOne(DType from, const std::byte* src, DType to) {
  std::vector<std::byte> out(DTypeSize(to));
  ConvertDType(from, src, to, out.data(), 1);
  return out;
}

class PackBlockMajorTest : public ::testing::TestWithParam<std::tuple<DType, DType>> {};

// Every dtype pair, a partial last block, a head slice and a token slice.
TEST_P(PackBlockMajorTest, MatchesElementwiseConversion) {
  const auto [from, to] = GetParam();
  const int n = 150, hkv = 4, d = 32, block = 16;
  const std::vector<std::byte> src = RandomTensor(from, static_cast<size_t>(n * hkv * d), 7);
  const TensorView view(src.data(), from, {n, hkv, d});
  ASSERT_TRUE(CheckView("k", view, {-1, hkv, d}).ok());
  const int64_t t0 = 32, t1 = 117;  // 85 tokens: 6 blocks, the last one with 5 rows
  const int h0 = 1, h1 = 3;
  const size_t bytes = BlockMajorBytes(t1 - t0, h1 - h0, block, d, to);
  ASSERT_EQ(bytes, 2u * 6 * 16 * 32 * DTypeSize(to));
  std::vector<std::byte> dst(bytes, std::byte{0x5a});
  PackBlockMajor(view, t0, t1, h0, h1, block, to, dst.data());

  const size_t esize = DTypeSize(to);
  for (int h = h0; h < h1; ++h) {
    for (int64_t t = 0; t < 96; ++t) {  // padded to 6 blocks
      for (int i = 0; i < d; ++i) {
        const size_t at = ((static_cast<size_t>(h - h0) * 96 + static_cast<size_t>(t)) * d +
                           static_cast<size_t>(i)) *
                          esize;
        std::vector<std::byte> want(esize, std::byte{0});
        if (t < t1 - t0) {
          const size_t src_at =
              ((static_cast<size_t>(t0 + t) * hkv + static_cast<size_t>(h)) * d + i) *
              DTypeSize(from);
          want = ConvertOne(from, src.data() + src_at, to);
        }
        ASSERT_EQ(std::memcmp(dst.data() + at, want.data(), esize), 0)
            << "head " << h << " token " << t << " elem " << i;
      }
    }
  }
}

std::string PairName(const ::testing::TestParamInfo<std::tuple<DType, DType>>& pair) {
  return std::string(DTypeName(std::get<0>(pair.param))) + "_to_" +
         std::string(DTypeName(std::get<1>(pair.param)));
}

INSTANTIATE_TEST_SUITE_P(AllPairs, PackBlockMajorTest,
                         ::testing::Combine(::testing::ValuesIn(kDTypes),
                                            ::testing::ValuesIn(kDTypes)),
                         PairName);

// A strided view: memory laid out [Hkv, n, D] seen as [n, Hkv, D], and a stride-2 last dim.
TEST(PackBlockMajorTest, StridedViewsEqualContiguousOnes) {
  const int n = 40, hkv = 2, d = 32, block = 16;
  const std::vector<std::byte> contiguous =
      RandomTensor(DType::kFloat32, static_cast<size_t>(n * hkv * d), 3);
  const auto* c = reinterpret_cast<const float*>(contiguous.data());
  std::vector<float> head_major(static_cast<size_t>(n * hkv * d));
  std::vector<float> spaced(static_cast<size_t>(n * hkv * d * 2), 99.0f);
  for (int t = 0; t < n; ++t) {
    for (int h = 0; h < hkv; ++h) {
      for (int i = 0; i < d; ++i) {
        const float x = c[(t * hkv + h) * d + i];
        head_major[static_cast<size_t>((h * n + t) * d + i)] = x;
        spaced[static_cast<size_t>(((t * hkv + h) * d + i) * 2)] = x;
      }
    }
  }
  const TensorView a(contiguous.data(), DType::kFloat32, {n, hkv, d});
  const TensorView b(head_major.data(), DType::kFloat32, {n, hkv, d}, {d, n * d, 1});
  const TensorView s(spaced.data(), DType::kFloat32, {n, hkv, d}, {hkv * d * 2, d * 2, 2});
  const size_t bytes = BlockMajorBytes(n, hkv, block, d, DType::kBFloat16);
  std::vector<std::byte> pa(bytes), pb(bytes), ps(bytes);
  PackBlockMajor(a, 0, n, 0, hkv, block, DType::kBFloat16, pa.data());
  PackBlockMajor(b, 0, n, 0, hkv, block, DType::kBFloat16, pb.data());
  PackBlockMajor(s, 0, n, 0, hkv, block, DType::kBFloat16, ps.data());
  EXPECT_EQ(pa, pb);
  EXPECT_EQ(pa, ps);
}

TEST(PackRowsTest, SlicesAndConverts) {
  const int rows = 8, d = 32;
  const std::vector<std::byte> src = RandomTensor(DType::kFloat16, rows * d, 5);
  const TensorView view(src.data(), DType::kFloat16, {rows, d});
  std::vector<std::byte> same(3 * d * 2), wide(3 * d * 4);
  PackRows(view, 2, 5, DType::kFloat16, same.data());
  EXPECT_EQ(std::memcmp(same.data(), src.data() + 2 * d * 2, same.size()), 0);
  PackRows(view, 2, 5, DType::kFloat32, wide.data());
  std::vector<float> want(3 * d);
  ConvertToFloat(DType::kFloat16, src.data() + 2 * d * 2, want.data(), want.size());
  EXPECT_EQ(std::memcmp(wide.data(), want.data(), wide.size()), 0);
}

TEST(CheckViewTest, NamesWhatIsWrong) {
  std::vector<float> buf(64 * 2 * 32);
  const TensorView good(buf.data(), DType::kFloat32, {64, 2, 32});
  EXPECT_TRUE(CheckView("k", good, {-1, 2, 32}).ok());
  Status s = CheckView("k", good, {-1, 4, 32});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "k: expected [n, 4, 32], got [64, 2, 32] fp32");
  EXPECT_EQ(CheckView("q", TensorView(buf.data(), DType::kFloat32, {64, 64}), {-1, 2, 32}).code(),
            StatusCode::kInvalidArgument);
  s = CheckView("v", TensorView(nullptr, DType::kFloat32, {1, 2, 32}), {-1, 2, 32});
  EXPECT_NE(s.message().find("null data"), std::string::npos) << s;
  EXPECT_TRUE(CheckView("v", TensorView(nullptr, DType::kFloat32, {0, 2, 32}), {-1, 2, 32}).ok());
  s = CheckView("v", TensorView(buf.data(), static_cast<DType>(7), {1, 2, 32}), {-1, 2, 32});
  EXPECT_NE(s.message().find("unknown dtype"), std::string::npos) << s;
  s = CheckView("v", TensorView(buf.data(), DType::kFloat32, {2, 2, 32}, {-64, 32, 1}),
                {-1, 2, 32});
  EXPECT_NE(s.message().find("negative stride"), std::string::npos) << s;
}

}  // namespace
}  // namespace attic::client_internal
