// RetrievalState against a real KvStore: the stand-in index serves a head while the index
// asked for is still being built (held back by the test through before_slow_job), is folded
// forward meanwhile, and is dropped once the real index is installed; without a stand-in the
// head stays dense until then.
#include "services/worker/retrieval_state.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "attention_workers/retrieval/key_index.h"
#include "attention_workers/retrieval/scoring.h"
#include "common/model_spec.h"
#include "common/tensor_view.h"
#include "kvstore/kv_store.h"

namespace attic::worker_internal {
namespace {

constexpr int kTokens = 4096;
constexpr int kD = 64;
constexpr int kG = 4;

ModelSpec Spec() {
  return ModelSpec{.name = "stand-in",
                   .num_layers = 1,
                   .num_q_heads = kG,
                   .num_kv_heads = 1,
                   .head_dim = kD,
                   .dtype = DType::kBFloat16,
                   .block_size = 64};
}

// A gate the slow build thread waits at until the test opens it.
class Gate {
 public:
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return open_; });
  }
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

class RetrievalStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StatusOr<std::unique_ptr<KvStore>> store =
        KvStore::Open({.block_bytes = Spec().block_bytes(), .k_pool_blocks = 256,
                       .v_pool_blocks = 256});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    ASSERT_TRUE(store_->OpenSequence({.id = 1, .tenant = "t", .spec = Spec()}).ok());
    Append(kTokens);
  }

  // Appends n tokens of random K/V (the keys are kept for the exact search).
  void Append(int n) {
    std::normal_distribution<float> normal;
    std::vector<float> k(static_cast<size_t>(n) * kD), v(k.size());
    for (float& x : k) x = normal(rng_);
    for (float& x : v) x = normal(rng_);
    ASSERT_TRUE(store_
                    ->AppendTokens(1, 0, TensorView(k.data(), DType::kFloat32, {n, 1, kD}),
                                   TensorView(v.data(), DType::kFloat32, {n, 1, kD}))
                    .ok());
    length_ += n;
  }

  // samples: prefill sample queries (64 is too few for the build's recall check, 256 the least
  // that makes one), at positions spread over the last `samples` tokens.
  std::unique_ptr<RetrievalState> MakeState(std::optional<IndexKind> stand_in,
                                            int samples = 64, int guard_checks = 4) {
    RetrievalConfig config;
    config.recall_guard_checks = guard_checks;
    config.kind = IndexKind::kGraph;
    config.stand_in = stand_in;
    config.profile_heads = false;
    config.fold_tokens = 64;
    config.before_slow_job = [this] { gate_.Wait(); };
    auto state = std::make_unique<RetrievalState>(store_.get(), Spec(), config);
    // A prefill sample: queries near keys, as a real model's are.
    std::normal_distribution<float> normal;
    std::vector<float> q(static_cast<size_t>(samples) * kG * kD);
    for (float& x : q) x = normal(rng_);
    std::vector<int32_t> positions(static_cast<size_t>(samples));
    for (int i = 0; i < samples; ++i) positions[static_cast<size_t>(i)] = kTokens - samples + i;
    state->AddSample(1, 0, 1, std::move(q), std::move(positions));
    return state;
  }

  // Plans until the head answers sparse (a stand-in or index is installed), within 30 s.
  HeadPlan WaitSparse(RetrievalState& state) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    HeadPlan plan = HeadPlan::kDenseNotReady;
    while (std::chrono::steady_clock::now() < give_up) {
      plan = state.Plan(1, 0, 0, 1, IndexKind::kGraph, length_);
      if (plan == HeadPlan::kSparse) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return plan;
  }

  // Recall@k of the lease's index for a random query group against the exact top-k.
  double Recall(const retrieval::KeyIndex& index) {
    std::vector<BlockView> views;
    EXPECT_TRUE(store_->ReadBlocks(1, 0, 0, &views).ok());
    std::vector<const std::byte*> blocks;
    for (const BlockView& b : views) blocks.push_back(b.k);
    const retrieval::KeyRows rows{.blocks = blocks,
                                  .block_size = Spec().block_size,
                                  .head_dim = kD,
                                  .dtype = DType::kBFloat16,
                                  .count = length_};
    std::normal_distribution<float> normal;
    std::vector<float> q(static_cast<size_t>(kG) * kD);
    for (float& x : q) x = normal(rng_);
    const retrieval::GroupScorer scorer({.q = q.data(), .group_size = kG, .head_dim = kD},
                                        DType::kBFloat16);
    retrieval::SearchResult got, want;
    EXPECT_TRUE(index.Search(rows, scorer, {.top_k = 32}, &got).ok());
    StatusOr<std::unique_ptr<retrieval::KeyIndex>> exact =
        retrieval::BuildKeyIndex(IndexKind::kExact, rows, {});
    EXPECT_TRUE(exact.ok());
    EXPECT_TRUE((*exact)->Search(rows, scorer, {.top_k = 32}, &want).ok());
    int hits = 0;
    for (int32_t p : want.positions) {
      hits += std::count(got.positions.begin(), got.positions.end(), p) > 0 ? 1 : 0;
    }
    return static_cast<double>(hits) / static_cast<double>(want.positions.size());
  }

  std::mt19937 rng_{7};
  Gate gate_;
  int64_t length_ = 0;
  std::unique_ptr<KvStore> store_;
};

