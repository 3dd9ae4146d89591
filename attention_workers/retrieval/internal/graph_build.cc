#include "attention_workers/retrieval/internal/graph_build.h"

#include <algorithm>
#include <numeric>

#include "attention_workers/retrieval/internal/graph_search.h"
#include "attention_workers/thread_pool.h"

namespace attic::retrieval::internal {
namespace {

void RunParallel(ThreadPool* pool, int64_t n, const std::function<void(int64_t)>& fn) {
  if (pool != nullptr && n > 1) {
    pool->ParallelFor(n, fn);
  } else {
    for (int64_t i = 0; i < n; ++i) fn(i);
  }
}

// Key p as an fp32 query of one head.
std::vector<float> KeyAsQuery(const KeyRows& keys, int64_t p) {
  std::vector<float> x(static_cast<size_t>(keys.head_dim));
  ConvertToFloat(keys.dtype, keys.row(p), x.data(), x.size());
  return x;
}

GroupScorer KeyScorer(const std::vector<float>& x, const KeyRows& keys, IsaLevel isa) {
  return GroupScorer({.q = x.data(), .group_size = 1, .head_dim = keys.head_dim}, keys.dtype,
                     isa);
}

// Positions of the k best of scores, best first, ties to the lower position. A bounded
// min-heap: most scores lose to its top with one comparison.
void TopK(const std::vector<float>& scores, int k, std::vector<Scored>* heap, int32_t* out) {
  // "Worse" first in the heap: a lower score, or the same score at a higher position.
  auto better = [](const Scored& a, const Scored& b) {
    return a.score > b.score || (a.score == b.score && a.id < b.id);
  };
  heap->clear();
  for (size_t i = 0; i < scores.size(); ++i) {
    const Scored c{scores[i], static_cast<int32_t>(i)};
    if (static_cast<int>(heap->size()) < k) {
      heap->push_back(c);
      std::push_heap(heap->begin(), heap->end(), better);
    } else if (better(c, heap->front())) {
      std::pop_heap(heap->begin(), heap->end(), better);
      heap->back() = c;
      std::push_heap(heap->begin(), heap->end(), better);
    }
  }
  std::sort_heap(heap->begin(), heap->end(), better);
  for (int i = 0; i < k; ++i) out[i] = (*heap)[static_cast<size_t>(i)].id;
}

// The num_entries keys in the most lists (ties to the lower id).
std::vector<int32_t> HubEntries(std::span<const int32_t> lists, int64_t n, int num_entries) {
  std::vector<int64_t> count(static_cast<size_t>(n), 0);
  for (int32_t v : lists) ++count[static_cast<size_t>(v)];
  std::vector<int32_t> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), 0);
  const size_t e = std::min<size_t>(static_cast<size_t>(num_entries), ids.size());
  std::partial_sort(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(e), ids.end(),
                    [&](int32_t a, int32_t b) {
                      const int64_t ca = count[static_cast<size_t>(a)];
                      const int64_t cb = count[static_cast<size_t>(b)];
                      return ca > cb || (ca == cb && a < b);
                    });
  ids.resize(e);
  return ids;
}

// Adds reverse edges v -> u for every u -> v and re-prunes lists that overflow.
void AddReverseEdges(const KeyRows& keys, const GraphOptions& options, IsaLevel isa,
                     ThreadPool* pool, GraphData* data) {
  const int64_t n = data->graph.size();
  std::vector<std::vector<int32_t>> merged(static_cast<size_t>(n));
  for (int32_t u = 0; u < n; ++u) {
    for (int32_t v : data->graph.regular(u)) merged[static_cast<size_t>(v)].push_back(u);
  }
  RunParallel(pool, n, [&](int64_t i) {
    const auto u = static_cast<int32_t>(i);
    std::vector<int32_t>& c = merged[static_cast<size_t>(i)];
    if (c.empty()) return;
    const auto own = data->graph.regular(u);
    c.insert(c.begin(), own.begin(), own.end());
    std::vector<int32_t> seen = c;
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    if (static_cast<int>(seen.size()) <= options.max_degree) {
      data->graph.SetRegular(u, seen);
    } else {
      data->graph.SetRegular(u, PruneCandidates(keys, data->norms, u, seen, options.max_degree,
                                                options.prune_alpha, isa));
    }
  });
}

