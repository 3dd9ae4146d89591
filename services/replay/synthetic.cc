#include "services/replay/synthetic.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <bit>
#include <cstring>

#include "common/hash.h"
#include "services/replay/internal/synthetic_row.h"

namespace attic::replay {
namespace {

// Tags keep the derived values of different roles apart.
constexpr uint64_t kUniqueIdTag = 0x756e697175652d69ull;  // ids of blocks without a trace id
constexpr uint64_t kKeyTag = 0;
constexpr uint64_t kValueTag = 1;
constexpr uint64_t kQueryTag = 2;

// wyrand (Wang Yi): a counter-based generator, one 64x64->128 multiply per 64 random bits.
// Output i of a stream is a pure function of (state, i), so rows can be filled in any order.
constexpr uint64_t kWyIncrement = 0xa0761d6478bd642full;
constexpr uint64_t kWyXor = 0xe7037ed1a0b428dbull;
__extension__ using Uint128 = unsigned __int128;

inline uint64_t WyMix(uint64_t s) {
  const Uint128 t = static_cast<Uint128>(s) * static_cast<Uint128>(s ^ kWyXor);
  return static_cast<uint64_t>(t >> 64) ^ static_cast<uint64_t>(t);
}

// Element i of a row is 16-bit lane i % 4 (from the low end) of output i / 4 of its stream.
// A lane u becomes 1.m in [1, 2) with u as the top 16 mantissa bits, then m * width - offset:
// exact in fp32, since the widths are powers of two. bf16 and fp16 take the fp32 value
// rounded toward zero (fp16 flushes magnitudes below 2^-14 to zero; nothing reaches 2), so the
// conversions are a few integer operations that vectorize.
struct Range {
  float width;
  float offset;
};
constexpr Range kKeyRange{4.0f, 6.0f};   // uniform in [-2, 2)
constexpr Range kUnitRange{2.0f, 3.0f};  // uniform in [-1, 1)

inline float LaneValue(uint64_t lane, Range r) {
  const float m = std::bit_cast<float>(0x3f800000u | (static_cast<uint32_t>(lane & 0xffffu) << 7));
  return m * r.width - r.offset;
}

inline uint16_t Fp32BitsToFp16(uint32_t u) {
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t exponent = (u >> 23) & 0xffu;
  const uint32_t normal = sign | ((exponent - 112u) << 10) | ((u >> 13) & 0x3ffu);
  return static_cast<uint16_t>(exponent > 112u ? normal : sign);
}

void PortableRow(DType dtype, uint64_t state, int d, Range r, std::byte* out) {
  for (int i = 0; i < d; i += 4) {
    state += kWyIncrement;
    const uint64_t w = WyMix(state);
    for (int j = 0; j < 4; ++j) {
      const float v = LaneValue(w >> (16 * j), r);
      const uint32_t bits = std::bit_cast<uint32_t>(v);
      std::byte* dst = out + static_cast<size_t>(i + j) * DTypeSize(dtype);
      if (dtype == DType::kFloat32) {
        std::memcpy(dst, &v, sizeof(v));
      } else {
        const uint16_t h =
            dtype == DType::kBFloat16 ? static_cast<uint16_t>(bits >> 16) : Fp32BitsToFp16(bits);
        std::memcpy(dst, &h, sizeof(h));
      }
    }
  }
}

#if defined(__SSE2__)
// Eight values per step, from two outputs whose lanes are the eight 16-bit lanes of one SSE2
// register (little-endian, as the portable order). SSE2 is part of the x86-64 baseline.
inline __m128 LaneValues(__m128i lanes32, Range r) {
  const __m128 m =
      _mm_castsi128_ps(_mm_or_si128(_mm_slli_epi32(lanes32, 7), _mm_set1_epi32(0x3f800000)));
  return _mm_sub_ps(_mm_mul_ps(m, _mm_set1_ps(r.width)), _mm_set1_ps(r.offset));
}

// 16-bit patterns held in 32-bit lanes, sign-extended, so that a saturating pack keeps them.
inline __m128i Fp16Bits(__m128 v) {
  const __m128i u = _mm_castps_si128(v);
  const __m128i sign = _mm_and_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(0x8000));
  const __m128i exponent = _mm_and_si128(_mm_srli_epi32(u, 23), _mm_set1_epi32(0xff));
  const __m128i normal = _mm_or_si128(
      sign, _mm_or_si128(_mm_slli_epi32(_mm_sub_epi32(exponent, _mm_set1_epi32(112)), 10),
                         _mm_and_si128(_mm_srli_epi32(u, 13), _mm_set1_epi32(0x3ff))));
  const __m128i is_normal = _mm_cmpgt_epi32(exponent, _mm_set1_epi32(112));
  const __m128i h =
      _mm_or_si128(_mm_and_si128(is_normal, normal), _mm_andnot_si128(is_normal, sign));
  return _mm_srai_epi32(_mm_slli_epi32(h, 16), 16);
}

void Sse2Row(DType dtype, uint64_t state, int d, Range r, std::byte* out) {
  const __m128i zero = _mm_setzero_si128();
  for (int i = 0; i < d; i += 8) {
    const uint64_t w0 = WyMix(state += kWyIncrement);
    const uint64_t w1 = WyMix(state += kWyIncrement);
    const __m128i lanes = _mm_set_epi64x(static_cast<int64_t>(w1), static_cast<int64_t>(w0));
    const __m128 lo = LaneValues(_mm_unpacklo_epi16(lanes, zero), r);
    const __m128 hi = LaneValues(_mm_unpackhi_epi16(lanes, zero), r);
    std::byte* dst = out + static_cast<size_t>(i) * DTypeSize(dtype);
    switch (dtype) {
      case DType::kFloat32:
        _mm_storeu_ps(reinterpret_cast<float*>(dst), lo);
        _mm_storeu_ps(reinterpret_cast<float*>(dst + 16), hi);
        break;
      case DType::kBFloat16:
        // The top halves, shifted arithmetically so that the signed pack is exact.
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst),
                         _mm_packs_epi32(_mm_srai_epi32(_mm_castps_si128(lo), 16),
                                         _mm_srai_epi32(_mm_castps_si128(hi), 16)));
        break;
      case DType::kFloat16:
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst),
                         _mm_packs_epi32(Fp16Bits(lo), Fp16Bits(hi)));
        break;
    }
  }
}
#endif

