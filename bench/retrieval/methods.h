// The retrieval methods the evaluation compares: Attic's own indexes (every kind the
// BuildKeyIndex factory builds) and the baselines (FAISS HNSW and IVF-Flat, hnswlib), behind
// one small interface, each with the sweep of its search effort.
//
//   for (const MethodSpec& m : RetrievalMethods({.quick = false})) {
//     auto searcher = m.build(keys, sample);          // Unimplemented: the kind has not landed
//     if (!searcher.ok()) { ...note and skip... }
//     for (int effort : m.efforts) {
//       SearchResult r;
//       RETURN_IF_ERROR((*searcher)->Search(keys, group, scorer, {.top_k = 100, .effort = effort}, &r));
//     }
//   }
//
// Every Search returns at most top_k distinct positions, best first by the exact group score,
// with SearchStats counting exact dot products and every byte read (bf16 rows for the
// baselines, whose keys are fp32 copies: docs/retrieval-bench.md).
// Thread safety: a Searcher is used by one thread at a time (baselines keep per-search state);
// distinct Searchers may run concurrently. MethodSpec::build may run concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attention_workers/retrieval/key_index.h"
#include "common/status.h"

namespace attic {
class ThreadPool;
}

namespace attic::retrieval::eval {

class Searcher {
 public:
  virtual ~Searcher() = default;
  // Bytes of the method's own structures (graph, centroids, ids), not the keys.
  virtual int64_t memory_bytes() const = 0;
  // keys: the rows the searcher was built over (or more); group: the step's fp32 queries
  // [G, D]; scorer: the same queries in GroupScorer form. params.effort is the method's unit.
  virtual Status Search(const KeyRows& keys, const QueryGroup& group, const GroupScorer& scorer,
                        const SearchParams& params, SearchResult* out) = 0;
  // What the build decided, for methods that decide something (the serving policy: which
  // index, which effort, or dense); empty otherwise.
  virtual std::string detail() const { return {}; }
  // The build decided to answer the head densely: its rows count as a dense pass.
  virtual bool serves_dense() const { return false; }
  // The setting the build chose, shown in place of the method's build_params ("graph beam
  // 640", "4-bit scan re-rank 200", "graph beam 240, guard -> 360" when the recall guard
  // raised it during the steps: asked after them); empty = build_params.
  virtual std::string chosen_setting() const { return {}; }
};

using BuildFn = std::function<StatusOr<std::unique_ptr<Searcher>>(const KeyRows& keys,
                                                                  const QuerySample& sample)>;

struct MethodSpec {
  std::string name;          // "attic-graph", "faiss-hnsw", ...
  std::string build_params;  // printed in the setting, e.g. "M=32 efConstruction=100"
  std::string effort_name;   // "effort", "efSearch", "nprobe", "ef"
  std::vector<int> efforts;  // the sweep, cheapest first
  bool learns_from_queries = false;
  BuildFn build;
  int build_threads = 1;     // threads the build runs on (for keys/s per core)
};

struct MethodOptions {
  bool quick = false;  // two settings per method
  uint64_t seed = 1;
  // Only methods whose name contains one of these (empty = all).
  std::vector<std::string> only;
  // Attic's indexes build on this pool (nullptr = the calling thread alone); the baselines
  // always build on one thread.
  ThreadPool* build_pool = nullptr;
};

std::vector<MethodSpec> RetrievalMethods(const MethodOptions& options);

// A Searcher over an Attic KeyIndex.
std::unique_ptr<Searcher> WrapKeyIndex(std::unique_ptr<KeyIndex> index);

}  // namespace attic::retrieval::eval