// The nearest (L2) keys to key p that a beam search from the entries finds, best first,
// excluding p itself.
void SearchNearest(const KeyRows& keys, const GraphData& data, int32_t p, int beam, IsaLevel isa,
                   std::vector<int32_t>* found) {
  const std::vector<float> x = KeyAsQuery(keys, p);
  const GroupScorer scorer = KeyScorer(x, keys, isa);
  SearchScratch& s = ThreadSearchScratch();
  BeamStats stats;
  BeamSearch(
      data.graph, data.entries, beam, /*width=*/1,
      [&](std::span<const int32_t> ids, float* out) {
        scorer.ScorePositions(keys, ids, out);
        for (size_t i = 0; i < ids.size(); ++i) out[i] -= 0.5f * data.norms[static_cast<size_t>(ids[i])];
      },
      &s, &stats);
  SortBest(&s.best);
  found->clear();
  for (const Scored& c : s.best) {
    if (c.id != p) found->push_back(c.id);
  }
}

// Gives p an in-edge from the first node of `preferred` (then of all nodes below limit) that
// satisfies usable and has spare room.
template <typename Usable>
Status LinkSpare(Adjacency* g, int32_t p, std::span<const int32_t> preferred, int64_t limit,
                 const Usable& usable) {
  for (int32_t r : preferred) {
    if (r != p && usable(r) && g->HasSpareRoom(r)) {
      g->AppendSpare(r, p);
      return OkStatus();
    }
  }
  for (int32_t r = 0; r < limit; ++r) {
    if (r != p && usable(r) && g->HasSpareRoom(r)) {
      g->AppendSpare(r, p);
      return OkStatus();
    }
  }
  return InternalError("graph index: no reachable key has a spare edge left");
}

}  // namespace

void ComputeNorms(const KeyRows& keys, int64_t begin, int64_t end, std::vector<float>* norms) {
  norms->resize(static_cast<size_t>(end));
  std::vector<float> x(static_cast<size_t>(keys.head_dim));
  for (int64_t p = begin; p < end; ++p) {
    ConvertToFloat(keys.dtype, keys.row(p), x.data(), x.size());
    double s = 0;
    for (float v : x) s += static_cast<double>(v) * v;
    (*norms)[static_cast<size_t>(p)] = static_cast<float>(s);
  }
}

std::vector<int32_t> QueryTopLists(const KeyRows& keys, const QuerySample& sample, int k,
                                   bool per_head, IsaLevel isa, ThreadPool* pool,
                                   int* num_lists) {
  const int heads = per_head ? sample.group_size : 1;
  k = static_cast<int>(std::min<int64_t>(k, keys.count));
  *num_lists = sample.num_queries * heads;
  std::vector<int32_t> lists(static_cast<size_t>(*num_lists) * k);
  if (k == 0) return lists;
  RunParallel(pool, sample.num_queries, [&](int64_t i) {
    thread_local std::vector<float> scores;
    thread_local std::vector<Scored> heap;
    scores.resize(static_cast<size_t>(keys.count));
    const QueryGroup q = sample.query(static_cast<int>(i));
    for (int h = 0; h < heads; ++h) {
      const QueryGroup one = per_head ? QueryGroup{.q = q.q + static_cast<size_t>(h) * q.head_dim,
                                                   .group_size = 1,
                                                   .head_dim = q.head_dim}
                                      : q;
      GroupScorer scorer(one, keys.dtype, isa);
      scorer.ScoreRange(keys, 0, keys.count, scores.data());
      TopK(scores, k, &heap, lists.data() + (static_cast<size_t>(i) * heads + h) * k);
    }
  });
  return lists;
}

