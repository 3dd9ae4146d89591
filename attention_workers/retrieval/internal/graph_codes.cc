#include "attention_workers/retrieval/internal/graph_codes.h"

#include <algorithm>
#include <cmath>

#include "attention_workers/retrieval/internal/graph_code_abi.h"
#include "common/dtype.h"

namespace attic::retrieval::internal {

void KeyCodes::Train(const KeyRows& keys) {
  head_dim_ = keys.head_dim;
  const size_t d = static_cast<size_t>(head_dim_);
  std::vector<float> lo(d, INFINITY), hi(d, -INFINITY), x(d);
  for (int64_t p = 0; p < keys.count; ++p) {
    ConvertToFloat(keys.dtype, keys.row(p), x.data(), d);
    for (size_t i = 0; i < d; ++i) {
      lo[i] = std::min(lo[i], x[i]);
      hi[i] = std::max(hi[i], x[i]);
    }
  }
  lo_.resize(d);
  step_.resize(d);
  for (size_t i = 0; i < d; ++i) {
    const float range = hi[i] - lo[i];
    lo_[i] = lo[i];
    step_[i] = range > 0 ? range / 15.0f : 1.0f;
  }
  codes_.clear();
}

void KeyCodes::Append(const KeyRows& keys, int64_t begin, int64_t end) {
  const size_t d = static_cast<size_t>(head_dim_);
  const size_t half = d / 2;
  codes_.resize(static_cast<size_t>(end) * half);
  std::vector<float> x(d);
  for (int64_t p = begin; p < end; ++p) {
    ConvertToFloat(keys.dtype, keys.row(p), x.data(), d);
    uint8_t* c = codes_.data() + static_cast<size_t>(p) * half;
    auto quantize = [&](size_t i) {
      const float v = std::nearbyint((x[i] - lo_[i]) / step_[i]);
      return static_cast<uint8_t>(std::clamp(v, 0.0f, 15.0f));
    };
    for (size_t j = 0; j < half; ++j) {
      c[j] = static_cast<uint8_t>(quantize(j) | (quantize(j + half) << 4));
    }
  }
}

void CodeQuery::Prepare(const KeyCodes& codes, const float* q, int group_size, IsaLevel isa) {
  group_size_ = group_size;
  head_dim_ = codes.head_dim();
  isa_ = isa;
  const size_t d = static_cast<size_t>(head_dim_);
  qs_.resize(static_cast<size_t>(group_size) * d);
  bias_.resize(static_cast<size_t>(group_size));
  for (int g = 0; g < group_size; ++g) {
    const float* qg = q + static_cast<size_t>(g) * d;
    double bias = 0;
    for (size_t i = 0; i < d; ++i) {
      qs_[static_cast<size_t>(g) * d + i] = qg[i] * codes.step()[i];
      bias += static_cast<double>(qg[i]) * codes.lo()[i];
    }
    bias_[static_cast<size_t>(g)] = static_cast<float>(bias);
  }
}

void CodeQuery::Score(const KeyCodes& codes, std::span<const int32_t> ids, float* out) const {
  const kernels::CodeScoreArgs args{.qs = qs_.data(),
                                    .bias = bias_.data(),
                                    .group_size = group_size_,
                                    .head_dim = head_dim_,
                                    .codes = codes.code(0),
                                    .ids = ids.data(),
                                    .num_ids = static_cast<int>(ids.size()),
                                    .out = out};
  if (isa_ >= IsaLevel::kAvx512) {
    kernels::CodeScoreAvx512(args);
  } else {
    kernels::CodeScoreScalar(args);
  }
}

}  // namespace attic::retrieval::internal
