// KeyIndex: an approximate top-k index over one (layer, KV head)'s keys, searched with the
// whole GQA group of queries at a decode step (retrieval attention, docs/retrieval.md).
//
//   ASSIGN_OR_RETURN(auto index, BuildKeyIndex(IndexKind::kGraph, keys, sample, {.pool = &pool}));
//   GroupScorer scorer(group, keys.dtype);
//   SearchResult r;
//   RETURN_IF_ERROR(index->Search(keys, scorer, {.top_k = 100}, &r));
//   // r.positions: up to 100 positions, best first; r.stats: what the search read
//   RETURN_IF_ERROR(index->Add(keys_now));   // fold keys appended since the build
//
// The score is GroupScorer's: max over the group's heads of q_g . k. Indexes hold no keys of
// their own: exact scores read KeyRows (the KV cache), so memory_bytes() is only the index's own
// structures. Positions [0, size()) are indexed; keys after them (decode tokens not yet folded)
// are the caller's to cover (the selection's local window does).
//
// Cost accounting (SearchStats) is what makes methods comparable: keys_scored counts exact dot
// products (each reads one full-precision key row); bytes_read counts every byte the search read
// — exact key rows, codes, graph adjacency, centroids — once per search.
//
// Thread safety: Search is const and may run concurrently with other Searches; Add needs
// exclusive access (no concurrent Search or Add).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "attention_workers/isa.h"
#include "attention_workers/retrieval/key_rows.h"
#include "attention_workers/retrieval/scoring.h"
#include "common/index_kind.h"
#include "common/status.h"

namespace attic {
class ThreadPool;
}

namespace attic::retrieval {

// Prefill queries an index may learn from (never queries of the steps it will serve): one KV
// head's GQA group at num_queries prefill positions, q [num_queries, group_size, head_dim] fp32.
// positions (optional, same length) are the queries' token positions.
struct QuerySample {
  const float* q = nullptr;
  int num_queries = 0;
  int group_size = 0;
  int head_dim = 0;
  std::span<const int32_t> positions;

  bool empty() const { return num_queries == 0; }
  QueryGroup query(int i) const {
    return {.q = q + static_cast<size_t>(i) * group_size * head_dim,
            .group_size = group_size,
            .head_dim = head_dim};
  }
};

struct BuildOptions {
  ThreadPool* pool = nullptr;  // parallel build; nullptr = the calling thread alone
  uint64_t seed = 1;           // for randomized steps (k-means seeding); builds are deterministic
  IsaLevel isa = ActiveIsa();
};

struct SearchParams {
  int top_k = 100;
  // Search effort, in the index's own unit (its header says which: beam width, keys probed);
  // 0 = the index's default. Larger is slower and more accurate.
  int effort = 0;
  // > 0: only positions below it are candidates, as if the keys from it on were not indexed
  // (a build's recall check on its held-out queries: calibration.h). The graph, quantized and
  // exact kinds support it; the cluster kind answers InvalidArgument, as does a negative one.
  int64_t position_limit = 0;
};

struct SearchStats {
  int64_t keys_scored = 0;  // exact dot products computed
  int64_t bytes_read = 0;   // all bytes the search read (see above)
};

// What a build measured about its own recall, on sample queries it held out of its training
// (graph_index.h: GraphOptions::calibration_queries): the effort a search with effort 0 uses,
// and the recall@top_k the held-out queries reached there.
struct Calibration {
  int queries = 0;        // held-out sample queries measured
  int effort = 0;         // the effort chosen (what effort 0 means for this index)
  double recall = 0.0;    // mean recall@top_k of the held-out queries at that effort
  // The exact top keys far before each query (calibration.h: far_distance): their share, and
  // the share of them retrieved (-1 when too few to measure).
  double far_share = 0.0;
  double recall_far = -1.0;
  double target = 0.0;    // the recall it had to reach
  bool met = false;       // recall (and recall_far, when measured) >= target at an allowed effort
};

struct SearchResult {
  std::vector<int32_t> positions;  // at most top_k, best first, distinct, each < size()
  std::vector<float> scores;       // exact scores of positions, same order
  SearchStats stats;
};

class KeyIndex {
 public:
  virtual ~KeyIndex() = default;

  virtual IndexKind kind() const = 0;
  // Positions [0, size()) are indexed.
  virtual int64_t size() const = 0;
  // Bytes of the index's own structures (not the keys).
  virtual int64_t memory_bytes() const = 0;

  // Folds keys [size(), keys.count) into the index. InvalidArgument if keys.count < size() or
  // the rows disagree with the build's head_dim or dtype.
  virtual Status Add(const KeyRows& keys) = 0;

  // A copy that is grown independently (the worker folds decode keys into a copy while the
  // original keeps serving searches). Every built-in kind implements it; the default answers
  // Unimplemented.
  virtual StatusOr<std::unique_ptr<KeyIndex>> Clone() const {
    return UnimplementedError("this index kind cannot be copied");
  }

  // The build's recall check, when the kind makes one (the graph index does, with a sample of
  // enough queries); nullopt otherwise.
  virtual std::optional<Calibration> calibration() const { return std::nullopt; }

  // The approximate top params.top_k keys for the scorer's queries. keys must hold at least
  // size() rows (the same rows the index was built and grown from). InvalidArgument for a
  // scorer whose head_dim or dtype differs from the keys', or top_k < 1.
  virtual Status Search(const KeyRows& keys, const GroupScorer& scorer,
                        const SearchParams& params, SearchResult* out) const = 0;
};

// Builds an index of kind over keys [0, keys.count) with each kind's default options. The
// sample may be empty; kinds that learn from queries then fall back to a query-agnostic build
// (graph_index.h says how). InvalidArgument for a sample whose head_dim differs from the keys'.
StatusOr<std::unique_ptr<KeyIndex>> BuildKeyIndex(IndexKind kind, const KeyRows& keys,
                                                  const QuerySample& sample,
                                                  const BuildOptions& options = {});

// Checks shared by every implementation.
Status ValidateKeyRows(const KeyRows& keys);
Status ValidateSearch(const KeyRows& keys, int64_t indexed, const GroupScorer& scorer,
                      const SearchParams& params);

}  // namespace attic::retrieval
