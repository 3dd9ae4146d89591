// The SSD tier through real attic-worker processes: a worker with a data_dir is killed with
// SIGKILL at random points of prefill and decode and restarted on the same directory. Every
// token it acknowledged as durable survives; the resumed sequence answers dense attention over
// what it recovered exactly as the fp64 reference over the tokens the client sent; it continues
// once the lost tokens are sent again. The prefix cache survives a restart, and retrieval
// indexes are rebuilt from the stored query samples. Synthetic data (EngineModel): no
// ../shared needed.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "attention_workers/reference_attention.h"
#include "client/client.h"
#include "common/dtype.h"
#include "services/loadgen/decode_driver.h"
#include "services/loadgen/engine_model.h"
#include "services/loadgen/worker_process.h"
#include "transport/control/http_server.h"

namespace attic::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint64_t kSeed = 20240611;
constexpr int kChunk = 256;                 // prefill tokens per Prefill call
constexpr double kMaxRelativeError = 5e-3;  // as the other offload tests
constexpr double kMaxLseError = 2e-3;

// Small enough that a round (start, prefill, decode, kill, recover, verify) takes about a second
// on two cores: L = 3, Hq = 8, Hkv = 2, D = 128, bf16, B = 64 (1 KiB of K and V per token and
// layer).
ModelSpec Spec() {
  return ModelSpec{.name = "ssd-recovery-test",
                   .num_layers = 3,
                   .num_q_heads = 8,
                   .num_kv_heads = 2,
                   .head_dim = 128,
                   .dtype = DType::kBFloat16,
                   .block_size = 64};
}

// A fresh directory under the test temp dir, removed at destruction.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = ::testing::TempDir() + "/attic-ssd-XXXXXX";
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// fp64 attention of q [Hq, D] over tokens [0, n) of (id, layer): out [Hq, D], lse [Hq].
void Reference(const loadgen::EngineModel& model, uint64_t id, int layer, int64_t n, const float* q,
               std::vector<double>* out, std::vector<double>* lse) {
  const ModelSpec& spec = model.spec();
  const int hkv = spec.num_kv_heads, d = spec.head_dim, g = spec.group_size();
  const size_t count = static_cast<size_t>(n) * static_cast<size_t>(hkv * d);
  std::vector<float> k(count), v(count);
  ConvertToFloat(spec.dtype, model.K(id, layer, 0, n).data(), k.data(), count);
  ConvertToFloat(spec.dtype, model.V(id, layer, 0, n).data(), v.data(), count);
  const double scale = spec.EffectiveScale();
  out->assign(static_cast<size_t>(spec.num_q_heads) * static_cast<size_t>(d), 0.0);
  lse->assign(static_cast<size_t>(spec.num_q_heads), 0.0);
  std::vector<double> logits(static_cast<size_t>(n));
  for (int h = 0; h < spec.num_q_heads; ++h) {
    const int kv = h / g;
    const float* qh = q + static_cast<size_t>(h) * d;
    double top = -INFINITY;
    for (int64_t t = 0; t < n; ++t) {
      const float* kt = k.data() + (static_cast<size_t>(t) * hkv + kv) * d;
      double dot = 0;
      for (int i = 0; i < d; ++i) dot += static_cast<double>(qh[i]) * kt[i];
      logits[static_cast<size_t>(t)] = scale * dot;
      top = std::max(top, scale * dot);
    }
    double sum = 0;
    double* oh = out->data() + static_cast<size_t>(h) * d;
    for (int64_t t = 0; t < n; ++t) {
      const double p = std::exp(logits[static_cast<size_t>(t)] - top);
      sum += p;
      const float* vt = v.data() + (static_cast<size_t>(t) * hkv + kv) * d;
      for (int i = 0; i < d; ++i) oh[i] += p * vt[i];
    }
    for (int i = 0; i < d; ++i) oh[i] /= sum;
    (*lse)[static_cast<size_t>(h)] = top + std::log(sum);
  }
}

