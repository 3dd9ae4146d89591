#include "services/replay/synthetic.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
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
constexpr uint64_t kHeavyTag = 0x6865617679000000ull;  // heavy-hitter draw of a key
constexpr uint64_t kTopicTag = 0x746f706963000000ull;  // topic of a query head

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

// Element i of a row in dtype: fp32 as is, bf16 truncated, fp16 converted.
void StoreElement(DType dtype, float v, int i, std::byte* out) {
  std::byte* dst = out + static_cast<size_t>(i) * DTypeSize(dtype);
  if (dtype == DType::kFloat32) {
    std::memcpy(dst, &v, sizeof(v));
    return;
  }
  const uint32_t bits = std::bit_cast<uint32_t>(v);
  const uint16_t h =
      dtype == DType::kBFloat16 ? static_cast<uint16_t>(bits >> 16) : Fp32BitsToFp16(bits);
  std::memcpy(dst, &h, sizeof(h));
}

void PortableRow(DType dtype, uint64_t state, int d, Range r, std::byte* out) {
  for (int i = 0; i < d; i += 4) {
    state += kWyIncrement;
    const uint64_t w = WyMix(state);
    for (int j = 0; j < 4; ++j) StoreElement(dtype, LaneValue(w >> (16 * j), r), i + j, out);
  }
}

