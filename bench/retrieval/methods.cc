#include "bench/retrieval/methods.h"

#include <utility>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>

#include "attention_workers/retrieval/exact_index.h"
#include "attention_workers/retrieval/quantized_scan.h"
#include "attention_workers/retrieval/recall_guard.h"
#include "attention_workers/retrieval/serving_index.h"
#include "attention_workers/thread_pool.h"
#include "bench/retrieval/baselines.h"

namespace attic::retrieval::eval {
namespace {

class KeyIndexSearcher final : public Searcher {
 public:
  explicit KeyIndexSearcher(std::unique_ptr<KeyIndex> index) : index_(std::move(index)) {}
  int64_t memory_bytes() const override { return index_->memory_bytes(); }
  Status Search(const KeyRows& keys, const QueryGroup& /*group*/, const GroupScorer& scorer,
                const SearchParams& params, SearchResult* out) override {
    return index_->Search(keys, scorer, params, out);
  }

 private:
  std::unique_ptr<KeyIndex> index_;
};

// The serving policy (serving_index.h) over the graph index: what the worker serves the head
// with, decided from the prefill sample alone, searched at effort 0 only (its calibrated
// effort). A head it answers densely has no index: serves_dense() makes the evaluator count
// it as a dense pass without searching.
//
// guard_every > 0 (attic-serving-guarded): the recall guard as the worker runs it
// (recall_guard.h, 4 checks pooled, the worker's 0.96 target), with one step in guard_every
// checked exactly: raised effort, then (a graph at its largest beam) the 4-bit scan at re-rank
// 800, then (a scan that misses) dense. The checks' own cost (a pass over the keys each) is not
// in the step's bytes. A head sent dense searches exactly from then on and is priced as a dense
// pass.
class ServingSearcher final : public Searcher {
 public:
  ServingSearcher(ServingIndex serving, int guard_every)
      : serving_(std::move(serving)), guard_every_(guard_every) {
    if (guard_every_ > 0 && serving_.base_effort > 0) {
      guard_ = std::make_unique<RecallGuard>(Guard(serving_.base_effort, serving_.max_effort));
    }
  }
  int64_t memory_bytes() const override {
    return serving_.index != nullptr ? serving_.index->memory_bytes() : 0;
  }
  Status Search(const KeyRows& keys, const QueryGroup& /*group*/, const GroupScorer& scorer,
                const SearchParams& params, SearchResult* out) override {
    if (serving_.index == nullptr) return FailedPreconditionError("the head is served densely");
    if (guard_ == nullptr) {
      return serving_.index->Search(keys, scorer, {.top_k = params.top_k, .effort = 0}, out);
    }
    const int64_t n = std::min(serving_.index->size(), keys.count);
    if (exact_ == nullptr) {
      ASSIGN_OR_RETURN(exact_, BuildExactIndex(keys.prefix(n)));
    }
    if (guard_->dense() && !serving_.replaced && scan_ == nullptr) {
      // The graph is out of beam: the 4-bit scan at the deepest re-rank replaces it.
      const int depth = ServingOptions{}.scan_depths.back();
      ASSIGN_OR_RETURN(scan_, BuildQuantizedScan(keys.prefix(n), {.bits = 4, .rerank = depth}));
      guard_ = std::make_unique<RecallGuard>(Guard(depth, depth));
    }
    if (guard_->dense()) {
      dense_ = true;
      RETURN_IF_ERROR(exact_->Search(keys, scorer, {.top_k = params.top_k}, out));
      out->stats.bytes_read = 2 * n * static_cast<int64_t>(keys.row_bytes());  // K and V
      return OkStatus();
    }
    const KeyIndex& index = scan_ != nullptr ? *scan_ : *serving_.index;
    RETURN_IF_ERROR(
        index.Search(keys, scorer, {.top_k = params.top_k, .effort = guard_->effort()}, out));
    if (++steps_ % guard_every_ == 0) {
      RETURN_IF_ERROR(exact_->Search(keys, scorer, {.top_k = params.top_k}, &check_));
      int64_t hits = 0;
      for (const int32_t p : check_.positions) {
        hits += std::find(out->positions.begin(), out->positions.end(), p) !=
                out->positions.end();
      }
      const RecallGuard::Action a =
          guard_->Report(static_cast<int64_t>(check_.positions.size()), hits);
      if (a == RecallGuard::Action::kRaised) last_raised_ = guard_->effort();
    }
    return OkStatus();
  }
  std::string detail() const override { return serving_.ToString(); }
  bool serves_dense() const override { return serving_.dense; }
  std::string chosen_setting() const override {
    if (serving_.dense || serving_.index == nullptr) return {};
    const std::optional<Calibration>& c =
        serving_.replaced ? serving_.fallback_calibration : serving_.calibration;
    std::string s = serving_.replaced ? "4-bit scan re-rank" : "graph beam";
    s += c.has_value() ? " " + std::to_string(c->effort) : " default";
    // What the guard did over the steps (this is asked after them).
    if (last_raised_ > 0) s += ", guard -> " + std::to_string(last_raised_);
    if (scan_ != nullptr) s += ", -> scan";
    if (dense_) s += ", -> dense";
    return s;
  }

