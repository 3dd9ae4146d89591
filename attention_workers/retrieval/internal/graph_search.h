// Best-first beam search over the graph index's adjacency, shared by query search (group-max
// scores) and by insertion during build and Add (L2 closeness to a key).
//
//   SearchScratch& s = ThreadSearchScratch();
//   BeamStats stats;
//   BeamSearch(graph, entries, /*beam=*/128,
//              [&](std::span<const int32_t> ids, float* out) { scorer.ScorePositions(keys, ids, out); },
//              &s, &stats);
//   SortBest(&s.best);   // s.best: the beam's nodes, best first
//
// The search keeps a frontier (max-heap) and the best `beam` nodes seen (min-heap); it expands
// the frontier's best node while that node beats the beam's worst, scoring all not yet visited
// neighbours of a node in one batch. Visited marks are epoch stamps, so nothing is cleared
// between searches (but once every 255) and, once the scratch has grown, a search allocates
// nothing.
// Thread safety: a scratch belongs to one thread (ThreadSearchScratch() is thread_local).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "attention_workers/retrieval/internal/graph_adjacency.h"

namespace attic::retrieval::internal {

struct Scored {
  float score;
  int32_t id;
};

class SearchScratch {
 public:
  // Starts a search over nodes [0, n): every node unvisited, heaps empty.
  void Begin(int64_t n);
  // True the first time id is visited in this search.
  bool Visit(int32_t id) {
    uint8_t& s = stamp_[static_cast<size_t>(id)];
    if (s == epoch_) return false;
    s = epoch_;
    return true;
  }
  // Appends the ids not visited yet to batch and marks them, without a branch per id (whether
  // a neighbour was seen is a coin flip the branch predictor loses).
  void VisitAll(std::span<const int32_t> ids) {
    const size_t at = batch.size();
    batch.resize(at + ids.size());
    int32_t* out = batch.data() + at;
    size_t fresh = 0;
    for (int32_t id : ids) {
      uint8_t& s = stamp_[static_cast<size_t>(id)];
      out[fresh] = id;
      fresh += s != epoch_;
      s = epoch_;
    }
    batch.resize(at + fresh);
  }

  std::vector<Scored> frontier;  // max-heap by score
  std::vector<Scored> best;      // min-heap by score, at most beam entries
  std::vector<int32_t> batch;    // ids to score next
  std::vector<float> batch_scores;

 private:
  // One byte per node keeps the marks of a 16K-key index in 16 KB (L1-resident); the array is
  // cleared once every 255 searches, when the epoch wraps.
  std::vector<uint8_t> stamp_;
  uint8_t epoch_ = 0;
};

SearchScratch& ThreadSearchScratch();

inline constexpr int kMaxSearchWidth = 16;

struct BeamStats {
  int64_t scored = 0;           // nodes passed to the score function
  int64_t adjacency_bytes = 0;  // list lengths and ids read
};

// Heap orders as function objects, so the heap operations inline them.
struct FrontierLess {
  bool operator()(const Scored& a, const Scored& b) const { return a.score < b.score; }
};
struct BestGreater {
  bool operator()(const Scored& a, const Scored& b) const { return a.score > b.score; }
};

// Sorts best-first, ties to the lower id.
inline void SortBest(std::vector<Scored>* v) {
  std::sort(v->begin(), v->end(), [](const Scored& a, const Scored& b) {
    return a.score > b.score || (a.score == b.score && a.id < b.id);
  });
}

namespace detail {

// Scores s->batch and offers every node to the beam and the frontier.
template <typename ScoreFn>
void ScoreBatch(int beam, const ScoreFn& score, SearchScratch* s, BeamStats* stats) {
  const size_t n = s->batch.size();
  if (n == 0) return;
  s->batch_scores.resize(n);
  score(std::span<const int32_t>(s->batch), s->batch_scores.data());
  stats->scored += static_cast<int64_t>(n);
  for (size_t i = 0; i < n; ++i) {
    const Scored c{s->batch_scores[i], s->batch[i]};
    const bool full = static_cast<int>(s->best.size()) >= beam;
    if (full && !(c.score > s->best.front().score)) continue;
    s->frontier.push_back(c);
    std::push_heap(s->frontier.begin(), s->frontier.end(), FrontierLess{});
    s->best.push_back(c);
    std::push_heap(s->best.begin(), s->best.end(), BestGreater{});
    if (full) {
      std::pop_heap(s->best.begin(), s->best.end(), BestGreater{});
      s->best.pop_back();
    }
  }
  s->batch.clear();
}

}  // namespace detail

// Expands up to `width` frontier nodes per round: their lists are fetched together and all
// their unvisited neighbours scored in one batch, so the memory reads of a round overlap
// instead of waiting on each other (width 1 is the classic one-node-at-a-time search).
// REQUIRES: beam >= 1, width >= 1, entries within [0, g.size()).
template <typename ScoreFn>
void BeamSearch(const Adjacency& g, std::span<const int32_t> entries, int beam, int width,
                const ScoreFn& score, SearchScratch* s, BeamStats* stats) {
  s->Begin(g.size());
  for (int32_t e : entries) {
    if (s->Visit(e)) s->batch.push_back(e);
  }
  detail::ScoreBatch(beam, score, s, stats);
  int32_t round[kMaxSearchWidth];
  width = std::min(width, kMaxSearchWidth);
  while (!s->frontier.empty()) {
    int taken = 0;
    while (taken < width && !s->frontier.empty()) {
      const Scored c = s->frontier.front();
      if (static_cast<int>(s->best.size()) >= beam && c.score < s->best.front().score) break;
      std::pop_heap(s->frontier.begin(), s->frontier.end(), FrontierLess{});
      s->frontier.pop_back();
      __builtin_prefetch(g.neighbors(c.id).data());
      round[taken++] = c.id;
    }
    if (taken == 0) break;
    for (int i = 0; i < taken; ++i) {
      stats->adjacency_bytes += g.list_bytes(round[i]);
      s->VisitAll(g.neighbors(round[i]));
    }
    detail::ScoreBatch(beam, score, s, stats);
  }
}

}  // namespace attic::retrieval::internal
