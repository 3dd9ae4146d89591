#include "bench/ssd/decode_step.h"

#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <utility>

#include "attention_workers/decode_attention.h"
#include "attention_workers/retrieval/key_index.h"
#include "attention_workers/retrieval/scoring.h"
#include "bench/retrieval/metrics.h"
#include "bench/ssd/internal/decode_store.h"
#include "bench/ssd/internal/head_step.h"

namespace attic::retrieval::eval {
namespace {

using decode_internal::Bf16Layer;
using decode_internal::HeadStepInput;
using decode_internal::HeadStepper;
using decode_internal::HeadStepResult;
using Clock = std::chrono::steady_clock;

double Micros(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

// Exact figures of one step of one head.
struct Exact {
  std::vector<int32_t> truth;  // group-max top k of the indexed keys
  std::vector<float> out;      // [G, D] dense attention over [0, p]
  std::vector<float> lse;      // [G]
};

// What every configuration shares.
struct Inputs {
  const Dataset* ds = nullptr;
  const LayerData* layer = nullptr;
  ContextPlan plan;
  ModelSpec spec;
  Bf16Layer data;
  int steps = 0;
  std::vector<std::unique_ptr<KeyIndex>> index;  // [kv_heads]
  std::vector<std::vector<Exact>> exact;         // [step][kv_head]
  double build_ms = 0.0;
};

// How one configuration runs.
struct Config {
  std::string name;
  double fraction = 1.0;  // 1 = every value in DRAM
  bool locality = false;
  LocalityParams params;
  bool dense = false;  // dense steps after the sparse ones
};

Status Validate(const Dataset& ds, const DecodeStepOptions& o, const LayerData** layer) {
  RETURN_IF_ERROR(ValidateSelectionParams(o.selection));
  RETURN_IF_ERROR(ValidateLocalityParams(o.locality));
  if (!(o.dram_fraction > 0.0 && o.dram_fraction <= 1.0)) {
    return InvalidArgumentError("decode step: dram_fraction " + std::to_string(o.dram_fraction) +
                                " is not in (0, 1]");
  }
  if (o.scratch_dir.empty()) return InvalidArgumentError("decode step: no scratch_dir");
  if (o.prefill_chunk < 1 || o.prefill_chunk % o.locality.block_size != 0) {
    return InvalidArgumentError("decode step: prefill_chunk " + std::to_string(o.prefill_chunk) +
                                " is not a positive multiple of the block size");
  }
  for (const LayerData& l : ds.layers) {
    if (l.layer != o.layer) continue;
    if (!l.has_values()) {
      return InvalidArgumentError("decode step: layer " + std::to_string(o.layer) + " of " +
                                  ds.dir + " has no values");
    }
    *layer = &l;
    return OkStatus();
  }
  return InvalidArgumentError("decode step: layer " + std::to_string(o.layer) +
                              " is not loaded from " + ds.dir);
}

// The exact top k and dense attention of every step and head, from the bf16 arrays.
Status ComputeExact(const DecodeStepOptions& o, Inputs* in) {
  const Dataset& ds = *in->ds;
  const int64_t indexed = in->plan.indexed;
  std::vector<float> scores(static_cast<size_t>(indexed));
  in->exact.assign(static_cast<size_t>(in->steps),
                   std::vector<Exact>(static_cast<size_t>(ds.kv_heads)));
  for (int h = 0; h < ds.kv_heads; ++h) {
    const std::byte* k = in->data.k[static_cast<size_t>(h)].data();
    const std::byte* const blocks[] = {k};
    const KeyRows rows{.blocks = blocks,
                       .block_size = static_cast<int>(indexed),
                       .head_dim = ds.head_dim,
                       .dtype = DType::kBFloat16,
                       .count = indexed};
    for (int i = 0; i < in->steps; ++i) {
      Exact& e = in->exact[static_cast<size_t>(i)][static_cast<size_t>(h)];
      const float* q = StepQueries(ds, *in->layer, in->plan, i, h);
      const GroupScorer scorer({.q = q, .group_size = ds.group_size, .head_dim = ds.head_dim},
                               DType::kBFloat16);
      scorer.ScoreRange(rows, 0, indexed, scores.data());
      e.truth = TopKPositions(scores, o.selection.top_k);
      const KvRun run{.k = k,
                      .v = in->data.v[static_cast<size_t>(h)].data(),
                      .num_tokens = in->plan.step_positions[static_cast<size_t>(i)] + 1};
      e.out.resize(static_cast<size_t>(ds.group_size) * ds.head_dim);
      e.lse.resize(static_cast<size_t>(ds.group_size));
      RETURN_IF_ERROR(DecodeAttention({.q = q,
                                       .group_size = ds.group_size,
                                       .head_dim = ds.head_dim,
                                       .dtype = DType::kBFloat16,
                                       .scale = ds.scale,
                                       .runs = std::span<const KvRun>(&run, 1),
                                       .out = e.out.data(),
                                       .lse = e.lse.data()}));
    }
  }
  return OkStatus();
}

// The worker's graph index per head, over the bf16 keys [0, indexed).
Status BuildIndexes(Inputs* in) {
  const Dataset& ds = *in->ds;
  const auto t0 = Clock::now();
  for (int h = 0; h < ds.kv_heads; ++h) {
    const SampleBuffer sample = GatherSample(ds, *in->layer, in->plan.sample_rows, h);
    RETURN_IF_ERROR(CheckNoLeakage(sample.sample, in->plan.indexed));
    const std::byte* const blocks[] = {in->data.k[static_cast<size_t>(h)].data()};
    const KeyRows rows{.blocks = blocks,
                       .block_size = static_cast<int>(in->plan.indexed),
                       .head_dim = ds.head_dim,
                       .dtype = DType::kBFloat16,
                       .count = in->plan.indexed};
    ASSIGN_OR_RETURN(std::unique_ptr<KeyIndex> index,
                     BuildKeyIndex(IndexKind::kGraph, rows, sample.sample));
    in->index.push_back(std::move(index));
  }
  in->build_ms = Micros(t0, Clock::now()) / 1000.0;
  return OkStatus();
}

StatusOr<Inputs> PrepareInputs(const Dataset& ds, const DecodeStepOptions& o) {
  Inputs in;
  in.ds = &ds;
  RETURN_IF_ERROR(Validate(ds, o, &in.layer));
  ASSIGN_OR_RETURN(in.plan, PlanContext(ds, *in.layer, o.context > 0 ? o.context : ds.num_tokens));
  in.steps = static_cast<int>(in.plan.step_positions.size());
  if (o.max_steps > 0) in.steps = std::min(in.steps, o.max_steps);
  in.spec = decode_internal::DecodeSpec(ds, o.locality.block_size);
  RETURN_IF_ERROR(in.spec.Validate());
  in.data = decode_internal::ToBf16(*in.layer, ds.kv_heads);
  RETURN_IF_ERROR(BuildIndexes(&in));
  RETURN_IF_ERROR(ComputeExact(o, &in));
  return in;
}

LatencyUs Summarize(std::vector<double> us) {
  LatencyUs s;
  s.samples = static_cast<int>(us.size());
  if (us.empty()) return s;
  std::sort(us.begin(), us.end());
  const auto rank = [&](double q) {
    const auto i = static_cast<size_t>(std::ceil(q * static_cast<double>(us.size())));
    return us[std::min(us.size() - 1, i == 0 ? 0 : i - 1)];
  };
  s.p50 = rank(0.50);
  s.p99 = rank(0.99);
  s.max = us.back();
  for (double v : us) s.mean += v;
  s.mean /= static_cast<double>(us.size());
  return s;
}

TierDelta Delta(const KvStoreStats& a, const KvStoreStats& b) {
  return {.store_bytes_read = b.ssd_bytes_read - a.ssd_bytes_read,
          .reloaded = b.reloaded_total - a.reloaded_total,
          .streamed = b.streamed_total - a.streamed_total,
          .spilled = b.spilled_total - a.spilled_total,
          .tier_block_bytes_read = b.tier.block_bytes_read - a.tier.block_bytes_read,
          .rocksdb_bytes_read = b.tier.rocksdb_bytes_read - a.tier.rocksdb_bytes_read,
          .blob_bytes_read = b.tier.blob_bytes_read - a.tier.blob_bytes_read,
          .compact_bytes_read = b.tier.compact_bytes_read - a.tier.compact_bytes_read};
}

// Running sums of one configuration's steps.
struct StepSums {
  std::vector<double> step_us, maintain_us;
  double bytes = 0, read_us = 0, selected = 0, read = 0, dropped = 0, resident = 0;
  double recall = 0, mass = 0, error = 0;
  int head_steps = 0;

  void AddHead(const HeadStepResult& r, const Exact& e, const Inputs& in, bool sparse) {
    const int g = in.ds->group_size;
    bytes += static_cast<double>(r.fetch.bytes_read);
    read_us += r.read_us;
    selected += r.blocks_selected;
    read += static_cast<double>(r.fetch.blocks_read);
    dropped += r.dropped;
    if (sparse) {
      recall += RecallAt(r.retrieved, e.truth);
      mass += MassRecall(r.lse, e.lse);
    }
    error += OutputRelErr(r.out.data(), e.out.data(), g, in.ds->head_dim);
    ++head_steps;
  }

  void Finish(DecodeConfigResult* c) const {
    const double n = std::max<size_t>(1, step_us.size());
    const double hn = std::max(1, head_steps);
    c->steps = static_cast<int>(step_us.size());
    c->step_us = Summarize(step_us);
    c->maintain_us = Summarize(maintain_us);
    c->ssd_bytes_per_step = bytes / n;
    c->read_us = read_us / n;
    c->blocks_selected = selected / n;
    c->blocks_read = read / n;
    c->dropped = dropped / n;
    c->resident_blocks = resident / n;
    c->recall = recall / hn;
    c->mass_recall = mass / hn;
    c->output_error = error / hn;
  }
};

HeadStepRecord Record(int32_t position, const HeadStepResult& r) {
  return {.position = position, .selection = r.selection, .out = r.out, .lse = r.lse};
}

// The sparse steps, appending each step's tokens first and maintaining after it.
StatusOr<DecodeConfigResult> RunSparse(const Inputs& in, const Config& c,
                                       const DecodeStepOptions& o, KvStore& store) {
  DecodeConfigResult result{
      .name = c.name, .mode = "sparse", .values_in_dram = c.fraction, .locality = c.locality};
  const int heads = in.ds->kv_heads;
  HeadStepper stepper;
  std::vector<HeadStepResult> r(static_cast<size_t>(heads));
  StepSums sums;
  const KvStoreStats before = store.Stats();
  for (int i = 0; i < in.steps; ++i) {
    const int32_t p = in.plan.step_positions[static_cast<size_t>(i)];
    RETURN_IF_ERROR(decode_internal::AppendTokensUpTo(store, in.spec, in.data, p + 1));
    sums.resident += static_cast<double>(store.Stats().v_resident_blocks);
    const auto t0 = Clock::now();
    for (int h = 0; h < heads; ++h) {
      RETURN_IF_ERROR(stepper.Sparse(store, in.spec,
                                     {.kv_head = h,
                                      .length = p + 1,
                                      .q = StepQueries(*in.ds, *in.layer, in.plan, i, h),
                                      .index = in.index[static_cast<size_t>(h)].get(),
                                      .selection = o.selection,
                                      .locality = c.params},
                                     &r[static_cast<size_t>(h)]));
    }
    const auto t1 = Clock::now();
    RETURN_IF_ERROR(store.Maintain().durability);
    sums.maintain_us.push_back(Micros(t1, Clock::now()));
    sums.step_us.push_back(Micros(t0, t1));
    std::vector<HeadStepRecord>& rec = result.records.emplace_back();
    for (int h = 0; h < heads; ++h) {
      const HeadStepResult& hr = r[static_cast<size_t>(h)];
      sums.AddHead(hr, in.exact[static_cast<size_t>(i)][static_cast<size_t>(h)], in, true);
      result.locality = result.locality || (c.locality && hr.spilled);
      rec.push_back(Record(p, hr));
    }
  }
  sums.Finish(&result);
  result.tier = Delta(before, store.Stats());
  return result;
}

// Dense steps at the last dense_steps positions, over the store as the sparse steps left it.
StatusOr<DecodeConfigResult> RunDense(const Inputs& in, const Config& c, const DecodeStepOptions& o,
                                      KvStore& store) {
  DecodeConfigResult result{.name = c.name, .mode = "dense", .values_in_dram = c.fraction};
  const int heads = in.ds->kv_heads;
  HeadStepper stepper;
  HeadStepResult r;
  StepSums sums;
  const KvStoreStats before = store.Stats();
  for (int i = std::max(0, in.steps - o.dense_steps); i < in.steps; ++i) {
    const int32_t p = in.plan.step_positions[static_cast<size_t>(i)];
    std::vector<HeadStepRecord>& rec = result.records.emplace_back();
    double us = 0.0;
    for (int h = 0; h < heads; ++h) {
      const auto t0 = Clock::now();
      RETURN_IF_ERROR(stepper.Dense(
          store, in.spec,
          {.kv_head = h, .length = p + 1, .q = StepQueries(*in.ds, *in.layer, in.plan, i, h)}, &r));
      us += Micros(t0, Clock::now());
      sums.AddHead(r, in.exact[static_cast<size_t>(i)][static_cast<size_t>(h)], in, false);
      rec.push_back(Record(p, r));
    }
    sums.step_us.push_back(us);
  }
  sums.Finish(&result);
  result.tier = Delta(before, store.Stats());
  return result;
}

// A fresh directory under root, removed with its contents when the guard goes.
class ScratchDir {
 public:
  static StatusOr<std::unique_ptr<ScratchDir>> Make(const std::string& root,
                                                    const std::string& name) {
    std::error_code ec;
    std::filesystem::create_directories(root, ec);
    if (ec) return UnavailableError("decode step: creating " + root + ": " + ec.message());
    std::string path = root + "/decode-step-" + name + "-XXXXXX";
    if (mkdtemp(path.data()) == nullptr) {
      return UnavailableError("decode step: mkdtemp under " + root);
    }
    return std::unique_ptr<ScratchDir>(new ScratchDir(std::move(path)));
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

int64_t ValueBlocks(const Inputs& in) {
  const int64_t b = in.spec.block_size;
  return in.ds->kv_heads * ((in.plan.context + b - 1) / b);
}

// One configuration on a fresh store: prefill, sparse steps, then dense steps if asked.
Status RunConfig(const Inputs& in, const Config& c, const DecodeStepOptions& o,
                 DecodeStepReport* report) {
  ASSIGN_OR_RETURN(std::unique_ptr<ScratchDir> dir, ScratchDir::Make(o.scratch_dir, c.name));
  const int64_t budget =
      c.fraction >= 1.0
          ? 0
          : std::max<int64_t>(1, std::llround(c.fraction * static_cast<double>(ValueBlocks(in))));
  ASSIGN_OR_RETURN(
      std::unique_ptr<KvStore> store,
      decode_internal::OpenDecodeStore(
          in.spec, in.plan.context,
          {.dir = dir->path() + "/db", .direct_io = o.direct_io, .value_dram_blocks = budget}));
  const auto t0 = Clock::now();
  RETURN_IF_ERROR(
      decode_internal::PrefillBlocks(*store, in.spec, in.data, in.plan.indexed, o.prefill_chunk));
  if (report->configs.empty()) report->prefill_ms = Micros(t0, Clock::now()) / 1000.0;
  RETURN_IF_ERROR(store->Maintain().durability);
  ASSIGN_OR_RETURN(DecodeConfigResult sparse, RunSparse(in, c, o, *store));
  sparse.value_dram_blocks = store->Stats().value_dram_blocks;
  report->configs.push_back(std::move(sparse));
  if (c.dense && o.dense_steps > 0) {
    ASSIGN_OR_RETURN(DecodeConfigResult dense, RunDense(in, c, o, *store));
    dense.value_dram_blocks = report->configs.back().value_dram_blocks;
    report->configs.push_back(std::move(dense));
  }
  const KvStoreStats s = store->Stats();
  report->direct_io = s.tier.direct_io;
  report->value_blocks = s.v.used_blocks;
  return OkStatus();
}

// Each spilled configuration's largest output difference from all-dram's, step by step.
void CompareWithAllDram(DecodeStepReport* r) {
  for (DecodeConfigResult& c : r->configs) {
    const DecodeConfigResult* base = r->Find("all-dram", c.mode);
    if (&c == base || base == nullptr) continue;
    const size_t offset = base->records.size() - std::min(base->records.size(), c.records.size());
    c.max_error_vs_all_dram = 0.0;
    for (size_t i = 0; i < c.records.size() && offset + i < base->records.size(); ++i) {
      for (size_t h = 0; h < c.records[i].size(); ++h) {
        const HeadStepRecord& a = base->records[offset + i][h];
        const HeadStepRecord& b = c.records[i][h];
        const int g = static_cast<int>(b.lse.size());
        const int d = g > 0 ? static_cast<int>(b.out.size()) / g : 0;
        c.max_error_vs_all_dram =
            std::max(c.max_error_vs_all_dram, OutputRelErr(b.out.data(), a.out.data(), g, d));
      }
    }
  }
}

}  // namespace

const DecodeConfigResult* DecodeStepReport::Find(const std::string& name,
                                                 const std::string& mode) const {
  for (const DecodeConfigResult& c : configs) {
    if (c.name == name && c.mode == mode) return &c;
  }
  return nullptr;
}

StatusOr<DecodeStepReport> MeasureDecodeSteps(const Dataset& ds, const DecodeStepOptions& o) {
  ASSIGN_OR_RETURN(Inputs in, PrepareInputs(ds, o));
  DecodeStepReport report{.dir = ds.dir,
                          .layer = o.layer,
                          .context = in.plan.context,
                          .indexed = in.plan.indexed,
                          .kv_heads = ds.kv_heads,
                          .block_size = in.spec.block_size,
                          .block_bytes = static_cast<int64_t>(in.spec.block_bytes()),
                          .selection = o.selection,
                          .locality = o.locality,
                          .dram_fraction = o.dram_fraction,
                          .build_ms = in.build_ms};
  LocalityParams every_block = o.locality;
  every_block.score_slack = 0.0f;
  every_block.fetch_budget = 0;
  every_block.prefetch_neighbours = false;
  const Config configs[] = {
      {.name = "all-dram", .fraction = 1.0, .params = o.locality, .dense = true},
      {.name = "locality",
       .fraction = o.dram_fraction,
       .locality = true,
       .params = o.locality,
       .dense = true},
      {.name = "no-locality", .fraction = o.dram_fraction, .params = every_block},
  };
  for (const Config& c : configs) RETURN_IF_ERROR(RunConfig(in, c, o, &report));
  if (!report.direct_io) {
    report.direct_io_note = "the tier fell back to buffered I/O (O_DIRECT refused under " +
                            o.scratch_dir + "): reloads may be served by the page cache";
  }
  CompareWithAllDram(&report);
  return report;
}

}  // namespace attic::retrieval::eval