// The current query of (id, layer) as the [Hq, D] view Attend takes.
TensorView QueryView(const loadgen::EngineModel& model, uint64_t id, int layer) {
  return TensorView(model.Query(id, layer), DType::kFloat32,
                    {model.spec().num_q_heads, model.spec().head_dim});
}

class SsdRecovery : public ::testing::Test {
 protected:
  void StartWorker(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = loadgen::WorkerModelArgs(spec_);
    args.insert(args.end(), {"--kv-memory-bytes", "64MiB", "--compute-threads", "1", "--log-level",
                             "warn", "--data-dir", dir_.path()});
    args.insert(args.end(), extra.begin(), extra.end());
    worker_ = std::make_unique<loadgen::WorkerProcess>(loadgen::WorkerProcessOptions{
        .binary = ATTIC_WORKER_BINARY, .args = std::move(args), .name = "ssd-w0"});
    const Status s = worker_->Start(seconds(30));
    ASSERT_TRUE(s.ok()) << s;
  }

  void KillAndRestart() {
    StatusOr<int> killed = worker_->Kill(SIGKILL);
    ASSERT_TRUE(killed.ok()) << killed.status();
    const Status s = worker_->Start(seconds(30));
    ASSERT_TRUE(s.ok()) << s;
  }

  // A second worker with its own directory, for head-sharded plans.
  void StartSecondWorker() {
    std::vector<std::string> args = loadgen::WorkerModelArgs(spec_);
    args.insert(args.end(), {"--kv-memory-bytes", "64MiB", "--compute-threads", "1", "--log-level",
                             "warn", "--data-dir", second_dir_.path()});
    second_ = std::make_unique<loadgen::WorkerProcess>(loadgen::WorkerProcessOptions{
        .binary = ATTIC_WORKER_BINARY, .args = std::move(args), .name = "ssd-w1"});
    const Status s = second_->Start(seconds(30));
    ASSERT_TRUE(s.ok()) << s;
  }

  std::unique_ptr<Client> Connect() {
    ClientOptions options;
    options.workers = {worker_->data_address()};
    if (second_ != nullptr) options.workers.push_back(second_->data_address());
    options.spec = spec_;
    options.name = "ssd-recovery-test";
    options.timeout = seconds(20);
    StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(client).value() : nullptr;
  }

  OpenOptions Options(uint64_t id) const {
    return {.id = id, .tenant = "acme", .plan = ShardPlan::Single(spec_, 0)};
  }

  // Dense Attend of (id, layer) without an append, checked against the reference over the
  // first n tokens the client sent.
  void ExpectAttentionOver(Client& client, const loadgen::EngineModel& model, uint64_t id,
                           int layer, int64_t n) {
    SCOPED_TRACE("layer " + std::to_string(layer) + ", " + std::to_string(n) + " tokens");
    std::vector<float> out(static_cast<size_t>(spec_.num_q_heads * spec_.head_dim));
    std::vector<float> lse(static_cast<size_t>(spec_.num_q_heads));
    AttendBatch batch{.layer = layer};
    batch.items.push_back(
        {.id = id, .q = QueryView(model, id, layer), .out = out.data(), .lse = lse.data()});
    StatusOr<AttendStats> stats = client.Attend(std::move(batch)).get();
    ASSERT_TRUE(stats.ok()) << stats.status();
    std::vector<double> ref_o, ref_lse;
    Reference(model, id, layer, n, model.Query(id, layer), &ref_o, &ref_lse);
    EXPECT_LT(RelativeError(out.data(), ref_o.data(), static_cast<int>(out.size())),
              kMaxRelativeError);
    for (size_t h = 0; h < lse.size(); ++h) {
      EXPECT_NEAR(lse[h], ref_lse[h], kMaxLseError) << "head " << h;
    }
  }

  // Sends tokens [from, model length) of (id, layer) again, as one prefill (the client
  // completes a recovered partial tail block token-major).
  Status ReSend(Client& client, const loadgen::EngineModel& model, uint64_t id, int layer,
                int64_t from) {
    const int64_t n = model.Length(id, layer) - from;
    if (n == 0) return OkStatus();
    return client.Prefill(id, layer, from, model.K(id, layer, from, n), model.V(id, layer, from, n))
        .get();
  }