 private:
  static RecallGuardOptions Guard(int base, int max) {
    return {.target = GraphOptions{}.calibration_target,
            .checks = 4,
            .base_effort = base,
            .max_effort = max};
  }

  ServingIndex serving_;
  const int guard_every_;
  std::unique_ptr<RecallGuard> guard_;
  std::unique_ptr<KeyIndex> exact_;
  std::unique_ptr<KeyIndex> scan_;  // the guard's replacement of the graph
  SearchResult check_;
  int64_t steps_ = 0;
  int last_raised_ = 0;
  bool dense_ = false;
};

MethodSpec ServingMethod(ThreadPool* pool, int guard_every) {
  MethodSpec m;
  m.name = guard_every > 0 ? "attic-serving-guarded" : "attic-serving";
  m.build_params = "graph, calibrated";
  m.effort_name = "effort";
  m.efforts = {0};
  m.learns_from_queries = true;
  m.build_threads = pool != nullptr ? pool->num_threads() : 1;
  if (guard_every > 0) m.build_params += ", guard 1 step in " + std::to_string(guard_every);
  m.build = [pool, guard_every](const KeyRows& keys,
                   const QuerySample& sample) -> StatusOr<std::unique_ptr<Searcher>> {
    ASSIGN_OR_RETURN(ServingIndex serving,
                     BuildServingIndex(IndexKind::kGraph, keys, sample, {}, {.pool = pool}));
    return std::unique_ptr<Searcher>(new ServingSearcher(std::move(serving), guard_every));
  };
  return m;
}

// The effort sweep of each Attic kind, in the kind's own unit, cheapest first; 0 is the
// kind's default. graph: beam width (raised to top_k when smaller); cluster: keys probed
// (default max(512, 16 sqrt(n))); quantized: keys re-ranked exactly (default 200; the
// 1-bit variant has its own sweep, QuantizedMethod).
std::vector<int> AtticEfforts(IndexKind kind) {
  switch (kind) {
    case IndexKind::kExact:
      return {0};
    case IndexKind::kGraph:
      return {100, 150, 0, 200, 300, 400};
    case IndexKind::kCluster:
      return {512, 1024, 0, 2048, 4096};
    case IndexKind::kQuantized:
      return {100, 150, 0, 300, 400};
  }
  return {0};
}

MethodSpec AtticMethod(IndexKind kind, uint64_t seed, ThreadPool* pool) {
  MethodSpec m;
  m.name = "attic-" + std::string(IndexKindName(kind));
  m.effort_name = "effort";
  m.efforts = AtticEfforts(kind);
  m.learns_from_queries = kind == IndexKind::kGraph || kind == IndexKind::kCluster;
  m.build_threads = pool != nullptr ? pool->num_threads() : 1;
  m.build = [kind, seed, pool](const KeyRows& keys,
                               const QuerySample& sample) -> StatusOr<std::unique_ptr<Searcher>> {
    ASSIGN_OR_RETURN(std::unique_ptr<KeyIndex> index,
                     BuildKeyIndex(kind, keys, sample, {.pool = pool, .seed = seed}));
    return WrapKeyIndex(std::move(index));
  };
  return m;
}

// The two-stage quantized scan at a given code width, built directly (the factory's kQuantized
// is the 4-bit default).
MethodSpec QuantizedMethod(int bits, ThreadPool* pool) {
  MethodSpec m;
  m.name = "attic-quantized-" + std::to_string(bits) + "bit";
  m.effort_name = "rerank";
  m.efforts = bits == 4 ? std::vector<int>{100, 150, 200, 300, 400}
                        : std::vector<int>{400, 800, 1600, 3200};
  m.build_threads = pool != nullptr ? pool->num_threads() : 1;
  m.build = [bits, pool](const KeyRows& keys,
                         const QuerySample& /*sample*/) -> StatusOr<std::unique_ptr<Searcher>> {
    ASSIGN_OR_RETURN(std::unique_ptr<KeyIndex> index,
                     BuildQuantizedScan(keys, {.bits = bits}, {.pool = pool}));
    return WrapKeyIndex(std::move(index));
  };
  return m;
}

std::vector<MethodSpec> Baselines(uint64_t seed) {
  const HnswOptions hnsw{.m = 32, .ef_construction = 100, .seed = seed};
  std::vector<MethodSpec> m;
  m.push_back({.name = "faiss-hnsw",
               .build_params = "M=32 efConstruction=100",
               .effort_name = "efSearch",
               .efforts = {100, 200, 300, 500, 800},
               .build = [hnsw](const KeyRows& keys, const QuerySample&) {
                 return BuildFaissHnsw(keys, hnsw);
               }});
  m.push_back({.name = "faiss-ivf",
               .build_params = "nlist=4sqrt(n)",
               .effort_name = "nprobe",
               .efforts = {8, 16, 32, 64, 128},
               .build = [seed](const KeyRows& keys, const QuerySample&) {
                 return BuildFaissIvf(keys, 0, seed);
               }});
  m.push_back({.name = "hnswlib",
               .build_params = "M=32 efConstruction=100",
               .effort_name = "ef",
               .efforts = {100, 200, 300, 500, 800},
               .build = [hnsw](const KeyRows& keys, const QuerySample&) {
                 return BuildHnswlib(keys, hnsw);
               }});
  return m;
}

bool Wanted(const std::string& name, const std::vector<std::string>& only) {
  if (only.empty()) return true;
  for (const std::string& o : only) {
    if (name.find(o) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

std::unique_ptr<Searcher> WrapKeyIndex(std::unique_ptr<KeyIndex> index) {
  return std::make_unique<KeyIndexSearcher>(std::move(index));
}

std::vector<MethodSpec> RetrievalMethods(const MethodOptions& options) {
  std::vector<MethodSpec> all;
  for (IndexKind kind : {IndexKind::kExact, IndexKind::kGraph, IndexKind::kCluster}) {
    all.push_back(AtticMethod(kind, options.seed, options.build_pool));
  }
  all.push_back(ServingMethod(options.build_pool, 0));
  all.push_back(ServingMethod(options.build_pool, 8));
  all.push_back(QuantizedMethod(4, options.build_pool));
  all.push_back(QuantizedMethod(1, options.build_pool));
  for (MethodSpec& b : Baselines(options.seed)) all.push_back(std::move(b));
  std::vector<MethodSpec> out;
  for (MethodSpec& m : all) {
    if (!Wanted(m.name, options.only)) continue;
    if (options.quick && m.efforts.size() > 2) m.efforts.resize(2);
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace attic::retrieval::eval
