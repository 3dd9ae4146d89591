#include "attention_workers/retrieval/internal/graph_build.h"

#include <algorithm>
#include <numeric>

#include "attention_workers/retrieval/internal/code_scan_abi.h"
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

KeyPanels::KeyPanels(const KeyRows& keys) : head_dim(keys.head_dim), count(keys.count) {
  constexpr int kP = kernels::kPanelKeys;
  num_panels = static_cast<int>((keys.count + kP - 1) / kP);
  data.assign(static_cast<size_t>(num_panels) * head_dim * kP, 0.0f);
  std::vector<float> x(static_cast<size_t>(head_dim));
  for (int64_t p = 0; p < keys.count; ++p) {
    ConvertToFloat(keys.dtype, keys.row(p), x.data(), x.size());
    float* panel = data.data() + static_cast<size_t>(p / kP) * head_dim * kP;
    const int64_t j = p % kP;
    for (int d = 0; d < head_dim; ++d) panel[static_cast<size_t>(d) * kP + j] = x[static_cast<size_t>(d)];
  }
}

void DotPanels(const float* x, int rows, const KeyPanels& panels, int first_panel,
               int num_panels, float* out, int64_t out_stride, IsaLevel isa) {
  const kernels::DotPanelArgs args{
      .x = x,
      .panels = panels.data.data() +
                static_cast<size_t>(first_panel) * panels.head_dim * kernels::kPanelKeys,
      .head_dim = panels.head_dim,
      .num_rows = rows,
      .num_panels = num_panels,
      .out = out,
      .out_stride = static_cast<long>(out_stride)};
  if (isa >= IsaLevel::kAvx512) {
    kernels::DotPanelAvx512(args);
  } else if (isa >= IsaLevel::kAvx2) {
    kernels::DotPanelAvx2(args);
  } else {
    kernels::DotPanelScalar(args);
  }
}

