#include "attention_workers/retrieval/quantized_scan.h"

#include <algorithm>
#include <string>
#include <vector>

#include "attention_workers/retrieval/internal/quantizer.h"

namespace attic::retrieval {
namespace {

using internal::CodeStore;
using internal::kCodeBlock;
using internal::ScalarQuantizer;

class QuantizedScan final : public KeyIndex {
 public:
  QuantizedScan(const QuantizedScanOptions& options, const BuildOptions& build, int head_dim,
                DType dtype)
      : options_(options), isa_(build.isa), head_dim_(head_dim), dtype_(dtype) {}

  IndexKind kind() const override { return IndexKind::kQuantized; }
  StatusOr<std::unique_ptr<KeyIndex>> Clone() const override {
    return std::unique_ptr<KeyIndex>(new QuantizedScan(*this));
  }
  int64_t size() const override { return store_ ? store_->size() : 0; }
  int64_t memory_bytes() const override {
    return (store_ ? store_->bytes() : 0) + 3 * head_dim_ * static_cast<int64_t>(sizeof(float));
  }

  Status Add(const KeyRows& keys) override {
    RETURN_IF_ERROR(ValidateKeyRows(keys));
    if (keys.count < size() || keys.head_dim != head_dim_ || keys.dtype != dtype_) {
      return InvalidArgumentError("quantized scan: rows do not extend the indexed keys");
    }
    const int64_t begin = size();
    if (begin == keys.count) return OkStatus();
    std::vector<float> rows(static_cast<size_t>(keys.count - begin) * head_dim_);
    internal::KeysToFloat(keys, begin, keys.count, rows.data());
    if (!store_) {  // the first keys fix the code ranges
      ASSIGN_OR_RETURN(quant_, ScalarQuantizer::Fit(rows.data(), keys.count - begin, head_dim_,
                                                    options_.bits));
      store_.emplace(quant_);
    }
    for (int64_t i = 0; i < keys.count - begin; ++i) {
      store_->Append(quant_, rows.data() + i * head_dim_);
    }
    return OkStatus();
  }

  Status Search(const KeyRows& keys, const GroupScorer& scorer, const SearchParams& params,
                SearchResult* out) const override;

 private:
  // Positions of the `count` best approximate scores among approx[0, n), any order.
  static std::vector<int32_t> BestCandidates(const std::vector<float>& approx, int64_t n,
                                             int64_t count);

  QuantizedScanOptions options_;
  IsaLevel isa_;
  int head_dim_;
  DType dtype_;
  ScalarQuantizer quant_;
  std::optional<CodeStore> store_;  // absent until the first key
};

std::vector<int32_t> QuantizedScan::BestCandidates(const std::vector<float>& approx, int64_t n,
                                                   int64_t count) {
  std::vector<int32_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[i] = static_cast<int32_t>(i);
  if (count < n) {
    std::nth_element(idx.begin(), idx.begin() + count, idx.end(),
                     [&](int32_t a, int32_t b) { return approx[a] > approx[b]; });
    idx.resize(static_cast<size_t>(count));
  }
  return idx;
}

Status QuantizedScan::Search(const KeyRows& keys, const GroupScorer& scorer,
                             const SearchParams& params, SearchResult* out) const {
  RETURN_IF_ERROR(ValidateSearch(keys, size(), scorer, params));
  const int64_t n = params.position_limit > 0 ? std::min(size(), params.position_limit) : size();
  SearchResult r;
  if (n > 0) {
    std::vector<float> q(static_cast<size_t>(scorer.group_size()) * head_dim_);
    scorer.CopyQueries(q.data());
    const internal::ScanQuery sq = quant_.PrepareQuery(
        {.q = q.data(), .group_size = scorer.group_size(), .head_dim = head_dim_});
    std::vector<float> approx(static_cast<size_t>(store_->num_blocks()) * kCodeBlock);
    quant_.Scan(sq, store_->data(), store_->num_blocks(), approx.data(), isa_);
    const int64_t rerank = std::min<int64_t>(
        n, std::max(params.top_k, params.effort > 0 ? params.effort : options_.rerank));
    const std::vector<int32_t> cand = BestCandidates(approx, n, rerank);
    std::vector<float> exact(cand.size());
    scorer.ScorePositions(keys, cand, exact.data());
    for (int32_t i : TopKPositions(exact, params.top_k)) {
      r.positions.push_back(cand[static_cast<size_t>(i)]);
      r.scores.push_back(exact[static_cast<size_t>(i)]);
    }
    r.stats = {.keys_scored = rerank,
               .bytes_read = store_->bytes() + rerank * static_cast<int64_t>(keys.row_bytes())};
  }
  *out = std::move(r);
  return OkStatus();
}

}  // namespace

StatusOr<std::unique_ptr<KeyIndex>> BuildQuantizedScan(const KeyRows& keys,
                                                       const QuantizedScanOptions& options,
                                                       const BuildOptions& build) {
  RETURN_IF_ERROR(ValidateKeyRows(keys));
  if (options.bits != 1 && options.bits != 4) {
    return InvalidArgumentError("quantized scan: bits " + std::to_string(options.bits) +
                                " is not 1 or 4");
  }
  if (options.rerank < 1) return InvalidArgumentError("quantized scan: rerank < 1");
  auto index = std::make_unique<QuantizedScan>(options, build, keys.head_dim, keys.dtype);
  RETURN_IF_ERROR(index->Add(keys));
  return std::unique_ptr<KeyIndex>(std::move(index));
}

}  // namespace attic::retrieval
