// Scoring kernel for AVX2 + FMA + F16C: per row, 16 key elements per step widened to two fp32
// vectors (bf16: even and odd elements, matching PrepareScoreQuery's layout), one accumulator
// per query head (up to 8 heads in registers), then a horizontal sum per head and the group
// maximum. Compiled with -mavx2 -mfma -mf16c; only reached after the CPU reported them.

#include <cstdint>

#include "attention_workers/internal/kernel_abi.h"
#include "attention_workers/retrieval/internal/score_abi.h"
#include "common/x86_intrinsics.h"

namespace attic::retrieval::kernels {
namespace {

using attic::kernels::kDTypeBF16;
using attic::kernels::kDTypeF16;

constexpr int kTileHeads = 8;

template <int DT>
inline void LoadPair(const unsigned char* p, __m256* a, __m256* b) {
  if constexpr (DT == kDTypeBF16) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    *a = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    *b = _mm256_castsi256_ps(
        _mm256_and_si256(w, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  } else if constexpr (DT == kDTypeF16) {
    *a = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    *b = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
  } else {
    *a = _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    *b = _mm256_loadu_ps(reinterpret_cast<const float*>(p) + 8);
  }
}

inline float HorizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
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
    __m256 acc[GT];
#pragma GCC unroll 8
    for (int g = 0; g < GT; ++g) acc[g] = _mm256_setzero_ps();
    for (int c = 0; c < dim; c += 16) {
      __m256 a, b;
      LoadPair<DT>(row + static_cast<int64_t>(c) * kElem, &a, &b);
#pragma GCC unroll 8
      for (int g = 0; g < GT; ++g) {
        const float* qg = qp + static_cast<int64_t>(g) * dim + c;
        acc[g] = _mm256_fmadd_ps(a, _mm256_loadu_ps(qg), acc[g]);
        acc[g] = _mm256_fmadd_ps(b, _mm256_loadu_ps(qg + 8), acc[g]);
      }
    }
    float best = HorizontalSum(acc[0]);
#pragma GCC unroll 8
    for (int g = 1; g < GT; ++g) {
      const float s = HorizontalSum(acc[g]);
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
#undef ATTIC_SCORE_CASE
      default:
        break;
    }
  }
}

}  // namespace

void ScoreAvx2(const ScoreArgs& a) {
  if (a.dtype == kDTypeBF16) {
    ScoreDtype<kDTypeBF16>(a);
  } else if (a.dtype == kDTypeF16) {
    ScoreDtype<kDTypeF16>(a);
  } else {
    ScoreDtype<attic::kernels::kDTypeF32>(a);
  }
}

}  // namespace attic::retrieval::kernels
