// DType: the element types Attic stores and moves (fp32, bf16, fp16), with exact conversions.
//
//   float x = attic::Bf16ToFloat(bits);            // exact
//   uint16_t b = attic::FloatToBf16(1.5f);         // round to nearest even, NaN stays NaN
//   attic::ConvertToFloat(DType::kFloat16, src, dst, n);
//
// Thread safety: stateless functions.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace attic {

// Numbers are stable: they travel on the wire.
enum class DType : uint8_t {
  kFloat32 = 0,
  kBFloat16 = 1,
  kFloat16 = 2,
};

inline constexpr int kNumDTypes = 3;

// Bytes per element.
constexpr size_t DTypeSize(DType t) { return t == DType::kFloat32 ? 4 : 2; }
// "fp32", "bf16", "fp16".
std::string_view DTypeName(DType t);
// Accepts "fp32"/"float32", "bf16"/"bfloat16", "fp16"/"float16".
std::optional<DType> ParseDType(std::string_view name);
// The dtype for a wire number; nullopt if unknown.
std::optional<DType> DTypeFromNumber(int number);

inline float Bf16ToFloat(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

inline uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<uint16_t>(u >> 16);
}

// IEEE 754 binary16 <-> binary32; subnormals, infinities and NaN included.
float Fp16ToFloat(uint16_t bits);
uint16_t FloatToFp16(float f);  // round to nearest even; overflow becomes infinity

// Element-wise conversions between any two dtypes. `src` holds n elements of `from`, `dst` has
// room for n elements of `to`. The buffers must not overlap.
void ConvertToFloat(DType from, const void* src, float* dst, size_t n);
void ConvertFromFloat(DType to, const float* src, void* dst, size_t n);
void ConvertDType(DType from, const void* src, DType to, void* dst, size_t n);

}  // namespace attic
