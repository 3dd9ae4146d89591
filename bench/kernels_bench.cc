// ./attic bench kernels [--json FILE] [--threads N] [--quick]
//
// Dense decode-attention throughput (KV bytes read per second) of the CPU kernels over KV
// blocks held in the real KV store, against both roofs measured in the same run, on 1 thread
// and on all threads: the machine's read bandwidth, and the compute roof, the core's fp32 FMA
// throughput divided by the kernel's multiply-adds per KV byte (2 G D per token over 2 D
// elements of K and V: G / element size = 2 for G = 4, bf16). D = 128, G = 4, bf16, contexts
// 4K/16K/32K/128K.
//
// Every DRAM case streams from DRAM: it cycles over enough (sequence, KV head) pairs that at
// least max(256 MiB, 8 x LLC) is read before a pair is read again. The cached case (2K tokens,
// 4 pairs per thread: 4 MiB per thread, in L3) measures the kernel against the compute roof
// alone.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "attention_workers/decode_attention.h"
#include "attention_workers/thread_pool.h"
#include "bench/bench_report.h"
#include "bench/memory_bandwidth.h"
#include "common/dtype.h"
#include "kvstore/kv_store.h"

namespace attic::bench {
namespace {

constexpr int kHeadDim = 128;
constexpr int kGroup = 4;
constexpr int kBlock = 64;
constexpr DType kDType = DType::kBFloat16;

struct Flags {
  std::string json;
  int threads = 0;  // 0: all cores
  bool quick = false;
};

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) {
      f->json = argv[++i];
    } else if (a == "--threads" && i + 1 < argc) {
      f->threads = std::atoi(argv[++i]);
    } else if (a == "--quick") {
      f->quick = true;
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: attic-bench-kernels [--json FILE] [--threads N] [--quick]\n"
          "  Dense decode-attention throughput vs. measured DRAM read bandwidth and the\n"
          "  compute roof (measured FMA throughput / the kernel's multiply-adds per byte).\n"
          "  --json FILE   also write the result envelope as JSON\n"
          "  --threads N   the 'all threads' cases use N threads (default: all cores)\n"
          "  --quick       contexts 4K and 32K only, fewer repetitions (a smoke run)\n"
          "  ATTIC_ISA=scalar|avx2|avx512|avx512bf16 forces a kernel level.\n");
      return false;
    } else {
      std::fprintf(stderr, "attic-bench-kernels: unknown argument '%s' (try --help)\n", a.c_str());
      std::exit(2);
    }
  }
  return true;
}

// One sequence of `context` tokens whose (layer, KV head) pairs number at least `pairs`,
// filled with random bf16.
struct Case {
  std::unique_ptr<KvStore> store;
  std::vector<std::vector<KvRun>> runs;  // [pairs] blocks of each (layer, KV head)
  size_t bytes_per_pass = 0;             // K and V bytes one pass over every pair reads
};

constexpr int kMaxHeadsPerLayer = 64;

StatusOr<Case> BuildCase(int context, int pairs) {
  const int heads = std::min(pairs, kMaxHeadsPerLayer);
  const int layers = (pairs + heads - 1) / heads;
  const int64_t blocks_per_head = (context + kBlock - 1) / kBlock;
  KvStoreOptions opt;
  opt.k_pool_blocks = opt.v_pool_blocks = blocks_per_head * heads * layers;
  opt.populate = true;
  Case c;
  ASSIGN_OR_RETURN(c.store, KvStore::Open(opt));
  ModelSpec spec{.name = "bench", .num_layers = layers, .num_q_heads = heads * kGroup,
                 .num_kv_heads = heads, .head_dim = kHeadDim, .dtype = kDType,
                 .block_size = kBlock};
  RETURN_IF_ERROR(c.store->OpenSequence({.id = 1, .tenant = "bench", .spec = spec}));
  // Appended in chunks of 8 blocks per head from one random chunk (contents do not change the
  // bandwidth; they only have to be ordinary numbers).
  constexpr int kChunkBlocks = 8;
  const size_t chunk_elems = static_cast<size_t>(heads) * kChunkBlocks * kBlock * kHeadDim;
  std::vector<uint16_t> k(chunk_elems), v(chunk_elems);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (size_t i = 0; i < chunk_elems; ++i) {
    k[i] = FloatToBf16(dist(rng));
    v[i] = FloatToBf16(dist(rng));
  }
  for (int t0 = 0; t0 < context; t0 += kChunkBlocks * kBlock) {
    const int n = std::min(kChunkBlocks * kBlock, context - t0);
    const int nb = (n + kBlock - 1) / kBlock;
    const TensorView kv_k(k.data(), kDType, {heads, nb, kBlock, kHeadDim},
                          {int64_t{kChunkBlocks} * kBlock * kHeadDim, kBlock * kHeadDim,
                           kHeadDim, 1});
    const TensorView kv_v(v.data(), kDType, {heads, nb, kBlock, kHeadDim},
                          {int64_t{kChunkBlocks} * kBlock * kHeadDim, kBlock * kHeadDim,
                           kHeadDim, 1});
    for (int l = 0; l < layers; ++l) RETURN_IF_ERROR(c.store->AppendPrefill(1, l, kv_k, kv_v, n));
  }
  for (int l = 0; l < layers; ++l) {
    for (int h = 0; h < heads; ++h) {
      std::vector<BlockView> views;
      RETURN_IF_ERROR(c.store->ReadBlocks(1, l, h, &views));
      auto& runs = c.runs.emplace_back();
      for (const BlockView& b : views) runs.push_back({b.k, b.v, b.num_tokens});
    }
  }
  c.bytes_per_pass = static_cast<size_t>(context) * kHeadDim * DTypeSize(kDType) * 2 * c.runs.size();
  return c;
}

