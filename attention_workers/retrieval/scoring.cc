#include "attention_workers/retrieval/scoring.h"

#include <algorithm>
#include <numeric>

#include "attention_workers/internal/kernel_abi.h"
#include "attention_workers/retrieval/internal/score_abi.h"

namespace attic::retrieval {
namespace {

constexpr int kRowBatch = 64;

int ChunkFor(IsaLevel isa) {
  if (isa >= IsaLevel::kAvx512) return kernels::kChunkAvx512;
  if (isa >= IsaLevel::kAvx2) return kernels::kChunkAvx2;
  return 0;
}

}  // namespace

Status ValidateQueryGroup(const QueryGroup& q) {
  if (q.q == nullptr) return InvalidArgumentError("query group: null queries");
  if (q.group_size < 1 || q.group_size > kernels::kMaxScoreGroup) {
    return InvalidArgumentError("query group: group size " + std::to_string(q.group_size) +
                                " outside [1, 128]");
  }
  if (q.head_dim < 32 || q.head_dim > kernels::kMaxScoreDim || q.head_dim % 32 != 0) {
    return InvalidArgumentError("query group: head_dim " + std::to_string(q.head_dim) +
                                " is not a multiple of 32 in [32, 512]");
  }
  return OkStatus();
}

GroupScorer::GroupScorer(const QueryGroup& q, DType dtype, IsaLevel isa)
    : q_(static_cast<size_t>(q.group_size) * q.head_dim),
      group_size_(q.group_size),
      head_dim_(q.head_dim),
      dtype_(dtype),
      isa_(isa) {
  const int chunk = ChunkFor(isa);
  const int half = chunk / 2;
  for (int g = 0; g < group_size_; ++g) {
    const float* src = q.q + static_cast<size_t>(g) * head_dim_;
    float* dst = q_.data() + static_cast<size_t>(g) * head_dim_;
    if (chunk == 0 || dtype != DType::kBFloat16) {
      std::copy(src, src + head_dim_, dst);
      continue;
    }
    for (int c = 0; c < head_dim_; c += chunk) {
      for (int j = 0; j < half; ++j) {
        dst[c + j] = src[c + 2 * j];
        dst[c + half + j] = src[c + 2 * j + 1];
      }
    }
  }
}

void GroupScorer::ScoreRows(std::span<const std::byte* const> rows, float* out) const {
  if (rows.empty()) return;
  const kernels::ScoreArgs args{.q = q_.data(),
                                .group_size = group_size_,
                                .head_dim = head_dim_,
                                .dtype = static_cast<int>(dtype_),
                                .rows = reinterpret_cast<const void* const*>(rows.data()),
                                .num_rows = static_cast<int>(rows.size()),
                                .out = out};
  if (isa_ >= IsaLevel::kAvx512) {
    kernels::ScoreAvx512(args);
  } else if (isa_ >= IsaLevel::kAvx2) {
    kernels::ScoreAvx2(args);
  } else {
    kernels::ScoreScalar(args);
  }
}

void GroupScorer::ScorePositions(const KeyRows& keys, std::span<const int32_t> positions,
                                 float* out) const {
  const std::byte* rows[kRowBatch];
  for (size_t i0 = 0; i0 < positions.size(); i0 += kRowBatch) {
    const size_t n = std::min<size_t>(kRowBatch, positions.size() - i0);
    for (size_t i = 0; i < n; ++i) rows[i] = keys.row(positions[i0 + i]);
    ScoreRows({rows, n}, out + i0);
  }
}

void GroupScorer::ScoreRange(const KeyRows& keys, int64_t begin, int64_t end, float* out) const {
  const std::byte* rows[kRowBatch];
  for (int64_t p0 = begin; p0 < end; p0 += kRowBatch) {
    const int64_t n = std::min<int64_t>(kRowBatch, end - p0);
    for (int64_t i = 0; i < n; ++i) rows[i] = keys.row(p0 + i);
    ScoreRows({rows, static_cast<size_t>(n)}, out + (p0 - begin));
  }
}

float GroupScorer::ScoreRow(const std::byte* row) const {
  float s = 0.0f;
  ScoreRows({&row, 1}, &s);
  return s;
}

void GroupScorer::CopyQueries(float* out) const {
  const int chunk = ChunkFor(isa_);
  const int half = chunk / 2;
  for (int g = 0; g < group_size_; ++g) {
    const float* src = q_.data() + static_cast<size_t>(g) * head_dim_;
    float* dst = out + static_cast<size_t>(g) * head_dim_;
    if (chunk == 0 || dtype_ != DType::kBFloat16) {
      std::copy(src, src + head_dim_, dst);
      continue;
    }
    for (int c = 0; c < head_dim_; c += chunk) {
      for (int j = 0; j < half; ++j) {
        dst[c + 2 * j] = src[c + j];
        dst[c + 2 * j + 1] = src[c + half + j];
      }
    }
  }
}

std::vector<int32_t> TopKPositions(std::span<const float> scores, int k, int32_t base) {
  const size_t n = std::min<size_t>(static_cast<size_t>(std::max(k, 0)), scores.size());
  std::vector<int32_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto better = [&](int32_t a, int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  std::partial_sort(idx.begin(), idx.begin() + static_cast<ptrdiff_t>(n), idx.end(), better);
  idx.resize(n);
  for (int32_t& i : idx) i += base;
  return idx;
}

}  // namespace attic::retrieval