  // Prefills (id) in kChunk-token calls, every layer's chunk in flight together. With
  // kill_chunk >= 0, SIGKILLs the worker `delay` after sending that chunk and stops there.
  // Returns, per layer, the tokens whose prefill the worker acknowledged.
  std::vector<int64_t> Prefill(Client& client, const loadgen::EngineModel& model, uint64_t id,
                               int kill_chunk, std::chrono::microseconds delay) {
    std::vector<int64_t> acked(static_cast<size_t>(spec_.num_layers), 0);
    const int64_t prompt = model.Length(id, 0);
    for (int c = 0; int64_t{c} * kChunk < prompt; ++c) {
      const int64_t first = int64_t{c} * kChunk;
      const int64_t n = std::min<int64_t>(kChunk, prompt - first);
      std::vector<std::future<Status>> pending;
      pending.reserve(static_cast<size_t>(spec_.num_layers));
      for (int layer = 0; layer < spec_.num_layers; ++layer) {
        pending.push_back(client.Prefill(id, layer, first, model.K(id, layer, first, n),
                                         model.V(id, layer, first, n)));
      }
      if (c == kill_chunk) {
        std::this_thread::sleep_for(delay);
        StatusOr<int> killed = worker_->Kill(SIGKILL);
        EXPECT_TRUE(killed.ok()) << killed.status();
      }
      for (int layer = 0; layer < spec_.num_layers; ++layer) {
        const Status s = pending[static_cast<size_t>(layer)].get();
        if (s.ok()) acked[static_cast<size_t>(layer)] = first + n;
        if (c != kill_chunk) {
          EXPECT_TRUE(s.ok()) << s;
        }
      }
      if (c == kill_chunk) break;
    }
    return acked;
  }

