// ScalarQuantizer: per-dimension scalar codes for keys (4-bit or 1-bit), stored in blocks of
// kernels::kCodeBlock keys (code_scan_abi.h), and the vectorized scan that approximates every
// key's group score from them. Shared by the two-stage scan (quantized_scan.h) and the cluster
// index's members (cluster_index.h).
//
//   ASSIGN_OR_RETURN(ScalarQuantizer quant, ScalarQuantizer::Fit(rows, n, 128, /*bits=*/4));
//   CodeStore store(quant);
//   for (int64_t i = 0; i < n; ++i) store.Append(quant, rows + i * 128);
//   ScanQuery sq = quant.PrepareQuery(group);
//   quant.Scan(sq, store.data(), store.num_blocks(), approx, isa);   // approx[i] ~ score of key i
//
// Dequantized value of dimension d: offset[d] + step[d] * code. 4-bit: offset = the fitted
// minimum, step = range / 15, code = round to nearest (clamped for values outside the fitted
// range). 1-bit: code = x > mean[d]; offset and offset + step are the means of the values at
// or below and above it. The approximate score is then exact arithmetic on the dequantized key:
//   max_g (sum_d q_g[d] * offset[d] + sum_d (q_g[d] * step[d]) * code[d]).
// Thread safety: a fitted quantizer is immutable; Scan may run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "attention_workers/isa.h"
#include "attention_workers/retrieval/internal/code_scan_abi.h"
#include "attention_workers/retrieval/key_rows.h"
#include "common/status.h"

namespace attic::retrieval::internal {

inline constexpr int kCodeBlock = kernels::kCodeBlock;

// Rows [begin, end) of keys widened to fp32 into out [end - begin, head_dim].
void KeysToFloat(const KeyRows& keys, int64_t begin, int64_t end, float* out);

// A query group prepared for one quantizer: q scaled by the steps, offsets folded into bias.
struct ScanQuery {
  std::vector<float> q;     // [group_size, head_dim]
  std::vector<float> bias;  // [group_size]
  int group_size = 0;
};

class ScalarQuantizer {
 public:
  ScalarQuantizer() = default;

  // Fits per-dimension ranges to rows [n, head_dim] fp32. InvalidArgument unless bits is 1 or
  // 4 and head_dim is a positive multiple of 32. n may be 0 (every code then decodes to 0).
  static StatusOr<ScalarQuantizer> Fit(const float* rows, int64_t n, int head_dim, int bits);

  int bits() const { return bits_; }
  int head_dim() const { return head_dim_; }
  // Bytes of one block of kCodeBlock keys' codes.
  int block_bytes() const { return head_dim_ * kCodeBlock * bits_ / 8; }

  // Writes the code of row [head_dim] into slot (0..kCodeBlock-1) of block.
  void Encode(const float* row, uint8_t* block, int slot) const;
  // The dequantized value of dimension d of the key in slot of block.
  float Decode(const uint8_t* block, int slot, int d) const;

  // REQUIRES: ValidateQueryGroup(q).ok() (group_size <= 128) and q.head_dim == head_dim().
  ScanQuery PrepareQuery(const QueryGroup& q) const;
  // out[b * kCodeBlock + i] = approximate score of slot i of block b, for b < num_blocks.
  void Scan(const ScanQuery& q, const uint8_t* codes, int64_t num_blocks, float* out,
            IsaLevel isa) const;

 private:
  int bits_ = 4;
  int head_dim_ = 0;
  std::vector<float> offset_;     // [head_dim]
  std::vector<float> step_;       // [head_dim]
  std::vector<float> threshold_;  // [head_dim], 1-bit only
};

// Codes of a growing list of keys, in blocks; the last block may be partly filled (its empty
// slots hold code 0 and are not keys).
class CodeStore {
 public:
  explicit CodeStore(const ScalarQuantizer& quant) : block_bytes_(quant.block_bytes()) {}

  void Append(const ScalarQuantizer& quant, const float* row);

  int64_t size() const { return size_; }
  int64_t num_blocks() const { return (size_ + kCodeBlock - 1) / kCodeBlock; }
  int64_t bytes() const { return num_blocks() * block_bytes_; }
  const uint8_t* data() const { return codes_.data(); }

 private:
  int block_bytes_;
  int64_t size_ = 0;
  std::vector<uint8_t> codes_;
};

}  // namespace attic::retrieval::internal
