#include "common/hash.h"

#include <array>
#include <cstring>

namespace attic {
namespace {

constexpr uint64_t kMul1 = 0x9e3779b97f4a7c15ULL;
constexpr uint64_t kMul2 = 0xbf58476d1ce4e5b9ULL;
constexpr uint64_t kMul3 = 0x94d049bb133111ebULL;

// The splitmix64 finalizer: a bijection with full avalanche.
inline uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= kMul2;
  x ^= x >> 27;
  x *= kMul3;
  x ^= x >> 31;
  return x;
}

inline uint64_t Load64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

constexpr uint32_t kCrc32cPoly = 0x82f63b78u;  // reflected Castagnoli polynomial

constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ kCrc32cPoly : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

uint32_t Crc32cPortable(const unsigned char* p, size_t n, uint32_t crc) {
  for (size_t i = 0; i < n; ++i) crc = kCrcTable[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t Crc32cSse42(const unsigned char* p, size_t n,
                                                        uint32_t crc) {
  uint64_t c = crc;
  for (; n >= 8; n -= 8, p += 8) c = __builtin_ia32_crc32di(c, Load64(p));
  auto c32 = static_cast<uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = __builtin_ia32_crc32qi(c32, *p);
  return c32;
}

bool HaveSse42() {
  static const bool have = __builtin_cpu_supports("sse4.2");
  return have;
}
#endif

}  // namespace

uint64_t Hash64(const void* data, size_t n, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = Mix(seed ^ (n * kMul1));
  uint64_t a = h, b = h ^ kMul2;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a = (a ^ Load64(p + i)) * kMul1;
    b = (b ^ Load64(p + i + 8)) * kMul3;
    a = (a << 31) | (a >> 33);
    b = (b << 29) | (b >> 35);
  }
  uint64_t tail = 0;
  const size_t rest = n - i;
  if (rest >= 8) {
    a ^= Load64(p + i) * kMul2;
    i += 8;
  }
  if (n > i) std::memcpy(&tail, p + i, n - i);
  b ^= tail * kMul1 + rest;
  return Mix(a ^ Mix(b));
}

uint64_t HashCombine(uint64_t a, uint64_t b) { return Mix(a * kMul1 + Mix(b ^ kMul3)); }

uint32_t Crc32c(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
#if defined(__x86_64__)
  if (HaveSse42()) return ~Crc32cSse42(p, n, crc);
#endif
  return ~Crc32cPortable(p, n, crc);
}

}  // namespace attic