  // After a restart: resumes (id), checks what survived against what was acknowledged, checks
  // attention over it, sends the lost tokens again and decodes on with every output checked.
  // `client` is the one that sent the tokens (it resumes over its own entry) or a new one.
  void ResumeAndVerify(Client* client, loadgen::EngineModel& model, uint64_t id,
                       const std::vector<int64_t>& acked) {
    ASSERT_NE(client, nullptr);
    StatusOr<ResumeInfo> info = client->Resume(Options(id)).get();
    ASSERT_TRUE(info.ok()) << info.status();
    ASSERT_EQ(info->lengths.size(), static_cast<size_t>(spec_.num_layers));
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      const auto l = static_cast<size_t>(layer);
      EXPECT_GE(info->lengths[l], acked[l]) << "layer " << layer << " lost acknowledged tokens";
      EXPECT_LE(info->lengths[l], model.Length(id, layer)) << "layer " << layer;
      EXPECT_EQ(info->durable_lengths[l], info->lengths[l]) << "layer " << layer;
      EXPECT_EQ(*client->Length(id, layer), info->lengths[l]);
      if (info->lengths[l] > 0) {
        ExpectAttentionOver(*client, model, id, layer, info->lengths[l]);
      }
    }
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      const Status s = ReSend(*client, model, id, layer, info->lengths[static_cast<size_t>(layer)]);
      ASSERT_TRUE(s.ok()) << "layer " << layer << ": " << s;
      EXPECT_EQ(*client->Length(id, layer), model.Length(id, layer));
    }
    for (int step = 0; step < 2; ++step) {
      for (int layer = 0; layer < spec_.num_layers; ++layer) {
        StatusOr<loadgen::StepResult> r = loadgen::DecodeStep(*client, model, layer, {id}, true);
        ASSERT_TRUE(r.ok()) << r.status();
        EXPECT_LT(r->max_relative_error, kMaxRelativeError) << "layer " << layer;
        EXPECT_LT(r->max_lse_error, kMaxLseError) << "layer " << layer;
      }
    }
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      // Every sealed block is durable once acknowledged.
      const int64_t sealed = model.Length(id, layer) / spec_.block_size * spec_.block_size;
      EXPECT_GE(*client->DurableLength(id, layer), sealed) << "layer " << layer;
    }
    const Status closed = client->Close(id).get();
    EXPECT_TRUE(closed.ok()) << closed;
  }

  // Decode steps of every layer until a random step and layer, where the worker is SIGKILLed
  // `delay` after that step's Attend was sent. Returns the durable lengths acknowledged.
  std::vector<int64_t> DecodeUntilKilled(Client& client, loadgen::EngineModel& model, uint64_t id,
                                         std::mt19937_64& rng, std::chrono::microseconds delay) {
    const int steps = 8 + static_cast<int>(rng() % 72);
    const int kill_layer = static_cast<int>(rng() % static_cast<uint64_t>(spec_.num_layers));
    SCOPED_TRACE("killed at step " + std::to_string(steps) + " layer " +
                 std::to_string(kill_layer));
    for (int step = 0; step <= steps; ++step) {
      for (int layer = 0; layer < spec_.num_layers; ++layer) {
        if (step == steps && layer == kill_layer) break;
        StatusOr<loadgen::StepResult> r =
            loadgen::DecodeStep(client, model, layer, {id}, /*check=*/step % 16 == 0);
        EXPECT_TRUE(r.ok()) << r.status();
        if (r.ok() && r->checked) {
          EXPECT_LT(r->max_relative_error, kMaxRelativeError) << "layer " << layer;
        }
      }
    }
    std::thread step([&] {
      loadgen::DecodeStep(client, model, kill_layer, {id}, false).status().IgnoreError();
    });
    std::this_thread::sleep_for(delay);
    StatusOr<int> killed = worker_->Kill(SIGKILL);
    step.join();
    EXPECT_TRUE(killed.ok()) << killed.status();
    std::vector<int64_t> acked(static_cast<size_t>(spec_.num_layers));
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      acked[static_cast<size_t>(layer)] = *client.DurableLength(id, layer);
    }
    return acked;
  }

  // One round on a fresh sequence: prefill (and, on odd rounds, decode), SIGKILL at a random
  // point of the prefill (even rounds) or the decode, restart, resume and verify.
  void CrashRound(std::mt19937_64& rng, int round) {
    const uint64_t id = 100 + static_cast<uint64_t>(round);
    const bool during_prefill = round % 2 == 0;
    const int prompt = 1600 + static_cast<int>(rng() % 600);  // a partial last block, usually
    const auto delay = std::chrono::microseconds(rng() % 3000);
    SCOPED_TRACE("round " + std::to_string(round) + (during_prefill ? ", prefill" : ", decode") +
                 ", prompt " + std::to_string(prompt) + ", delay " + std::to_string(delay.count()) +
                 " us");
    loadgen::EngineModel model(spec_, kSeed + static_cast<uint64_t>(round));
    model.AddSequence({.id = id, .prompt_tokens = prompt});
    std::unique_ptr<Client> client = Connect();
    ASSERT_NE(client, nullptr);
    ASSERT_TRUE(client->Open(Options(id)).get().ok());
    std::vector<int64_t> acked;
    if (during_prefill) {
      const int chunks = (prompt + kChunk - 1) / kChunk;
      const int kill_chunk = static_cast<int>(rng() % static_cast<uint64_t>(chunks));
      SCOPED_TRACE("killed at chunk " + std::to_string(kill_chunk));
      acked = Prefill(*client, model, id, kill_chunk, delay);
      // Block-major prefill is durable when acknowledged.
      for (int layer = 0; layer < spec_.num_layers; ++layer) {
        EXPECT_EQ(*client->DurableLength(id, layer), acked[static_cast<size_t>(layer)]);
      }
    } else {
      Prefill(*client, model, id, -1, delay);
      acked = DecodeUntilKilled(*client, model, id, rng, delay);
    }
    if (worker_->running()) {  // the kill may have come after the last acknowledgement
      StatusOr<int> killed = worker_->Kill(SIGKILL);
      ASSERT_TRUE(killed.ok()) << killed.status();
    }
    const Status started = worker_->Start(seconds(30));
    ASSERT_TRUE(started.ok()) << started;
    // Every other pair of rounds, an engine that restarted too (a new client).
    if (round % 4 >= 2) client = Connect();
    ResumeAndVerify(client.get(), model, id, acked);
  }

  const ModelSpec spec_ = Spec();
  ScratchDir dir_;
  ScratchDir second_dir_;
  std::unique_ptr<loadgen::WorkerProcess> worker_;
  std::unique_ptr<loadgen::WorkerProcess> second_;
};