void PortableTruncate(DType dtype, const float* in, int d, std::byte* out) {
  for (int i = 0; i < d; ++i) StoreElement(dtype, in[i], i, out);
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

// Eight fp32 values (lo, hi) into dst in dtype, truncated toward zero.
inline void StoreTruncated(DType dtype, __m128 lo, __m128 hi, std::byte* dst) {
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

void Sse2Row(DType dtype, uint64_t state, int d, Range r, std::byte* out) {
  const __m128i zero = _mm_setzero_si128();
  for (int i = 0; i < d; i += 8) {
    const uint64_t w0 = WyMix(state += kWyIncrement);
    const uint64_t w1 = WyMix(state += kWyIncrement);
    const __m128i lanes = _mm_set_epi64x(static_cast<int64_t>(w1), static_cast<int64_t>(w0));
    const __m128 lo = LaneValues(_mm_unpacklo_epi16(lanes, zero), r);
    const __m128 hi = LaneValues(_mm_unpackhi_epi16(lanes, zero), r);
    StoreTruncated(dtype, lo, hi, out + static_cast<size_t>(i) * DTypeSize(dtype));
  }
}

void Sse2Truncate(DType dtype, const float* in, int d, std::byte* out) {
  for (int i = 0; i < d; i += 8) {
    const __m128 lo = _mm_loadu_ps(in + i);
    const __m128 hi = _mm_loadu_ps(in + i + 4);
    StoreTruncated(dtype, lo, hi, out + static_cast<size_t>(i) * DTypeSize(dtype));
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

void TruncateRow(DType dtype, const float* in, int d, bool portable, std::byte* out) {
#if defined(__SSE2__)
  if (!portable) {
    Sse2Truncate(dtype, in, d, out);
    return;
  }
#endif
  PortableTruncate(dtype, in, d, out);
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

// One row [D] of K, V or Q in spec.dtype from the stream `state` (kUniform).
void FillRow(const ModelSpec& spec, uint64_t state, uint64_t kind, std::byte* out) {
  internal::SyntheticRow(spec.dtype, state, spec.head_dim, kind == kKeyTag,
                         /*portable=*/false, out);
}

// Distinguishes the streams of one (layer, K/V/Q); heads are added to it.
uint64_t Salt(uint64_t seed, int layer, uint64_t kind) {
  return HashCombine(seed, static_cast<uint64_t>(layer) * 4 + kind);
}

#include "services/replay/internal/head_profiles.inc"

// Rotary planes: D / 4 planes on dims [0, D/2), angular steps geometric from kOmegaMax down to
// kOmegaMin radians per token. A position's angle in plane j is the integer p * step_j mod 2^32
// (2^32 = 2 pi), so the difference of two positions' angles depends only on their distance.
constexpr double kOmegaMax = 0.25;
constexpr double kOmegaMin = 1.0 / 256;
constexpr double kTwoPi = 6.283185307179586;
// A key is a heavy hitter with probability 1 / kHeavyOneIn; it has one of D / 8 topics.
constexpr uint64_t kHeavyOneIn = 16;
constexpr int kSinkTokens = 4;

// cos / sin of angle index a (2^32 = 2 pi) from two 4096-entry tables (top 12 bits, next 12):
// the bottom 8 bits are dropped (under 4e-7 rad).
struct AngleTables {
  std::array<float, 4096> cos_hi, sin_hi, cos_mid, sin_mid;
  AngleTables() {
    for (int i = 0; i < 4096; ++i) {
      const double hi = kTwoPi * i / 4096.0;
      const double mid = kTwoPi * i / (4096.0 * 4096.0);
      cos_hi[i] = static_cast<float>(std::cos(hi));
      sin_hi[i] = static_cast<float>(std::sin(hi));
      cos_mid[i] = static_cast<float>(std::cos(mid));
      sin_mid[i] = static_cast<float>(std::sin(mid));
    }
  }
};

const AngleTables& Angles() {
  static const AngleTables tables;
  return tables;
}

// cos and sin of angle index a.
inline void CosSin(uint32_t a, float* c, float* s) {
  const AngleTables& t = Angles();
  const uint32_t hi = a >> 20;
  const uint32_t mid = (a >> 8) & 4095u;
  *c = t.cos_hi[hi] * t.cos_mid[mid] - t.sin_hi[hi] * t.sin_mid[mid];
  *s = t.sin_hi[hi] * t.cos_mid[mid] + t.cos_hi[hi] * t.sin_mid[mid];
}

// One of n choices from the top 32 bits of a draw (multiply-shift, no division).
inline int Pick(uint64_t draw, int n) {
  return static_cast<int>(((draw >> 32) * static_cast<uint64_t>(n)) >> 32);
}

constexpr int kMaxHeadDim = 512;
constexpr int kRotaryLow = 64;  // positions per rotary base

}  // namespace

// The rotary vector of a position p = base + low (base a multiple of 64): the rotation of
// base (from the angle tables, `base_rot`: cos P, sin P) composed with that of low (a table per
// SyntheticKv), so that it depends on p alone. r[j] = cos, r[P + j] = sin of p's angle in
// plane j.
void SyntheticKv::RotaryBase(int64_t position, float* base_rot) const {
  const size_t planes = plane_steps_.size();
  const auto p = static_cast<uint32_t>(static_cast<uint64_t>(position));
  const uint32_t base = p & ~static_cast<uint32_t>(kRotaryLow - 1);
  for (size_t j = 0; j < planes; ++j) {
    CosSin(base * plane_steps_[j], &base_rot[j], &base_rot[planes + j]);
  }
}

void SyntheticKv::Rotary(int64_t position, const float* base_rot, float* r) const {
  const size_t planes = plane_steps_.size();
  const auto low = static_cast<size_t>(static_cast<uint64_t>(position) & (kRotaryLow - 1));
  const float* lc = rotary_low_.data() + low * 2 * planes;
  const float* ls = lc + planes;
  const float* bc = base_rot;
  const float* bs = base_rot + planes;
  for (size_t j = 0; j < planes; ++j) {
    r[j] = bc[j] * lc[j] - bs[j] * ls[j];
    r[planes + j] = bs[j] * lc[j] + bc[j] * ls[j];
  }
}

std::span<const SyntheticHeadProfile> ReferenceHeadProfiles() { return kReferenceProfiles; }

SyntheticKv::SyntheticKv(const ModelSpec& spec, uint64_t seed, SyntheticKvOptions options)
    : spec_(spec), seed_(seed), options_(std::move(options)) {
  if (options_.structure != SyntheticStructure::kStructured) return;
  const int d = spec_.head_dim;
  const int planes = d / 4;
  for (int j = 0; j < planes; ++j) {
    const double f = planes > 1 ? static_cast<double>(j) / (planes - 1) : 0.0;
    const double omega = kOmegaMax * std::pow(kOmegaMin / kOmegaMax, f);
    plane_steps_.push_back(static_cast<uint32_t>(std::llround(omega / kTwoPi * 4294967296.0)));
  }
  rotary_low_.resize(static_cast<size_t>(kRotaryLow) * 2 * planes);
  for (int low = 0; low < kRotaryLow; ++low) {
    float* row = rotary_low_.data() + static_cast<size_t>(low) * 2 * planes;
    for (int j = 0; j < planes; ++j) {
      CosSin(static_cast<uint32_t>(low) * plane_steps_[j], &row[j], &row[planes + j]);
    }
  }
  // The table's mapping: the first third of the layers takes the rows of the dump's earliest
  // layer, the rest those of its later layers; KV head h takes the row of dump head h % heads.
  std::span<const SyntheticHeadProfile> table = kReferenceProfiles;
  int early_layer = table[0].dump_layer;
  for (const auto& row : table) early_layer = std::min(early_layer, row.dump_layer);
  for (int layer = 0; layer < spec_.num_layers; ++layer) {
    for (int h = 0; h < spec_.num_kv_heads; ++h) {
      if (!options_.profiles.empty()) {
        const size_t i = static_cast<size_t>(layer * spec_.num_kv_heads + h);
        rows_.push_back(options_.profiles[i % options_.profiles.size()]);
        continue;
      }
      const bool early = 3 * layer < spec_.num_layers;
      std::vector<const SyntheticHeadProfile*> group;
      for (const auto& row : table) {
        if ((row.dump_layer == early_layer) == early) group.push_back(&row);
      }
      rows_.push_back(*group[static_cast<size_t>(h) % group.size()]);
    }
  }
  // Amplitudes: a part with logit L has key and query amplitudes sqrt(|L| / scale) (the key's
  // signed), so that q . k * scale = L. Rotary: per plane, so that the sum over planes is L at
  // distance 0. Noise: keys uniform in [-1, 1) (variance 1/3); queries q_noise times that, so
  // that the noise part of q . k * scale has standard deviation scale * sqrt(D) * q_noise / 3.
  const float scale = spec_.EffectiveScale();
  auto amp = [&](float logit, float per) {
    return std::sqrt(std::max(0.0f, std::fabs(logit)) / (scale * per));
  };
  for (const auto& row : rows_) {
    Head hd;
    hd.k_pos = hd.q_pos = amp(row.window_logit, static_cast<float>(planes));
    hd.k_hh = hd.q_hh = amp(row.hh_logit, 1.0f);
    hd.q_sink = amp(row.sink_logit, 1.0f);
    hd.k_sink = row.sink_logit < 0 ? -hd.q_sink : hd.q_sink;
    hd.q_noise = 3.0f * row.noise_logit / (scale * std::sqrt(static_cast<float>(d)));
    heads_.push_back(hd);
  }
}

const SyntheticHeadProfile& SyntheticKv::profile(int layer, int kv_head) const {
  return rows_[static_cast<size_t>(layer * spec_.num_kv_heads + kv_head)];
}

const SyntheticKv::Head& SyntheticKv::head(int layer, int kv_head) const {
  return heads_[static_cast<size_t>(layer * spec_.num_kv_heads + kv_head)];
}

// K and V [Hkv, D] of the token at `position` whose block content key is `content`.
void SyntheticKv::FillToken(uint64_t content, int64_t position, int layer, const float* rot,
                            std::byte* k, std::byte* v) const {
  const int d = spec_.head_dim;
  const size_t row = static_cast<size_t>(d) * DTypeSize(spec_.dtype);
  const uint64_t token = HashCombine(content, static_cast<uint64_t>(position));
  const uint64_t k_salt = Salt(seed_, layer, kKeyTag);
  const uint64_t v_salt = Salt(seed_, layer, kValueTag);
  if (options_.structure == SyntheticStructure::kUniform) {
    for (int h = 0; h < spec_.num_kv_heads; ++h) {
      const auto off = static_cast<size_t>(h) * row;
      FillRow(spec_, HashCombine(token, k_salt + static_cast<uint64_t>(h)), kKeyTag, k + off);
      FillRow(spec_, HashCombine(token, v_salt + static_cast<uint64_t>(h)), kValueTag, v + off);
    }
    return;
  }
  alignas(16) float f[kMaxHeadDim];
  const int half = d / 2;
  const int topics = d / 8;
  for (int h = 0; h < spec_.num_kv_heads; ++h) {
    const auto off = static_cast<size_t>(h) * row;
    const Head& hd = head(layer, h);
    const uint64_t state = HashCombine(token, k_salt + static_cast<uint64_t>(h));
    internal::SyntheticRow(DType::kFloat32, state, d, /*key=*/false, /*portable=*/false,
                           reinterpret_cast<std::byte*>(f));
    for (int i = 0; i < half; ++i) f[i] += hd.k_pos * rot[i];
    const uint64_t draw = WyMix(state ^ kHeavyTag);
    if (draw % kHeavyOneIn == 0) f[half + Pick(draw, topics)] += hd.k_hh;
    if (position < kSinkTokens) f[half + topics] += hd.k_sink;
    internal::TruncateRow(spec_.dtype, f, d, /*portable=*/false, k + off);
    FillRow(spec_, HashCombine(token, v_salt + static_cast<uint64_t>(h)), kValueTag, v + off);
  }
}

// Q [Hq, D] of the token at `position` whose content key is `content`.
void SyntheticKv::FillQuery(uint64_t content, int64_t position, int layer, const float* rot,
                            std::byte* q) const {
  const int d = spec_.head_dim;
  const size_t row = static_cast<size_t>(d) * DTypeSize(spec_.dtype);
  const uint64_t token = HashCombine(content, static_cast<uint64_t>(position));
  const uint64_t q_salt = Salt(seed_, layer, kQueryTag);
  if (options_.structure == SyntheticStructure::kUniform) {
    for (int h = 0; h < spec_.num_q_heads; ++h) {
      FillRow(spec_, HashCombine(token, q_salt + static_cast<uint64_t>(h)), kQueryTag,
              q + static_cast<size_t>(h) * row);
    }
    return;
  }
  alignas(16) float f[kMaxHeadDim];
  const int half = d / 2;
  const int topics = d / 8;
  const int group = spec_.group_size();
  for (int h = 0; h < spec_.num_q_heads; ++h) {
    const Head& hd = head(layer, h / group);
    const uint64_t state = HashCombine(token, q_salt + static_cast<uint64_t>(h));
    internal::SyntheticRow(DType::kFloat32, state, d, /*key=*/false, /*portable=*/false,
                           reinterpret_cast<std::byte*>(f));
    for (int i = 0; i < d; ++i) f[i] *= hd.q_noise;
    for (int i = 0; i < half; ++i) f[i] += hd.q_pos * rot[i];
    f[half + Pick(WyMix(state ^ kTopicTag), topics)] += hd.q_hh;
    f[half + topics] += hd.q_sink;
    internal::TruncateRow(spec_.dtype, f, d, /*portable=*/false, q + static_cast<size_t>(h) * row);
  }
}

void SyntheticKv::FillPrompt(const PromptHashes& hashes, int layer, int64_t first, int64_t n,
                             std::byte* k, std::byte* v) const {
  const size_t token_bytes = static_cast<size_t>(spec_.num_kv_heads) *
                             static_cast<size_t>(spec_.head_dim) * DTypeSize(spec_.dtype);
  const auto full = static_cast<int64_t>(hashes.blocks.size());
  const bool structured = options_.structure == SyntheticStructure::kStructured;
  alignas(16) float base_rot[kMaxHeadDim / 2];
  alignas(16) float rot[kMaxHeadDim / 2];
  for (int64_t t = 0; t < n; ++t) {
    const int64_t p = first + t;
    const int64_t block = p / spec_.block_size;
    const uint64_t content = block < full ? hashes.blocks[static_cast<size_t>(block)] : hashes.tail;
    const auto off = static_cast<size_t>(t) * token_bytes;
    if (structured) {
      if (t == 0 || p % kRotaryLow == 0) RotaryBase(p, base_rot);
      Rotary(p, base_rot, rot);
    }
    FillToken(content, p, layer, rot, k + off, v + off);
  }
}

void SyntheticKv::FillDecode(uint64_t tail, int64_t position, int layer, std::byte* k, std::byte* v,
                             std::byte* q) const {
  alignas(16) float base_rot[kMaxHeadDim / 2];
  alignas(16) float rot[kMaxHeadDim / 2];
  if (options_.structure == SyntheticStructure::kStructured) {
    RotaryBase(position, base_rot);
    Rotary(position, base_rot, rot);
  }
  FillToken(tail, position, layer, rot, k, v);
  FillQuery(tail, position, layer, rot, q);
}

void SyntheticKv::FillPromptQueries(const PromptHashes& hashes, int layer,
                                    std::span<const int64_t> positions, std::byte* q) const {
  const size_t token_bytes = static_cast<size_t>(spec_.num_q_heads) *
                             static_cast<size_t>(spec_.head_dim) * DTypeSize(spec_.dtype);
  const auto full = static_cast<int64_t>(hashes.blocks.size());
  for (size_t i = 0; i < positions.size(); ++i) {
    const int64_t p = positions[i];
    const int64_t block = p / spec_.block_size;
    const uint64_t content = block < full ? hashes.blocks[static_cast<size_t>(block)] : hashes.tail;
    alignas(16) float base_rot[kMaxHeadDim / 2];
    alignas(16) float rot[kMaxHeadDim / 2];
    if (options_.structure == SyntheticStructure::kStructured) {
      RotaryBase(p, base_rot);
      Rotary(p, base_rot, rot);
    }
    FillQuery(content, p, layer, rot, q + i * token_bytes);
  }
}

}  // namespace attic::replay
