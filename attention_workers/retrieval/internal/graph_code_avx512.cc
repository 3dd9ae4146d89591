// AVX-512 kernel for 4-bit key codes (graph_code_abi.h): per key, 16 code bytes at a time are
// split into their low and high nibbles, widened to two fp32 vectors (dimensions j.. and
// j + head_dim/2..) and multiplied into one accumulator per query head (up to 8 heads in
// registers), then one horizontal sum per head and the group maximum. Compiled with
// -mavx512*; only reached after the CPU reported these features.

#include <cstdint>

#include "attention_workers/retrieval/internal/graph_code_abi.h"
#include "common/x86_intrinsics.h"

namespace attic::retrieval::kernels {
namespace {

constexpr int kTileHeads = 8;

template <int GT>
void ScoreTile(const CodeScoreArgs& a, int g0, bool first) {
  const int half = a.head_dim / 2;
  const __m128i mask = _mm_set1_epi8(15);
  for (int i = 0; i < a.num_ids; ++i) {
    const uint8_t* c = a.codes + static_cast<int64_t>(a.ids[i]) * half;
    if (i + 2 < a.num_ids) {
      const auto* next = reinterpret_cast<const char*>(a.codes + static_cast<int64_t>(a.ids[i + 2]) * half);
      for (int off = 0; off < half; off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
    }
    __m512 acc[GT];
#pragma GCC unroll 8
    for (int g = 0; g < GT; ++g) acc[g] = _mm512_setzero_ps();
    for (int j = 0; j < half; j += 16) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + j));
      const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(b, mask)));
      const __m512 hi =
          _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(b, 4), mask)));
#pragma GCC unroll 8
      for (int g = 0; g < GT; ++g) {
        const float* q = a.qs + static_cast<int64_t>(g0 + g) * a.head_dim;
        acc[g] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(q + j), acc[g]);
        acc[g] = _mm512_fmadd_ps(hi, _mm512_loadu_ps(q + half + j), acc[g]);
      }
    }
    float best = _mm512_reduce_add_ps(acc[0]) + a.bias[g0];
#pragma GCC unroll 8
    for (int g = 1; g < GT; ++g) {
      const float s = _mm512_reduce_add_ps(acc[g]) + a.bias[g0 + g];
      best = s > best ? s : best;
    }
    a.out[i] = first || best > a.out[i] ? best : a.out[i];
  }
}

}  // namespace

void CodeScoreAvx512(const CodeScoreArgs& a) {
  for (int g0 = 0; g0 < a.group_size; g0 += kTileHeads) {
    const int gt = a.group_size - g0 < kTileHeads ? a.group_size - g0 : kTileHeads;
    const bool first = g0 == 0;
    switch (gt) {
      case 1: ScoreTile<1>(a, g0, first); break;
      case 2: ScoreTile<2>(a, g0, first); break;
      case 3: ScoreTile<3>(a, g0, first); break;
      case 4: ScoreTile<4>(a, g0, first); break;
      case 5: ScoreTile<5>(a, g0, first); break;
      case 6: ScoreTile<6>(a, g0, first); break;
      case 7: ScoreTile<7>(a, g0, first); break;
      default: ScoreTile<8>(a, g0, first); break;
    }
  }
}

}  // namespace attic::retrieval::kernels