std::vector<std::vector<int32_t>> CoOccurrenceCandidates(std::span<const int32_t> lists,
                                                         int num_lists, int k, int64_t n,
                                                         int max_candidates, ThreadPool* pool) {
  // Inverted lists: the training lists every key is in.
  std::vector<int64_t> start(static_cast<size_t>(n) + 1, 0);
  for (int32_t v : lists) ++start[static_cast<size_t>(v) + 1];
  std::partial_sum(start.begin(), start.end(), start.begin());
  std::vector<int32_t> member_of(lists.size());
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int t = 0; t < num_lists; ++t) {
    for (int j = 0; j < k; ++j) {
      const int32_t v = lists[static_cast<size_t>(t) * k + j];
      member_of[static_cast<size_t>(fill[static_cast<size_t>(v)]++)] = t;
    }
  }
  std::vector<std::vector<int32_t>> candidates(static_cast<size_t>(n));
  RunParallel(pool, n, [&](int64_t u) {
    // Shared-list counts of every key, through a dense counter array and the keys touched.
    thread_local std::vector<int32_t> count;
    thread_local std::vector<int32_t> touched;
    thread_local std::vector<std::pair<int32_t, int32_t>> counted;  // (-count, id)
    count.resize(static_cast<size_t>(n), 0);
    touched.clear();
    for (int64_t i = start[static_cast<size_t>(u)]; i < start[static_cast<size_t>(u) + 1]; ++i) {
      const int32_t* l = lists.data() + static_cast<size_t>(member_of[static_cast<size_t>(i)]) * k;
      for (int j = 0; j < k; ++j) {
        if (count[static_cast<size_t>(l[j])]++ == 0) touched.push_back(l[j]);
      }
    }
    counted.clear();
    for (int32_t v : touched) {
      if (v != u) counted.emplace_back(-count[static_cast<size_t>(v)], v);
      count[static_cast<size_t>(v)] = 0;
    }
    const size_t keep = std::min<size_t>(counted.size(), static_cast<size_t>(max_candidates));
    std::partial_sort(counted.begin(), counted.begin() + static_cast<ptrdiff_t>(keep),
                      counted.end());
    auto& out = candidates[static_cast<size_t>(u)];
    out.reserve(keep);
    for (size_t i = 0; i < keep; ++i) out.push_back(counted[i].second);
  });
  return candidates;
}

std::vector<int32_t> PruneCandidates(const KeyRows& keys, std::span<const float> norms,
                                     int32_t u, std::span<const int32_t> candidates,
                                     int max_degree, float alpha, IsaLevel isa) {
  std::vector<int32_t> c;
  c.reserve(candidates.size());
  for (int32_t v : candidates) {
    if (v != u) c.push_back(v);
  }
  std::sort(c.begin(), c.end());
  c.erase(std::unique(c.begin(), c.end()), c.end());
  if (c.empty()) return c;
  // d(u, c) = |u|^2 + |c|^2 - 2 u.c
  std::vector<float> dot(c.size());
  const std::vector<float> xu = KeyAsQuery(keys, u);
  KeyScorer(xu, keys, isa).ScorePositions(keys, c, dot.data());
  std::vector<Scored> order(c.size());
  for (size_t i = 0; i < c.size(); ++i) {
    const float nc = norms[static_cast<size_t>(c[i])];
    order[i] = {norms[static_cast<size_t>(u)] + nc - 2 * dot[i], c[i]};
  }
  std::sort(order.begin(), order.end(), [](const Scored& a, const Scored& b) {
    return a.score < b.score || (a.score == b.score && a.id < b.id);
  });
  std::vector<int32_t> kept;
  std::vector<uint8_t> alive(order.size(), 1);
  std::vector<int32_t> rest;
  std::vector<size_t> rest_at;
  for (size_t i = 0; i < order.size() && static_cast<int>(kept.size()) < max_degree; ++i) {
    if (!alive[i]) continue;
    const int32_t s = order[i].id;
    kept.push_back(s);
    rest.clear();
    rest_at.clear();
    for (size_t j = i + 1; j < order.size(); ++j) {
      if (alive[j]) {
        rest.push_back(order[j].id);
        rest_at.push_back(j);
      }
    }
    if (rest.empty()) break;
    dot.resize(rest.size());
    const std::vector<float> xs = KeyAsQuery(keys, s);
    KeyScorer(xs, keys, isa).ScorePositions(keys, rest, dot.data());
    const float ns = norms[static_cast<size_t>(s)];
    for (size_t r = 0; r < rest.size(); ++r) {
      const float d_sc = ns + norms[static_cast<size_t>(rest[r])] - 2 * dot[r];
      if (alpha * d_sc < order[rest_at[r]].score) alive[rest_at[r]] = 0;
    }
  }
  return kept;
}

