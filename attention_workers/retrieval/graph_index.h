// GraphIndex (IndexKind::kGraph): an attention-aware proximity graph over one (layer, KV
// head)'s keys, searched best-first with the GQA group's queries — the RoarGraph construction
// that RetrievalAttention uses, adapted to group-max scores (docs/retrieval.md).
//
//   GraphOptions options;                        // defaults measured on real activations
//   ASSIGN_OR_RETURN(auto index, BuildGraphIndex(keys, sample, options, {.pool = &pool}));
//   GroupScorer scorer(group, keys.dtype);
//   SearchResult r;
//   RETURN_IF_ERROR(index->Search(keys, scorer, {.top_k = 100, .effort = 0}, &r));
//   RETURN_IF_ERROR(index->Add(keys_now));      // decode keys become searchable
//
// Why queries: decode queries and keys have different distributions (queries are
// out-of-distribution for a key-only graph), so a graph built from key-key proximity routes a
// query poorly. The build therefore learns from prefill queries:
//  1. Query->key links: every training query's exact top query_top_k keys (each query head on
//     its own, or the group maximum: per_head_links), computed as one blocked product of the
//     queries with the keys held as fp32 panels (internal/code_scan_abi.h DotPanel) and a
//     bounded heap per list.
//  2. Projection: keys that appear in the same training queries' top lists become neighbour
//     candidates, the max_candidates sharing the most lists first; occlusion pruning by key
//     distance keeps at most max_degree; reverse edges are added and re-pruned.
//  3. Connectivity: keys no training query selected are inserted by a beam search from the
//     entry points with the key itself as the query (nearest keys in L2), linked and
//     reverse-linked; a final pass gives any key still unreachable from the entry points an
//     edge from a reachable key, so every key can be found.
//  Entry points are the keys that appear in the most top lists (attention sinks among them).
//
// Empty sample: the build is query-agnostic — keys are inserted one at a time as in step 3
// (a navigable small-world graph over L2 neighbours). Correct, but a search needs a larger
// beam for the same recall.
//
// Search: best-first beam search from the entry points; a node's unvisited neighbours are
// scored in one batch with the group-max score. By default (traverse_with_codes) traversal
// scores 4-bit codes of the keys that the index holds, and the best `rerank` candidates are
// then re-scored exactly from the key rows; otherwise traversal scores key rows exactly.
// SearchParams::effort is the beam width (0 = the calibrated beam, or GraphOptions::default_beam
// without a calibration; it is raised to top_k when smaller). SearchStats: keys_scored = exact dot products (the re-rank, or every
// traversal score without codes); bytes_read = those key rows + codes scored (head_dim / 2 B
// each) + every adjacency list read (4 B length + 4 B per id).
//
// Add: keys appended since the build are inserted as in step 3 (search, pruned links, reverse
// links where the neighbour has room, a spare edge otherwise), so they are reachable at once.
//
// memory_bytes(): adjacency ((max_degree + 2) ids and two 16-bit lengths per key), the codes
// (head_dim / 2 B per key), key norms (4 B per key, used by insertion) and the entry points:
// 208 B per key at the defaults with head_dim 128.
//
// Thread safety: as KeyIndex (concurrent Searches; Add exclusive). A search uses a
// thread-local scratch and allocates only its result.
#pragma once

#include <memory>

#include "attention_workers/retrieval/key_index.h"

namespace attic::retrieval {

struct GraphOptions {
  // Regular out-edges per key after pruning. More edges: higher recall at a fixed beam, more
  // adjacency bytes and key reads per expanded node, and (4 B per edge) more memory. On the
  // reference activations 16, 24 and 32 tie in recall per byte read; 32 needs the smallest
  // beam (docs/retrieval-graph.md).
  int max_degree = 32;

  // Keys linked to each training query (K_b): the exact top-K of each prefill query. Larger
  // lists link more keys through queries (fewer keys left to the query-agnostic connectivity
  // pass) at a longer build. Near the decode top_k works best.
  int query_top_k = 100;

  // Each query head of a sample query makes its own top list (true), or the group maximum
  // makes one list per sample query (false). Per-head lists are G times as many.
  bool per_head_links = true;