// Best and median seconds of one pass over every pair, after one warm-up pass.
struct PassTime {
  double best = 0.0, median = 0.0;
};

StatusOr<PassTime> TimePasses(const Case& c, ThreadPool& pool, int min_reps, double min_seconds) {
  const int pairs = static_cast<int>(c.runs.size());
  std::vector<float> q(static_cast<size_t>(kGroup) * kHeadDim);
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (auto& x : q) x = dist(rng);
  std::vector<float> out(static_cast<size_t>(pairs) * kGroup * kHeadDim);
  std::vector<float> lse(static_cast<size_t>(pairs) * kGroup);
  std::atomic<int> failures{0};
  auto pass = [&] {
    pool.ParallelFor(pairs, [&](int64_t i) {
      const Status s = DecodeAttention(
          {.q = q.data(), .group_size = kGroup, .head_dim = kHeadDim, .dtype = kDType,
           .scale = 0.0884f, .runs = c.runs[static_cast<size_t>(i)],
           .out = out.data() + i * kGroup * kHeadDim, .lse = lse.data() + i * kGroup});
      if (!s.ok()) failures.fetch_add(1);
    });
  };
  pass();
  std::vector<double> secs;
  double total = 0.0;
  while (static_cast<int>(secs.size()) < min_reps || total < min_seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    pass();
    secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    total += secs.back();
  }
  if (failures.load() != 0) return InternalError("decode attention failed during the benchmark");
  for (float x : lse) {
    if (!std::isfinite(x)) return InternalError("decode attention produced a non-finite LSE");
  }
  std::sort(secs.begin(), secs.end());
  return PassTime{secs.front(), secs[secs.size() / 2]};
}

