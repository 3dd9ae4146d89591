#include "common/dtype.h"


namespace attic {

std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kFloat32:
      return "fp32";
    case DType::kBFloat16:
      return "bf16";
    case DType::kFloat16:
      return "fp16";
  }
  return "unknown";
}

std::optional<DType> ParseDType(std::string_view name) {
  if (name == "fp32" || name == "float32") return DType::kFloat32;
  if (name == "bf16" || name == "bfloat16") return DType::kBFloat16;
  if (name == "fp16" || name == "float16") return DType::kFloat16;
  return std::nullopt;
}

std::optional<DType> DTypeFromNumber(int number) {
  if (number < 0 || number >= kNumDTypes) return std::nullopt;
  return static_cast<DType>(number);
}

float Fp16ToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exp = (bits >> 10) & 0x1fu;
  uint32_t mant = bits & 0x3ffu;
  uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (mant << 13);  // inf or NaN
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    u = sign;  // signed zero
  } else {
    // Subnormal: shift the mantissa up until its leading one reaches the implicit bit.
    exp = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --exp;
    }
    u = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

uint16_t FloatToFp16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: value = mant * 2^-24. Round the shifted mantissa to even.
    if (abs < 0x33000000u) return sign;  // below half the smallest subnormal
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t half = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t v = abs - 0x38000000u;  // rebias exponent 127 -> 15
  v += 0xfffu + ((v >> 13) & 1u);
  return static_cast<uint16_t>(sign | (v >> 13));
}

void ConvertToFloat(DType from, const void* src, float* dst, size_t n) {
  if (n == 0) return;  // null buffers are fine for empty conversions
  const auto* s16 = static_cast<const uint16_t*>(src);
  switch (from) {
    case DType::kFloat32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kBFloat16:
      for (size_t i = 0; i < n; ++i) dst[i] = Bf16ToFloat(s16[i]);
      return;
    case DType::kFloat16:
      for (size_t i = 0; i < n; ++i) dst[i] = Fp16ToFloat(s16[i]);
      return;
  }
}

void ConvertFromFloat(DType to, const float* src, void* dst, size_t n) {
  if (n == 0) return;
  auto* d16 = static_cast<uint16_t*>(dst);
  switch (to) {
    case DType::kFloat32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kBFloat16:
      for (size_t i = 0; i < n; ++i) d16[i] = FloatToBf16(src[i]);
      return;
    case DType::kFloat16:
      for (size_t i = 0; i < n; ++i) d16[i] = FloatToFp16(src[i]);
      return;
  }
}

void ConvertDType(DType from, const void* src, DType to, void* dst, size_t n) {
  if (n == 0) return;
  if (from == to) {
    std::memcpy(dst, src, n * DTypeSize(from));
    return;
  }
  if (from == DType::kFloat32) return ConvertFromFloat(to, static_cast<const float*>(src), dst, n);
  if (to == DType::kFloat32) return ConvertToFloat(from, src, static_cast<float*>(dst), n);
  // bf16 <-> fp16 through fp32, in bounded pieces.
  constexpr size_t kPiece = 1024;
  float tmp[kPiece];
  const auto* s = static_cast<const uint16_t*>(src);
  auto* d = static_cast<uint16_t*>(dst);
  for (size_t i = 0; i < n; i += kPiece) {
    const size_t m = n - i < kPiece ? n - i : kPiece;
    ConvertToFloat(from, s + i, tmp, m);
    ConvertFromFloat(to, tmp, d + i, m);
  }
}

}  // namespace attic
