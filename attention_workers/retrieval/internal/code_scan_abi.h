// The plain-C boundary between the quantized-code users (quantizer.cc, kmeans.cc) and their
// per-ISA kernels, in the manner of score_abi.h: kernel translation units are compiled with
// wider ISA flags and include only this header and intrinsics.
//
// Code blocks: keys are encoded kCodeBlock at a time, dimension-major inside a block, so a
// vector lane holds one key and no horizontal sums are needed:
//   bits = 4: for each dimension pair (2j, 2j+1), kCodeBlock bytes; byte i holds key i's code of
//             dimension 2j in its low nibble and of dimension 2j+1 in its high nibble.
//   bits = 1: for each dimension d, one 16-bit little-endian mask; bit i is key i's code.
// Block bytes: head_dim * kCodeBlock * bits / 8.
#pragma once

#include <cstdint>

namespace attic::retrieval::kernels {

inline constexpr int kCodeBlock = 16;
inline constexpr int kMaxCodeGroup = 128;

// out[b * kCodeBlock + i] = max over g of (bias[g] + sum_d q[g][d] * code(block b, key i, d)).
struct CodeScanArgs {
  const float* q;        // [group_size, head_dim] fp32: the query scaled by the code step
  const float* bias;     // [group_size]
  int group_size;        // 1..kMaxCodeGroup
  int head_dim;          // a multiple of 32
  int bits;              // 1 or 4
  const uint8_t* codes;  // [num_blocks, block bytes]
  int num_blocks;
  float* out;            // [num_blocks * kCodeBlock]
};

// out[i * num_cols + c] = dot(x[i], y[c]) over head_dim fp32 elements (k-means assignment).
struct DotArgs {
  const float* x;  // [num_rows, head_dim]
  const float* y;  // [num_cols, head_dim]
  int head_dim;    // a multiple of 16
  int num_rows;
  int num_cols;
  float* out;      // [num_rows, num_cols]
};

// Keys transposed in panels of kPanelKeys: panel p holds keys [p * kPanelKeys, (p + 1) *
// kPanelKeys) dimension-major, panels[(p * head_dim + d) * kPanelKeys + j] = key j's dimension d,
// so one vector load holds one dimension of several keys and a query element is broadcast to
// them: no horizontal sums (the graph build's exact top lists: many queries against all keys).
inline constexpr int kPanelKeys = 32;

// out[r * out_stride + p * kPanelKeys + j] = dot(x[r], key j of panel p) over head_dim fp32.
struct DotPanelArgs {
  const float* x;       // [num_rows, head_dim]
  const float* panels;  // [num_panels, head_dim, kPanelKeys]
  int head_dim;         // >= 1
  int num_rows;
  int num_panels;
  float* out;           // [num_rows, out_stride], out_stride >= num_panels * kPanelKeys
  long out_stride;
};

void DotPanelScalar(const DotPanelArgs& args);
void DotPanelAvx2(const DotPanelArgs& args);
void DotPanelAvx512(const DotPanelArgs& args);

void CodeScanScalar(const CodeScanArgs& args);
void CodeScanAvx2(const CodeScanArgs& args);
void CodeScanAvx512(const CodeScanArgs& args);

void DotScalar(const DotArgs& args);
void DotAvx2(const DotArgs& args);
void DotAvx512(const DotArgs& args);

}  // namespace attic::retrieval::kernels
