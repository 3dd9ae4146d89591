// Portable decode attention kernel: the same algorithm as the vector kernels with a
// one-lane "vector", for CPUs without AVX2. Compiled with the baseline flags, so it may use
// common/ headers freely.
#include <cstring>

#include "attention_workers/internal/kernel_abi.h"
#include "common/dtype.h"

namespace attic::kernels {
namespace {

struct V {
  using T = float;
  static constexpr int kWidth = 1;
  static constexpr int kMaxTile = 1;
  static constexpr int kAccumulators = 8;
  static constexpr int kMaxNv = 8;
  static constexpr bool kBf16Dot = false;

  static T Zero() { return 0.0f; }
  static T Set1(float x) { return x; }
  static T Load(const float* p) { return *p; }
  static void Store(float* p, T v) { *p = v; }
  static T Add(T a, T b) { return a + b; }
  static T Sub(T a, T b) { return a - b; }
  static T Mul(T a, T b) { return a * b; }
  static T Max(T a, T b) { return a > b ? a : b; }
  static T Fma(T a, T b, T c) { return a * b + c; }

  static unsigned short Word(const unsigned char* p) {
    unsigned short w;
    std::memcpy(&w, p, 2);
    return w;
  }

  template <int DT>
  static void LoadPair(const unsigned char* p, T* a, T* b) {
    if constexpr (DT == kDTypeBF16) {
      *a = Bf16ToFloat(Word(p));
      *b = Bf16ToFloat(Word(p + 2));
    } else if constexpr (DT == kDTypeF16) {
      *a = Fp16ToFloat(Word(p));
      *b = Fp16ToFloat(Word(p + 2));
    } else {
      std::memcpy(a, p, 4);
      std::memcpy(b, p + 4, 4);
    }
  }

  static T ReduceAll(const T* a) { return a[0]; }
  static T MaskTail(T v, int valid) { return valid >= 1 ? v : -__builtin_inff(); }
  template <int GT>
  static T GroupMax(T v) { return v; }
  template <int GT>
  static T GroupSum(T v) { return v; }
  static T Exp2(T x) { return __builtin_exp2f(x); }
};

#include "attention_workers/internal/decode_kernel.inc"

}  // namespace

void DecodeScalar(const DecodeArgs& args) { Decode(args); }

}  // namespace attic::kernels
