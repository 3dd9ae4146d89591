#include "attention_workers/retrieval/graph_index.h"

#include <algorithm>
#include <limits>
#include <string>

#include "attention_workers/retrieval/calibration.h"
#include "attention_workers/retrieval/internal/graph_build.h"
#include "attention_workers/retrieval/internal/graph_search.h"

namespace attic::retrieval {
namespace {

using internal::GraphData;

Status ValidateGraphOptions(const GraphOptions& o) {
  if (o.max_degree < 2 || o.max_degree > 1024) {
    return InvalidArgumentError("graph options: max_degree " + std::to_string(o.max_degree) +
                                " outside [2, 1024]");
  }
  if (o.query_top_k < 1 || o.max_candidates < 1 || o.build_beam < 1 || o.num_entries < 1 ||
      o.default_beam < 1) {
    return InvalidArgumentError(
        "graph options: query_top_k, max_candidates, build_beam, num_entries and default_beam "
        "must be positive");
  }
  if (o.train_queries < 0) return InvalidArgumentError("graph options: train_queries < 0");
  if (!(o.prune_alpha >= 1.0f)) return InvalidArgumentError("graph options: prune_alpha < 1");
  if (o.rerank < 1) return InvalidArgumentError("graph options: rerank < 1");
  if (o.calibration_queries < 0 || o.calibration_top_k < 1 || o.calibration_window < 0 ||
      !(o.calibration_target >= 0.0f && o.calibration_target <= 1.0f)) {
    return InvalidArgumentError(
        "graph options: calibration_queries < 0, calibration_top_k < 1 or calibration_target "
        "outside [0, 1]");
  }
  if (o.search_width < 1 || o.search_width > internal::kMaxSearchWidth) {
    return InvalidArgumentError("graph options: search_width outside [1, 16]");
  }
  return OkStatus();
}

class GraphIndex final : public KeyIndex {
 public:
  GraphIndex(const GraphOptions& options, const KeyRows& keys, IsaLevel isa)
      : options_(options),
        head_dim_(keys.head_dim),
        dtype_(keys.dtype),
        isa_(isa),
        data_(options.max_degree) {}

  GraphData* data() { return &data_; }

  // Measures recall on held-out queries and sets the beam effort 0 uses.
  Status Calibrate(const KeyRows& keys, const QuerySample& held_out, const BuildOptions& build) {
    const int b = options_.default_beam;
    // default_beam x 1/2 .. 4 in steps of 1/4 up to 2, then of 1/2.
    const int efforts[] = {b * 2 / 4,  b * 3 / 4,  b,          b * 5 / 4,
                           b * 6 / 4,  b * 7 / 4,  b * 2,      b * 10 / 4,
                           b * 12 / 4, b * 14 / 4, b * 16 / 4};
    ASSIGN_OR_RETURN(Calibration c,
                     CalibrateEffort(*this, keys, held_out,
                                     {.efforts = efforts,
                                      .target = options_.calibration_target,
                                      .top_k = options_.calibration_top_k,
                                      .causal_window = options_.calibration_window,
                                      .pool = build.pool,
                                      .isa = isa_}));
    calibration_ = c;
    return OkStatus();
  }
  std::optional<Calibration> calibration() const override { return calibration_; }

  IndexKind kind() const override { return IndexKind::kGraph; }
  StatusOr<std::unique_ptr<KeyIndex>> Clone() const override {
    return std::unique_ptr<KeyIndex>(new GraphIndex(*this));
  }
  int64_t size() const override { return data_.graph.size(); }
  int64_t memory_bytes() const override {
    return data_.graph.memory_bytes() +
           data_.codes.memory_bytes() +
           static_cast<int64_t>(data_.norms.size() * sizeof(float) +
                                data_.entries.size() * sizeof(int32_t));
  }

  Status Add(const KeyRows& keys) override {
    RETURN_IF_ERROR(ValidateKeyRows(keys));
    if (keys.count < size() || keys.head_dim != head_dim_ || keys.dtype != dtype_) {
      return InvalidArgumentError("graph index: rows do not extend the indexed keys");
    }
    const int64_t begin = size();
    data_.graph.Resize(keys.count);
    internal::ComputeNorms(keys, begin, keys.count, &data_.norms);
    if (options_.traverse_with_codes) {
      // An index built over no keys takes its code ranges from the first keys it is given.
      if (data_.codes.head_dim() == 0 && keys.count > 0) data_.codes.Train(keys);
      if (keys.count > 0) data_.codes.Append(keys, begin, keys.count);
    }
    return internal::InsertKeys(keys, options_, isa_, begin, keys.count, &data_);
  }

