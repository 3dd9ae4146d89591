// Decode attention kernel for AVX2 + FMA + F16C. Compiled with -mavx2 -mfma -mf16c; only
// reached after the CPU reported these features (attention_workers/isa.cc).
#include <immintrin.h>

#include "attention_workers/internal/kernel_abi.h"

namespace attic::kernels {
namespace {

// 8 fp32 lanes, 16 ymm registers. Member contract: see avx512_vec.inc.
struct V {
  using T = __m256;
  static constexpr int kWidth = 8;
  static constexpr int kMaxTile = 4;
  static constexpr int kAccumulators = 8;
  static constexpr int kMaxNv = 4;
  static constexpr bool kBf16Dot = false;

  static T Zero() { return _mm256_setzero_ps(); }
  static T Set1(float x) { return _mm256_set1_ps(x); }
  static T Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static T Add(T a, T b) { return _mm256_add_ps(a, b); }
  static T Sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static T Mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T Max(T a, T b) { return _mm256_max_ps(a, b); }
  static T Fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }

  template <int DT>
  static void LoadPair(const unsigned char* p, T* a, T* b) {
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

  static T ReduceAll(const T* a) {
    const T h1 = _mm256_hadd_ps(a[0], a[1]);
    const T h2 = _mm256_hadd_ps(a[2], a[3]);
    const T h3 = _mm256_hadd_ps(a[4], a[5]);
    const T h4 = _mm256_hadd_ps(a[6], a[7]);
    const T h12 = _mm256_hadd_ps(h1, h2);  // per 128-bit half: partial sums of a[0..3]
    const T h34 = _mm256_hadd_ps(h3, h4);
    return _mm256_add_ps(_mm256_permute2f128_ps(h12, h34, 0x20),
                         _mm256_permute2f128_ps(h12, h34, 0x31));
  }

  static T MaskTail(T v, int valid) {
    if (valid >= kWidth) return v;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(valid), lane));
    return _mm256_blendv_ps(_mm256_set1_ps(-__builtin_inff()), v, keep);
  }

  template <int GT, typename Op>
  static T Group(T v, Op op) {
    if constexpr (GT <= 4) v = op(v, _mm256_permute2f128_ps(v, v, 1));
    if constexpr (GT <= 2) v = op(v, _mm256_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));
    if constexpr (GT <= 1) v = op(v, _mm256_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
    return v;
  }
  template <int GT>
  static T GroupMax(T v) {
    return Group<GT>(v, [](T a, T b) { return _mm256_max_ps(a, b); });
  }
  template <int GT>
  static T GroupSum(T v) {
    return Group<GT>(v, [](T a, T b) { return _mm256_add_ps(a, b); });
  }

  // 2^x as in avx512_vec.inc; 2^n is built in the exponent bits, and inputs below -126
  // (including -inf) give an exact 0.
  static T Exp2(T x) {
    const T tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-126.0f), _CMP_GE_OQ);
    x = _mm256_max_ps(x, _mm256_set1_ps(-126.0f));
    x = _mm256_min_ps(x, _mm256_set1_ps(127.0f));
    const T n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const T y = _mm256_mul_ps(_mm256_sub_ps(x, n), _mm256_set1_ps(0.6931471805599453f));
    T p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n),
                                                         _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), tiny);
  }
};

#include "attention_workers/internal/decode_kernel.inc"

}  // namespace

void DecodeAvx2(const DecodeArgs& args) { Decode(args); }

}  // namespace attic::kernels
