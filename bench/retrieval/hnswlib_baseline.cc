// hnswlib baseline: HierarchicalNSW over fp32 copies of one head's keys, in an inner-product
// space of our own that counts its distance computations.
#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <vector>

#include "bench/retrieval/baselines.h"
#include "bench/retrieval/internal/baseline_common.h"
#include "bench/retrieval/metrics.h"

namespace attic::retrieval::eval {
namespace {

// Distance computations on this thread; a searcher is used by one thread at a time.
thread_local int64_t t_distances = 0;

// hnswlib's inner-product distance, 1 - q.k, with eight partial sums so it vectorizes.
float CountingInnerProduct(const void* a, const void* b, const void* param) {
  ++t_distances;
  const auto* x = static_cast<const float*>(a);
  const auto* y = static_cast<const float*>(b);
  const size_t d = *static_cast<const size_t*>(param);
  float acc[8] = {};
  size_t i = 0;
  for (; i + 8 <= d; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += x[i + j] * y[i + j];
  }
  float dot = 0.0f;
  for (; i < d; ++i) dot += x[i] * y[i];
  for (float v : acc) dot += v;
  return 1.0f - dot;
}

class CountingIpSpace final : public hnswlib::SpaceInterface<float> {
 public:
  explicit CountingIpSpace(size_t dim) : dim_(dim) {}
  size_t get_data_size() override { return dim_ * sizeof(float); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return &CountingInnerProduct; }
  void* get_dist_func_param() override { return &dim_; }

 private:
  size_t dim_;
};

class HnswlibSearcher final : public Searcher {
 public:
  HnswlibSearcher(const KeyRows& keys, const HnswOptions& options)
      : space_(static_cast<size_t>(keys.head_dim)),
        index_(&space_, static_cast<size_t>(keys.count), static_cast<size_t>(options.m),
               static_cast<size_t>(options.ef_construction), static_cast<size_t>(options.seed)) {
    const std::vector<float> x = internal::KeysToFloat(keys);
    for (int64_t p = 0; p < keys.count; ++p) {
      index_.addPoint(x.data() + static_cast<size_t>(p) * keys.head_dim,
                      static_cast<hnswlib::labeltype>(p));
    }
  }

  int64_t memory_bytes() const override {
    int64_t upper = 0;
    for (size_t i = 0; i < index_.cur_element_count; ++i) upper += index_.element_levels_[i];
    return static_cast<int64_t>(index_.cur_element_count * index_.size_links_level0_) +
           upper * static_cast<int64_t>(index_.size_links_per_element_);
  }

  Status Search(const KeyRows& keys, const QueryGroup& group, const GroupScorer& scorer,
                const SearchParams& params, SearchResult* out) override {
    index_.setEf(static_cast<size_t>(params.effort > 0 ? params.effort : 64));
    const long hops_before = index_.metric_hops.load();
    t_distances = 0;
    std::vector<int32_t> candidates;
    for (int g = 0; g < group.group_size; ++g) {
      auto top = index_.searchKnn(group.q + static_cast<size_t>(g) * group.head_dim,
                                  static_cast<size_t>(params.top_k));
      while (!top.empty()) {
        candidates.push_back(static_cast<int32_t>(top.top().second));
        top.pop();
      }
    }
    const int64_t distances = t_distances;
    const int64_t hops = index_.metric_hops.load() - hops_before;
    internal::RerankByGroup(keys, scorer, &candidates, params.top_k, out);
    out->stats.keys_scored = distances;
    out->stats.bytes_read = distances * keys.head_dim * kBytesPerElement +
                            hops * static_cast<int64_t>(index_.size_links_level0_);
    return OkStatus();
  }

 private:
  CountingIpSpace space_;  // before index_: the index points at it
  hnswlib::HierarchicalNSW<float> index_;
};

}  // namespace

StatusOr<std::unique_ptr<Searcher>> BuildHnswlib(const KeyRows& keys, const HnswOptions& options) {
  RETURN_IF_ERROR(ValidateKeyRows(keys));
  if (keys.count < 1) return InvalidArgumentError("hnswlib: no keys");
  return std::unique_ptr<Searcher>(new HnswlibSearcher(keys, options));
}

}  // namespace attic::retrieval::eval
