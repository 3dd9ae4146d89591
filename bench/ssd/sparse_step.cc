#include "bench/ssd/sparse_step.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <span>

#include "common/model_spec.h"
#include "common/tensor_view.h"
#include "kvstore/kv_store.h"

namespace attic::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kSeq = 1;
constexpr int kChunkBlocks = 32;  // blocks per AppendPrefill
constexpr int kWarmSteps = 10;

ModelSpec StepSpec(int head_dim) {
  return ModelSpec{.name = "sparse-step",
                   .num_layers = 1,
                   .num_q_heads = 4,
                   .num_kv_heads = 1,
                   .head_dim = head_dim,
                   .dtype = DType::kBFloat16,
                   .block_size = 64};
}

// A store whose one sequence holds context_blocks blocks, every value spilled: a budget of
// one value block puts both watermarks at 0, so each Maintain spills every resident value.
StatusOr<std::unique_ptr<KvStore>> OpenSpilledStore(const SparseStepOptions& o, int read_threads,
                                                    const std::string& dir) {
  const ModelSpec spec = StepSpec(o.head_dim);
  KvStoreOptions ko;
  ko.block_bytes = spec.block_bytes();
  ko.k_pool_blocks = ko.v_pool_blocks = o.context_blocks + kChunkBlocks;
  ko.ssd.path = dir;
  ko.ssd.direct_io = o.direct_io;
  ko.ssd.read_threads = read_threads;
  ko.value_dram_blocks = 1;
  ASSIGN_OR_RETURN(std::unique_ptr<KvStore> store, KvStore::Open(ko));
  RETURN_IF_ERROR(store->OpenSequence({.id = kSeq, .tenant = "bench", .spec = spec}));
  std::vector<std::byte> k(static_cast<size_t>(kChunkBlocks) * spec.block_bytes());
  std::vector<std::byte> v(k.size());
  std::mt19937_64 rng(5);
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = static_cast<std::byte>(rng());
    v[i] = static_cast<std::byte>(rng());
  }
  const std::initializer_list<int64_t> shape = {1, kChunkBlocks, spec.block_size, spec.head_dim};
  for (int b = 0; b < o.context_blocks; b += kChunkBlocks) {
    RETURN_IF_ERROR(store->AppendPrefill(kSeq, 0, TensorView(k.data(), spec.dtype, shape),
                                         TensorView(v.data(), spec.dtype, shape),
                                         kChunkBlocks * spec.block_size));
  }
  const MaintainStats m = store->Maintain();
  RETURN_IF_ERROR(m.durability);
  return store;
}

// One row: kWarmSteps untimed steps (table files opened), then o.steps timed ones.
StatusOr<SparseStepFigures> MeasureRow(KvStore& store, const SparseStepOptions& o, int n,
                                       int read_threads) {
  std::vector<int> all(static_cast<size_t>(o.context_blocks));
  std::iota(all.begin(), all.end(), 0);
  std::mt19937_64 rng(static_cast<uint64_t>(n) * 31 + static_cast<uint64_t>(read_threads));
  std::vector<double> us;
  std::vector<const std::byte*> values;
  FetchStats stats;
  for (int step = 0; step < kWarmSteps + o.steps; ++step) {
    std::shuffle(all.begin(), all.end(), rng);
    std::span<const int> blocks(all.data(), static_cast<size_t>(n));
    FetchStats one;
    const Clock::time_point start = Clock::now();
    RETURN_IF_ERROR(store.FetchValues(kSeq, 0, 0, blocks, &values, &one));
    const double t = std::chrono::duration<double>(Clock::now() - start).count() * 1e6;
    if (step >= kWarmSteps) {
      us.push_back(t);
      stats.blocks_read += one.blocks_read;
    }
    RETURN_IF_ERROR(store.Maintain().durability);
  }
  SparseStepFigures f{.blocks_per_step = n,
                      .read_threads = read_threads,
                      .block_bytes = StepSpec(o.head_dim).block_bytes()};
  f.step = Percentiles(&us);
  f.blocks_read = static_cast<double>(stats.blocks_read) / static_cast<double>(o.steps);
  return f;
}

}  // namespace

StatusOr<std::vector<SparseStepFigures>> MeasureSparseSteps(const SparseStepOptions& o) {
  if (o.dir.empty() || o.steps < 1 || o.context_blocks < kChunkBlocks ||
      o.context_blocks % kChunkBlocks != 0) {
    return InvalidArgumentError("sparse step: a dir, steps >= 1 and context_blocks a multiple of " +
                                std::to_string(kChunkBlocks) + " are required");
  }
  std::vector<SparseStepFigures> out;
  for (int threads : o.read_threads) {
    const std::string dir = o.dir + "/sparse-step-" + std::to_string(threads);
    StatusOr<std::unique_ptr<KvStore>> store = OpenSpilledStore(o, threads, dir);
    Status s = store.status();
    for (int n : o.blocks_per_step) {
      if (!s.ok()) break;
      if (n < 1 || n > o.context_blocks) {
        s = InvalidArgumentError("sparse step: blocks_per_step must be in [1, context_blocks]");
        break;
      }
      StatusOr<SparseStepFigures> f = MeasureRow(**store, o, n, threads);
      s = f.status();
      if (s.ok()) out.push_back(*f);
    }
    if (store.ok()) store->reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    RETURN_IF_ERROR(s);
  }
  return out;
}

double SparseStepLimitUs(const DiskFigures& disk, size_t bytes, int n) {
  const RandomReadPass* qd1 = disk.FindRandom(bytes, 1);
  const RandomReadPass* best = disk.BestRandom(bytes);
  if (qd1 == nullptr || best == nullptr || best->iops <= 0) return 0.0;
  return std::max(qd1->latency.p50_us, static_cast<double>(n) / best->iops * 1e6);
}

}  // namespace attic::bench
