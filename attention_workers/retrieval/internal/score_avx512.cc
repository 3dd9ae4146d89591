// Scoring kernel for AVX-512 (F, BW, VL, DQ): per row, 32 key elements per step widened to two
// fp32 vectors (bf16: even and odd elements, matching the query layout of PrepareScoreQuery) and multiplied into one accumulator per query head (up to 16 heads in
// registers), then one horizontal sum per head and the group maximum. Compiled with -mavx512*;
// only reached after the CPU reported these features.

#include <cstdint>

#include "attention_workers/internal/kernel_abi.h"
#include "attention_workers/retrieval/internal/score_abi.h"
#include "common/x86_intrinsics.h"

namespace attic::retrieval::kernels {
namespace {

using attic::kernels::kDTypeBF16;
using attic::kernels::kDTypeF16;

constexpr int kTileHeads = 16;

template <int DT>
inline void LoadPair(const unsigned char* p, __m512* a, __m512* b) {
  if constexpr (DT == kDTypeBF16) {
    const __m512i w = _mm512_loadu_si512(p);
    *a = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
    *b = _mm512_castsi512_ps(
        _mm512_and_si512(w, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  } else if constexpr (DT == kDTypeF16) {
    *a = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    *b = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
  } else {
    *a = _mm512_loadu_ps(reinterpret_cast<const float*>(p));
    *b = _mm512_loadu_ps(reinterpret_cast<const float*>(p) + 16);
  }
}

template <int DT, int GT>
void ScoreTile(const float* qp, int dim, const void* const* rows, int n, float* out, bool first) {
  constexpr int kElem = DT == kDTypeBF16 || DT == kDTypeF16 ? 2 : 4;
  for (int i = 0; i < n; ++i) {
    const auto* row = static_cast<const unsigned char*>(rows[i]);
    if (i + 2 < n) {
      const auto* next = static_cast<const char*>(rows[i + 2]);
      for (int off = 0; off < dim * kElem; off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
    }
    __m512 acc[GT];
#pragma GCC unroll 16
    for (int g = 0; g < GT; ++g) acc[g] = _mm512_setzero_ps();
    for (int c = 0; c < dim; c += 32) {
      __m512 a, b;
      LoadPair<DT>(row + static_cast<int64_t>(c) * kElem, &a, &b);
#pragma GCC unroll 16
      for (int g = 0; g < GT; ++g) {
        const float* qg = qp + static_cast<int64_t>(g) * dim + c;
        acc[g] = _mm512_fmadd_ps(a, _mm512_loadu_ps(qg), acc[g]);
        acc[g] = _mm512_fmadd_ps(b, _mm512_loadu_ps(qg + 16), acc[g]);
      }
    }
    float best = _mm512_reduce_add_ps(acc[0]);
#pragma GCC unroll 16
    for (int g = 1; g < GT; ++g) {
      const float s = _mm512_reduce_add_ps(acc[g]);
      best = s > best ? s : best;
    }
    out[i] = first || best > out[i] ? best : out[i];
  }
}

template <int DT>
void ScoreDtype(const ScoreArgs& a) {
  for (int g0 = 0; g0 < a.group_size; g0 += kTileHeads) {
    const int gt = a.group_size - g0 < kTileHeads ? a.group_size - g0 : kTileHeads;
    const float* q = a.q + static_cast<int64_t>(g0) * a.head_dim;
    const bool first = g0 == 0;
    switch (gt) {
#define ATTIC_SCORE_CASE(N) \
  case N:                   \
    ScoreTile<DT, N>(q, a.head_dim, a.rows, a.num_rows, a.out, first); \
    break;
      ATTIC_SCORE_CASE(1) ATTIC_SCORE_CASE(2) ATTIC_SCORE_CASE(3) ATTIC_SCORE_CASE(4)
      ATTIC_SCORE_CASE(5) ATTIC_SCORE_CASE(6) ATTIC_SCORE_CASE(7) ATTIC_SCORE_CASE(8)
      ATTIC_SCORE_CASE(9) ATTIC_SCORE_CASE(10) ATTIC_SCORE_CASE(11) ATTIC_SCORE_CASE(12)
      ATTIC_SCORE_CASE(13) ATTIC_SCORE_CASE(14) ATTIC_SCORE_CASE(15) ATTIC_SCORE_CASE(16)
#undef ATTIC_SCORE_CASE
      default:
        break;
    }
  }
}

}  // namespace

void ScoreAvx512(const ScoreArgs& a) {
  if (a.dtype == kDTypeBF16) {
    ScoreDtype<kDTypeBF16>(a);
  } else if (a.dtype == kDTypeF16) {
    ScoreDtype<kDTypeF16>(a);
  } else {
    ScoreDtype<attic::kernels::kDTypeF32>(a);
  }
}

}  // namespace attic::retrieval::kernels
