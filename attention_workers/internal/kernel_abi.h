// The plain-C boundary between the dispatching code and the per-ISA decode kernels.
//
// Kernel translation units are compiled with wider ISA flags (AVX2, AVX-512) and include only
// this header and intrinsics: a shared inline function compiled there could be chosen by the
// linker for every caller and fault on an older CPU. Keep this header free of std:: templates.
//
// Callers validate arguments (attention_workers/decode_attention.cc); kernels trust them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace attic::kernels {

// Same numbers as attic::DType.
inline constexpr int kDTypeF32 = 0;
inline constexpr int kDTypeBF16 = 1;
inline constexpr int kDTypeF16 = 2;

inline constexpr int kMaxGroupSize = 128;
inline constexpr int kMaxHeadDim = 512;

// A run of consecutive tokens of one (layer, KV head).
struct KvRun {
  const void* k;   // [num_tokens, D], row-major, storage dtype
  const void* v;   // [num_tokens, D], row-major, storage dtype
  int num_tokens;  // >= 0
};

struct DecodeArgs {
  const float* q;     // [G, D] fp32, row-major: the GQA group's queries
  int group_size;     // G in [1, kMaxGroupSize]
  int head_dim;       // D, a multiple of 32 in [32, kMaxHeadDim]
  int dtype;          // kDType* of K and V
  float scale;        // softmax scale applied to q.k
  const KvRun* runs;  // [num_runs]; attention runs over the concatenation of all runs
  int num_runs;
  float* out;         // [G, D] fp32: normalized outputs (zeros when there are no tokens)
  float* lse;         // [G] fp32: natural-log sum of exp(scale * q.k); -inf when no tokens
};

void DecodeScalar(const DecodeArgs& args);
void DecodeAvx2(const DecodeArgs& args);
void DecodeAvx512(const DecodeArgs& args);
void DecodeAvx512Bf16(const DecodeArgs& args);

}  // namespace attic::kernels
