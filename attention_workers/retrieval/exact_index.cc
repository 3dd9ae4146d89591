#include "attention_workers/retrieval/exact_index.h"

#include <algorithm>
#include <vector>

namespace attic::retrieval {
namespace {

class ExactIndex final : public KeyIndex {
 public:
  ExactIndex(int64_t size, int head_dim, DType dtype)
      : size_(size), head_dim_(head_dim), dtype_(dtype) {}

  IndexKind kind() const override { return IndexKind::kExact; }
  int64_t size() const override { return size_; }
  int64_t memory_bytes() const override { return 0; }
  StatusOr<std::unique_ptr<KeyIndex>> Clone() const override {
    return std::unique_ptr<KeyIndex>(new ExactIndex(*this));
  }

  Status Add(const KeyRows& keys) override {
    RETURN_IF_ERROR(ValidateKeyRows(keys));
    if (keys.count < size_ || keys.head_dim != head_dim_ || keys.dtype != dtype_) {
      return InvalidArgumentError("exact index: rows do not extend the indexed keys");
    }
    size_ = keys.count;
    return OkStatus();
  }

  Status Search(const KeyRows& keys, const GroupScorer& scorer, const SearchParams& params,
                SearchResult* out) const override {
    RETURN_IF_ERROR(ValidateSearch(keys, size_, scorer, params));
    const int64_t n =
        params.position_limit > 0 ? std::min(size_, params.position_limit) : size_;
    std::vector<float> scores(static_cast<size_t>(n));
    scorer.ScoreRange(keys, 0, n, scores.data());
    out->positions = TopKPositions(scores, params.top_k);
    out->scores.clear();
    for (int32_t p : out->positions) out->scores.push_back(scores[static_cast<size_t>(p)]);
    out->stats = {.keys_scored = n, .bytes_read = n * static_cast<int64_t>(keys.row_bytes())};
    return OkStatus();
  }

 private:
  int64_t size_;
  int head_dim_;
  DType dtype_;
};

}  // namespace

StatusOr<std::unique_ptr<KeyIndex>> BuildExactIndex(const KeyRows& keys) {
  RETURN_IF_ERROR(ValidateKeyRows(keys));
  return std::unique_ptr<KeyIndex>(new ExactIndex(keys.count, keys.head_dim, keys.dtype));
}

}  // namespace attic::retrieval
