// Code-scan and dot kernels for AVX-512 (F, BW, VL, DQ). Code scan: one 16-lane vector holds
// the 16 keys of a code block; per dimension, the keys' codes are widened to fp32 (4-bit) or
// used as a lane mask (1-bit) against the broadcast query element, with two accumulators per
// head so consecutive dimensions do not wait on each other. Compiled with -mavx512*; only
// reached after the CPU reported these features.

#include <cstdint>

#include "attention_workers/retrieval/internal/code_scan_abi.h"
#include "common/x86_intrinsics.h"

namespace attic::retrieval::kernels {
namespace {

constexpr int kTileHeads = 8;

template <int GT>
void Scan4(const float* q, const float* bias, int dim, const uint8_t* block, __m512 acc[GT]) {
  __m512 acc2[GT];
  for (int g = 0; g < GT; ++g) {
    acc[g] = _mm512_set1_ps(bias[g]);
    acc2[g] = _mm512_setzero_ps();
  }
  const __m512i low = _mm512_set1_epi32(15);
  for (int j = 0; j < dim / 2; ++j) {
    const __m512i w = _mm512_cvtepu8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + j * kCodeBlock)));
    const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(w, low));
    const __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(w, 4));
#pragma GCC unroll 8
    for (int g = 0; g < GT; ++g) {
      const float* qg = q + static_cast<int64_t>(g) * dim + 2 * j;
      acc[g] = _mm512_fmadd_ps(lo, _mm512_set1_ps(qg[0]), acc[g]);
      acc2[g] = _mm512_fmadd_ps(hi, _mm512_set1_ps(qg[1]), acc2[g]);
    }
  }
  for (int g = 0; g < GT; ++g) acc[g] = _mm512_add_ps(acc[g], acc2[g]);
}

template <int GT>
void Scan1(const float* q, const float* bias, int dim, const uint8_t* block, __m512 acc[GT]) {
  __m512 acc2[GT];
  for (int g = 0; g < GT; ++g) {
    acc[g] = _mm512_set1_ps(bias[g]);
    acc2[g] = _mm512_setzero_ps();
  }
  const auto* masks = reinterpret_cast<const uint16_t*>(block);
  for (int d = 0; d < dim; d += 2) {
    const __mmask16 m0 = masks[d];
    const __mmask16 m1 = masks[d + 1];
#pragma GCC unroll 8
    for (int g = 0; g < GT; ++g) {
      const float* qg = q + static_cast<int64_t>(g) * dim + d;
      acc[g] = _mm512_mask_add_ps(acc[g], m0, acc[g], _mm512_set1_ps(qg[0]));
      acc2[g] = _mm512_mask_add_ps(acc2[g], m1, acc2[g], _mm512_set1_ps(qg[1]));
    }
  }
  for (int g = 0; g < GT; ++g) acc[g] = _mm512_add_ps(acc[g], acc2[g]);
}

template <int GT>
void ScanTile(const CodeScanArgs& a, int g0, bool first) {
  const int block_bytes = a.head_dim * kCodeBlock * a.bits / 8;
  const float* q = a.q + static_cast<int64_t>(g0) * a.head_dim;
  for (int b = 0; b < a.num_blocks; ++b) {
    const uint8_t* block = a.codes + static_cast<int64_t>(b) * block_bytes;
    if (b + 1 < a.num_blocks) {
      for (int off = 0; off < block_bytes; off += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(block + block_bytes + off), _MM_HINT_T0);
      }
    }
    __m512 acc[GT];
    if (a.bits == 4) {
      Scan4<GT>(q, a.bias + g0, a.head_dim, block, acc);
    } else {
      Scan1<GT>(q, a.bias + g0, a.head_dim, block, acc);
    }
    __m512 best = acc[0];
    for (int g = 1; g < GT; ++g) best = _mm512_max_ps(best, acc[g]);
    float* out = a.out + static_cast<int64_t>(b) * kCodeBlock;
    if (!first) best = _mm512_max_ps(best, _mm512_loadu_ps(out));
    _mm512_storeu_ps(out, best);
  }
}

template <int CT>
void DotTile(const float* x, const float* y, int dim, float* out) {
  __m512 acc[CT];
  for (int c = 0; c < CT; ++c) acc[c] = _mm512_setzero_ps();
  for (int d = 0; d < dim; d += 16) {
    const __m512 xv = _mm512_loadu_ps(x + d);
#pragma GCC unroll 8
    for (int c = 0; c < CT; ++c) {
      acc[c] = _mm512_fmadd_ps(xv, _mm512_loadu_ps(y + static_cast<int64_t>(c) * dim + d), acc[c]);
    }
  }
  for (int c = 0; c < CT; ++c) out[c] = _mm512_reduce_add_ps(acc[c]);
}

}  // namespace

void CodeScanAvx512(const CodeScanArgs& a) {
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

void DotAvx512(const DotArgs& a) {
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
