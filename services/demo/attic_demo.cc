// attic-demo: the quick start's main job (for now).
//
// Loads real attention activations (shared/data/qkv; a seeded synthetic set when absent) into
// the KV store, replays the 256 decode steps through the dense CPU kernel — each step appends
// the new token's K/V and attends over the whole context, every (layer, KV head) a task on the
// thread pool — and checks every output against fp64 attention.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "attention_workers/decode_attention.h"
#include "attention_workers/reference_attention.h"
#include "attention_workers/thread_pool.h"
#include "kvstore/kv_store.h"
#include "services/demo/activations.h"

namespace attic::demo {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Flags {
  std::string shared_dir;
  int threads = 0;
  DType dtype = DType::kBFloat16;
};

void Usage() {
  std::printf(
      "usage: attic-demo [--shared-dir DIR] [--threads N] [--dtype bf16|fp16|fp32]\n"
      "  Replays 256 decode steps of real attention activations through the KV store and the\n"
      "  CPU decode-attention kernel; prints errors against fp64 attention and bandwidth.\n"
      "  --shared-dir DIR  folder holding data/qkv (default: ../shared if present; else a\n"
      "                    seeded synthetic set is used)\n"
      "  --threads N       compute threads (default: all cores)\n"
      "  --dtype T         KV storage dtype (default: bf16)\n");
}

int ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--help" || a == "-h") {
      Usage();
      return 0;
    } else if (a == "--shared-dir" && has_value) {
      f->shared_dir = argv[++i];
    } else if (a == "--threads" && has_value) {
      f->threads = std::atoi(argv[++i]);
    } else if (a == "--dtype" && has_value) {
      const auto t = ParseDType(argv[++i]);
      if (!t) {
        std::fprintf(stderr, "attic-demo: --dtype must be bf16, fp16 or fp32\n");
        return 2;
      }
      f->dtype = *t;
    } else {
      std::fprintf(stderr, "attic-demo: unknown argument '%s' (try --help)\n", a.c_str());
      return 2;
    }
  }
  return -1;
}

std::string QkvDir(const Flags& f) {
  std::string root = f.shared_dir;
  if (root.empty() && fs::is_directory("../shared/data")) root = "../shared";
  if (root.empty()) return "";
  const fs::path p = fs::path(root) / "data" / "qkv" / "attic-ref-54m" / "networkx-16k";
  return fs::is_regular_file(p / "L4_k.npy") ? p.string() : "";
}

// The first `tokens` tokens of a head's block list.
std::vector<KvRun> Prefix(const std::vector<BlockView>& blocks, int tokens) {
  std::vector<KvRun> runs;
  for (const BlockView& b : blocks) {
    if (tokens <= 0) break;
    const int n = std::min(tokens, b.num_tokens);
    runs.push_back({b.k, b.v, n});
    tokens -= n;
  }
  return runs;
}

struct ErrorStats {
  double max = 0.0, sum = 0.0, lse_max = 0.0;
  int count = 0;
  void Add(double err, double lse_err) {
    max = std::max(max, err);
    sum += err;
    lse_max = std::max(lse_max, lse_err);
    ++count;
  }
  double mean() const { return count ? sum / count : 0.0; }
};

