// Running an AttendPlan: split-K chunks merged into the caller's rows against the fp64
// reference, spilled values loaded through the loader, errors per head, sparse tasks handed
// to their runner, and no allocation once the workspace is sized.
#include "attention_workers/attend_run.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "attention_workers/reference_attention.h"
#include "common/thread_annotations.h"
#include "tests/attention_workers/kv_fixture.h"

// Counts allocations while armed (the no-allocation test); otherwise only forwards to malloc.
// GCC cannot see that every new of this binary is this one, and warns where it inlines both.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
namespace {
std::atomic<bool> g_count_allocations{false};
std::atomic<int64_t> g_allocations{0};
}  // namespace

void* operator new(size_t n) {
  if (g_count_allocations.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace attic {
namespace {

using testing::BlockedKv;
using testing::RandomBlockedKv;
using testing::RandomNormal;

constexpr int kG = 4;
constexpr int kD = 128;
constexpr int kBlock = 64;
constexpr DType kDtype = DType::kBFloat16;
const float kScale = 1.0f / std::sqrt(static_cast<float>(kD));

// Loads values from the heads' full copies and records what it was asked.
class CopyLoader : public ValueLoader {
 public:
  explicit CopyLoader(std::vector<const BlockedKv*> heads) : heads_(std::move(heads)) {}
  Status LoadValues(uint32_t head, std::span<const int32_t> blocks,
                    std::span<std::byte* const> dst, uint64_t* ssd_bytes) override {
    if (head == fail_head_) return DataLossError("block checksum mismatch");
    const BlockedKv& kv = *heads_[head];
    for (size_t i = 0; i < blocks.size(); ++i) {
      const std::vector<std::byte>& v = kv.v_blocks[static_cast<size_t>(blocks[i])];
      std::memcpy(dst[i], v.data(), v.size());
      *ssd_bytes += v.size();
      loaded_.fetch_add(1);
    }
    return OkStatus();
  }
  int loaded() const { return loaded_.load(); }
  uint32_t fail_head_ = UINT32_MAX;

 private:
  std::vector<const BlockedKv*> heads_;
  std::atomic<int> loaded_{0};
};

struct Case {
  std::vector<BlockedKv> kv;
  std::vector<std::vector<KvRun>> runs;  // per head, possibly with values dropped
  std::vector<float> q;                  // [heads][G][D]
  std::vector<float> out, lse;           // [heads][G][D], [heads][G]
  std::vector<AttendHead> heads;
  std::vector<AttendHeadIo> io;

  Case(std::vector<int> tokens, uint64_t seed) {
    const size_t n = tokens.size();
    for (size_t h = 0; h < n; ++h) kv.push_back(RandomBlockedKv(tokens[h], kD, kBlock, kDtype, seed + 7 * h));
    runs.resize(n);
    for (size_t h = 0; h < n; ++h) runs[h] = kv[h].runs;
    q = RandomNormal(n * kG * kD, seed + 99);
    out.assign(n * kG * kD, -7.0f);
    lse.assign(n * kG, -7.0f);
  }
  void Finish(std::vector<HeadMode> modes = {}) {
    heads.clear();
    io.clear();
    for (size_t h = 0; h < runs.size(); ++h) {
      heads.push_back({.runs = runs[h], .mode = h < modes.size() ? modes[h] : HeadMode::kDense});
      io.push_back({.q = q.data() + h * kG * kD, .out = out.data() + h * kG * kD,
                    .lse = lse.data() + h * kG});
    }
  }
  void ExpectHeadMatches(size_t h) const {
    std::vector<double> o_ref(kG * kD), lse_ref(kG);
    ReferenceAttention(q.data() + h * kG * kD, kG, kD, kScale, kDtype, kv[h].runs, o_ref.data(),
                       lse_ref.data());
    EXPECT_LT(RelativeError(out.data() + h * kG * kD, o_ref.data(), kG * kD), 5e-3) << "head " << h;
    for (int g = 0; g < kG; ++g) {
      EXPECT_NEAR(lse[h * kG + static_cast<size_t>(g)], lse_ref[static_cast<size_t>(g)], 1e-3)
          << "head " << h;
    }
  }
};

AttendRunParams Params(const AttendPlan& plan, const Case& c, ThreadPool* pool,
                       ValueLoader* values = nullptr, SparseTaskRunner* sparse = nullptr) {
  return {.plan = &plan,
          .io = c.io,
          .group_size = kG,
          .head_dim = kD,
          .dtype = kDtype,
          .scale = kScale,
          .block_bytes = static_cast<size_t>(kBlock) * kD * DTypeSize(kDtype),
          .values = values,
          .sparse = sparse,
          .pool = pool};
}

TEST(AttendRun, MergedChunksMatchTheReference) {
  Case c({5000, 1000, 64, 0}, 11);
  c.Finish();
  ThreadPool pool({.num_threads = 4});
  AttendPlan plan;
  // Small chunks: the 5000-token head becomes several tasks merged by LSE.
  PlanAttend(c.heads, {.threads = 4, .tasks_per_thread = 4, .min_chunk_tokens = 256}, &plan);
  ASSERT_GT(plan.HeadTasks(0).size(), 3u);
  AttendWorkspace ws;
  const AttendRunParams p = Params(plan, c, &pool);
  ws.Prepare(p);
  RunAttend(p, &ws);
  for (size_t h = 0; h < 4; ++h) {
    ASSERT_TRUE(ws.head_status(h).ok()) << ws.head_status(h).ToString();
  }
  for (size_t h = 0; h < 3; ++h) c.ExpectHeadMatches(h);
  // No tokens: the merge identity.
  EXPECT_TRUE(std::isinf(c.lse[3 * kG]) && c.lse[3 * kG] < 0);
  EXPECT_EQ(c.out[3 * kG * kD], 0.0f);
  uint64_t keys = 0;
  for (size_t t = 0; t < plan.tasks.size(); ++t) keys += ws.task_figures(t).keys;
  EXPECT_EQ(keys, 5000u + 1000u + 64u);
}

TEST(AttendRun, SpilledValuesAreLoadedBeforeTheKernel) {
  Case c({3000, 2000}, 21);
  // Blocks without values in DRAM: the run must load exactly these.
  for (int b : {0, 5, 17, 46}) c.runs[0][static_cast<size_t>(b)].v = nullptr;
  for (int b : {31}) c.runs[1][static_cast<size_t>(b)].v = nullptr;
  c.Finish();
  ThreadPool pool({.num_threads = 2});
  CopyLoader loader({&c.kv[0], &c.kv[1]});
  AttendPlan plan;
  PlanAttend(c.heads, {.threads = 2, .tasks_per_thread = 2, .min_chunk_tokens = 512}, &plan);
  AttendWorkspace ws;
  const AttendRunParams p = Params(plan, c, &pool, &loader);
  ws.Prepare(p);
  RunAttend(p, &ws);
  ASSERT_TRUE(ws.head_status(0).ok()) << ws.head_status(0).ToString();
  ASSERT_TRUE(ws.head_status(1).ok()) << ws.head_status(1).ToString();
  EXPECT_EQ(loader.loaded(), 5);
  c.ExpectHeadMatches(0);
  c.ExpectHeadMatches(1);
  uint64_t ssd = 0;
  for (size_t t = 0; t < plan.tasks.size(); ++t) ssd += ws.task_figures(t).ssd_bytes;
  EXPECT_EQ(ssd, 5u * kBlock * kD * DTypeSize(kDtype));
  // The views themselves still say "on SSD": nothing was made resident.
  EXPECT_EQ(c.runs[0][5].v, nullptr);
}

TEST(AttendRun, AFailedLoadFailsItsHeadOnly) {
  Case c({2000, 2000}, 31);
  c.runs[0][3].v = nullptr;
  c.runs[1][3].v = nullptr;
  c.Finish();
  ThreadPool pool({.num_threads = 2});
  CopyLoader loader({&c.kv[0], &c.kv[1]});
  loader.fail_head_ = 1;
  AttendPlan plan;
  PlanAttend(c.heads, {.threads = 2}, &plan);
  AttendWorkspace ws;
  const AttendRunParams p = Params(plan, c, &pool, &loader);
  ws.Prepare(p);
  RunAttend(p, &ws);
  EXPECT_TRUE(ws.head_status(0).ok());
  EXPECT_EQ(ws.head_status(1).code(), StatusCode::kDataLoss);
  c.ExpectHeadMatches(0);
}

TEST(AttendRun, SpilledBlocksWithoutALoaderAreAnError) {
  Case c({200}, 41);
  c.runs[0][1].v = nullptr;
  c.Finish();
  ThreadPool pool({.num_threads = 1});
  AttendPlan plan;
  PlanAttend(c.heads, {.threads = 1}, &plan);
  AttendWorkspace ws;
  const AttendRunParams p = Params(plan, c, &pool);
  ws.Prepare(p);
  RunAttend(p, &ws);
  EXPECT_EQ(ws.head_status(0).code(), StatusCode::kInternal);
}

// Answers sparse tasks with the dense result over their blocks, and records the calls.
class DenseAsSparse : public SparseTaskRunner {
 public:
  Status RunSparse(const AttendRunParams& params, size_t index, const PlanTask& task,
                   const float* q, float* out, float* lse, TaskFigures* figures) override {
    indices.push_back(index);
    queries.push_back(q);
    figures->fell_back = true;
    return AttendDense(params, task.head, task.runs, 0, {}, &staging, q, out, lse, figures);
  }
  std::vector<size_t> indices;
  std::vector<const float*> queries;
  DenseStaging staging;
};

TEST(AttendRun, SparseTasksGoToTheirRunner) {
  Case c({3000, 3000}, 51);
  c.Finish({HeadMode::kDense, HeadMode::kSparse});
  ThreadPool pool({.num_threads = 1});  // one thread: the runner's vectors need no lock
  DenseAsSparse sparse;
  AttendPlan plan;
  PlanAttend(c.heads, {.threads = 2, .min_chunk_tokens = 256}, &plan);
  AttendWorkspace ws;
  const AttendRunParams p = Params(plan, c, &pool, nullptr, &sparse);
  ws.Prepare(p);
  RunAttend(p, &ws);
  ASSERT_EQ(sparse.indices.size(), 1u);
  EXPECT_EQ(sparse.indices[0], plan.head_tasks[1]);
  EXPECT_EQ(sparse.queries[0], c.io[1].q);
  EXPECT_TRUE(ws.task_figures(plan.head_tasks[1]).fell_back);
  c.ExpectHeadMatches(0);
  c.ExpectHeadMatches(1);
}

TEST(AttendRun, NothingIsAllocatedOnceTheWorkspaceIsSized) {
  Case c({4096, 4096, 1500}, 61);
  c.runs[2][4].v = nullptr;
  c.Finish();
  ThreadPool pool({.num_threads = 2});
  CopyLoader loader({&c.kv[0], &c.kv[1], &c.kv[2]});
  AttendPlan plan;
  PlanAttend(c.heads, {.threads = 2, .tasks_per_thread = 4, .min_chunk_tokens = 512}, &plan);
  AttendWorkspace ws;
  const AttendRunParams p = Params(plan, c, &pool, &loader);
  ws.Prepare(p);
  RunAttend(p, &ws);  // warm: the pool's own bookkeeping reaches its size
  ws.Prepare(p);
  g_allocations.store(0);
  g_count_allocations.store(true);
  RunAttend(p, &ws);
  g_count_allocations.store(false);
  EXPECT_EQ(g_allocations.load(), 0);
  for (size_t h = 0; h < 3; ++h) c.ExpectHeadMatches(h);
}

}  // namespace
}  // namespace attic
