#include "common/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace attic {
namespace {

constexpr DType kAllDTypes[] = {DType::kFloat32, DType::kBFloat16, DType::kFloat16};

uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// Reference decoders written from the format definitions, independent of common/dtype.cc.
// binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
double RefFp16(uint16_t h) {
  const int e = (h >> 10) & 0x1f;
  const int m = h & 0x3ff;
  double v;
  if (e == 0x1f) {
    v = m != 0 ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (e == 0) {
    v = std::ldexp(m, -24);
  } else {
    v = std::ldexp(1024 + m, e - 25);
  }
  return (h & 0x8000) ? -v : v;
}

// bfloat16: 1 sign, 8 exponent (bias 127), 7 mantissa bits.
double RefBf16(uint16_t h) {
  const int e = (h >> 7) & 0xff;
  const int m = h & 0x7f;
  double v;
  if (e == 0xff) {
    v = m != 0 ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (e == 0) {
    v = std::ldexp(m, -133);
  } else {
    v = std::ldexp(128 + m, e - 134);
  }
  return (h & 0x8000) ? -v : v;
}

struct Format {
  const char* name;
  double (*ref_decode)(uint16_t);
  float (*decode)(uint16_t);
  uint16_t (*encode)(float);
  uint16_t max_finite;    // largest finite positive pattern; max_finite + 1 is +infinity
  double overflow_value;  // where +infinity sits for rounding: max_finite's value + one ulp
};

const Format kFp16{"fp16", RefFp16, Fp16ToFloat, FloatToFp16, 0x7bff, 65536.0};
const Format kBf16{"bf16", RefBf16, Bf16ToFloat, FloatToBf16, 0x7f7f, std::ldexp(1.0, 128)};

bool IsNanPattern(const Format& f, uint16_t h) { return std::isnan(f.ref_decode(h)); }

// The correctly rounded (to nearest, ties to even) pattern for x, found by binary search over
// the monotone positive patterns. Returns a NaN pattern's "class" as 0xffff for NaN inputs.
uint16_t RefEncode(const Format& f, float x) {
  if (std::isnan(x)) return 0xffff;
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(x));
  uint16_t lo = 0;
  if (a >= f.ref_decode(f.max_finite)) {
    lo = f.max_finite;
  } else {
    uint16_t hi = f.max_finite;  // invariant: decode(lo) <= a < decode(hi)
    while (hi - lo > 1) {
      const auto mid = static_cast<uint16_t>((lo + hi) / 2);
      if (f.ref_decode(mid) <= a) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
  }
  const double lv = f.ref_decode(lo);
  const double uv = lo == f.max_finite ? f.overflow_value : f.ref_decode(lo + 1);
  const double mid = (lv + uv) / 2;  // exact: both have few significant bits
  uint16_t chosen;
  if (a < mid) {
    chosen = lo;
  } else if (a > mid) {
    chosen = static_cast<uint16_t>(lo + 1);
  } else {
    chosen = (lo & 1) ? static_cast<uint16_t>(lo + 1) : lo;
  }
  return static_cast<uint16_t>(sign | chosen);
}

::testing::AssertionResult EncodesLikeReference(const Format& f, float x) {
  const uint16_t want = RefEncode(f, x);
  const uint16_t got = f.encode(x);
  if (want == 0xffff ? IsNanPattern(f, got) : got == want) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << f.name << "(" << x << ", bits 0x" << std::hex
                                       << FloatBits(x) << ") = 0x" << got << ", want 0x" << want;
}

class HalfFormatTest : public ::testing::TestWithParam<const Format*> {};

TEST_P(HalfFormatTest, DecodeMatchesDefinitionForAllPatterns) {
  const Format& f = *GetParam();
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    const double want = f.ref_decode(bits);
    const float got = f.decode(bits);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << f.name << " 0x" << std::hex << h;
    } else {
      ASSERT_EQ(static_cast<double>(got), want) << f.name << " 0x" << std::hex << h;
      ASSERT_EQ(std::signbit(got), (h & 0x8000) != 0) << f.name << " 0x" << std::hex << h;
    }
  }
}

TEST_P(HalfFormatTest, EveryPatternRoundTripsThroughFloat) {
  const Format& f = *GetParam();
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    const uint16_t back = f.encode(f.decode(bits));
    if (IsNanPattern(f, bits)) {
      ASSERT_TRUE(IsNanPattern(f, back))
          << f.name << " NaN 0x" << std::hex << h << " became 0x" << back;
      ASSERT_EQ(back & 0x8000, bits & 0x8000) << f.name << " NaN sign, 0x" << std::hex << h;
    } else {
      ASSERT_EQ(back, bits) << f.name << " 0x" << std::hex << h;
    }
  }
}

