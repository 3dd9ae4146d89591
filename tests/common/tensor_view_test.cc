#include "common/tensor_view.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace attic {
namespace {

// Byte distance of an element from the view's base pointer.
std::ptrdiff_t Offset(const TensorView& v, std::initializer_list<int64_t> idx) {
  return static_cast<const std::byte*>(v.ElementPtr(idx)) - static_cast<const std::byte*>(v.data());
}

TEST(TensorViewTest, DefaultIsEmptyRankZero) {
  const TensorView v;
  EXPECT_EQ(v.data(), nullptr);
  EXPECT_EQ(v.rank(), 0);
  EXPECT_EQ(v.dtype(), DType::kFloat32);
  EXPECT_TRUE(v.is_contiguous());
}

TEST(TensorViewTest, RowMajorShapeAndStrides) {
  std::vector<uint16_t> buf(size_t{16384} * 2 * 128);
  const TensorView k(buf.data(), DType::kBFloat16, {16384, 2, 128});
  EXPECT_EQ(k.data(), buf.data());
  EXPECT_EQ(k.dtype(), DType::kBFloat16);
  EXPECT_EQ(k.rank(), 3);
  EXPECT_EQ(k.dim(0), 16384);
  EXPECT_EQ(k.dim(1), 2);
  EXPECT_EQ(k.dim(2), 128);
  EXPECT_EQ(k.stride(0), 256);
  EXPECT_EQ(k.stride(1), 128);
  EXPECT_EQ(k.stride(2), 1);
  EXPECT_EQ(k.num_elements(), 16384 * 2 * 128);
  EXPECT_EQ(k.num_bytes(), buf.size() * sizeof(uint16_t));
  EXPECT_TRUE(k.is_contiguous());
  EXPECT_EQ(k.ShapeString(), "[16384, 2, 128] bf16");
}

TEST(TensorViewTest, ElementPtrIsInBytesOfTheDType) {
  const std::vector<float> f32(size_t{2} * 3 * 4 * 5);
  const TensorView a(f32.data(), DType::kFloat32, {2, 3, 4, 5});
  EXPECT_EQ(Offset(a, {0, 0, 0, 0}), 0);
  EXPECT_EQ(Offset(a, {0, 0, 0, 1}), 4);
  EXPECT_EQ(Offset(a, {0, 0, 1, 0}), 5 * 4);
  EXPECT_EQ(Offset(a, {1, 2, 3, 4}), (((1 * 3 + 2) * 4 + 3) * 5 + 4) * 4);
  EXPECT_EQ(a.ElementPtr({1, 2, 3, 4}), &f32[(((1 * 3 + 2) * 4 + 3) * 5 + 4)]);

  const std::vector<uint16_t> f16(size_t{7} * 9);
  const TensorView b(f16.data(), DType::kFloat16, {7, 9});
  EXPECT_EQ(Offset(b, {3, 5}), (3 * 9 + 5) * 2);
  EXPECT_EQ(b.ElementPtr({6, 8}), &f16[62]);
}

TEST(TensorViewTest, EveryElementOfRowMajorViewIsDistinctAndInOrder) {
  std::vector<float> buf(size_t{3} * 4 * 5);
  const TensorView v(buf.data(), DType::kFloat32, {3, 4, 5});
  std::ptrdiff_t expected = 0;
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 4; ++j) {
      for (int64_t k = 0; k < 5; ++k) {
        ASSERT_EQ(Offset(v, {i, j, k}), expected);
        expected += 4;
      }
    }
  }
}

TEST(TensorViewTest, ExplicitStridesTranspose) {
  // A [4, 3] fp32 matrix viewed transposed as [3, 4].
  std::vector<float> m(12);
  for (size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>(i);
  const TensorView t(m.data(), DType::kFloat32, {3, 4}, {1, 3});
  EXPECT_EQ(t.rank(), 2);
  EXPECT_EQ(t.stride(0), 1);
  EXPECT_EQ(t.stride(1), 3);
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.num_elements(), 12);
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t c = 0; c < 4; ++c) {
      EXPECT_EQ(*static_cast<const float*>(t.ElementPtr({r, c})),
                m[static_cast<size_t>(c * 3 + r)]);
    }
  }
}