// Rounds alternate between a kill during prefill and one during decode, at seeded random
// points (chunk or step, layer, and delay after sending).
TEST_F(SsdRecovery, KilledWorkerKeepsEveryAcknowledgedTokenAndResumes) {
  SCOPED_TRACE("seed " + std::to_string(kSeed));
  std::mt19937_64 rng(kSeed);
  StartWorker();
  for (int round = 0; round < 6; ++round) {
    CrashRound(rng, round);
    if (HasFatalFailure()) return;
  }
}

// The same with a values' DRAM budget below one sequence: values spill to SSD between
// requests, dense Attend streams them back, and recovery starts with them on SSD.
TEST_F(SsdRecovery, KilledWorkerWithSpilledValuesResumes) {
  SCOPED_TRACE("seed " + std::to_string(kSeed + 1));
  std::mt19937_64 rng(kSeed + 1);
  StartWorker({"--value-dram-fraction", "0.05"});  // ~100 of the sequence's ~190 V blocks
  for (int round = 0; round < 4; ++round) {
    CrashRound(rng, round);
    if (HasFatalFailure()) return;
  }
  StatusOr<control::HttpResponse> metrics =
      control::HttpGet(worker_->control_address(), "/metrics", seconds(5));
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const std::string series = "\nattic_worker_kv_spilled_blocks_total ";
  const size_t at = metrics->body.find(series);
  ASSERT_NE(at, std::string::npos) << metrics->body;
  EXPECT_GT(std::stod(metrics->body.substr(at + series.size())), 0) << "nothing spilled";
}

// KV heads split over two workers; only one is killed, so after the restart it holds fewer
// tokens than the other. Resume reports the smaller length; re-sent tokens (appended, then
// prefilled) reach only the shard that lost them.
TEST_F(SsdRecovery, OneOfTwoHeadShardsRestartsAndOnlyItGetsTheLostTokens) {
  StartWorker();
  StartSecondWorker();
  constexpr uint64_t kId = 300;
  constexpr int kPrompt = 1000;  // 15 blocks and 40 tokens
  constexpr int kSteps = 20;     // decode tokens 1000..1019 stay in the unsealed last block
  loadgen::EngineModel model(spec_, kSeed);
  model.AddSequence({.id = kId, .prompt_tokens = kPrompt});
  const OpenOptions options{
      .id = kId, .tenant = "acme", .plan = ShardPlan::SplitHeads(spec_, {0, 1})};
  std::unique_ptr<Client> client = Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Open(options).get().ok());
  Prefill(*client, model, kId, -1, {});
  for (int step = 0; step < kSteps; ++step) {
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      ASSERT_TRUE(loadgen::DecodeStep(*client, model, layer, {kId}, step % 8 == 0).ok());
    }
  }
  for (int layer = 0; layer < spec_.num_layers; ++layer) {
    EXPECT_EQ(*client->DurableLength(kId, layer), kPrompt);  // the decode block is not sealed
  }
  StatusOr<int> killed = second_->Kill(SIGKILL);
  ASSERT_TRUE(killed.ok()) << killed.status();
  const Status started = second_->Start(seconds(30));
  ASSERT_TRUE(started.ok()) << started;

  StatusOr<ResumeInfo> info = client->Resume(options).get();  // the same client
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->lengths, std::vector<int64_t>(3, kPrompt));
  for (int layer = 0; layer < spec_.num_layers; ++layer) {
    // Three tokens appended one by one (the first worker holds them: skipped there), the rest
    // in one prefill (likewise).
    for (int64_t t = kPrompt; t < kPrompt + 3; ++t) {
      const TensorView k = model.K(kId, layer, t, 1), v = model.V(kId, layer, t, 1);
      const Status s =
          client
              ->Append(kId, layer,
                       TensorView(k.data(), spec_.dtype, {spec_.num_kv_heads, spec_.head_dim}),
                       TensorView(v.data(), spec_.dtype, {spec_.num_kv_heads, spec_.head_dim}))
              .get();
      ASSERT_TRUE(s.ok()) << s;
    }
    const Status s = ReSend(*client, model, kId, layer, kPrompt + 3);
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(*client->Length(kId, layer), kPrompt + kSteps);
    ExpectAttentionOver(*client, model, kId, layer, kPrompt + kSteps);
  }
  for (int step = 0; step < 2; ++step) {
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      StatusOr<loadgen::StepResult> r = loadgen::DecodeStep(*client, model, layer, {kId}, true);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_LT(r->max_relative_error, kMaxRelativeError) << "layer " << layer;
    }
  }
  EXPECT_TRUE(client->Close(kId).get().ok());
}

