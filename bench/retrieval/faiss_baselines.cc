// FAISS baselines: IndexHNSWFlat and IndexIVFFlat over fp32 copies of one head's keys.
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/DistanceComputer.h>
#include <faiss/impl/FaissException.h>
#include <faiss/utils/Heap.h>

#include <cmath>
#include <exception>
#include <string>
#include <vector>

#include "bench/retrieval/baselines.h"
#include "bench/retrieval/internal/baseline_common.h"
#include "bench/retrieval/metrics.h"

namespace attic::retrieval::eval {
namespace {

using idx_t = faiss::Index::idx_t;

// The one adapter from FAISS's exceptions to Status.
template <typename Fn>
Status CatchFaiss(const char* what, Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return InternalError(std::string(what) + ": " + e.what());
  }
  return OkStatus();
}

// Inner products as HNSW distances (smaller is better, so negated), counted.
class CountingIpDistance final : public faiss::DistanceComputer {
 public:
  explicit CountingIpDistance(faiss::DistanceComputer* base) : base_(base) {}
  void set_query(const float* x) override { base_->set_query(x); }
  float operator()(idx_t i) override {
    ++count_;
    return -(*base_)(i);
  }
  float symmetric_dis(idx_t i, idx_t j) override { return -base_->symmetric_dis(i, j); }
  int64_t count() const { return count_; }

 private:
  std::unique_ptr<faiss::DistanceComputer> base_;
  int64_t count_ = 0;
};

class FaissHnswSearcher final : public Searcher {
 public:
  FaissHnswSearcher(int d, int m) : index_(d, m, faiss::METRIC_INNER_PRODUCT), visited_(1) {}

  Status Init(const KeyRows& keys, const HnswOptions& options) {
    const std::vector<float> x = internal::KeysToFloat(keys);
    index_.hnsw.efConstruction = options.ef_construction;
    RETURN_IF_ERROR(CatchFaiss("faiss-hnsw build", [&] { index_.add(keys.count, x.data()); }));
    visited_ = faiss::VisitedTable(static_cast<int>(keys.count));
    return OkStatus();
  }

  int64_t memory_bytes() const override {
    const auto& h = index_.hnsw;
    return static_cast<int64_t>(h.neighbors.size() * sizeof(h.neighbors[0]) +
                                h.offsets.size() * sizeof(h.offsets[0]) +
                                h.levels.size() * sizeof(h.levels[0]));
  }

  Status Search(const KeyRows& keys, const QueryGroup& group, const GroupScorer& scorer,
                const SearchParams& params, SearchResult* out) override {
    const int k = params.top_k;
    std::vector<idx_t> labels(static_cast<size_t>(k));
    std::vector<float> dist(static_cast<size_t>(k));
    std::vector<int32_t> candidates;
    // FAISS 1.7.3's HNSW::search reads efSearch from the structure, not from the parameters.
    index_.hnsw.efSearch = params.effort > 0 ? params.effort : 64;
    CountingIpDistance dc(index_.storage->get_distance_computer());
    RETURN_IF_ERROR(CatchFaiss("faiss-hnsw search", [&] {
      for (int g = 0; g < group.group_size; ++g) {
        dc.set_query(group.q + static_cast<size_t>(g) * group.head_dim);
        faiss::maxheap_heapify(k, dist.data(), labels.data());
        index_.hnsw.search(dc, k, labels.data(), dist.data(), visited_);
        visited_.advance();
        for (idx_t l : labels) {
          if (l >= 0) candidates.push_back(static_cast<int32_t>(l));
        }
      }
    }));
    internal::RerankByGroup(keys, scorer, &candidates, k, out);
    // FAISS does not report a search's hops; each hop reads one level-0 list of 2M ids and
    // computes at most 2M distances, so distances / 2M lists is a lower bound.
    const int64_t list_ids = index_.hnsw.nb_neighbors(0);
    const int64_t lists = (dc.count() + list_ids - 1) / list_ids;
    out->stats.keys_scored = dc.count();
    out->stats.bytes_read = dc.count() * keys.head_dim * kBytesPerElement +
                            lists * list_ids * static_cast<int64_t>(sizeof(int32_t));
    return OkStatus();
  }