// Every halfway point between neighbouring patterns (including the one between the largest
// finite value and infinity) rounds to the even pattern; one float ulp either side rounds to the
// nearer neighbour.
TEST_P(HalfFormatTest, TiesRoundToEvenAtEveryMidpoint) {
  const Format& f = *GetParam();
  for (uint32_t p = 0; p <= f.max_finite; ++p) {
    const double lv = f.ref_decode(static_cast<uint16_t>(p));
    const double uv =
        p == f.max_finite ? f.overflow_value : f.ref_decode(static_cast<uint16_t>(p + 1));
    const double mid_d = (lv + uv) / 2;
    const auto mid = static_cast<float>(mid_d);
    ASSERT_EQ(static_cast<double>(mid), mid_d) << "midpoint not exact in fp32";
    const auto even = static_cast<uint16_t>((p & 1) ? p + 1 : p);
    for (const float s : {1.0f, -1.0f}) {
      const uint16_t sign = s < 0 ? 0x8000 : 0;
      ASSERT_EQ(f.encode(s * mid), sign | even) << f.name << " tie above 0x" << std::hex << p;
      ASSERT_EQ(f.encode(s * std::nextafter(mid, std::numeric_limits<float>::infinity())),
                sign | (p + 1))
          << f.name << " just above the midpoint above 0x" << std::hex << p;
      ASSERT_EQ(f.encode(s * std::nextafter(mid, 0.0f)), sign | p)
          << f.name << " just below the midpoint above 0x" << std::hex << p;
    }
  }
}

// A sweep over the whole fp32 range (every 997th pattern, both signs) against the reference.
TEST_P(HalfFormatTest, EncodeMatchesReferenceAcrossFloatRange) {
  const Format& f = *GetParam();
  for (uint64_t u = 0; u <= 0x7f800000u; u += 997) {
    const float x = BitsToFloat(static_cast<uint32_t>(u));
    ASSERT_TRUE(EncodesLikeReference(f, x));
    ASSERT_TRUE(EncodesLikeReference(f, -x));
  }
  for (const float x : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::max(),
                        std::numeric_limits<float>::min(), std::numeric_limits<float>::denorm_min(),
                        std::numeric_limits<float>::quiet_NaN()}) {
    EXPECT_TRUE(EncodesLikeReference(f, x));
    EXPECT_TRUE(EncodesLikeReference(f, -x));
  }
}