TEST_F(SsdRecovery, ResumeChecksTheRecoveredSequence) {
  StartWorker();
  loadgen::EngineModel model(spec_, kSeed);
  model.AddSequence({.id = 7, .prompt_tokens = 300});
  {
    std::unique_ptr<Client> client = Connect();
    ASSERT_NE(client, nullptr);
    ASSERT_TRUE(client->Open(Options(7)).get().ok());
    Prefill(*client, model, 7, -1, {});
    // Without a restart, another client (an engine that restarted) takes the open sequence
    // over as it is.
    std::unique_ptr<Client> other = Connect();
    StatusOr<ResumeInfo> r = other->Resume(Options(7)).get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->lengths, (std::vector<int64_t>(3, 300)));
  }
  KillAndRestart();
  std::unique_ptr<Client> client = Connect();
  ASSERT_NE(client, nullptr);
  Status open = client->Open(Options(7)).get();
  EXPECT_EQ(open.code(), StatusCode::kAlreadyExists) << open;
  EXPECT_NE(open.message().find("open it with resume"), std::string::npos) << open;
  StatusOr<ResumeInfo> r = client->Resume(Options(8)).get();
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound) << r.status();
  OpenOptions wrong = Options(7);
  wrong.tenant = "other";
  r = client->Resume(wrong).get();
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("tenant"), std::string::npos) << r.status();
  // A failed Resume changes nothing: the right one still works, and may be repeated by
  // another client (one that lost the reply).
  r = client->Resume(Options(7)).get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->lengths, (std::vector<int64_t>(3, 300)));
  std::unique_ptr<Client> again = Connect();
  EXPECT_TRUE(again->Resume(Options(7)).get().ok());
  for (int layer = 0; layer < spec_.num_layers; ++layer) {
    ExpectAttentionOver(*client, model, 7, layer, 300);
  }
  EXPECT_TRUE(client->Close(7).get().ok());
}

TEST_F(SsdRecovery, PrefixCacheSurvivesRestart) {
  StartWorker();
  loadgen::EngineModel model(spec_, kSeed);
  constexpr int kShared = 1024;
  model.AddSequence({.id = 1,
                     .prompt_tokens = kShared + 100,
                     .shared_prefix_tokens = kShared,
                     .prefix_content = 77});
  model.AddSequence({.id = 2,
                     .prompt_tokens = kShared + 50,
                     .shared_prefix_tokens = kShared,
                     .prefix_content = 77});
  {
    std::unique_ptr<Client> client = Connect();
    ASSERT_NE(client, nullptr);
    StatusOr<PrefixMatch> a =
        loadgen::OpenAndPrefill(*client, model, 1, ShardPlan::Single(spec_, 0), "acme");
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->matched_tokens, 0);
    ASSERT_TRUE(client->Close(1).get().ok());
  }
  KillAndRestart();
  std::unique_ptr<Client> client = Connect();
  ASSERT_NE(client, nullptr);
  StatusOr<PrefixMatch> b =
      loadgen::OpenAndPrefill(*client, model, 2, ShardPlan::Single(spec_, 0), "acme");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->matched_tokens, kShared);
  for (int layer = 0; layer < spec_.num_layers; ++layer) {
    StatusOr<loadgen::StepResult> r = loadgen::DecodeStep(*client, model, layer, {2}, true);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_LT(r->max_relative_error, kMaxRelativeError) << "layer " << layer;
  }
  EXPECT_TRUE(client->Close(2).get().ok());
}