std::vector<int32_t> QueryTopLists(const KeyRows& keys, const QuerySample& sample, int k,
                                   bool per_head, IsaLevel isa, ThreadPool* pool,
                                   int* num_lists) {
  const int g_size = sample.group_size;
  const int heads = per_head ? g_size : 1;
  const int d = keys.head_dim;
  k = static_cast<int>(std::min<int64_t>(k, keys.count));
  *num_lists = sample.num_queries * heads;
  std::vector<int32_t> lists(static_cast<size_t>(*num_lists) * k);
  if (k == 0 || sample.num_queries == 0) return lists;
  const KeyPanels panels(keys);
  // A task: kTaskQueries sample queries (all their heads) against every key, kChunkPanels
  // panels at a time (the chunk's panels stay in cache while every row of the task reads them).
  constexpr int kTaskQueries = 16;
  constexpr int kChunkPanels = 32;
  constexpr int64_t kChunkKeys = int64_t{kChunkPanels} * kernels::kPanelKeys;
  const int64_t tasks = (sample.num_queries + kTaskQueries - 1) / kTaskQueries;
  auto better = [](const Scored& a, const Scored& b) {
    return a.score > b.score || (a.score == b.score && a.id < b.id);
  };
  RunParallel(pool, tasks, [&](int64_t t) {
    const int q0 = static_cast<int>(t * kTaskQueries);
    const int nq = std::min(kTaskQueries, sample.num_queries - q0);
    const int rows = nq * g_size;
    const int task_lists = nq * heads;
    thread_local std::vector<float> scores;
    thread_local std::vector<Scored> heaps;
    scores.resize(static_cast<size_t>(rows) * kChunkKeys);
    heaps.resize(static_cast<size_t>(task_lists) * k);
    std::vector<int> fill(static_cast<size_t>(task_lists), 0);
    std::vector<float> group(static_cast<size_t>(kChunkKeys));
    for (int p0 = 0; p0 < panels.num_panels; p0 += kChunkPanels) {
      const int np = std::min(kChunkPanels, panels.num_panels - p0);
      const int64_t key0 = int64_t{p0} * kernels::kPanelKeys;
      const int64_t valid = std::min<int64_t>(int64_t{np} * kernels::kPanelKeys, keys.count - key0);
      DotPanels(sample.q + static_cast<size_t>(q0) * g_size * d, rows, panels, p0, np,
                scores.data(), kChunkKeys, isa);
      for (int l = 0; l < task_lists; ++l) {
        const float* row;
        if (per_head) {
          row = scores.data() + static_cast<size_t>(l) * kChunkKeys;
        } else {
          const float* base = scores.data() + static_cast<size_t>(l) * g_size * kChunkKeys;
          for (int64_t j = 0; j < valid; ++j) {
            float m = base[j];
            for (int g = 1; g < g_size; ++g) m = std::max(m, base[g * kChunkKeys + j]);
            group[static_cast<size_t>(j)] = m;
          }
          row = group.data();
        }
        // A bounded min-heap per list ("worse" first); keys arrive in position order, so a
        // tie never displaces a lower position.
        Scored* heap = heaps.data() + static_cast<size_t>(l) * k;
        int& size = fill[static_cast<size_t>(l)];
        int64_t j = 0;
        for (; j < valid && size < k; ++j) {
          heap[size++] = {row[j], static_cast<int32_t>(key0 + j)};
          std::push_heap(heap, heap + size, better);
        }
        // Full: a score enters only above the current k-th (kept in a register; most lose).
        float worst = size == k ? heap[0].score : 0.0f;
        for (; j < valid; ++j) {
          const float v = row[j];
          if (!(v > worst)) continue;
          std::pop_heap(heap, heap + k, better);
          heap[k - 1] = {v, static_cast<int32_t>(key0 + j)};
          std::push_heap(heap, heap + k, better);
          worst = heap[0].score;
        }
      }
    }
    for (int l = 0; l < task_lists; ++l) {
      Scored* heap = heaps.data() + static_cast<size_t>(l) * k;
      std::sort_heap(heap, heap + k, better);
      int32_t* out = lists.data() + (static_cast<size_t>(q0) * heads + l) * k;
      for (int i = 0; i < k; ++i) out[i] = heap[i].id;
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
    // The max_candidates best by (count desc, id asc): a histogram of the counts gives the
    // smallest count that still makes the cut, so only those at or above it are sorted.
    thread_local std::vector<int32_t> hist;
    int32_t top = 0;
    for (int32_t v : touched) top = std::max(top, count[static_cast<size_t>(v)]);
    hist.assign(static_cast<size_t>(top) + 1, 0);
    for (int32_t v : touched) {
      if (v != u) ++hist[static_cast<size_t>(count[static_cast<size_t>(v)])];
    }
    int32_t cut = top;
    for (int64_t above = 0; cut > 0; --cut) {
      above += hist[static_cast<size_t>(cut)];
      if (above >= max_candidates) break;
    }
    counted.clear();
    for (int32_t v : touched) {
      const int32_t c = count[static_cast<size_t>(v)];
      if (v != u && c >= cut) counted.emplace_back(-c, v);
      count[static_cast<size_t>(v)] = 0;
    }
    const size_t keep = std::min<size_t>(counted.size(), static_cast<size_t>(max_candidates));
    std::sort(counted.begin(), counted.end());
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
  // At most options.train_queries sample queries, evenly spaced over the sample.
  std::vector<float> subq;
  QuerySample sub = sample;
  if (options.train_queries > 0 && options.train_queries < sample.num_queries) {
    const int want = options.train_queries;
    const size_t row = static_cast<size_t>(sample.group_size) * sample.head_dim;
    subq.reserve(static_cast<size_t>(want) * row);
    for (int i = 0; i < want; ++i) {
      const auto src = static_cast<size_t>((static_cast<int64_t>(i) * sample.num_queries) / want);
      subq.insert(subq.end(), sample.q + src * row, sample.q + (src + 1) * row);
    }
    sub.q = subq.data();
    sub.num_queries = want;
    sub.positions = {};
  }
  const std::vector<int32_t> lists = QueryTopLists(keys, sub, options.query_top_k,
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
