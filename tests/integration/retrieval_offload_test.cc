// Retrieval attention through real attic-worker processes: a sequence prefilled with keys and
// values (the real activations when ../shared is present, a seeded synthetic set otherwise)
// and given its prefill query sample answers sparse Attend requests exactly as the offline
// evaluation does (same index, same selection, same kernel); token shards place sinks and
// window globally; the exclude-window variant merges with a caller-side window partial; heads
// whose prefill queries show diffuse attention are answered densely, as profiled offline.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "attention_workers/decode_attention.h"
#include "common/lse_merge.h"
#include "attention_workers/retrieval/head_profile.h"
#include "attention_workers/retrieval/key_index.h"
#include "attention_workers/retrieval/selection.h"
#include "attention_workers/retrieval/serving_index.h"
#include "client/client.h"
#include "common/npy.h"
#include "services/loadgen/worker_process.h"
#include "tests/testing/shared_data.h"
#include "transport/control/http_server.h"

namespace attic::testing {
namespace {


constexpr int kHkv = 2;
constexpr int kHq = 8;
constexpr int kG = 4;
constexpr int kD = 128;
// The index the workers build (their retrieval.index_kind) and the offline evaluation uses.
constexpr IndexKind kKind = IndexKind::kGraph;

// One layer's activations, fp32: k, v [n, Hkv, D]; q_decode [T, Hq, D] at positions
// indexed..indexed+T-1; q_sample [m, Hq, D] at sample_positions (all below indexed).
struct Layer {
  int64_t n = 0;
  int64_t indexed = 0;
  std::vector<float> k, v, q_decode, q_sample;
  std::vector<int64_t> sample_positions;
  int steps = 0;
};

std::vector<float> ToFloat(const NpyArray& a) {
  std::vector<float> f(static_cast<size_t>(a.num_elements()));
  ConvertToFloat(a.dtype, a.data.data(), f.data(), f.size());
  return f;
}

// The real layer l of ../shared's dump (rows of q_prefill below the first decode position).
std::optional<Layer> RealLayer(int l) {
  const std::optional<std::string> dir = QkvDir();
  if (!dir) return std::nullopt;
  const std::string p = *dir + "/L" + std::to_string(l) + "_";
  Layer layer;
  StatusOr<NpyArray> k = ReadNpy(p + "k.npy"), v = ReadNpy(p + "v.npy");
  StatusOr<NpyArray> qd = ReadNpy(p + "q_decode.npy"), qp = ReadNpy(p + "q_prefill.npy");
  if (!k.ok() || !v.ok() || !qd.ok() || !qp.ok()) return std::nullopt;
  layer.n = k->shape[0];
  layer.steps = static_cast<int>(qd->shape[0]);
  layer.indexed = layer.n - layer.steps;
  layer.k = ToFloat(*k);
  layer.v = ToFloat(*v);
  layer.q_decode = ToFloat(*qd);
  const std::vector<float> prefill = ToFloat(*qp);
  const int64_t stride = layer.n / qp->shape[0];
  for (int64_t r = 0; r * stride < layer.indexed; ++r) {  // no leakage: below decode
    layer.sample_positions.push_back(r * stride);
    layer.q_sample.insert(layer.q_sample.end(), prefill.begin() + r * kHq * kD,
                          prefill.begin() + (r + 1) * kHq * kD);
  }
  return layer;
}

// Seeded random keys and values; every query points at three earlier keys of its KV head, so
// attention is peaked (as in real layers whose heads stay sparse) rather than diffuse.
Layer SyntheticLayer() {
  Layer layer;
  layer.n = 4096;
  layer.steps = 32;
  layer.indexed = layer.n - layer.steps;
  std::mt19937_64 rng(11);
  std::normal_distribution<float> dist;
  auto fill = [&](std::vector<float>& x, size_t count) {
    x.resize(count);
    for (float& f : x) f = dist(rng);
  };
  fill(layer.k, static_cast<size_t>(layer.n) * kHkv * kD);
  fill(layer.v, static_cast<size_t>(layer.n) * kHkv * kD);
  // q [rows, Hq, D]: row r attends from position at(r).
  auto queries = [&](std::vector<float>& q, size_t rows, auto at) {
    q.assign(rows * kHq * kD, 0.0f);
    for (size_t r = 0; r < rows; ++r) {
      const int64_t p = std::max<int64_t>(at(r), 1);
      for (int head = 0; head < kHq; ++head) {
        float* out = q.data() + (r * kHq + head) * kD;
        for (int j = 0; j < 3; ++j) {
          const int64_t t = static_cast<int64_t>(rng() % static_cast<uint64_t>(p));
          const float* key = layer.k.data() + (static_cast<size_t>(t) * kHkv + head / kG) * kD;
          for (int d = 0; d < kD; ++d) out[d] += 1.2f * key[d];
        }
        for (int d = 0; d < kD; ++d) out[d] += 0.3f * dist(rng);
      }
    }
  };
  queries(layer.q_decode, static_cast<size_t>(layer.steps),
          [&](size_t r) { return layer.indexed + static_cast<int64_t>(r); });
  for (int64_t p = 0; p < layer.indexed; p += 16) layer.sample_positions.push_back(p);
  queries(layer.q_sample, layer.sample_positions.size(),
          [&](size_t r) { return layer.sample_positions[r]; });
  return layer;
}

ModelSpec Spec() {
  return ModelSpec{.name = "attic-ref-54m", .num_layers = 6, .num_q_heads = kHq,
                   .num_kv_heads = kHkv, .head_dim = kD, .dtype = DType::kBFloat16,
                   .block_size = 64};
}

// One KV head's keys and values in the storage dtype (bf16), contiguous [n, D].
struct HeadKv {
  std::vector<uint16_t> k, v;
  std::vector<const std::byte*> blocks;
  retrieval::KeyRows rows(int64_t count) {
    blocks = {reinterpret_cast<const std::byte*>(k.data())};
    return {.blocks = blocks, .block_size = static_cast<int>(count) + 1, .head_dim = kD,
            .dtype = DType::kBFloat16, .count = count};
  }
};

HeadKv HeadOf(const Layer& layer, int h, int64_t count) {
  HeadKv kv;
  kv.k.resize(static_cast<size_t>(count) * kD);
  kv.v.resize(kv.k.size());
  for (int64_t t = 0; t < count; ++t) {
    const size_t src = (static_cast<size_t>(t) * kHkv + h) * kD;
    ConvertFromFloat(DType::kBFloat16, layer.k.data() + src, kv.k.data() + t * kD, kD);
    ConvertFromFloat(DType::kBFloat16, layer.v.data() + src, kv.v.data() + t * kD, kD);
  }
  return kv;
}

// Head h's G queries of every sample row, contiguous [m, G, D].
std::vector<float> SampleOf(const Layer& layer, int h) {
  std::vector<float> q;
  for (size_t r = 0; r < layer.sample_positions.size(); ++r) {
    const float* row = layer.q_sample.data() + (r * kHq + static_cast<size_t>(h) * kG) * kD;
    q.insert(q.end(), row, row + kG * kD);
  }
  return q;
}

// The heads of `layer` the worker's profiler marks dense, computed offline with its default
// options from the same keys and sample (printed as `model_layer`).
uint64_t ProfiledDenseHeads(const Layer& layer, int model_layer) {
  uint64_t dense = 0;
  for (int h = 0; h < kHkv; ++h) {
    HeadKv kv = HeadOf(layer, h, layer.indexed);
    std::vector<float> sample = SampleOf(layer, h);
    std::vector<int32_t> pos(layer.sample_positions.begin(), layer.sample_positions.end());
    StatusOr<retrieval::HeadProfile> p = retrieval::ProfileHead(
        kv.rows(layer.indexed),
        {.q = sample.data(), .num_queries = static_cast<int>(pos.size()), .group_size = kG,
         .head_dim = kD, .positions = pos},
        {.scale = Spec().EffectiveScale()});
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) continue;
    std::printf("layer %d head %d: %s\n", model_layer, h, p->ToString().c_str());
    dense += p->dense ? 1 : 0;
  }
  return dense;
}

double RelDiff(const float* a, const float* b, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

class RetrievalOffload : public ::testing::Test {
 protected:
  void SetUp() override {
    std::optional<Layer> real = RealLayer(4);
    layer_ = real ? *std::move(real) : SyntheticLayer();
    real_ = real.has_value();
    if (!real_) std::printf("note: %s; running the synthetic set\n", kNoSharedDataMessage);
    for (int i = 0; i < 2; ++i) {
      std::vector<std::string> args = loadgen::WorkerModelArgs(Spec());
      for (const char* a : {"--kv-memory-bytes", "512MiB", "--compute-threads", "2",
                            "--busy-poll-us", "0", "--retrieval-fold-tokens"}) {
        args.push_back(a);
      }
      args.push_back(std::to_string(fold_tokens_));
      args.push_back("--retrieval-index-kind");
      args.push_back(std::string(IndexKindName(kKind)));
      args.push_back("--retrieval-recall-sample-every");
      args.push_back(std::to_string(recall_every_));
      args.insert(args.end(), extra_args_.begin(), extra_args_.end());
      workers_.push_back(std::make_unique<loadgen::WorkerProcess>(loadgen::WorkerProcessOptions{
          .binary = ATTIC_WORKER_BINARY, .args = args, .name = "w" + std::to_string(i)}));
      ASSERT_TRUE(workers_.back()->Start(std::chrono::seconds(30)).ok());
    }
    ClientOptions options;
    for (const auto& w : workers_) options.workers.push_back(w->data_address());
    options.spec = Spec();
    options.timeout = std::chrono::seconds(60);
    StatusOr<std::unique_ptr<Client>> c = Client::Connect(options);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = *std::move(c);
  }

  // Opens `id` with `plan`, prefills `layer` of the model with tokens [0, indexed) and asks
  // for its indexes with the query sample.
  void OpenAndPrefill(uint64_t id, const ShardPlan& plan, int model_layer, const Layer& layer) {
    ASSERT_TRUE(client_->Open({.id = id, .tenant = "t", .plan = plan}).get().ok());
    const TensorView k(layer.k.data(), DType::kFloat32, {layer.indexed, kHkv, kD});
    const TensorView v(layer.v.data(), DType::kFloat32, {layer.indexed, kHkv, kD});
    ASSERT_TRUE(client_->Prefill(id, model_layer, 0, k, v).get().ok());
    const TensorView q(layer.q_sample.data(), DType::kFloat32,
                       {static_cast<int64_t>(layer.sample_positions.size()), kHq, kD});
    const Status built = client_->BuildIndex(id, model_layer, q, layer.sample_positions).get();
    ASSERT_TRUE(built.ok()) << built;
  }

  // Sparse Attend of one step's query without appending; returns the stats.
  StatusOr<AttendStats> Query(uint64_t id, int model_layer, const float* q, float* out,
                              float* lse, SparseOptions sparse = {}) {
    AttendBatch batch{.layer = model_layer, .mode = AttendMode::kSparse, .sparse = sparse};
    batch.items.push_back({.id = id, .q = TensorView(q, DType::kFloat32, {kHq, kD}),
                           .out = out, .lse = lse});
    return client_->Attend(std::move(batch)).get();
  }

  // Waits until the workers answer every head of (id, layer) from an index, or `want_dense`
  // heads densely.
  void WaitReady(uint64_t id, int model_layer, const Layer& layer, uint64_t want_dense) {
    std::vector<float> out(kHq * kD), lse(kHq);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    for (;;) {
      StatusOr<AttendStats> s = Query(id, model_layer, layer.q_decode.data(), out.data(),
                                      lse.data());
      ASSERT_TRUE(s.ok()) << s.status();
      // Heads answered through the stand-in (a 4-bit scan while the graph is built) are
      // sparse but not yet the kind the offline evaluation builds: wait for those too.
      if (s->dense_heads == want_dense && s->stand_in_heads == 0) return;
      ASSERT_LT(std::chrono::steady_clock::now(), give_up)
          << "indexes not ready: " << s->dense_heads << " heads still dense, "
          << s->stand_in_heads << " on the stand-in";
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  // Decode keys that trigger a fold; large by default, so the index stays as built.
  int fold_tokens_ = 100000;
  // Online recall: every sparse head is checked exactly (0: never).
  int recall_every_ = 0;
  std::vector<std::string> extra_args_;  // more worker flags
  Layer layer_;
  bool real_ = false;
  std::vector<std::unique_ptr<loadgen::WorkerProcess>> workers_;
  std::unique_ptr<Client> client_;
};

TEST_F(RetrievalOffload, SparseAttendMatchesTheOfflineEvaluation) {
  const ModelSpec spec = Spec();
  const Layer& L = layer_;
  OpenAndPrefill(1, ShardPlan::Single(spec, 0), 4, L);
  // Token shards: sinks on the first shard, the window on the last.
  OpenAndPrefill(2, ShardPlan::SplitTokens(spec, {0, 1}, {0, 64 * (L.indexed / 128)}), 4, L);
  WaitReady(1, 4, L, 0);
  WaitReady(2, 4, L, 0);

  // The offline evaluation: the same index kind over the same bf16 keys and sample.
  std::vector<HeadKv> heads;
  std::vector<std::unique_ptr<retrieval::KeyIndex>> indexes;
  std::vector<std::vector<float>> samples;
  for (int h = 0; h < kHkv; ++h) {
    heads.push_back(HeadOf(L, h, L.n));
    samples.push_back(SampleOf(L, h));
    std::vector<int32_t> pos(L.sample_positions.begin(), L.sample_positions.end());
    StatusOr<std::unique_ptr<retrieval::KeyIndex>> index = retrieval::BuildKeyIndex(
        kKind, heads[h].rows(L.indexed),
        {.q = samples[h].data(), .num_queries = static_cast<int>(pos.size()), .group_size = kG,
         .head_dim = kD, .positions = pos});
    ASSERT_TRUE(index.ok()) << index.status();
    indexes.push_back(*std::move(index));
  }

  const float scale = spec.EffectiveScale();
  const int check_every = real_ ? 16 : 4;
  double worst_vs_offline = 0, worst_split_vs_full = 0, worst_single_vs_full = 0;
  uint64_t selected = 0, bytes = 0, dense_bytes = 0;
  for (int t = 0; t < L.steps; ++t) {
    const int64_t p = L.indexed + t;
    const float* q = L.q_decode.data() + static_cast<size_t>(t) * kHq * kD;
    std::vector<float> out1(kHq * kD), lse1(kHq), out2(kHq * kD), lse2(kHq);
    AttendBatch batch{.layer = 4, .mode = AttendMode::kSparse};
    for (uint64_t id : {1u, 2u}) {
      float* out = id == 1 ? out1.data() : out2.data();
      float* lse = id == 1 ? lse1.data() : lse2.data();
      const size_t row = static_cast<size_t>(p) * kHkv * kD;
      batch.items.push_back(
          {.id = id, .q = TensorView(q, DType::kFloat32, {kHq, kD}),
           .k_new = TensorView(L.k.data() + row, DType::kFloat32, {kHkv, kD}),
           .v_new = TensorView(L.v.data() + row, DType::kFloat32, {kHkv, kD}),
           .out = out, .lse = lse});
    }
    StatusOr<AttendStats> stats = client_->Attend(std::move(batch)).get();
    ASSERT_TRUE(stats.ok()) << stats.status();
    ASSERT_EQ(stats->dense_heads, 0u) << "step " << t;
    selected += stats->selected_tokens;
    bytes += stats->bytes_read;
    dense_bytes += 2 * 2 * static_cast<uint64_t>(p + 1) * kHkv * kD * 2;  // both sequences
    if (t % check_every != 0 && t != L.steps - 1) continue;

    for (int h = 0; h < kHkv; ++h) {
      const float* qh = q + static_cast<size_t>(h) * kG * kD;
      retrieval::GroupScorer scorer({.q = qh, .group_size = kG, .head_dim = kD},
                                    DType::kBFloat16);
      retrieval::SearchResult r;
      ASSERT_TRUE(indexes[h]->Search(heads[h].rows(p + 1), scorer, {.top_k = 100}, &r).ok());
      const std::vector<int32_t> sel = retrieval::BuildSelection(
          {.length = p + 1, .indexed = L.indexed, .retrieved = r.positions}, {});
      const KvRun all{heads[h].k.data(), heads[h].v.data(), static_cast<int>(p + 1)};
      float o[kG * kD], l[kG], full[kG * kD], lfull[kG];
      ASSERT_TRUE(SparseDecodeAttention({.q = qh, .group_size = kG, .head_dim = kD,
                                         .dtype = DType::kBFloat16, .scale = scale,
                                         .blocks = {&all, 1}, .block_size = static_cast<int>(p + 1),
                                         .positions = sel, .out = o, .lse = l})
                      .ok());
      ASSERT_TRUE(DecodeAttention({.q = qh, .group_size = kG, .head_dim = kD,
                                   .dtype = DType::kBFloat16, .scale = scale, .runs = {&all, 1},
                                   .out = full, .lse = lfull})
                      .ok());
      const size_t off = static_cast<size_t>(h) * kG * kD;
      worst_vs_offline = std::max(worst_vs_offline, RelDiff(out1.data() + off, o, kG * kD));
      for (int g = 0; g < kG; ++g) {
        EXPECT_NEAR(lse1[h * kG + g], l[g], 1e-3) << "step " << t << " head " << h;
      }
      worst_single_vs_full =
          std::max(worst_single_vs_full, RelDiff(out1.data() + off, full, kG * kD));
      worst_split_vs_full =
          std::max(worst_split_vs_full, RelDiff(out2.data() + off, full, kG * kD));
    }
  }
  std::printf("sparse vs offline %.2e, single vs full %.3f, token-split vs full %.3f, "
              "%.1f tokens per head and step, bytes %.2f%% of dense\n",
              worst_vs_offline, worst_single_vs_full, worst_split_vs_full,
              static_cast<double>(selected) / (2.0 * kHkv * L.steps),
              100.0 * static_cast<double>(bytes) / static_cast<double>(dense_bytes));
  // The worker runs the offline evaluation's index, selection and kernel.
  EXPECT_LT(worst_vs_offline, 1e-4);
  // Two token shards retrieve more than one index does: no less accurate, within reason.
  EXPECT_LT(worst_split_vs_full, std::max(0.3, 2 * worst_single_vs_full));
  // Sinks + window + 100 retrieved per head, at most twice over the two shards.
  EXPECT_LE(static_cast<double>(selected) / (2.0 * kHkv * L.steps), 2 * (4 + 64 + 100));
  EXPECT_LT(static_cast<double>(bytes) / static_cast<double>(dense_bytes), real_ ? 0.25 : 0.6);
}

TEST_F(RetrievalOffload, ExcludedWindowMergesWithTheCallersWindow) {
  const ModelSpec spec = Spec();
  const Layer& L = layer_;
  OpenAndPrefill(1, ShardPlan::Single(spec, 0), 4, L);
  WaitReady(1, 4, L, 0);
  const float* q = L.q_decode.data();
  std::vector<float> whole(kHq * kD), lwhole(kHq), part(kHq * kD), lpart(kHq);
  ASSERT_TRUE(Query(1, 4, q, whole.data(), lwhole.data()).ok());
  ASSERT_TRUE(Query(1, 4, q, part.data(), lpart.data(), {.exclude_window = true}).ok());
  // The caller's window: the last 64 prefilled tokens, attended locally.
  for (int h = 0; h < kHkv; ++h) {
    HeadKv kv = HeadOf(L, h, L.indexed);
    std::vector<int32_t> window;
    for (int64_t t = L.indexed - 64; t < L.indexed; ++t) window.push_back(static_cast<int32_t>(t));
    const KvRun all{kv.k.data(), kv.v.data(), static_cast<int>(L.indexed)};
    float o[kG * kD], l[kG];
    ASSERT_TRUE(SparseDecodeAttention({.q = q + static_cast<size_t>(h) * kG * kD, .group_size = kG,
                                       .head_dim = kD, .dtype = DType::kBFloat16,
                                       .scale = spec.EffectiveScale(), .blocks = {&all, 1},
                                       .block_size = static_cast<int>(L.indexed),
                                       .positions = window, .out = o, .lse = l})
                    .ok());
    const size_t off = static_cast<size_t>(h) * kG * kD;
    MergeStatesInto(part.data() + off, lpart.data() + h * kG, o, l, kG, kD);
    EXPECT_LT(RelDiff(part.data() + off, whole.data() + off, kG * kD), 1e-5) << "head " << h;
  }
}

TEST_F(RetrievalOffload, DiffuseHeadsAreAnsweredDenselyAsProfiled) {
  const ModelSpec spec = Spec();
  std::optional<Layer> real = RealLayer(1);
  const Layer L = real ? *std::move(real) : layer_;
  // What the worker decides from the sample, computed offline with its default options.
  const uint64_t want_dense = ProfiledDenseHeads(L, real ? 1 : 4);
  ASSERT_FALSE(HasFailure());
  if (real) {
    EXPECT_GT(want_dense, 0u) << "layer 1 of the reference model is diffuse";
  }
  OpenAndPrefill(1, ShardPlan::Single(spec, 0), 1, L);
  WaitReady(1, 1, L, want_dense);
  // Dense heads are exact: the answer matches dense attention there.
  std::vector<float> out(kHq * kD), lse(kHq);
  StatusOr<AttendStats> s = Query(1, 1, L.q_decode.data(), out.data(), lse.data());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->dense_heads, want_dense);
}

// Forced retrieval: heads the worker profiled as diffuse get an index of their own on demand
// and are answered sparse; requests that do not force it keep answering them densely.
TEST_F(RetrievalOffload, ForcedSparseAnswersDiffuseHeadsFromAnIndex) {
  const ModelSpec spec = Spec();
  std::optional<Layer> real = RealLayer(1);
  if (!real) GTEST_SKIP() << kNoSharedDataMessage << " (needs a layer with diffuse heads)";
  const Layer& L = *real;
  // The profile's verdict, computed offline as the worker does.
  const uint64_t diffuse = ProfiledDenseHeads(L, 1);
  ASSERT_FALSE(HasFailure());
  OpenAndPrefill(1, ShardPlan::Single(spec, 0), 1, L);
  WaitReady(1, 1, L, diffuse);
  std::vector<float> out(kHq * kD), lse(kHq);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  ASSERT_GT(diffuse, 0u) << "layer 1 of the reference model has a diffuse head";
  for (;;) {
    StatusOr<AttendStats> s =
        Query(1, 1, L.q_decode.data(), out.data(), lse.data(), {.force = true});
    ASSERT_TRUE(s.ok()) << s.status();
    if (s->dense_heads == 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "forced heads stayed dense";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  StatusOr<AttendStats> plain = Query(1, 1, L.q_decode.data(), out.data(), lse.data());
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->dense_heads, diffuse);
}

// The serving policy through real workers: with retrieval.recall_target 1 no graph meets its
// build check on the real layer 4, so each head is served by the 4-bit scan or densely —
// exactly as BuildServingIndex decides offline from the same keys and sample — and the
// workers count it in attic_worker_retrieval_recall_fallbacks_total.
class RetrievalServingPolicy : public RetrievalOffload {
 protected:
  RetrievalServingPolicy() { extra_args_ = {"--retrieval-recall-target", "1"}; }
};

double MetricValue(const std::string& body, const std::string& series) {
  const size_t at = body.find("\n" + series + " ");
  return at == std::string::npos ? -1.0 : std::stod(body.substr(at + series.size() + 2));
}

TEST_F(RetrievalServingPolicy, HeadsBelowTargetAreServedByTheScanOrDensely) {
  // The synthetic layer's 254 sample queries are too few for the build's check (256).
  if (!real_) GTEST_SKIP() << kNoSharedDataMessage << " (needs a prompt with a checked build)";
  const Layer& L = layer_;
  uint64_t want_scan = 0, want_dense = 0;
  for (int h = 0; h < kHkv; ++h) {
    HeadKv kv = HeadOf(L, h, L.indexed);
    std::vector<float> sample = SampleOf(L, h);
    std::vector<int32_t> pos(L.sample_positions.begin(), L.sample_positions.end());
    retrieval::ServingOptions options;
    options.graph.calibration_target = 1.0f;
    StatusOr<retrieval::ServingIndex> s = retrieval::BuildServingIndex(
        kKind, kv.rows(L.indexed),
        {.q = sample.data(), .num_queries = static_cast<int>(pos.size()), .group_size = kG,
         .head_dim = kD, .positions = pos},
        options);
    ASSERT_TRUE(s.ok()) << s.status();
    std::printf("head %d: %s\n", h, s->ToString().c_str());
    ASSERT_TRUE(s->calibration.has_value());
    EXPECT_FALSE(s->calibration->met) << "no graph reaches recall 1 on real keys";
    want_scan += s->replaced ? 1 : 0;
    want_dense += s->dense ? 1 : 0;
  }
  ASSERT_EQ(want_scan + want_dense, static_cast<uint64_t>(kHkv));

  OpenAndPrefill(1, ShardPlan::Single(Spec(), 0), 4, L);
  WaitReady(1, 4, L, want_dense);
  std::vector<float> out(kHq * kD), lse(kHq);
  StatusOr<AttendStats> st = Query(1, 4, L.q_decode.data(), out.data(), lse.data());
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->dense_heads, want_dense);
  EXPECT_EQ(st->stand_in_heads, 0u);
  StatusOr<control::HttpResponse> metrics =
      control::HttpGet(workers_[0]->control_address(), "/metrics", std::chrono::seconds(5));
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(MetricValue(metrics->body,
                        "attic_worker_retrieval_recall_fallbacks_total{to=\"scan\"}"),
            static_cast<double>(want_scan))
      << metrics->body;
  EXPECT_EQ(MetricValue(metrics->body,
                        "attic_worker_retrieval_recall_fallbacks_total{to=\"dense\"}"),
            static_cast<double>(want_dense))
      << metrics->body;
}

class RetrievalRecall : public RetrievalOffload {
 protected:
  RetrievalRecall() { recall_every_ = 1; }
};

// Online recall: each checked head's hits are exactly the offline count, |index top 100 ∩
// exact top 100| over the indexed keys.
TEST_F(RetrievalRecall, OnlineRecallMatchesTheOfflineCount) {
  const ModelSpec spec = Spec();
  const Layer& L = layer_;
  OpenAndPrefill(1, ShardPlan::Single(spec, 0), 4, L);
  WaitReady(1, 4, L, 0);
  uint64_t want_hits = 0;
  const float* q = L.q_decode.data();
  for (int h = 0; h < kHkv; ++h) {
    HeadKv kv = HeadOf(L, h, L.indexed);
    std::vector<float> sample = SampleOf(L, h);
    std::vector<int32_t> pos(L.sample_positions.begin(), L.sample_positions.end());
    StatusOr<std::unique_ptr<retrieval::KeyIndex>> index = retrieval::BuildKeyIndex(
        kKind, kv.rows(L.indexed),
        {.q = sample.data(), .num_queries = static_cast<int>(pos.size()), .group_size = kG,
         .head_dim = kD, .positions = pos});
    ASSERT_TRUE(index.ok()) << index.status();
    StatusOr<std::unique_ptr<retrieval::KeyIndex>> exact =
        retrieval::BuildKeyIndex(IndexKind::kExact, kv.rows(L.indexed), {});
    ASSERT_TRUE(exact.ok()) << exact.status();
    retrieval::GroupScorer scorer({.q = q + static_cast<size_t>(h) * kG * kD, .group_size = kG,
                                   .head_dim = kD}, DType::kBFloat16);
    retrieval::SearchResult got, truth;
    ASSERT_TRUE((*index)->Search(kv.rows(L.indexed), scorer, {.top_k = 100}, &got).ok());
    ASSERT_TRUE((*exact)->Search(kv.rows(L.indexed), scorer, {.top_k = 100}, &truth).ok());
    std::sort(got.positions.begin(), got.positions.end());
    for (int32_t p : truth.positions) {
      want_hits += std::binary_search(got.positions.begin(), got.positions.end(), p) ? 1 : 0;
    }
  }
  std::vector<float> out(kHq * kD), lse(kHq);
  StatusOr<AttendStats> s = Query(1, 4, q, out.data(), lse.data());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->recall_heads, static_cast<uint64_t>(kHkv));
  EXPECT_EQ(s->recall_exact, 100u * kHkv);
  EXPECT_EQ(s->recall_hits, want_hits);
  std::printf("online recall@100 %.3f\n", static_cast<double>(s->recall_hits) / 200.0);
}

class RetrievalFold : public RetrievalOffload {
 protected:
  RetrievalFold() { fold_tokens_ = 8; }
};

// Decode keys are folded into the index in the background while decode goes on: every answer
// stays exact attention over a selection (its LSE never exceeds the full attention's), folds
// happen, and a key appended during decode that dominates every other is found by the search
// once folded, not only through the window.
TEST_F(RetrievalFold, DecodeKeysAreFoldedAndFound) {
  const ModelSpec spec = Spec();
  Layer L = layer_;
  OpenAndPrefill(1, ShardPlan::Single(spec, 0), 4, L);
  WaitReady(1, 4, L, 0);
  const int steps = std::min(L.steps, 24);
  // Step 0's key points along every query of the group, far stronger than any other key.
  std::vector<float> strong(kHkv * kD, 0.0f);
  for (int h = 0; h < kHkv; ++h) {
    for (int g = 0; g < kG; ++g) {
      for (int d = 0; d < kD; ++d) {
        strong[h * kD + d] += 8.0f * L.q_decode[(static_cast<size_t>(h) * kG + g) * kD + d];
      }
    }
  }
  for (int t = 0; t < steps; ++t) {
    const size_t row = static_cast<size_t>(L.indexed + t) * kHkv * kD;
    const float* k_new = t == 0 ? strong.data() : L.k.data() + row;
    std::vector<float> out(kHq * kD), lse(kHq);
    AttendBatch batch{.layer = 4, .mode = AttendMode::kSparse};
    batch.items.push_back({.id = 1,
                           .q = TensorView(L.q_decode.data(), DType::kFloat32, {kHq, kD}),
                           .k_new = TensorView(k_new, DType::kFloat32, {kHkv, kD}),
                           .v_new = TensorView(L.v.data() + row, DType::kFloat32, {kHkv, kD}),
                           .out = out.data(), .lse = lse.data()});
    StatusOr<AttendStats> s = client_->Attend(std::move(batch)).get();
    ASSERT_TRUE(s.ok()) << s.status();
    // Folds grow a copy of the index: the old one answers meanwhile, never a dense pass.
    EXPECT_EQ(s->dense_heads, 0u) << "step " << t;
  }
  // Wait for the folds, then attend with top-1, a window of 1 and no sinks: once the decode
  // keys are folded (fewer than fold_tokens left outside the index), the strong key (23 tokens
  // back) can only be in the selection because the index returns it first.
  std::vector<float> out(kHq * kD), lse(kHq), with(kHq * kD), lse_with(kHq);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    StatusOr<AttendStats> s = Query(1, 4, L.q_decode.data(), out.data(), lse.data(),
                                    {.sinks = 0, .window = 1, .top_k = 1});
    ASSERT_TRUE(s.ok()) << s.status();
    StatusOr<AttendStats> w = Query(1, 4, L.q_decode.data(), with.data(), lse_with.data(),
                                    {.sinks = 0, .window = steps, .top_k = 100});
    ASSERT_TRUE(w.ok()) << w.status();
    // Folded: at most top-1 + 8 unfolded + 1 window tokens per head, and the index alone
    // finds the strong key, so the two answers' LSEs agree.
    bool same = s->dense_heads == 0 && s->selected_tokens <= kHkv * (1 + 8 + 1);
    for (int i = 0; i < kHq && same; ++i) same = std::fabs(lse[i] - lse_with[i]) < 1.0f;
    if (same) break;
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "decode keys were never folded";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// A worker with an SSD tier and 2.5 % of its V pool in DRAM (about a tenth of this sequence's
// values): dense Attend streams the spilled values and answers exactly as a worker holding
// everything in DRAM; sparse Attend fetches the selected blocks with the locality policy and is
// as accurate as the in-DRAM worker's sparse answer.
TEST_F(RetrievalOffload, SpilledValuesAnswerAsInDram) {
  const ModelSpec spec = Spec();
  const Layer& L = layer_;
  char dir_template[] = "/tmp/attic-spill-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  std::vector<std::string> args = loadgen::WorkerModelArgs(spec);
  for (const char* a : {"--kv-memory-bytes", "64MiB", "--compute-threads", "2", "--busy-poll-us",
                        "0", "--value-dram-fraction", "0.025"}) {
    args.push_back(a);
  }
  args.push_back("--data-dir");
  args.push_back(dir + "/db");
  args.push_back("--retrieval-index-kind");
  args.push_back(std::string(IndexKindName(kKind)));
  loadgen::WorkerProcess ssd_worker(
      {.binary = ATTIC_WORKER_BINARY, .args = args, .name = "ssd"});
  ASSERT_TRUE(ssd_worker.Start(std::chrono::seconds(30)).ok()) << ssd_worker.Log();
  ClientOptions options;
  options.workers = {workers_[0]->data_address(), ssd_worker.data_address()};
  options.spec = spec;
  options.timeout = std::chrono::seconds(60);
  StatusOr<std::unique_ptr<Client>> c = Client::Connect(options);
  ASSERT_TRUE(c.ok()) << c.status();
  std::unique_ptr<Client> client = *std::move(c);
  std::swap(client, client_);  // OpenAndPrefill, Query and WaitReady use client_
  OpenAndPrefill(21, ShardPlan::Single(spec, 0), 4, L);  // all in DRAM
  OpenAndPrefill(22, ShardPlan::Single(spec, 1), 4, L);  // values mostly on SSD
  WaitReady(21, 4, L, 0);
  WaitReady(22, 4, L, 0);

  const int steps = std::min(L.steps, real_ ? 48 : 16);
  double worst_dram = 0, worst_ssd = 0;
  for (int t = 0; t < steps; ++t) {
    const int64_t p = L.indexed + t;
    const float* q = L.q_decode.data() + static_cast<size_t>(t) * kHq * kD;
    const size_t row = static_cast<size_t>(p) * kHkv * kD;
    // Odd steps dense, even steps sparse.
    const bool dense = t % 2 == 1;
    std::vector<float> out(2 * kHq * kD), lse(2 * kHq);
    AttendBatch batch{.layer = 4, .mode = dense ? AttendMode::kDense : AttendMode::kSparse};
    for (uint64_t id : {21u, 22u}) {
      const size_t i = id - 21;
      batch.items.push_back(
          {.id = id, .q = TensorView(q, DType::kFloat32, {kHq, kD}),
           .k_new = TensorView(L.k.data() + row, DType::kFloat32, {kHkv, kD}),
           .v_new = TensorView(L.v.data() + row, DType::kFloat32, {kHkv, kD}),
           .out = out.data() + i * kHq * kD, .lse = lse.data() + i * kHq});
    }
    StatusOr<AttendStats> stats = client_->Attend(std::move(batch)).get();
    ASSERT_TRUE(stats.ok()) << stats.status() << "\n" << ssd_worker.Log();
    if (dense) {
      // Same bytes, same kernel, same chunks: bit-identical.
      ASSERT_EQ(std::memcmp(out.data(), out.data() + kHq * kD, kHq * kD * sizeof(float)), 0)
          << "step " << t;
      ASSERT_EQ(std::memcmp(lse.data(), lse.data() + kHq, kHq * sizeof(float)), 0);
      continue;
    }
    for (int h = 0; h < kHkv; ++h) {
      const HeadKv kv = HeadOf(L, h, p + 1);
      const KvRun all{kv.k.data(), kv.v.data(), static_cast<int>(p + 1)};
      float full[kG * kD], lfull[kG];
      ASSERT_TRUE(DecodeAttention({.q = q + static_cast<size_t>(h) * kG * kD, .group_size = kG,
                                   .head_dim = kD, .dtype = DType::kBFloat16,
                                   .scale = spec.EffectiveScale(), .runs = {&all, 1},
                                   .out = full, .lse = lfull})
                      .ok());
      const size_t off = static_cast<size_t>(h) * kG * kD;
      worst_dram = std::max(worst_dram, RelDiff(out.data() + off, full, kG * kD));
      worst_ssd = std::max(worst_ssd, RelDiff(out.data() + kHq * kD + off, full, kG * kD));
    }
  }
  std::printf("sparse error against full attention: in DRAM %.3f, values on SSD %.3f\n",
              worst_dram, worst_ssd);
  EXPECT_LT(worst_ssd, worst_dram + 0.05);
  std::swap(client, client_);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace attic::testing