int Run(const Flags& flags) {
  const int all = flags.threads > 0 ? flags.threads
                                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const size_t llc = LastLevelCacheBytes();
  const size_t min_bytes = std::max<size_t>(size_t{256} << 20, 8 * llc);
  BenchReport report("kernels");
  report.AddHostFact("min_bytes_between_reuse", std::to_string(min_bytes));
  std::printf("attic-bench-kernels: isa=%s cpu=\"%s\" threads=1,%d llc=%zu MiB, >= %zu MiB per pass\n",
              std::string(IsaName(ActiveIsa())).c_str(), CpuModel().c_str(), all, llc >> 20,
              min_bytes >> 20);

  std::vector<int> thread_counts = {1};
  if (all > 1) thread_counts.push_back(all);
  const std::vector<int> contexts =
      flags.quick ? std::vector<int>{4096, 32768} : std::vector<int>{4096, 16384, 32768, 131072};
  const int reps = flags.quick ? 2 : 5;
  const size_t membw_bytes = std::max<size_t>(size_t{1} << 30, 32 * llc);
  // Multiply-adds per KV byte: q.k and p.v, G D each per token, over 2 D stored elements.
  const double fmas_per_byte = static_cast<double>(kGroup) / static_cast<double>(DTypeSize(kDType));

  for (int threads : thread_counts) {
    ThreadPool pool({.num_threads = threads});
    const ReadBandwidth bw = MeasureReadBandwidth(pool, membw_bytes, reps + 2);
    report.AddRow({.name = "dram_read_bandwidth",
                   .params = {{"threads", std::to_string(threads)},
                              {"bytes", std::to_string(membw_bytes)},
                              {"stat", "best"}},
                   .value = bw.best_gbps, .unit = "GB/s"});
    const FmaThroughput fma = MeasureFmaThroughput(pool, reps + 2);
    const double compute_gbps = fma.best_gflops / fmas_per_byte;
    const double roof_gbps = std::min(bw.best_gbps, compute_gbps);
    report.AddRow({.name = "fma_throughput",
                   .params = {{"threads", std::to_string(threads)},
                              {"lanes", std::to_string(fma.lanes)},
                              {"stat", "best"}},
                   .value = fma.best_gflops, .unit = "GFMA/s"});
    report.AddRow({.name = "compute_roofline",
                   .params = {{"threads", std::to_string(threads)},
                              {"fmas_per_byte", std::to_string(fmas_per_byte)}},
                   .value = compute_gbps, .unit = "GB/s"});
    const std::string compute_source = "compute_roofline threads=" + std::to_string(threads);
    // The cached case first: a few pairs per thread, read again and again from L3.
    {
      auto c = BuildCase(2048, 4 * threads);
      if (!c.ok()) {
        std::fprintf(stderr, "attic-bench-kernels: cached case: %s\n",
                     c.status().ToString().c_str());
        return 1;
      }
      auto t = TimePasses(*c, pool, 20 * reps, flags.quick ? 0.2 : 1.0);
      if (!t.ok()) {
        std::fprintf(stderr, "attic-bench-kernels: %s\n", t.status().ToString().c_str());
        return 1;
      }
      const double gbps = static_cast<double>(c->bytes_per_pass) / t->best / 1e9;
      report.AddRow({.name = "dense_decode_attention_cached",
                     .params = {{"context", "2048"},
                                {"threads", std::to_string(threads)},
                                {"pairs", std::to_string(c->runs.size())},
                                {"stat", "best"}},
                     .value = gbps, .unit = "GB/s", .limit = compute_gbps,
                     .limit_source = compute_source});
    }
    for (int context : contexts) {
      const size_t per_head = static_cast<size_t>(context) * kHeadDim * 2 * DTypeSize(kDType);
      // A whole number of pairs per thread, so no thread idles at the end of a pass.
      int pairs = static_cast<int>((min_bytes + per_head - 1) / per_head);
      pairs = (pairs + threads - 1) / threads * threads;
      auto c = BuildCase(context, pairs);
      if (!c.ok()) {
        std::fprintf(stderr, "attic-bench-kernels: context %d: %s\n", context,
                     c.status().ToString().c_str());
        return 1;
      }
      auto t = TimePasses(*c, pool, reps, flags.quick ? 0.2 : 1.0);
      if (!t.ok()) {
        std::fprintf(stderr, "attic-bench-kernels: %s\n", t.status().ToString().c_str());
        return 1;
      }
      const double gbps = static_cast<double>(c->bytes_per_pass) / t->best / 1e9;
      report.AddRow({.name = "dense_decode_attention",
                     .params = {{"context", std::to_string(context)},
                                {"threads", std::to_string(threads)},
                                {"head_dim", std::to_string(kHeadDim)},
                                {"group", std::to_string(kGroup)},
                                {"dtype", "bf16"},
                                {"pairs", std::to_string(c->runs.size())},
                                {"stat", "best"},
                                {"median_gbps", std::to_string(static_cast<double>(c->bytes_per_pass) / t->median / 1e9)},
                                {"compute_ratio", std::to_string(gbps / compute_gbps)},
                                {"roofline_ratio", std::to_string(gbps / roof_gbps)}},
                     .value = gbps, .unit = "GB/s", .limit = bw.best_gbps,
                     .limit_source = "dram_read_bandwidth threads=" + std::to_string(threads)});
    }
  }
  return report.Finish(flags.json, "attic-bench-kernels");
}

}  // namespace
}  // namespace attic::bench

int main(int argc, char** argv) {
  attic::bench::Flags flags;
  if (!attic::bench::ParseFlags(argc, argv, &flags)) return 0;
  return attic::bench::Run(flags);
}
