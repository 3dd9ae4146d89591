// Code-scan and dot kernels for AVX2 + FMA: as code_scan_avx512.cc with 8-lane vectors, a code
// block handled as two halves of 8 keys; 1-bit codes become lane masks by a compare against
// each lane's bit. Compiled with -mavx2 -mfma; only reached after the CPU reported them.

#include <cstdint>

#include "attention_workers/retrieval/internal/code_scan_abi.h"
#include "common/x86_intrinsics.h"

namespace attic::retrieval::kernels {
namespace {

constexpr int kTileHeads = 8;
constexpr int kHalf = kCodeBlock / 2;

inline float HorizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

// Keys [half * 8, half * 8 + 8) of one block.
template <int GT>
void Scan4(const float* q, const float* bias, int dim, const uint8_t* block, int half,
           __m256 acc[GT]) {
  __m256 acc2[GT];
  for (int g = 0; g < GT; ++g) {
    acc[g] = _mm256_set1_ps(bias[g]);
    acc2[g] = _mm256_setzero_ps();
  }
  const __m256i low = _mm256_set1_epi32(15);
  for (int j = 0; j < dim / 2; ++j) {
    const __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
        reinterpret_cast<const __m128i*>(block + j * kCodeBlock + half * kHalf)));
    const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(w, low));
    const __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(w, 4));
#pragma GCC unroll 8
    for (int g = 0; g < GT; ++g) {
      const float* qg = q + static_cast<int64_t>(g) * dim + 2 * j;
      acc[g] = _mm256_fmadd_ps(lo, _mm256_broadcast_ss(qg), acc[g]);
      acc2[g] = _mm256_fmadd_ps(hi, _mm256_broadcast_ss(qg + 1), acc2[g]);
    }
  }
  for (int g = 0; g < GT; ++g) acc[g] = _mm256_add_ps(acc[g], acc2[g]);
}

template <int GT>
void Scan1(const float* q, const float* bias, int dim, const uint8_t* block, int half,
           __m256 acc[GT]) {
  for (int g = 0; g < GT; ++g) acc[g] = _mm256_set1_ps(bias[g]);
  const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  for (int d = 0; d < dim; ++d) {
    const __m256i bits = _mm256_and_si256(_mm256_set1_epi32(block[2 * d + half]), lane_bit);
    const __m256 mask = _mm256_castsi256_ps(_mm256_cmpeq_epi32(bits, lane_bit));
#pragma GCC unroll 8
    for (int g = 0; g < GT; ++g) {
      const __m256 qv = _mm256_broadcast_ss(q + static_cast<int64_t>(g) * dim + d);
      acc[g] = _mm256_add_ps(acc[g], _mm256_and_ps(mask, qv));
    }
  }
}

template <int GT>
void ScanTile(const CodeScanArgs& a, int g0, bool first) {
  const int block_bytes = a.head_dim * kCodeBlock * a.bits / 8;
  const float* q = a.q + static_cast<int64_t>(g0) * a.head_dim;
  for (int b = 0; b < a.num_blocks; ++b) {
    const uint8_t* block = a.codes + static_cast<int64_t>(b) * block_bytes;
    for (int half = 0; half < 2; ++half) {
      __m256 acc[GT];
      if (a.bits == 4) {
        Scan4<GT>(q, a.bias + g0, a.head_dim, block, half, acc);
      } else {
        Scan1<GT>(q, a.bias + g0, a.head_dim, block, half, acc);
      }
      __m256 best = acc[0];
      for (int g = 1; g < GT; ++g) best = _mm256_max_ps(best, acc[g]);
      float* out = a.out + static_cast<int64_t>(b) * kCodeBlock + half * kHalf;
      if (!first) best = _mm256_max_ps(best, _mm256_loadu_ps(out));
      _mm256_storeu_ps(out, best);
    }
  }
}

template <int CT>
void DotTile(const float* x, const float* y, int dim, float* out) {
  __m256 acc[CT];
  for (int c = 0; c < CT; ++c) acc[c] = _mm256_setzero_ps();
  for (int d = 0; d < dim; d += 8) {
    const __m256 xv = _mm256_loadu_ps(x + d);
#pragma GCC unroll 8
    for (int c = 0; c < CT; ++c) {
      acc[c] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(y + static_cast<int64_t>(c) * dim + d), acc[c]);
    }
  }
  for (int c = 0; c < CT; ++c) out[c] = HorizontalSum(acc[c]);
}

}  // namespace

void CodeScanAvx2(const CodeScanArgs& a) {
  for (int g0 = 0; g0 < a.group_size; g0 += kTileHeads) {
    const int gt = a.group_size - g0 < kTileHeads ? a.group_size - g0 : kTileHeads;
    switch (gt) {
#define ATTIC_SCAN_CASE(N) \
  case N:                  \
    ScanTile<N>(a, g0, g0 == 0); \
    break;
      ATTIC_SCAN_CASE(1) ATTIC_SCAN_CASE(2) ATTIC_SCAN_CASE(3) ATTIC_SCAN_CASE(4)
      ATTIC_SCAN_CASE(5) ATTIC_SCAN_CASE(6) ATTIC_SCAN_CASE(7) ATTIC_SCAN_CASE(8)
#undef ATTIC_SCAN_CASE
      default:
        break;
    }
  }
}

void DotAvx2(const DotArgs& a) {
  for (int i = 0; i < a.num_rows; ++i) {
    const float* x = a.x + static_cast<int64_t>(i) * a.head_dim;
    float* out = a.out + static_cast<int64_t>(i) * a.num_cols;
    int c = 0;
    for (; c + 8 <= a.num_cols; c += 8) {
      DotTile<8>(x, a.y + static_cast<int64_t>(c) * a.head_dim, a.head_dim, out + c);
    }
    for (; c < a.num_cols; ++c) {
      DotTile<1>(x, a.y + static_cast<int64_t>(c) * a.head_dim, a.head_dim, out + c);
    }
  }
}

}  // namespace attic::retrieval::kernels