// The trace id of 512-token block j of a prompt: from the trace, or private to the request.
uint64_t TraceId(std::span<const uint64_t> hash_ids, int64_t j, uint64_t unique) {
  if (j < static_cast<int64_t>(hash_ids.size())) return hash_ids[static_cast<size_t>(j)];
  return HashCombine(HashCombine(kUniqueIdTag, unique), static_cast<uint64_t>(j));
}

}  // namespace

namespace internal {

void SyntheticRow(DType dtype, uint64_t state, int d, bool key, bool portable, std::byte* out) {
  const Range r = key ? kKeyRange : kUnitRange;
#if defined(__SSE2__)
  if (!portable) {
    Sse2Row(dtype, state, d, r, out);
    return;
  }
#endif
  PortableRow(dtype, state, d, r, out);
}

}  // namespace internal

PromptHashes PromptBlockHashes(std::span<const uint64_t> hash_ids, int64_t input_tokens,
                               int block_tokens, uint64_t unique, uint64_t seed) {
  PromptHashes out;
  const int64_t b = block_tokens;
  const int64_t full = b > 0 && input_tokens > 0 ? input_tokens / b : 0;
  const bool divides = b > 0 && kTraceBlockTokens % b == 0;
  out.blocks.reserve(static_cast<size_t>(full));
  uint64_t chain = seed;
  for (int64_t i = 0; i < full; ++i) {
    const int64_t first = i * b;
    const int64_t last = first + b - 1;
    const int64_t j0 = first / kTraceBlockTokens;
    const int64_t offset = first % kTraceBlockTokens;
    uint64_t inner = HashCombine(TraceId(hash_ids, j0, unique),
                                 static_cast<uint64_t>(divides ? offset / b : offset));
    // A block that spans trace blocks (B > 512, or B not dividing 512) folds in every id.
    for (int64_t j = j0 + 1; j <= last / kTraceBlockTokens; ++j) {
      inner = HashCombine(inner, TraceId(hash_ids, j, unique));
    }
    chain = HashCombine(chain, inner);
    out.blocks.push_back(chain);
  }
  out.tail = HashCombine(chain, unique);
  return out;
}

