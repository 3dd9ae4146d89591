// The graph index's construction steps (graph_index.h describes the algorithm and the
// options): query->key links, their projection onto key-key candidates, occlusion pruning,
// insertion of single keys (the connectivity pass, the query-agnostic fallback and Add), and
// the reachability repair.
//
//   GraphData data(options.max_degree);
//   RETURN_IF_ERROR(BuildFromQueries(keys, sample, options, build, &data));
//   // or: InsertKeys(keys, options, isa, 0, keys.count, &data) for the query-agnostic build
//
// Thread safety: the functions write only *data; the pool (if any) runs their parallel parts.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "attention_workers/retrieval/graph_index.h"
#include "attention_workers/retrieval/internal/graph_adjacency.h"
#include "attention_workers/retrieval/internal/graph_codes.h"
#include "common/status.h"

namespace attic::retrieval::internal {

// What a graph index owns besides its options.
struct GraphData {
  explicit GraphData(int max_degree) : graph(max_degree) {}

  Adjacency graph;
  std::vector<float> norms;      // [n] squared L2 norm of every key (insertion, pruning)
  std::vector<int32_t> entries;  // where every search starts
  KeyCodes codes;                // traversal codes (GraphOptions::traverse_with_codes)
};

// The keys as fp32 panels of kernels::kPanelKeys keys, dimension-major (code_scan_abi.h), the
// last panel zero-padded: what DotPanels scores many queries against.
struct KeyPanels {
  explicit KeyPanels(const KeyRows& keys);
  int head_dim = 0;
  int64_t count = 0;
  int num_panels = 0;
  std::vector<float> data;  // [num_panels, head_dim, kPanelKeys]
};

// out[r * out_stride + j] = x[r] . key (first_panel * kPanelKeys + j), for the keys of panels
// [first_panel, first_panel + num_panels) (padding keys score 0). x: [rows, head_dim] fp32.
void DotPanels(const float* x, int rows, const KeyPanels& panels, int first_panel,
               int num_panels, float* out, int64_t out_stride, IsaLevel isa);

// Top-k keys of every training query, best first: [num_lists, k] (k = min(k, keys.count)).
// With per_head, each head of each sample query is its own training query (list i * G + g);
// otherwise each query is scored by its group maximum.
std::vector<int32_t> QueryTopLists(const KeyRows& keys, const QuerySample& sample, int k,
                                   bool per_head, IsaLevel isa, ThreadPool* pool,
                                   int* num_lists);

// For every key, up to max_candidates other keys that share the most top lists with it
// (ties to the lower id): [n] lists.
std::vector<std::vector<int32_t>> CoOccurrenceCandidates(std::span<const int32_t> lists,
                                                         int num_lists, int k, int64_t n,
                                                         int max_candidates, ThreadPool* pool);

// Occlusion (relative-neighbourhood) pruning of u's candidates by L2 distance between keys:
// candidates nearest to u first; c is dropped when a kept neighbour s has
// alpha * d(s, c) < d(u, c). Keeps at most max_degree; u itself and repeats are ignored.
std::vector<int32_t> PruneCandidates(const KeyRows& keys, std::span<const float> norms,
                                     int32_t u, std::span<const int32_t> candidates,
                                     int max_degree, float alpha, IsaLevel isa);

// The query-aware build: top lists, projection, pruning, reverse edges, then insertion of the
// keys no list selected and the reachability repair. Fills data->graph, norms and entries.
Status BuildFromQueries(const KeyRows& keys, const QuerySample& sample,
                        const GraphOptions& options, const BuildOptions& build,
                        GraphData* data);

// Inserts keys [begin, end) one at a time: a beam search for the key's nearest indexed keys,
// pruned links, reverse links where the neighbour has room, and a spare edge from a reached
// key when no neighbour took the new key, so every inserted key is reachable from the entries.
// REQUIRES: data->graph.size() >= end, norms cover [0, end), keys [0, begin) already linked.
Status InsertKeys(const KeyRows& keys, const GraphOptions& options, IsaLevel isa,
                  int64_t begin, int64_t end, GraphData* data);

// Makes every node reachable from the entries with spare edges. InternalError if no reached
// node has spare room left (cannot happen while fewer than 2n spare edges are in use).
Status RepairReachability(const KeyRows& keys, const GraphOptions& options, IsaLevel isa,
                          GraphData* data);

// norms[p] for p in [begin, end).
void ComputeNorms(const KeyRows& keys, int64_t begin, int64_t end, std::vector<float>* norms);

}  // namespace attic::retrieval::internal
