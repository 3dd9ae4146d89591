#include "attention_workers/retrieval/internal/quantizer.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/dtype.h"

namespace attic::retrieval::internal {
namespace {

void FitFourBit(const float* rows, int64_t n, int d, float* offset, float* step) {
  std::vector<float> lo(d, 0.0f), hi(d, 0.0f);
  if (n > 0) {
    std::copy(rows, rows + d, lo.begin());
    std::copy(rows, rows + d, hi.begin());
  }
  for (int64_t i = 1; i < n; ++i) {
    const float* r = rows + i * d;
    for (int j = 0; j < d; ++j) {
      lo[j] = std::min(lo[j], r[j]);
      hi[j] = std::max(hi[j], r[j]);
    }
  }
  for (int j = 0; j < d; ++j) {
    offset[j] = lo[j];
    step[j] = hi[j] > lo[j] ? (hi[j] - lo[j]) / 15.0f : 1.0f;
  }
}

void FitOneBit(const float* rows, int64_t n, int d, float* offset, float* step,
               float* threshold) {
  std::vector<double> mean(d, 0.0), below(d, 0.0), above(d, 0.0);
  std::vector<int64_t> num_above(d, 0);
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) mean[j] += rows[i * d + j];
  }
  for (int j = 0; j < d; ++j) mean[j] = n > 0 ? mean[j] / static_cast<double>(n) : 0.0;
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) {
      const float x = rows[i * d + j];
      if (x > mean[j]) {
        above[j] += x;
        ++num_above[j];
      } else {
        below[j] += x;
      }
    }
  }
  for (int j = 0; j < d; ++j) {
    const int64_t num_below = n - num_above[j];
    const double lo = num_below > 0 ? below[j] / static_cast<double>(num_below) : mean[j];
    const double hi = num_above[j] > 0 ? above[j] / static_cast<double>(num_above[j]) : mean[j];
    threshold[j] = static_cast<float>(mean[j]);
    offset[j] = static_cast<float>(lo);
    step[j] = static_cast<float>(hi - lo);
  }
}

}  // namespace

void KeysToFloat(const KeyRows& keys, int64_t begin, int64_t end, float* out) {
  for (int64_t p = begin; p < end; ++p) {
    ConvertToFloat(keys.dtype, keys.row(p), out + (p - begin) * keys.head_dim,
                   static_cast<size_t>(keys.head_dim));
  }
}

StatusOr<ScalarQuantizer> ScalarQuantizer::Fit(const float* rows, int64_t n, int head_dim,
                                               int bits) {
  if (bits != 1 && bits != 4) {
    return InvalidArgumentError("quantizer: bits " + std::to_string(bits) + " is not 1 or 4");
  }
  if (head_dim <= 0 || head_dim % 32 != 0) {
    return InvalidArgumentError("quantizer: head_dim " + std::to_string(head_dim) +
                                " is not a positive multiple of 32");
  }
  ScalarQuantizer q;
  q.bits_ = bits;
  q.head_dim_ = head_dim;
  q.offset_.resize(head_dim);
  q.step_.resize(head_dim);
  if (bits == 4) {
    FitFourBit(rows, n, head_dim, q.offset_.data(), q.step_.data());
  } else {
    q.threshold_.resize(head_dim);
    FitOneBit(rows, n, head_dim, q.offset_.data(), q.step_.data(), q.threshold_.data());
  }
  return q;
}

void ScalarQuantizer::Encode(const float* row, uint8_t* block, int slot) const {
  if (bits_ == 4) {
    for (int d = 0; d < head_dim_; ++d) {
      const float c = std::nearbyint((row[d] - offset_[d]) / step_[d]);
      const auto code = static_cast<uint8_t>(std::clamp(c, 0.0f, 15.0f));
      uint8_t& byte = block[(d / 2) * kCodeBlock + slot];
      byte = d % 2 == 0 ? static_cast<uint8_t>((byte & 0xf0) | code)
                        : static_cast<uint8_t>((byte & 0x0f) | (code << 4));
    }
    return;
  }
  const int byte_in_mask = slot / 8;
  const auto bit = static_cast<uint8_t>(1u << (slot % 8));
  for (int d = 0; d < head_dim_; ++d) {
    uint8_t& byte = block[2 * d + byte_in_mask];
    byte = row[d] > threshold_[d] ? static_cast<uint8_t>(byte | bit)
                                  : static_cast<uint8_t>(byte & ~bit);
  }
}

float ScalarQuantizer::Decode(const uint8_t* block, int slot, int d) const {
  int code;
  if (bits_ == 4) {
    const uint8_t byte = block[(d / 2) * kCodeBlock + slot];
    code = d % 2 == 0 ? byte & 15 : byte >> 4;
  } else {
    code = (block[2 * d + slot / 8] >> (slot % 8)) & 1;
  }
  return offset_[d] + step_[d] * static_cast<float>(code);
}

ScanQuery ScalarQuantizer::PrepareQuery(const QueryGroup& q) const {
  ScanQuery s;
  s.group_size = q.group_size;
  s.q.resize(static_cast<size_t>(q.group_size) * head_dim_);
  s.bias.assign(q.group_size, 0.0f);
  for (int g = 0; g < q.group_size; ++g) {
    const float* src = q.q + static_cast<size_t>(g) * head_dim_;
    float* dst = s.q.data() + static_cast<size_t>(g) * head_dim_;
    double bias = 0.0;
    for (int d = 0; d < head_dim_; ++d) {
      dst[d] = src[d] * step_[d];
      bias += static_cast<double>(src[d]) * offset_[d];
    }
    s.bias[g] = static_cast<float>(bias);
  }
  return s;
}

void ScalarQuantizer::Scan(const ScanQuery& q, const uint8_t* codes, int64_t num_blocks,
                           float* out, IsaLevel isa) const {
  constexpr int64_t kMaxBlocksPerCall = 1 << 20;
  for (int64_t b0 = 0; b0 < num_blocks; b0 += kMaxBlocksPerCall) {
    const int64_t nb = std::min(kMaxBlocksPerCall, num_blocks - b0);
    const kernels::CodeScanArgs args{.q = q.q.data(),
                                     .bias = q.bias.data(),
                                     .group_size = q.group_size,
                                     .head_dim = head_dim_,
                                     .bits = bits_,
                                     .codes = codes + b0 * block_bytes(),
                                     .num_blocks = static_cast<int>(nb),
                                     .out = out + b0 * kCodeBlock};
    if (isa >= IsaLevel::kAvx512) {
      kernels::CodeScanAvx512(args);
    } else if (isa >= IsaLevel::kAvx2) {
      kernels::CodeScanAvx2(args);
    } else {
      kernels::CodeScanScalar(args);
    }
  }
}

void CodeStore::Append(const ScalarQuantizer& quant, const float* row) {
  const int slot = static_cast<int>(size_ % kCodeBlock);
  if (slot == 0) codes_.resize(codes_.size() + static_cast<size_t>(block_bytes_), 0);
  quant.Encode(row, codes_.data() + codes_.size() - block_bytes_, slot);
  ++size_;
}

}  // namespace attic::retrieval::internal