  // Sample queries the top lists come from, evenly spaced over the sample; 0 = every one.
  // The lists are the largest part of the build (queries x keys dot products); fewer queries
  // leave more keys to the connectivity pass. On layer 4 at 16K (1008 sample queries), 512
  // cost recall@100 0.002 / 0.005 at 1 % fewer bytes, 256 cost 0.004 / 0.014
  // (docs/retrieval-graph.md).
  int train_queries = 0;

  // Candidates per key before pruning, the ones sharing the most top lists. Bounds build
  // time (pruning is O(max_degree * max_candidates) distances per key).
  int max_candidates = 96;

  // Occlusion pruning slack (DiskANN's alpha): a candidate is dropped when a kept neighbour is
  // closer to it by this factor than the key is. 1 = relative neighbourhood graph (sparsest);
  // larger keeps more long edges.
  float prune_alpha = 1.0f;

  // Beam width of the insertion searches (connectivity pass, query-agnostic build, Add).
  // Larger: better links for inserted keys, slower build and Add.
  int build_beam = 64;

  // Entry points every search starts from (their key rows are read on every search).
  int num_entries = 16;

  // Beam width of a search whose SearchParams::effort is 0; raised to top_k when smaller.
  // 320 gave recall@100 0.97 on layer 4 at 16K keys for ~3 % of a dense pass's bytes, with
  // bytes per search nearly constant from 2K to 16K keys (so the fraction falls with n).
  int default_beam = 320;

  // Frontier nodes a search expands per round (1..16). Their adjacency lists and their
  // neighbours' codes are fetched together, so memory latency overlaps; wider rounds score a
  // few more keys than one-at-a-time expansion.
  int search_width = 1;

  // Traverse with 4-bit scalar-quantized key codes held by the index (head_dim / 2 bytes per
  // key) instead of exact key rows, then re-score the best rerank candidates exactly. A
  // visited key then costs a quarter of a bf16 row; the approximate order can miss keys the
  // exact traversal would find, which the re-rank depth makes up for.
  bool traverse_with_codes = true;

  // Candidates re-scored exactly at the end of a code traversal (raised to top_k when
  // smaller, capped at the beam). More: fewer keys lost to code error, one key row each.
  int rerank = 200;

  // Recall check at build (KeyIndex::calibration()). calibration_queries sample queries,
  // spread over the sample's second half (calibration.h: SplitHeldOut), are held out of the
  // top lists. Once the graph is built they are searched against their exact top
  // calibration_top_k at beams from default_beam x {1/2, 3/4, ..., 2} (steps of 1/4) and
  // x {5/2, 3, 7/2, 4}, bisecting (calibration.h), and the cheapest beam whose mean recall
  // reaches calibration_target, on the far top keys too, becomes what effort 0 means. A held-out query at position p is checked as a decode step there
  // would be (calibration.h causal_window): only keys before p + 1 - calibration_window exist
  // for it. Without that, keys near and after p (which a decode step never searches) make the
  // check optimistic: on the reference layer 4 it read 0.98 where the decode steps reached
  // 0.92; with it, 0.93 (docs/retrieval-graph.md). When none does, the largest is kept and
  // calibration().met is false: this index cannot serve the head at the target, and the caller
  // should serve it another way (the worker's and the bench's serving policy:
  // serving_index.h). The beam then follows the data a head shows, not the data the defaults
  // were measured on. 0 = no check (effort 0 is default_beam); the check also needs at least
  // 4 x calibration_queries sample queries.
  int calibration_queries = 64;
  float calibration_target = 0.96f;
  int calibration_top_k = 100;
  int calibration_window = 64;
};

// InvalidArgument for invalid keys, a sample whose head_dim differs from the keys', or
// options outside their ranges (max_degree in [2, 1024], train_queries >= 0, query_top_k, max_candidates,
// build_beam, num_entries, default_beam >= 1, prune_alpha >= 1, calibration_queries and
// calibration_window >= 0, calibration_top_k >= 1, calibration_target in [0, 1]).
StatusOr<std::unique_ptr<KeyIndex>> BuildGraphIndex(const KeyRows& keys,
                                                    const QuerySample& sample,
                                                    const GraphOptions& options = {},
                                                    const BuildOptions& build = {});

}  // namespace attic::retrieval
