// The plain-C boundary between GroupScorer (scoring.cc) and the per-ISA scoring kernels, in
// the manner of attention_workers/internal/kernel_abi.h: kernel translation units are compiled
// with wider ISA flags and include only this header and intrinsics.
#pragma once

namespace attic::retrieval::kernels {

// score[i] = max over g < group_size of dot(q[g], rows[i]), q fp32 and rows in dtype
// (attic::kernels::kDType* numbers), unscaled.
// q is laid out by PrepareScoreQuery (scoring.cc) for the kernel's chunk width: for bf16 rows,
// each chunk of kChunk elements of a head holds its even elements first, then its odd ones (the
// order in which a shift and a mask widen packed bf16); otherwise plain row-major.
struct ScoreArgs {
  const float* q;           // [group_size, head_dim], prepared
  int group_size;           // 1..kMaxScoreGroup
  int head_dim;             // a multiple of 32, <= kMaxScoreDim
  int dtype;                // kDTypeF32 / kDTypeBF16 / kDTypeF16
  const void* const* rows;  // [num_rows] pointers to head_dim elements
  int num_rows;
  float* out;               // [num_rows]
};

inline constexpr int kMaxScoreGroup = 128;
inline constexpr int kMaxScoreDim = 512;
inline constexpr int kChunkAvx512 = 32;
inline constexpr int kChunkAvx2 = 16;

void ScoreScalar(const ScoreArgs& args);
void ScoreAvx2(const ScoreArgs& args);
void ScoreAvx512(const ScoreArgs& args);

}  // namespace attic::retrieval::kernels