TEST_P(HalfFormatTest, NanInputsStayNan) {
  const Format& f = *GetParam();
  // Quiet, signalling (a naive rounding would turn 0x7f800001 into infinity), all-ones payload
  // (a naive rounding would carry into the sign bit), and negative NaNs.
  for (const uint32_t bits : {0x7fc00000u, 0x7f800001u, 0x7fbfffffu, 0x7fffffffu, 0xffc00000u,
                              0xff800001u, 0xffffffffu, 0x7f80ffffu}) {
    const uint16_t h = f.encode(BitsToFloat(bits));
    EXPECT_TRUE(IsNanPattern(f, h)) << f.name << " 0x" << std::hex << bits << " -> 0x" << h;
    EXPECT_EQ(h & 0x8000u, (bits >> 16) & 0x8000u) << f.name << " NaN sign";
    EXPECT_TRUE(std::isnan(f.decode(h)));
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, HalfFormatTest, ::testing::Values(&kFp16, &kBf16),
                         [](const auto& param_info) {
                           return std::string(param_info.param->name);
                         });

TEST(Fp16Test, KnownValues) {
  EXPECT_EQ(FloatToFp16(0.0f), 0x0000);
  EXPECT_EQ(FloatToFp16(-0.0f), 0x8000);
  EXPECT_EQ(FloatToFp16(1.0f), 0x3c00);
  EXPECT_EQ(FloatToFp16(-2.0f), 0xc000);
  EXPECT_EQ(FloatToFp16(0.5f), 0x3800);
  EXPECT_EQ(FloatToFp16(65504.0f), 0x7bff);  // largest finite
  EXPECT_EQ(Fp16ToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(Fp16ToFloat(0x3555), 0.333251953125f);
  EXPECT_EQ(FloatToFp16(1.0f / 3.0f), 0x3555);
}

TEST(Fp16Test, OverflowBecomesInfinity) {
  EXPECT_EQ(FloatToFp16(65519.996f), 0x7bff);  // just below the midpoint to 65536
  EXPECT_EQ(FloatToFp16(65520.0f), 0x7c00);    // the midpoint ties to the even pattern: +inf
  EXPECT_EQ(FloatToFp16(65536.0f), 0x7c00);
  EXPECT_EQ(FloatToFp16(1e10f), 0x7c00);
  EXPECT_EQ(FloatToFp16(-1e10f), 0xfc00);
  EXPECT_EQ(FloatToFp16(std::numeric_limits<float>::max()), 0x7c00);
  EXPECT_EQ(FloatToFp16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(FloatToFp16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_TRUE(std::isinf(Fp16ToFloat(0x7c00)));
  EXPECT_GT(Fp16ToFloat(0x7c00), 0.0f);
  EXPECT_LT(Fp16ToFloat(0xfc00), 0.0f);
}

TEST(Fp16Test, Subnormals) {
  const float tiny = std::ldexp(1.0f, -24);  // smallest fp16 subnormal
  EXPECT_EQ(Fp16ToFloat(0x0001), tiny);
  EXPECT_EQ(Fp16ToFloat(0x8001), -tiny);
  EXPECT_EQ(Fp16ToFloat(0x03ff), 1023 * tiny);            // largest subnormal
  EXPECT_EQ(Fp16ToFloat(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(FloatToFp16(tiny), 0x0001);
  EXPECT_EQ(FloatToFp16(1023 * tiny), 0x03ff);
  EXPECT_EQ(FloatToFp16(0.5f * tiny), 0x0000);  // tie between 0 and 1: even is 0
  EXPECT_EQ(FloatToFp16(-0.5f * tiny), 0x8000);
  EXPECT_EQ(FloatToFp16(0.50001f * tiny), 0x0001);
  EXPECT_EQ(FloatToFp16(1.5f * tiny), 0x0002);     // tie between 1 and 2: even is 2
  EXPECT_EQ(FloatToFp16(2.5f * tiny), 0x0002);     // tie between 2 and 3: even is 2
  EXPECT_EQ(FloatToFp16(1023.5f * tiny), 0x0400);  // rounds up into the normal range
  EXPECT_EQ(FloatToFp16(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(FloatToFp16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(FloatToFp16(-std::numeric_limits<float>::denorm_min()), 0x8000);
}

TEST(Bf16Test, KnownValues) {
  EXPECT_EQ(FloatToBf16(0.0f), 0x0000);
  EXPECT_EQ(FloatToBf16(-0.0f), 0x8000);
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(-2.0f), 0xc000);
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(Bf16ToFloat(0x4049), 3.140625f);
  EXPECT_EQ(FloatToBf16(3.14159265f), 0x4049);
}

TEST(Bf16Test, TiesToEven) {
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f808000u)), 0x3f80);  // 1 + 2^-8: tie, even is down
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f818000u)), 0x3f82);  // tie, even is up
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f808001u)), 0x3f81);
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f807fffu)), 0x3f80);
}

TEST(Bf16Test, OverflowBecomesInfinity) {
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(FloatToBf16(-std::numeric_limits<float>::max()), 0xff80);
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x7f7f7fffu)), 0x7f7f);  // below the midpoint: largest finite
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
}

TEST(Bf16Test, Subnormals) {
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x00010000u)), 0x0001);
  EXPECT_EQ(Bf16ToFloat(0x0001), BitsToFloat(0x00010000u));
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x00008000u)), 0x0000);  // tie between 0 and 1
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x00018000u)), 0x0002);  // tie between 1 and 2
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x007fffffu)), 0x0080);  // rounds up to the smallest normal
}

