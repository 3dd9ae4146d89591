// The plain-C boundary between CodeQuery (graph_codes.cc) and the per-ISA kernels that score
// 4-bit key codes, in the manner of score_abi.h: kernel translation units are compiled with
// wider ISA flags and include only this header and intrinsics.
#pragma once

#include <cstdint>

namespace attic::retrieval::kernels {

// out[i] = max over g < group_size of bias[g] + sum_d qs[g][d] * c[d], where c is the code of
// key ids[i]: head_dim / 2 bytes at codes + ids[i] * head_dim / 2, byte j holding dimension j
// (low nibble) and dimension j + head_dim / 2 (high nibble).
struct CodeScoreArgs {
  const float* qs;       // [group_size, head_dim], queries folded with the code steps
  const float* bias;     // [group_size]
  int group_size;        // >= 1
  int head_dim;          // a multiple of 32
  const uint8_t* codes;  // [n, head_dim / 2]
  const int32_t* ids;    // [num_ids]
  int num_ids;
  float* out;            // [num_ids]
};

void CodeScoreScalar(const CodeScoreArgs& args);
void CodeScoreAvx512(const CodeScoreArgs& args);

}  // namespace attic::retrieval::kernels