Status InsertKeys(const KeyRows& keys, const GraphOptions& options, IsaLevel isa,
                  int64_t begin, int64_t end, GraphData* data) {
  std::vector<int32_t> found;
  Adjacency& g = data->graph;
  for (int64_t i = begin; i < end; ++i) {
    const auto p = static_cast<int32_t>(i);
    if (data->entries.empty()) data->entries.push_back(p);
    SearchNearest(keys, *data, p, options.build_beam, isa, &found);
    const std::vector<int32_t> links = PruneCandidates(keys, data->norms, p, found,
                                                       options.max_degree, options.prune_alpha,
                                                       isa);
    g.SetRegular(p, links);
    bool linked = std::find(data->entries.begin(), data->entries.end(), p) != data->entries.end();
    for (int32_t v : links) linked = g.AppendRegular(v, p) || linked;
    if (!linked) {
      RETURN_IF_ERROR(LinkSpare(&g, p, found, p, [](int32_t) { return true; }));
    }
  }
  return OkStatus();
}

Status RepairReachability(const KeyRows& keys, const GraphOptions& options, IsaLevel isa,
                          GraphData* data) {
  std::vector<uint8_t> reached;
  int64_t count = MarkReachable(data->graph, data->entries, &reached);
  const int64_t n = data->graph.size();
  std::vector<int32_t> found;
  std::vector<uint8_t> more;
  for (int32_t p = 0; p < n && count < n; ++p) {
    if (reached[static_cast<size_t>(p)]) continue;
    // The search only walks reached nodes, so what it finds can link p.
    SearchNearest(keys, *data, p, options.build_beam, isa, &found);
    RETURN_IF_ERROR(LinkSpare(&data->graph, p, found, n, [&](int32_t r) {
      return reached[static_cast<size_t>(r)] != 0;
    }));
    const int32_t root[] = {p};
    MarkReachable(data->graph, root, &more);
    for (int64_t v = 0; v < n; ++v) {
      if (more[static_cast<size_t>(v)] && !reached[static_cast<size_t>(v)]) {
        reached[static_cast<size_t>(v)] = 1;
        ++count;
      }
    }
  }
  return OkStatus();
}

Status BuildFromQueries(const KeyRows& keys, const QuerySample& sample,
                        const GraphOptions& options, const BuildOptions& build,
                        GraphData* data) {
  const int64_t n = keys.count;
  data->graph.Resize(n);
  ComputeNorms(keys, 0, n, &data->norms);
  int num_lists = 0;
  const std::vector<int32_t> lists = QueryTopLists(keys, sample, options.query_top_k,
                                                   options.per_head_links, build.isa, build.pool,
                                                   &num_lists);
  const int k = static_cast<int>(std::min<int64_t>(options.query_top_k, n));
  data->entries = HubEntries(lists, n, options.num_entries);
  const auto candidates =
      CoOccurrenceCandidates(lists, num_lists, k, n, options.max_candidates, build.pool);
  RunParallel(build.pool, n, [&](int64_t u) {
    const auto& c = candidates[static_cast<size_t>(u)];
    if (c.empty()) return;
    data->graph.SetRegular(static_cast<int32_t>(u),
                           PruneCandidates(keys, data->norms, static_cast<int32_t>(u), c,
                                           options.max_degree, options.prune_alpha, build.isa));
  });
  AddReverseEdges(keys, options, build.isa, build.pool, data);
  // Keys no list selected: insert them (in position order) into the linked graph.
  for (int32_t p = 0; p < n; ++p) {
    if (data->graph.degree(p) == 0 && candidates[static_cast<size_t>(p)].empty()) {
      RETURN_IF_ERROR(InsertKeys(keys, options, build.isa, p, p + 1, data));
    }
  }
  return RepairReachability(keys, options, build.isa, data);
}

}  // namespace attic::retrieval::internal