TEST(DTypeTest, SizesNamesAndNumbers) {
  EXPECT_EQ(kNumDTypes, 3);
  EXPECT_EQ(DTypeSize(DType::kFloat32), 4u);
  EXPECT_EQ(DTypeSize(DType::kBFloat16), 2u);
  EXPECT_EQ(DTypeSize(DType::kFloat16), 2u);
  EXPECT_EQ(static_cast<int>(DType::kFloat32), 0);  // wire numbers
  EXPECT_EQ(static_cast<int>(DType::kBFloat16), 1);
  EXPECT_EQ(static_cast<int>(DType::kFloat16), 2);
  EXPECT_EQ(DTypeName(DType::kFloat32), "fp32");
  EXPECT_EQ(DTypeName(DType::kBFloat16), "bf16");
  EXPECT_EQ(DTypeName(DType::kFloat16), "fp16");
  for (const DType t : kAllDTypes) {
    EXPECT_EQ(ParseDType(DTypeName(t)), t);
    EXPECT_EQ(DTypeFromNumber(static_cast<int>(t)), t);
  }
  EXPECT_EQ(ParseDType("float32"), DType::kFloat32);
  EXPECT_EQ(ParseDType("bfloat16"), DType::kBFloat16);
  EXPECT_EQ(ParseDType("float16"), DType::kFloat16);
  EXPECT_EQ(ParseDType("fp64"), std::nullopt);
  EXPECT_EQ(ParseDType(""), std::nullopt);
  EXPECT_EQ(ParseDType("FP16"), std::nullopt);
  EXPECT_EQ(DTypeFromNumber(3), std::nullopt);
  EXPECT_EQ(DTypeFromNumber(-1), std::nullopt);
}