  Status Search(const KeyRows& keys, const GroupScorer& scorer, const SearchParams& params,
                SearchResult* out) const override {
    RETURN_IF_ERROR(ValidateSearch(keys, size(), scorer, params));
    out->positions.clear();
    out->scores.clear();
    out->stats = {};
    if (size() == 0) return OkStatus();
    const int beam = std::max(params.effort > 0 ? params.effort : default_beam(),
                              params.top_k);
    internal::SearchScratch& s = internal::ThreadSearchScratch();
    internal::BeamStats stats;
    int64_t exact = 0;
    int64_t code_bytes = 0;
    const int64_t limit = params.position_limit;
    if (options_.traverse_with_codes) {
      TraverseWithCodes(scorer, beam, limit, &s, &stats);
      code_bytes = stats.scored * data_.codes.code_bytes();
      exact = Rerank(keys, scorer, std::max(options_.rerank, params.top_k), &s);
    } else {
      internal::BeamSearch(
          data_.graph, data_.entries, beam, options_.search_width,
          [&](std::span<const int32_t> ids, float* scores) {
            scorer.ScorePositions(keys, ids, scores);
            Exclude(ids, limit, scores);
          },
          &s, &stats);
      internal::SortBest(&s.best);
      exact = stats.scored;
    }
    if (limit > 0) {
      std::erase_if(s.best, [limit](const internal::Scored& c) { return c.id >= limit; });
    }
    const size_t k = std::min<size_t>(s.best.size(), static_cast<size_t>(params.top_k));
    out->positions.reserve(k);
    out->scores.reserve(k);
    for (size_t i = 0; i < k; ++i) {
      out->positions.push_back(s.best[i].id);
      out->scores.push_back(s.best[i].score);
    }
    out->stats = {.keys_scored = exact,
                  .bytes_read = exact * static_cast<int64_t>(keys.row_bytes()) + code_bytes +
                                stats.adjacency_bytes};
    return OkStatus();
  }

 private:
  // Beam search over the codes; leaves the beam in s->best (unsorted).
  void TraverseWithCodes(const GroupScorer& scorer, int beam, int64_t limit,
                         internal::SearchScratch* s, internal::BeamStats* stats) const {
    thread_local std::vector<float> q;
    thread_local internal::CodeQuery cq;
    q.resize(static_cast<size_t>(scorer.group_size()) * scorer.head_dim());
    scorer.CopyQueries(q.data());
    cq.Prepare(data_.codes, q.data(), scorer.group_size(), isa_);
    internal::BeamSearch(
        data_.graph, data_.entries, beam, options_.search_width,
        [&](std::span<const int32_t> ids, float* scores) {
          cq.Score(data_.codes, ids, scores);
          Exclude(ids, limit, scores);
        },
        s, stats);
  }

  // Keys at or after limit (> 0) score -inf: never a result, never expanded (they do not exist
  // for the search).
  static void Exclude(std::span<const int32_t> ids, int64_t limit, float* scores) {
    if (limit <= 0) return;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] >= limit) scores[i] = -std::numeric_limits<float>::infinity();
    }
  }

  // Re-scores the best `depth` of s->best exactly and leaves them in s->best, best first.
  // Returns the exact dot products computed.
  static int64_t Rerank(const KeyRows& keys, const GroupScorer& scorer, int depth,
                        internal::SearchScratch* s) {
    if (static_cast<int>(s->best.size()) > depth) {
      std::nth_element(s->best.begin(), s->best.begin() + depth, s->best.end(),
                       [](const internal::Scored& a, const internal::Scored& b) {
                         return a.score > b.score || (a.score == b.score && a.id < b.id);
                       });
      s->best.resize(static_cast<size_t>(depth));
    }
    s->batch.clear();
    for (const internal::Scored& c : s->best) s->batch.push_back(c.id);
    s->batch_scores.resize(s->batch.size());
    scorer.ScorePositions(keys, s->batch, s->batch_scores.data());
    for (size_t i = 0; i < s->best.size(); ++i) s->best[i].score = s->batch_scores[i];
    internal::SortBest(&s->best);
    return static_cast<int64_t>(s->batch.size());
  }

  int default_beam() const {
    return calibration_.has_value() ? calibration_->effort : options_.default_beam;
  }

  GraphOptions options_;
  std::optional<Calibration> calibration_;
  int head_dim_;
  DType dtype_;
  IsaLevel isa_;
  GraphData data_;
};

}  // namespace

StatusOr<std::unique_ptr<KeyIndex>> BuildGraphIndex(const KeyRows& keys,
                                                    const QuerySample& sample,
                                                    const GraphOptions& options,
                                                    const BuildOptions& build) {
  RETURN_IF_ERROR(ValidateKeyRows(keys));
  RETURN_IF_ERROR(ValidateGraphOptions(options));
  if (!sample.empty() && (sample.q == nullptr || sample.head_dim != keys.head_dim ||
                          sample.group_size < 1 || sample.num_queries < 0)) {
    return InvalidArgumentError("graph index: query sample with head_dim " +
                                std::to_string(sample.head_dim) + " for keys of head_dim " +
                                std::to_string(keys.head_dim));
  }
  if (!IsaSupported(build.isa)) return InvalidArgumentError("graph index: ISA not supported");
  auto index = std::make_unique<GraphIndex>(options, keys, build.isa);
  if (sample.empty() || keys.count == 0) {
    RETURN_IF_ERROR(index->Add(keys));
  } else {
    // calibration_queries sample queries are held out of the build to check it
    // (calibration.h: SplitHeldOut).
    const int held = options.calibration_queries > 0 &&
                             sample.num_queries >= 4 * options.calibration_queries
                         ? options.calibration_queries
                         : 0;
    const HeldOutSplit split = held > 0 ? SplitHeldOut(sample, held) : HeldOutSplit{};
    RETURN_IF_ERROR(internal::BuildFromQueries(keys, held > 0 ? split.train() : sample, options,
                                               build, index->data()));
    if (options.traverse_with_codes) {
      index->data()->codes.Train(keys);
      index->data()->codes.Append(keys, 0, keys.count);
    }
    if (held > 0) RETURN_IF_ERROR(index->Calibrate(keys, split.held_out(), build));
  }
  return std::unique_ptr<KeyIndex>(std::move(index));
}

}  // namespace attic::retrieval