int Run(const Flags& flags) {
  const std::string qkv = QkvDir(flags);
  auto act_or = LoadActivations(qkv);
  if (!act_or.ok()) {
    std::fprintf(stderr, "attic-demo: %s\n", act_or.status().ToString().c_str());
    return 1;
  }
  const Activations& act = *act_or;
  const int num_layers = static_cast<int>(act.layers.size());
  const int g = act.q_heads / act.kv_heads, d = act.head_dim;
  const int prefill = act.tokens - act.steps;
  ThreadPool pool({.num_threads = flags.threads});

  ModelSpec spec{.name = "attic-ref-54m", .num_layers = num_layers, .num_q_heads = act.q_heads,
                 .num_kv_heads = act.kv_heads, .head_dim = d, .dtype = flags.dtype,
                 .block_size = 64, .softmax_scale = act.scale};
  KvStoreOptions opt;
  opt.block_bytes = spec.block_bytes();
  opt.k_pool_blocks = opt.v_pool_blocks =
      int64_t{num_layers} * act.kv_heads * ((act.tokens + 63) / 64);
  auto store_or = KvStore::Open(opt);
  if (!store_or.ok()) {
    std::fprintf(stderr, "attic-demo: %s\n", store_or.status().ToString().c_str());
    return 1;
  }
  KvStore& store = **store_or;
  auto check = [](const Status& s) {
    if (!s.ok()) {
      std::fprintf(stderr, "attic-demo: %s\n", s.ToString().c_str());
      std::exit(1);
    }
  };
  constexpr uint64_t kSeq = 1;
  check(store.OpenSequence({.id = kSeq, .tenant = "demo", .spec = spec}));

  std::printf("Attic demo: decode attention over the KV store\n");
  std::printf("  activations  %s\n", act.source.c_str());
  std::printf("  model        %s, layers {1, 4}\n", spec.ToString().c_str());
  std::printf("  kernel       %s, %d threads\n", std::string(IsaName(ActiveIsa())).c_str(),
              pool.num_threads());

  // Prefill: the prompt's K/V, token-major fp16 as an engine holds them; the store converts
  // to the storage dtype and lays them out in blocks.
  const auto t_prefill = Clock::now();
  for (int l = 0; l < num_layers; ++l) {
    const auto& la = act.layers[static_cast<size_t>(l)];
    constexpr int kChunk = 2048;
    for (int t0 = 0; t0 < prefill; t0 += kChunk) {
      const int n = std::min(kChunk, prefill - t0);
      const size_t off = static_cast<size_t>(t0) * act.kv_heads * d;
      check(store.AppendTokens(kSeq, l, TensorView(la.k.data() + off, DType::kFloat16, {n, act.kv_heads, d}),
                               TensorView(la.v.data() + off, DType::kFloat16, {n, act.kv_heads, d})));
    }
  }
  const double prefill_s = std::chrono::duration<double>(Clock::now() - t_prefill).count();
  std::printf("  prefill      %d tokens x %d layers x %d KV heads in %.1f ms\n", prefill, num_layers,
              act.kv_heads, prefill_s * 1e3);

  // Decode: per step, append the new token's K/V for every layer, then attend.
  const int tasks = num_layers * act.kv_heads;
  std::vector<float> out(static_cast<size_t>(act.steps) * tasks * g * d);
  std::vector<float> lse(static_cast<size_t>(act.steps) * tasks * g);
  std::vector<std::vector<BlockView>> views(static_cast<size_t>(tasks));
  std::vector<std::vector<KvRun>> runs(static_cast<size_t>(tasks));
  std::vector<Status> task_status(static_cast<size_t>(tasks));
  double kernel_s = 0.0, kv_bytes = 0.0;
  for (int step = 0; step < act.steps; ++step) {
    const int pos = prefill + step;
    for (int l = 0; l < num_layers; ++l) {
      const auto& la = act.layers[static_cast<size_t>(l)];
      const size_t off = static_cast<size_t>(pos) * act.kv_heads * d;
      check(store.AppendDecodeToken(kSeq, l, TensorView(la.k.data() + off, DType::kFloat16, {act.kv_heads, d}),
                                    TensorView(la.v.data() + off, DType::kFloat16, {act.kv_heads, d})));
    }
    for (int t = 0; t < tasks; ++t) {
      check(store.ReadBlocks(kSeq, t / act.kv_heads, t % act.kv_heads, &views[static_cast<size_t>(t)]));
      runs[static_cast<size_t>(t)] = Prefix(views[static_cast<size_t>(t)], pos + 1);
    }
    const auto t0 = Clock::now();
    pool.ParallelFor(tasks, [&](int64_t t) {
      const auto& la = act.layers[static_cast<size_t>(t / act.kv_heads)];
      const int h = static_cast<int>(t % act.kv_heads);
      std::vector<float> qg(static_cast<size_t>(g) * d);
      ConvertToFloat(DType::kFloat16, la.q.data() + (static_cast<size_t>(step) * act.q_heads + h * g) * d,
                     qg.data(), qg.size());
      const size_t slot = static_cast<size_t>(step) * tasks + static_cast<size_t>(t);
      task_status[static_cast<size_t>(t)] = DecodeAttention(
          {.q = qg.data(), .group_size = g, .head_dim = d, .dtype = spec.dtype,
           .scale = act.scale, .runs = runs[static_cast<size_t>(t)],
           .out = out.data() + slot * g * d, .lse = lse.data() + slot * g});
    });
    kernel_s += std::chrono::duration<double>(Clock::now() - t0).count();
    for (const Status& s : task_status) check(s);  // on this thread, not the pool's
    kv_bytes += static_cast<double>(tasks) * (pos + 1) * d * DTypeSize(spec.dtype) * 2;
  }

  // Check every output against fp64 attention over the stored values.
  std::vector<ErrorStats> step_err(static_cast<size_t>(act.steps));
  const auto t_ref = Clock::now();
  pool.ParallelFor(act.steps, [&](int64_t step) {
    const int pos = prefill + static_cast<int>(step);
    std::vector<float> qg(static_cast<size_t>(g) * d);
    std::vector<double> o_ref(static_cast<size_t>(g) * d), lse_ref(static_cast<size_t>(g));
    for (int t = 0; t < tasks; ++t) {
      const auto& la = act.layers[static_cast<size_t>(t / act.kv_heads)];
      const int h = t % act.kv_heads;
      ConvertToFloat(DType::kFloat16, la.q.data() + (static_cast<size_t>(step) * act.q_heads + h * g) * d,
                     qg.data(), qg.size());
      const size_t slot = static_cast<size_t>(step) * tasks + static_cast<size_t>(t);
      const std::vector<KvRun> stored = Prefix(views[static_cast<size_t>(t)], pos + 1);
      ReferenceAttention(qg.data(), g, d, act.scale, spec.dtype, stored, o_ref.data(), lse_ref.data());
      for (int i = 0; i < g; ++i) {
        step_err[static_cast<size_t>(step)].Add(
            RelativeError(out.data() + (slot * g + i) * d, o_ref.data() + i * d, d),
            std::abs(lse[slot * g + i] - lse_ref[static_cast<size_t>(i)]));
      }
    }
  });
  const double ref_s = std::chrono::duration<double>(Clock::now() - t_ref).count();
  ErrorStats stored;
  for (const ErrorStats& e : step_err) {
    stored.max = std::max(stored.max, e.max);
    stored.lse_max = std::max(stored.lse_max, e.lse_max);
    stored.sum += e.sum;
    stored.count += e.count;
  }

  // How much the storage dtype rounded the engine's fp16 values (the reference model's dumps
  // are bf16-exact, so bf16 storage loses nothing on them).
  int64_t inexact = 0, total_values = 0;
  for (const auto& la : act.layers) {
    for (const auto* src : {&la.k, &la.v}) {
      for (uint16_t h : *src) {
        const float f = Fp16ToFloat(h);
        uint32_t stored_bits = 0;  // room for one element of any dtype
        float back = 0.0f;
        ConvertFromFloat(spec.dtype, &f, &stored_bits, 1);
        ConvertToFloat(spec.dtype, &stored_bits, &back, 1);
        inexact += back != f;
        ++total_values;
      }
    }
  }
  const KvStoreStats st = store.Stats();
  const double step_bytes = kv_bytes / act.steps;
  std::printf("  decode       %d steps, %d query heads x %d layers each, context %d..%d tokens\n",
              act.steps, act.q_heads, num_layers, prefill + 1, act.tokens);
  std::printf("  kv store     %lld K + %lld V blocks used (%.1f MiB), %lld sequence(s)\n",
              static_cast<long long>(st.k.used_blocks), static_cast<long long>(st.v.used_blocks),
              static_cast<double>(st.k.used_bytes + st.v.used_bytes) / (1 << 20),
              static_cast<long long>(st.sequences));
  std::printf("\nAccuracy (%d outputs, per query head: ||o - o_ref|| / ||o_ref||), fp64 reference in %.1f s\n",
              stored.count, ref_s);
  std::printf("  vs fp64 attention over the stored %s K/V: max %.2e  mean %.2e  max |lse diff| %.2e\n",
              std::string(DTypeName(spec.dtype)).c_str(), stored.max, stored.mean(), stored.lse_max);
  std::printf("  storage      %lld of %lld original fp16 K/V values are not exact in %s\n",
              static_cast<long long>(inexact), static_cast<long long>(total_values),
              std::string(DTypeName(spec.dtype)).c_str());
  std::printf("\nSpeed\n");
  std::printf("  kernel time  %.1f us per step (%d (layer, KV head) tasks of ~%.1f MiB each)\n",
              kernel_s / act.steps * 1e6, tasks, step_bytes / tasks / (1 << 20));
  std::printf("  bandwidth    %.1f GB/s of K/V read by the kernel\n", kv_bytes / kernel_s / 1e9);
  std::printf("               (a step reads %.0f MiB, about the size of the last-level cache, so this\n"
              "               is partly cache-resident; `./attic bench kernels` measures DRAM-bound\n"
              "               throughput against the machine's read bandwidth)\n",
              step_bytes / (1 << 20));
  const double tol = spec.dtype == DType::kFloat32 ? 1e-3 : 5e-3;
  if (stored.max >= tol || stored.lse_max >= 1e-3) {
    std::printf("\nFAILED: kernel error above tolerance (%.0e relative, 1e-3 lse)\n", tol);
    return 1;
  }
  std::printf("\nOK: every output within %.0e of fp64 attention over the stored values\n", tol);
  return 0;
}

}  // namespace
}  // namespace attic::demo

int main(int argc, char** argv) {
  attic::demo::Flags flags;
  const int rc = attic::demo::ParseFlags(argc, argv, &flags);
  if (rc >= 0) return rc;
  return attic::demo::Run(flags);
}