// Encodes floats into a buffer of dtype t with the scalar functions.
std::vector<std::byte> Encode(DType t, const std::vector<float>& v) {
  std::vector<std::byte> out(v.size() * DTypeSize(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::kFloat32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else {
      const uint16_t h = t == DType::kFloat16 ? FloatToFp16(v[i]) : FloatToBf16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

std::vector<float> Decode(DType t, const std::vector<std::byte>& b) {
  std::vector<float> out(b.size() / DTypeSize(t));
  for (size_t i = 0; i < out.size(); ++i) {
    if (t == DType::kFloat32) {
      std::memcpy(&out[i], b.data() + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, b.data() + 2 * i, 2);
      out[i] = t == DType::kFloat16 ? Fp16ToFloat(h) : Bf16ToFloat(h);
    }
  }
  return out;
}

// Values every dtype holds exactly; 3000 of them, so the bf16 <-> fp16 path crosses its
// internal 1024-element pieces.
std::vector<float> ExactValues() {
  const float inf = std::numeric_limits<float>::infinity();
  const float tiny = std::ldexp(1.0f, -14);
  const float base[] = {0.0f,   -0.0f,    1.0f,      -2.0f, 0.5f,       3.0f, -0.375f,
                        100.0f, 65280.0f, -65280.0f, tiny,  -96 * tiny, inf,  -inf};
  std::vector<float> v;
  for (size_t i = 0; v.size() < 3000; ++i) {
    const float b = base[i % std::size(base)];
    v.push_back(std::isinf(b) ? b : b * static_cast<float>(1 << (i % 3)) / 4.0f);
  }
  return v;
}

TEST(ConvertTest, EveryPairPreservesExactValues) {
  const std::vector<float> values = ExactValues();
  for (const DType from : kAllDTypes) {
    const std::vector<std::byte> src = Encode(from, values);
    ASSERT_EQ(Decode(from, src), values) << DTypeName(from);
    for (const DType to : kAllDTypes) {
      std::vector<std::byte> dst(values.size() * DTypeSize(to), std::byte{0x5a});
      ConvertDType(from, src.data(), to, dst.data(), values.size());
      const std::vector<float> got = Decode(to, dst);
      for (size_t i = 0; i < values.size(); ++i) {
        ASSERT_EQ(got[i], values[i]) << DTypeName(from) << " -> " << DTypeName(to) << " at " << i;
        ASSERT_EQ(std::signbit(got[i]), std::signbit(values[i]));
      }
    }
  }
}

// For arbitrary (rounding) inputs, every pair behaves like "widen to fp32 exactly, then round
// once": the scalar functions are the definition.
TEST(ConvertTest, EveryPairMatchesScalarConversions) {
  std::mt19937 rng(12345);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> values(2500);
  for (float& x : values) x = normal(rng) * std::ldexp(1.0f, static_cast<int>(rng() % 40) - 20);
  values[0] = std::numeric_limits<float>::quiet_NaN();
  values[1] = 1e30f;   // overflows fp16
  values[2] = 1e-30f;  // underflows fp16
  for (const DType from : kAllDTypes) {
    const std::vector<std::byte> src = Encode(from, values);
    const std::vector<float> widened = Decode(from, src);
    for (const DType to : kAllDTypes) {
      std::vector<std::byte> dst(values.size() * DTypeSize(to));
      ConvertDType(from, src.data(), to, dst.data(), values.size());
      const std::vector<float> want = Decode(to, Encode(to, widened));
      const std::vector<float> got = Decode(to, dst);
      for (size_t i = 0; i < values.size(); ++i) {
        const float w = want[i];
        const float g = got[i];
        if (std::isnan(w)) {
          ASSERT_TRUE(std::isnan(g)) << DTypeName(from) << " -> " << DTypeName(to) << " at " << i;
        } else {
          ASSERT_EQ(FloatBits(g), FloatBits(w))
              << DTypeName(from) << " -> " << DTypeName(to) << " at " << i;
        }
      }
    }
  }
}

TEST(ConvertTest, ToAndFromFloatMatchScalar) {
  const std::vector<float> values = {1.0f, 1.0f / 3.0f, -7.77f, 1e-6f, 70000.0f, -0.0f};
  for (const DType t : {DType::kBFloat16, DType::kFloat16}) {
    std::vector<uint16_t> half(values.size());
    ConvertFromFloat(t, values.data(), half.data(), values.size());
    std::vector<float> back(values.size());
    ConvertToFloat(t, half.data(), back.data(), values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      const uint16_t h = t == DType::kFloat16 ? FloatToFp16(values[i]) : FloatToBf16(values[i]);
      EXPECT_EQ(half[i], h) << DTypeName(t) << " " << values[i];
      EXPECT_EQ(FloatBits(back[i]),
                FloatBits(t == DType::kFloat16 ? Fp16ToFloat(h) : Bf16ToFloat(h)));
    }
  }
  std::vector<float> copy(values.size());
  ConvertFromFloat(DType::kFloat32, values.data(), copy.data(), values.size());
  EXPECT_EQ(copy, values);
  ConvertToFloat(DType::kFloat32, values.data(), copy.data(), values.size());
  EXPECT_EQ(copy, values);
}

TEST(ConvertTest, ZeroElementsTouchNothing) {
  std::byte src[8] = {};
  std::byte dst[8];
  std::memset(dst, 0x77, sizeof(dst));
  for (const DType from : kAllDTypes) {
    for (const DType to : kAllDTypes) {
      ConvertDType(from, src, to, dst, 0);
    }
  }
  for (const std::byte b : dst) EXPECT_EQ(b, std::byte{0x77});
}

// Empty std::vectors have null data(). Fails under the asan preset as of this writing:
// ConvertDType (same dtype) and ConvertToFloat / ConvertFromFloat (fp32) hand the null pointers
// to memcpy (UBSan: "null pointer passed as argument 1, which is declared to never be null").
// Disabled until common/dtype.cc skips empty copies.
TEST(ConvertTest, EmptyVectorsWithNullData) {
  std::vector<std::byte> src;
  std::vector<std::byte> dst;
  std::vector<float> f;
  for (const DType from : kAllDTypes) {
    for (const DType to : kAllDTypes) ConvertDType(from, src.data(), to, dst.data(), 0);
    ConvertToFloat(from, src.data(), f.data(), 0);
    ConvertFromFloat(from, f.data(), dst.data(), 0);
  }
  EXPECT_TRUE(f.empty());
}

}  // namespace
}  // namespace attic
