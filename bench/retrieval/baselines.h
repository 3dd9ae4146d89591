// Baseline nearest-neighbour libraries run as retrieval methods, so Attic's indexes are
// compared with them at matched recall in the same run:
//   faiss-hnsw  FAISS IndexHNSWFlat, inner product, M = 32; effort = efSearch
//   faiss-ivf   FAISS IndexIVFFlat, inner product, nlist = 4 sqrt(n); effort = nprobe
//   hnswlib     hnswlib HierarchicalNSW, inner product, M = 32; effort = ef
// None of them knows GQA groups: each query head is searched on its own for top_k, and the
// union is re-ranked by the exact group score (GroupScorer) to the final top_k.
//
//   ASSIGN_OR_RETURN(auto hnsw, BuildFaissHnsw(keys, {.m = 32, .ef_construction = 100}));
//
// Costs (SearchStats): keys_scored = distance computations summed over the group's heads;
// bytes_read = keys_scored bf16 rows + graph lists or centroids read (docs/retrieval-bench.md
// says exactly how each is counted). Keys are handed to the libraries as fp32 copies.
// Errors thrown by FAISS are caught here and returned as Internal.
// Thread safety: as Searcher.
#pragma once

#include <cstdint>
#include <memory>

#include "bench/retrieval/methods.h"

namespace attic::retrieval::eval {

struct HnswOptions {
  int m = 32;
  int ef_construction = 100;
  uint64_t seed = 1;
};

StatusOr<std::unique_ptr<Searcher>> BuildFaissHnsw(const KeyRows& keys, const HnswOptions& options);
// nlist = 0: round(4 sqrt(n)), at most n.
StatusOr<std::unique_ptr<Searcher>> BuildFaissIvf(const KeyRows& keys, int nlist, uint64_t seed);
StatusOr<std::unique_ptr<Searcher>> BuildHnswlib(const KeyRows& keys, const HnswOptions& options);

}  // namespace attic::retrieval::eval