TEST(TensorViewTest, ExplicitRowMajorStridesAreContiguous) {
  std::vector<float> m(24);
  const TensorView v(m.data(), DType::kFloat32, {2, 3, 4}, {12, 4, 1});
  EXPECT_TRUE(v.is_contiguous());
}

TEST(TensorViewTest, PaddedRowsAreNotContiguous) {
  // [4, 6] rows inside a [4, 8] buffer: the row stride skips padding.
  std::vector<uint16_t> m(32);
  const TensorView v(m.data(), DType::kBFloat16, {4, 6}, {8, 1});
  EXPECT_FALSE(v.is_contiguous());
  EXPECT_EQ(v.num_elements(), 24);
  EXPECT_EQ(v.num_bytes(), 48u);
  EXPECT_EQ(Offset(v, {2, 5}), (2 * 8 + 5) * 2);
}

TEST(TensorViewTest, SizeOneDimensionsIgnoreTheirStride) {
  std::vector<float> m(8);
  // One KV head out of a [8, 1] column: the stride of the size-1 dim does not matter.
  const TensorView v(m.data(), DType::kFloat32, {8, 1}, {1, 999});
  EXPECT_TRUE(v.is_contiguous());
}

TEST(TensorViewTest, SliceOfHeadIsStridedView) {
  // Head 1 of a [n, Hkv, D] = [5, 2, 4] tensor: shape [5, 4], strides [8, 1], base at (0, 1, 0).
  std::vector<float> k(size_t{5} * 2 * 4);
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<float>(i);
  const TensorView all(k.data(), DType::kFloat32, {5, 2, 4});
  const TensorView head1(all.ElementPtr({0, 1, 0}), DType::kFloat32, {5, 4}, {8, 1});
  EXPECT_FALSE(head1.is_contiguous());
  for (int64_t t = 0; t < 5; ++t) {
    for (int64_t d = 0; d < 4; ++d) {
      EXPECT_EQ(head1.ElementPtr({t, d}), all.ElementPtr({t, 1, d}));
    }
  }
}

TEST(TensorViewTest, MutableDataWritesThrough) {
  std::vector<float> m(6, 0.0f);
  const TensorView v(m.data(), DType::kFloat32, {2, 3});
  static_cast<float*>(v.mutable_data())[4] = 2.5f;
  EXPECT_EQ(m[4], 2.5f);
}

TEST(TensorViewTest, ZeroSizedDimension) {
  const TensorView v(nullptr, DType::kFloat16, {0, 128});
  EXPECT_EQ(v.num_elements(), 0);
  EXPECT_EQ(v.num_bytes(), 0u);
  EXPECT_EQ(v.ShapeString(), "[0, 128] fp16");
}

TEST(TensorViewTest, RankOneAndFour) {
  std::vector<float> m(10);
  const TensorView one(m.data(), DType::kFloat32, {10});
  EXPECT_EQ(one.rank(), 1);
  EXPECT_EQ(one.stride(0), 1);
  EXPECT_EQ(one.ShapeString(), "[10] fp32");
  const TensorView four(m.data(), DType::kFloat32, {1, 2, 5, 1});
  EXPECT_EQ(four.rank(), TensorView::kMaxRank);
  EXPECT_EQ(four.num_elements(), 10);
  EXPECT_EQ(four.stride(0), 10);
  EXPECT_EQ(four.stride(1), 5);
  EXPECT_EQ(four.stride(2), 1);
  EXPECT_EQ(four.stride(3), 1);
  EXPECT_TRUE(four.is_contiguous());
  EXPECT_EQ(four.ShapeString(), "[1, 2, 5, 1] fp32");
}

TEST(TensorViewTest, IsACheapValue) {
  std::vector<float> m(6);
  const TensorView a(m.data(), DType::kFloat32, {2, 3});
  const TensorView b = a;  // NOLINT(performance-unnecessary-copy-initialization): copy semantics
  EXPECT_EQ(b.data(), a.data());
  EXPECT_EQ(b.ShapeString(), a.ShapeString());
  EXPECT_EQ(b.stride(0), 3);
}

}  // namespace
}  // namespace attic