namespace {

// One row [D] of K, V or Q in spec.dtype from the stream `state`.
void FillRow(const ModelSpec& spec, uint64_t state, uint64_t kind, std::byte* out) {
  internal::SyntheticRow(spec.dtype, state, spec.head_dim, kind == kKeyTag,
                         /*portable=*/false, out);
}

// Distinguishes the streams of one (layer, K/V/Q); heads are added to it.
uint64_t Salt(uint64_t seed, int layer, uint64_t kind) {
  return HashCombine(seed, static_cast<uint64_t>(layer) * 4 + kind);
}

// K and V [Hkv, D] of the token at `position` whose block content key is `content`.
void FillToken(const ModelSpec& spec, uint64_t content, int64_t position, uint64_t k_salt,
               uint64_t v_salt, std::byte* k, std::byte* v) {
  const size_t row = static_cast<size_t>(spec.head_dim) * DTypeSize(spec.dtype);
  const uint64_t token = HashCombine(content, static_cast<uint64_t>(position));
  for (int h = 0; h < spec.num_kv_heads; ++h) {
    const auto off = static_cast<size_t>(h) * row;
    FillRow(spec, HashCombine(token, k_salt + static_cast<uint64_t>(h)), kKeyTag, k + off);
    FillRow(spec, HashCombine(token, v_salt + static_cast<uint64_t>(h)), kValueTag, v + off);
  }
}

}  // namespace

SyntheticKv::SyntheticKv(const ModelSpec& spec, uint64_t seed) : spec_(spec), seed_(seed) {}

void SyntheticKv::FillPrompt(const PromptHashes& hashes, int layer, int64_t first, int64_t n,
                             std::byte* k, std::byte* v) const {
  const size_t token_bytes = static_cast<size_t>(spec_.num_kv_heads) *
                             static_cast<size_t>(spec_.head_dim) * DTypeSize(spec_.dtype);
  const uint64_t k_salt = Salt(seed_, layer, kKeyTag);
  const uint64_t v_salt = Salt(seed_, layer, kValueTag);
  const auto full = static_cast<int64_t>(hashes.blocks.size());
  for (int64_t t = 0; t < n; ++t) {
    const int64_t p = first + t;
    const int64_t block = p / spec_.block_size;
    const uint64_t content = block < full ? hashes.blocks[static_cast<size_t>(block)] : hashes.tail;
    const auto off = static_cast<size_t>(t) * token_bytes;
    FillToken(spec_, content, p, k_salt, v_salt, k + off, v + off);
  }
}

void SyntheticKv::FillDecode(uint64_t tail, int64_t position, int layer, std::byte* k, std::byte* v,
                             std::byte* q) const {
  FillToken(spec_, tail, position, Salt(seed_, layer, kKeyTag), Salt(seed_, layer, kValueTag), k,
            v);
  const size_t row = static_cast<size_t>(spec_.head_dim) * DTypeSize(spec_.dtype);
  const uint64_t token = HashCombine(tail, static_cast<uint64_t>(position));
  const uint64_t q_salt = Salt(seed_, layer, kQueryTag);
  for (int h = 0; h < spec_.num_q_heads; ++h) {
    FillRow(spec_, HashCombine(token, q_salt + static_cast<uint64_t>(h)), kQueryTag,
            q + static_cast<size_t>(h) * row);
  }
}

}  // namespace attic::replay