// Sparse Attend of every layer of (id) without an append; the heads answered densely.
StatusOr<uint64_t> SparseDenseHeads(Client& client, const loadgen::EngineModel& model,
                                    uint64_t id) {
  const ModelSpec& spec = model.spec();
  uint64_t dense = 0;
  for (int layer = 0; layer < spec.num_layers; ++layer) {
    std::vector<float> out(static_cast<size_t>(spec.num_q_heads * spec.head_dim));
    std::vector<float> lse(static_cast<size_t>(spec.num_q_heads));
    AttendBatch batch{.layer = layer, .mode = AttendMode::kSparse};
    batch.items.push_back(
        {.id = id, .q = QueryView(model, id, layer), .out = out.data(), .lse = lse.data()});
    ASSIGN_OR_RETURN(AttendStats stats, client.Attend(std::move(batch)).get());
    dense += stats.dense_heads;
  }
  return dense;
}

// Polls until every head of (id) is answered from an index, up to `timeout`.
bool WaitSparse(Client& client, const loadgen::EngineModel& model, uint64_t id,
                std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    StatusOr<uint64_t> dense = SparseDenseHeads(client, model, id);
    EXPECT_TRUE(dense.ok()) << dense.status();
    if (!dense.ok()) return false;
    if (*dense == 0) return true;
    std::this_thread::sleep_for(milliseconds(100));
  }
  return false;
}

TEST_F(SsdRecovery, RetrievalIndexesAreRebuiltFromTheStoredSample) {
  StartWorker({"--retrieval-min-tokens", "256", "--retrieval-profile-heads=false"});
  loadgen::EngineModel model(spec_, kSeed);
  constexpr int kPrompt = 2048;
  constexpr int kSample = 64;
  model.AddSequence({.id = 5, .prompt_tokens = kPrompt});
  // Prefill queries: peaked like the model's own, at every 32nd position.
  std::mt19937 rng(kSeed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> q(static_cast<size_t>(kSample * spec_.num_q_heads * spec_.head_dim));
  for (float& x : q) x = normal(rng);
  std::vector<int64_t> positions(kSample);
  for (int i = 0; i < kSample; ++i)
    positions[static_cast<size_t>(i)] = int64_t{i} * (kPrompt / kSample);
  const TensorView sample(q.data(), DType::kFloat32, {kSample, spec_.num_q_heads, spec_.head_dim});
  {
    std::unique_ptr<Client> client = Connect();
    ASSERT_NE(client, nullptr);
    ASSERT_TRUE(client->Open(Options(5)).get().ok());
    Prefill(*client, model, 5, -1, {});
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      const Status s = client->BuildIndex(5, layer, sample, positions).get();
      ASSERT_TRUE(s.ok()) << s;
    }
    ASSERT_TRUE(WaitSparse(*client, model, 5, seconds(30))) << "indexes never became ready";
  }
  KillAndRestart();
  std::unique_ptr<Client> client = Connect();
  ASSERT_NE(client, nullptr);
  StatusOr<ResumeInfo> info = client->Resume(Options(5)).get();
  ASSERT_TRUE(info.ok()) << info.status();
  // No BuildIndex after the restart: the worker rebuilds from what it stored.
  EXPECT_TRUE(WaitSparse(*client, model, 5, seconds(30)))
      << "indexes were not rebuilt after the restart\n"
      << worker_->Log();
  StatusOr<control::HttpResponse> metrics =
      control::HttpGet(worker_->control_address(), "/metrics", seconds(5));
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_NE(metrics->body.find("attic_worker_recovered_sequences 1"), std::string::npos)
      << metrics->body;
  EXPECT_TRUE(client->Close(5).get().ok());
}

}  // namespace
}  // namespace attic::testing