 private:
  faiss::IndexHNSWFlat index_;
  faiss::VisitedTable visited_;
};

class FaissIvfSearcher final : public Searcher {
 public:
  FaissIvfSearcher(int d, int nlist)
      : quantizer_(d), index_(&quantizer_, d, static_cast<size_t>(nlist), faiss::METRIC_INNER_PRODUCT) {}

  Status Init(const KeyRows& keys, uint64_t seed) {
    const std::vector<float> x = internal::KeysToFloat(keys);
    index_.cp.seed = static_cast<int>(seed);
    index_.cp.min_points_per_centroid = 1;  // small heads are fine; no warning
    return CatchFaiss("faiss-ivf build", [&] {
      index_.train(keys.count, x.data());
      index_.add(keys.count, x.data());
    });
  }

  int64_t memory_bytes() const override {
    return static_cast<int64_t>(index_.nlist) * index_.d * static_cast<int64_t>(sizeof(float)) +
           index_.ntotal * static_cast<int64_t>(sizeof(idx_t));
  }

  Status Search(const KeyRows& keys, const QueryGroup& group, const GroupScorer& scorer,
                const SearchParams& params, SearchResult* out) override {
    const int k = params.top_k;
    const int nprobe = std::min<int>(params.effort > 0 ? params.effort : 8,
                                     static_cast<int>(index_.nlist));
    std::vector<idx_t> assign(static_cast<size_t>(nprobe)), labels(static_cast<size_t>(k));
    std::vector<float> centroid_dist(static_cast<size_t>(nprobe)), dist(static_cast<size_t>(k));
    std::vector<int32_t> candidates;
    int64_t scanned = 0;
    faiss::SearchParametersIVF p;
    p.nprobe = static_cast<size_t>(nprobe);
    RETURN_IF_ERROR(CatchFaiss("faiss-ivf search", [&] {
      for (int g = 0; g < group.group_size; ++g) {
        const float* q = group.q + static_cast<size_t>(g) * group.head_dim;
        quantizer_.search(1, q, nprobe, centroid_dist.data(), assign.data());
        for (idx_t list : assign) {
          if (list >= 0) scanned += static_cast<int64_t>(index_.invlists->list_size(list));
        }
        index_.search_preassigned(1, q, k, assign.data(), centroid_dist.data(), dist.data(),
                                  labels.data(), false, &p);
        for (idx_t l : labels) {
          if (l >= 0) candidates.push_back(static_cast<int32_t>(l));
        }
      }
    }));
    internal::RerankByGroup(keys, scorer, &candidates, k, out);
    out->stats.keys_scored = scanned;
    out->stats.bytes_read = (static_cast<int64_t>(index_.nlist) + scanned) * keys.head_dim *
                            kBytesPerElement;
    return OkStatus();
  }

 private:
  faiss::IndexFlatIP quantizer_;  // before index_: the index points at it
  faiss::IndexIVFFlat index_;
};

}  // namespace

StatusOr<std::unique_ptr<Searcher>> BuildFaissHnsw(const KeyRows& keys, const HnswOptions& options) {
  RETURN_IF_ERROR(ValidateKeyRows(keys));
  if (keys.count < 1) return InvalidArgumentError("faiss-hnsw: no keys");
  auto s = std::make_unique<FaissHnswSearcher>(keys.head_dim, options.m);
  RETURN_IF_ERROR(s->Init(keys, options));
  return std::unique_ptr<Searcher>(std::move(s));
}

StatusOr<std::unique_ptr<Searcher>> BuildFaissIvf(const KeyRows& keys, int nlist, uint64_t seed) {
  RETURN_IF_ERROR(ValidateKeyRows(keys));
  if (keys.count < 1) return InvalidArgumentError("faiss-ivf: no keys");
  if (nlist <= 0) nlist = static_cast<int>(std::lround(4.0 * std::sqrt(double(keys.count))));
  nlist = std::max<int>(1, std::min<int64_t>(nlist, keys.count));
  auto s = std::make_unique<FaissIvfSearcher>(keys.head_dim, nlist);
  RETURN_IF_ERROR(s->Init(keys, seed));
  return std::unique_ptr<Searcher>(std::move(s));
}

}  // namespace attic::retrieval::eval