TEST_F(RetrievalStateTest, StandInServesUntilTheIndexIsBuiltThenGoes) {
  std::unique_ptr<RetrievalState> state = MakeState(IndexKind::kQuantized);
  state->RequestBuild(1, 0, 1, IndexKind::kGraph);
  // The graph build waits at the gate; the stand-in is built on its own thread meanwhile.
  ASSERT_EQ(WaitSparse(*state), HeadPlan::kSparse);
  {
    RetrievalState::Lease lease = state->Acquire(1, 0, 0, IndexKind::kGraph);
    ASSERT_NE(lease.index, nullptr);
    EXPECT_TRUE(lease.stand_in);
    EXPECT_EQ(lease.index->kind(), IndexKind::kQuantized);
    EXPECT_EQ(lease.index->size(), kTokens);
    EXPECT_GE(Recall(*lease.index), 0.9);
  }
  EXPECT_EQ(state->stats().stand_ins, 1);

  // Decode keys past fold_tokens fold into the stand-in while the graph is still held back.
  Append(100);
  EXPECT_EQ(state->Plan(1, 0, 0, 1, IndexKind::kGraph, length_), HeadPlan::kSparse);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int64_t folded = 0;
  while (std::chrono::steady_clock::now() < give_up) {
    RetrievalState::Lease lease = state->Acquire(1, 0, 0, IndexKind::kGraph);
    folded = lease.index->size();
    if (folded == length_) break;
    lease = {};
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(folded, length_);

  gate_.Open();
  state->WaitIdle();
  RetrievalState::Lease lease = state->Acquire(1, 0, 0, IndexKind::kGraph);
  ASSERT_NE(lease.index, nullptr);
  EXPECT_FALSE(lease.stand_in);
  EXPECT_EQ(lease.index->kind(), IndexKind::kGraph);
  // Random keys and queries are the graph's worst case (no structure to learn): a loose bound.
  EXPECT_GE(Recall(*lease.index), 0.7);
  lease = {};
  const RetrievalState::Stats st = state->stats();
  EXPECT_EQ(st.stand_ins, 0) << "the stand-in outlived the index it stood in for";
  EXPECT_EQ(st.indexes, 1);
}

TEST_F(RetrievalStateTest, WithoutAStandInTheHeadIsDenseUntilBuilt) {
  std::unique_ptr<RetrievalState> state = MakeState(std::nullopt);
  state->RequestBuild(1, 0, 1, IndexKind::kGraph);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(state->Plan(1, 0, 0, 1, IndexKind::kGraph, length_), HeadPlan::kDenseNotReady);
  EXPECT_EQ(state->Acquire(1, 0, 0, IndexKind::kGraph).index, nullptr);
  EXPECT_EQ(state->stats().stand_ins, 0);
  gate_.Open();
  state->WaitIdle();
  EXPECT_EQ(state->Plan(1, 0, 0, 1, IndexKind::kGraph, length_), HeadPlan::kSparse);
  RetrievalState::Lease lease = state->Acquire(1, 0, 0, IndexKind::kGraph);
  ASSERT_NE(lease.index, nullptr);
  EXPECT_FALSE(lease.stand_in);
}

TEST_F(RetrievalStateTest, AKindThatIsItsOwnStandInIsBuiltOnce) {
  std::unique_ptr<RetrievalState> state = MakeState(IndexKind::kQuantized);
  gate_.Open();
  state->RequestBuild(1, 0, 1, IndexKind::kQuantized);
  state->WaitIdle();
  RetrievalState::Lease lease = state->Acquire(1, 0, 0, IndexKind::kQuantized);
  ASSERT_NE(lease.index, nullptr);
  EXPECT_FALSE(lease.stand_in);
  lease = {};
  const RetrievalState::Stats st = state->stats();
  EXPECT_EQ(st.builds, 1u);
  EXPECT_EQ(st.stand_ins, 0);
}

// The recall guard: sampled checks below recall_target raise the head's search effort, up to
// the largest beam its build check tried; a miss there replaces the graph by the 4-bit scan,
// and a miss of the scan answers the head densely.
TEST_F(RetrievalStateTest, RecallGuardRaisesTheEffortThenScansThenGoesDense) {
  constexpr IndexKind kGraph = IndexKind::kGraph;
  std::unique_ptr<RetrievalState> state =
      MakeState(std::nullopt, /*samples=*/512, /*guard_checks=*/2);
  gate_.Open();
  state->RequestBuild(1, 0, 1, kGraph);
  state->WaitIdle();
  ASSERT_EQ(state->Plan(1, 0, 0, 1, kGraph, length_), HeadPlan::kSparse);
  std::shared_ptr<retrieval::RecallGuard> guard;
  int calibrated = 0;
  {
    RetrievalState::Lease lease = state->Acquire(1, 0, 0, kGraph);
    ASSERT_NE(lease.index, nullptr);
    ASSERT_EQ(lease.index->kind(), kGraph);
    ASSERT_NE(lease.guard, nullptr) << "a calibrated graph is guarded";
    guard = lease.guard;
    ASSERT_TRUE(lease.index->calibration().has_value());
    calibrated = lease.index->calibration()->effort;
  }
  EXPECT_EQ(guard->effort(), 0);
  // Checks at target leave it alone.
  for (int i = 0; i < 4; ++i) state->ReportRecall(1, 0, 0, kGraph, *guard, 100, 100);
  EXPECT_EQ(guard->effort(), 0);
  EXPECT_EQ(state->stats().guard_raised, 0u);
  // Two checks below target: raised by half.
  state->ReportRecall(1, 0, 0, kGraph, *guard, 100, 80);
  EXPECT_EQ(guard->effort(), 0) << "one check is not enough";
  state->ReportRecall(1, 0, 0, kGraph, *guard, 100, 90);
  EXPECT_EQ(guard->effort(), calibrated + calibrated / 2);
  EXPECT_EQ(state->stats().guard_raised, 1u);
  // Missing on and on: raised up to the largest beam, then the graph is replaced by the scan.
  for (int i = 0; i < 40 && !guard->dense(); ++i) {
    state->ReportRecall(1, 0, 0, kGraph, *guard, 100, 0);
  }
  ASSERT_TRUE(guard->dense());
  state->WaitIdle();
  EXPECT_EQ(state->stats().guard_scan, 1u);
  EXPECT_EQ(state->Plan(1, 0, 0, 1, kGraph, length_), HeadPlan::kSparse);
  std::shared_ptr<retrieval::RecallGuard> scan_guard;
  {
    RetrievalState::Lease lease = state->Acquire(1, 0, 0, kGraph);
    ASSERT_NE(lease.index, nullptr);
    EXPECT_EQ(lease.index->kind(), IndexKind::kQuantized);
    EXPECT_GE(Recall(*lease.index), 0.95) << "the scan re-ranks 800 keys";
    ASSERT_NE(lease.guard, nullptr);
    EXPECT_NE(lease.guard, guard);
    scan_guard = lease.guard;
  }
  // The scan missing too: dense from then on.
  for (int i = 0; i < 2; ++i) state->ReportRecall(1, 0, 0, kGraph, *scan_guard, 100, 0);
  state->WaitIdle();
  const RetrievalState::Stats st = state->stats();
  EXPECT_EQ(st.guard_scan, 1u);
  EXPECT_EQ(st.guard_dense, 1u);
  EXPECT_EQ(state->Plan(1, 0, 0, 1, kGraph, length_), HeadPlan::kDenseDiffuse);
}

TEST_F(RetrievalStateTest, NoGuardWithoutACalibrationOrWhenOff) {
  gate_.Open();
  for (const auto& [samples, checks] : {std::pair{64, 4}, std::pair{512, 0}}) {
    std::unique_ptr<RetrievalState> state = MakeState(std::nullopt, samples, checks);
    state->RequestBuild(1, 0, 1, IndexKind::kGraph);
    state->WaitIdle();
    RetrievalState::Lease lease = state->Acquire(1, 0, 0, IndexKind::kGraph);
    ASSERT_NE(lease.index, nullptr);
    EXPECT_EQ(lease.guard, nullptr) << samples << " samples, guard checks " << checks;
  }
}

TEST_F(RetrievalStateTest, ForgetWhileTheSlowBuildIsHeldDropsEverything) {
  std::unique_ptr<RetrievalState> state = MakeState(IndexKind::kQuantized);
  state->RequestBuild(1, 0, 1, IndexKind::kGraph);
  ASSERT_EQ(WaitSparse(*state), HeadPlan::kSparse);
  gate_.Open();  // Forget waits for the build in flight
  state->Forget(1);
  state->WaitIdle();
  EXPECT_EQ(state->Acquire(1, 0, 0, IndexKind::kGraph).index, nullptr);
  EXPECT_EQ(state->stats().indexes, 0);
}

}  // namespace
}  // namespace attic::worker_internal
