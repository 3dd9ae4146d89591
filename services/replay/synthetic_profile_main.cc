// attic-synthetic-profile: the attention profile behind SyntheticKv's structured heads.
//
//   attic-synthetic-profile --qkv ../shared/data/qkv/attic-ref-54m/networkx-16k [--no-fit]
//       (prints services/replay/internal/head_profiles.inc, the checked-in table: the dump's
//       figures and the generator strengths fitted to them; the dump's figures on stderr)
//   attic-synthetic-profile --synthetic [--tokens 16384] [--seed 1] [--steps 64]
//       (the same figures per head of SyntheticKv at attic-ref-54m's shape, bf16, on stderr)
//   attic-synthetic-profile --fill-bench [--tokens 16384]   # FillPrompt throughput, one thread
//
// Per (layer, KV head) and averaged over the decode queries (the dump's 256 decode steps, or
// the last --steps positions of a synthetic context) and the heads of the GQA group, with exact
// softmax over keys [0, t] of a query at t:
//   sink    mass on the first 4 keys
//   window  mass on the last 64 keys (t - 63 .. t)
//   oracle  mass on sinks + window + the 100 best other keys by the group's max q.k
//           (what an ideal retrieval index with top_k = 100 selects)
//   keys90  fraction of keys [0, t] the largest probabilities need to reach 0.9 of the mass
// The worker's head profiler (attention_workers/retrieval/head_profile.h) marks a head dense when
// oracle < 0.7 or keys90 > 0.15.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "common/dtype.h"
#include "common/model_spec.h"
#include "common/npy.h"
#include "services/replay/synthetic.h"

namespace attic::replay {
namespace {

constexpr int kSinks = 4;
constexpr int kWindow = 64;
constexpr int kTopK = 100;

struct Stats {
  double sink = 0, window = 0, oracle = 0, keys90 = 0;
  double self = 0, near8 = 0;      // diagnostics: mass on key t, on keys t-7..t
  std::vector<int64_t> retrieved;  // diagnostics: the top-k positions of the last query
  int n = 0;
  void Add(const Stats& o) {
    self += o.self;
    near8 += o.near8;
    sink += o.sink;
    window += o.window;
    oracle += o.oracle;
    keys90 += o.keys90;
    n += o.n;
  }
  Stats Mean() const {
    Stats m = *this;
    const double d = n > 0 ? n : 1;
    m.sink /= d;
    m.window /= d;
    m.oracle /= d;
    m.keys90 /= d;
    m.self /= d;
    m.near8 /= d;
    return m;
  }
};

// One KV head: keys [n, d] (row stride `stride` floats), one query group q [g, d] at position t.
Stats QueryStats(const float* k, size_t stride, int d, const float* q, int g, int64_t t,
                 float scale) {
  const int64_t ctx = t + 1;
  std::vector<float> s(static_cast<size_t>(g) * ctx);
  for (int i = 0; i < g; ++i) {
    const float* qi = q + static_cast<size_t>(i) * d;
    for (int64_t p = 0; p < ctx; ++p) {
      const float* kp = k + static_cast<size_t>(p) * stride;
      float acc = 0;
      for (int j = 0; j < d; ++j) acc += qi[j] * kp[j];
      s[static_cast<size_t>(i) * ctx + p] = acc * scale;
    }
  }
  // Retrieved: the top-k by group score among keys outside sinks and window.
  std::vector<int64_t> cand;
  for (int64_t p = kSinks; p < ctx - kWindow; ++p) cand.push_back(p);
  std::vector<float> gs(static_cast<size_t>(ctx), -1e30f);
  for (int64_t p : cand) {
    float m = -1e30f;
    for (int i = 0; i < g; ++i) m = std::max(m, s[static_cast<size_t>(i) * ctx + p]);
    gs[static_cast<size_t>(p)] = m;
  }
  const auto top = std::min<size_t>(kTopK, cand.size());
  std::partial_sort(cand.begin(), cand.begin() + static_cast<ptrdiff_t>(top), cand.end(),
                    [&](int64_t a, int64_t b) { return gs[a] > gs[b]; });
  std::vector<char> selected(static_cast<size_t>(ctx), 0);
  for (size_t i = 0; i < top; ++i) selected[static_cast<size_t>(cand[i])] = 1;
  Stats out;
  out.retrieved.assign(cand.begin(), cand.begin() + static_cast<ptrdiff_t>(top));
  std::vector<double> pr(static_cast<size_t>(ctx));
  for (int i = 0; i < g; ++i) {
    const float* si = s.data() + static_cast<size_t>(i) * ctx;
    const float mx = *std::max_element(si, si + ctx);
    double z = 0;
    for (int64_t p = 0; p < ctx; ++p) z += pr[p] = std::exp(static_cast<double>(si[p] - mx));
    double sink = 0, window = 0, retrieved = 0;
    for (int64_t p = 0; p < ctx; ++p) {
      const double x = pr[p] / z;
      pr[p] = x;
      if (p == t) out.self += x;
      if (p > t - 8) out.near8 += x;
      if (p < kSinks) {
        sink += x;
      } else if (p >= ctx - kWindow) {
        window += x;
      } else if (selected[p]) {
        retrieved += x;
      }
    }
    std::sort(pr.begin(), pr.end(), std::greater<>());
    double acc = 0;
    int64_t need = 0;
    while (need < ctx && acc < 0.9) acc += pr[static_cast<size_t>(need++)];
    out.sink += sink;
    out.window += window;
    out.oracle += sink + window + retrieved;
    out.keys90 += static_cast<double>(need) / static_cast<double>(ctx);
    out.n += 1;
  }
  return out;
}

std::vector<float> ToFloat(const NpyArray& a) {
  std::vector<float> out(static_cast<size_t>(a.num_elements()));
  ConvertToFloat(a.dtype, a.data.data(), out.data(), out.size());
  return out;
}

// The fraction of the steps' retrieved positions that recur in at least a tenth of the steps
// (shared heavy hitters rather than query-specific keys). Positions below 2^20.
double Persistence(const std::vector<std::vector<int64_t>>& sets) {
  std::vector<int> count(1 << 20, 0);
  size_t total = 0;
  for (const auto& s : sets) {
    for (int64_t p : s) ++count[static_cast<size_t>(p)];
    total += s.size();
  }
  size_t recurring = 0;
  for (const auto& s : sets) {
    for (int64_t p : s)
      recurring += 10 * count[static_cast<size_t>(p)] >= static_cast<int>(sets.size());
  }
  return total ? static_cast<double>(recurring) / static_cast<double>(total) : 0.0;
}

void PrintRow(const char* what, int layer, int head, const Stats& m, double persistence) {
  std::fprintf(stderr,
               "%s layer %d kv head %d: sink %.3f window %.3f (self %.3f, last 8 %.3f) oracle %.3f "
               "keys90 %.3f top-k recurring %.2f -> %s\n",
               what, layer, head, m.sink, m.window, m.self, m.near8, m.oracle, m.keys90,
               persistence, (m.oracle < 0.7 || m.keys90 > 0.15) ? "dense" : "sparse");
}

ModelSpec RefSpec(DType dtype = DType::kBFloat16, int layers = 6) {
  return ModelSpec{.name = "attic-ref-54m",
                   .num_layers = layers,
                   .num_q_heads = 8,
                   .num_kv_heads = 2,
                   .head_dim = 128,
                   .dtype = dtype,
                   .block_size = 64};
}

// Per KV head of one layer of `gen`: the figures over `steps` decode queries at the last
// positions of a `tokens`-token context of one request, on the values as stored (spec.dtype).
std::vector<Stats> MeasureLayer(const SyntheticKv& gen, int layer, int64_t tokens, int steps,
                                uint64_t seed, std::vector<double>* persistence = nullptr) {
  const ModelSpec& spec = gen.spec();
  const int hkv = spec.num_kv_heads, hq = spec.num_q_heads, g = spec.group_size(),
            d = spec.head_dim;
  const size_t es = DTypeSize(spec.dtype);
  const PromptHashes h = PromptBlockHashes({}, tokens, spec.block_size, /*unique=*/1, seed);
  const size_t tok = static_cast<size_t>(hkv) * d;
  std::vector<std::byte> kb(static_cast<size_t>(tokens) * tok * es), vb(kb.size());
  std::vector<std::byte> qb(static_cast<size_t>(hq) * d * es), kd(tok * es), vd(tok * es);
  gen.FillPrompt(h, layer, 0, tokens, kb.data(), vb.data());
  std::vector<float> k(static_cast<size_t>(tokens) * tok), q(static_cast<size_t>(hq) * d);
  ConvertToFloat(spec.dtype, kb.data(), k.data(), k.size());
  std::vector<Stats> out;
  for (int head = 0; head < hkv; ++head) {
    Stats sum;
    std::vector<std::vector<int64_t>> sets;
    for (int s = 0; s < steps; ++s) {
      // Decode queries at the context's last positions (over the prompt's keys up to them).
      const int64_t t = tokens - steps + s;
      gen.FillDecode(h.tail, t, layer, kd.data(), vd.data(), qb.data());
      ConvertToFloat(spec.dtype, qb.data(), q.data(), q.size());
      Stats one =
          QueryStats(k.data() + static_cast<size_t>(head) * d, tok, d,
                     q.data() + static_cast<size_t>(head) * g * d, g, t, spec.EffectiveScale());
      sets.push_back(one.retrieved);
      sum.Add(one);
    }
    out.push_back(sum.Mean());
    if (persistence != nullptr) persistence->push_back(Persistence(sets));
  }
  return out;
}

// Mean over both KV heads of both layers of a two-layer model whose heads all follow `row`
// (four contexts: one alone overfits the search to its own draws).
Stats MeasureRow(const SyntheticHeadProfile& row, int64_t tokens, int steps) {
  const SyntheticKv gen(RefSpec(DType::kBFloat16, 2), 1, {.profiles = {row}});
  Stats sum;
  for (int layer = 0; layer < 2; ++layer) {
    for (const Stats& s : MeasureLayer(gen, layer, tokens, steps, 1)) {
      Stats w = s;
      w.n = 1;
      sum.Add(w);
    }
  }
  return sum.Mean();
}

double LogOdds(double x) {
  x = std::clamp(x, 1e-4, 1.0 - 1e-4);
  return std::log(x / (1.0 - x));
}

// Fixed-point search of the generator strengths for the figures of `target`: the window
// logit moves by the log-odds error of the window mass, the heavy-hitter logit by that of the
// retrieved mass (oracle - window - sinks), the sink logit by that of the sink mass (only where
// the dump has one: at least 0.01), and, on diffuse rows, the noise against that of keys90
// (more noise concentrates the lognormal weights outside the selection on fewer keys). A
// sparse row keeps noise_logit 0.5: its keys90 (a tail of a few hundred keys in the dump) is
// not matched, the synthetic tail is shorter. Damped; 12 rounds.
SyntheticHeadProfile Fit(SyntheticHeadProfile row, int64_t tokens, int steps, Stats* achieved) {
  const double retrieved_t = row.oracle_mass - row.window_mass - row.sink_mass;
  const bool fit_sink = row.sink_mass >= 0.01;
  if (fit_sink) row.sink_logit = 4.0f;
  for (int round = 0; round < 12; ++round) {
    const Stats m = MeasureRow(row, tokens, steps);
    std::fprintf(stderr,
                 "fit L%d h%d round %d: noise %.3f window %.3f hh %.3f sink %.3f -> sink %.3f "
                 "window %.3f oracle %.3f keys90 %.3f\n",
                 row.dump_layer, row.dump_head, round, row.noise_logit, row.window_logit,
                 row.hh_logit, row.sink_logit, m.sink, m.window, m.oracle, m.keys90);
    const double damp = 0.7;
    row.window_logit += static_cast<float>(damp * (LogOdds(row.window_mass) - LogOdds(m.window)));
    row.hh_logit +=
        static_cast<float>(damp * (LogOdds(retrieved_t) - LogOdds(m.oracle - m.window - m.sink)));
    row.window_logit = std::max(row.window_logit, 0.0f);
    row.hh_logit = std::max(row.hh_logit, 0.0f);
    if (fit_sink) {
      row.sink_logit += static_cast<float>(damp * (LogOdds(row.sink_mass) - LogOdds(m.sink)));
    }
    if (row.dense())
      row.noise_logit *=
          static_cast<float>(std::exp(-0.5 * damp * (LogOdds(row.keys90) - LogOdds(m.keys90))));
  }
  *achieved = MeasureRow(row, tokens, steps);
  return row;
}

int ProfileDump(const std::string& dir, bool fit) {
  const int hkv = 2, hq = 8, g = 4, d = 128, first_decode = 16128;
  const float scale = 0.08838834764831845f;
  std::vector<SyntheticHeadProfile> rows;
  for (int layer : {1, 4}) {
    const std::string prefix = dir + "/L" + std::to_string(layer) + "_";
    auto k_npy = ReadNpy(prefix + "k.npy");
    auto q_npy = ReadNpy(prefix + "q_decode.npy");
    if (!k_npy.ok() || !q_npy.ok()) {
      std::fprintf(stderr, "reading %s: %s %s\n", prefix.c_str(), k_npy.status().ToString().c_str(),
                   q_npy.status().ToString().c_str());
      return 1;
    }
    const std::vector<float> k = ToFloat(*k_npy), q = ToFloat(*q_npy);
    for (int h = 0; h < hkv; ++h) {
      Stats sum;
      std::vector<std::vector<int64_t>> sets;
      for (int step = 0; step < 256; ++step) {
        Stats one = QueryStats(k.data() + static_cast<size_t>(h) * d, static_cast<size_t>(hkv) * d,
                               d, q.data() + (static_cast<size_t>(step) * hq + h * g) * d, g,
                               first_decode + step, scale);
        sets.push_back(one.retrieved);
        sum.Add(one);
      }
      const Stats m = sum.Mean();
      PrintRow("dump", layer, h, m, Persistence(sets));
      SyntheticHeadProfile row{.dump_layer = layer,
                               .dump_head = h,
                               .sink_mass = m.sink,
                               .window_mass = m.window,
                               .oracle_mass = m.oracle,
                               .keys90 = m.keys90};
      // Starting strengths: diffuse heads get more noise and weaker structure.
      const bool dense = row.dense();
      row.noise_logit = dense ? 1.0f : 0.5f;
      row.window_logit = dense ? 6.0f : 10.0f;
      row.hh_logit = dense ? 5.0f : 9.0f;
      rows.push_back(row);
    }
  }
  // Fit the rows two at a time (one per core).
  std::vector<Stats> achieved(rows.size());
  if (fit) {
    for (size_t i = 0; i < rows.size(); i += 2) {
      std::vector<std::thread> threads;
      for (size_t j = i; j < std::min(rows.size(), i + 2); ++j) {
        threads.emplace_back([&, j] { rows[j] = Fit(rows[j], 16384, 32, &achieved[j]); });
      }
      for (auto& t : threads) t.join();
    }
  }
  std::printf(
      "// Generated by attic-synthetic-profile --qkv <shared>/data/qkv/attic-ref-54m/networkx-16k\n"
      "// (services/replay/synthetic_profile_main.cc; docs/replay.md). Targets: exact softmax of\n"
      "// the reference model's 256 decode queries (positions 16128..16383, the GQA group's 4\n"
      "// heads each) over its fp16 keys of layers 1 and 4, averaged per (layer, KV head): mass "
      "on\n"
      "// the first 4 keys, on the last 64, on those + the 100 best other keys by the group's max\n"
      "// q.k (oracle), and the fraction of the context that holds 0.9 of the mass (keys90).\n"
      "// Strengths (logits: noise std, window, heavy hitter, sink): a damped fixed-point search\n"
      "// of the generator itself for the same figures on 16K-token bf16 synthetic contexts (32\n"
      "// decode queries, both KV heads of a two-layer model; sparse rows keep noise 0.5 and do\n"
      "// not match keys90). The figures it reached: the comment after each row.\n"
      "// Fields: dump layer, dump KV head, sink, window, oracle, keys90, noise, window, hh, "
      "sink.\n"
      "constexpr SyntheticHeadProfile kReferenceProfiles[] = {\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    std::printf("    {%d, %d, %.4f, %.4f, %.4f, %.4f, %.3ff, %.3ff, %.3ff, %.3ff},", r.dump_layer,
                r.dump_head, r.sink_mass, r.window_mass, r.oracle_mass, r.keys90, r.noise_logit,
                r.window_logit, r.hh_logit, r.sink_logit);
    if (fit) {
      std::printf("  // synthetic: %.3f %.3f %.3f %.3f", achieved[i].sink, achieved[i].window,
                  achieved[i].oracle, achieved[i].keys90);
    }
    std::printf("\n");
  }
  std::printf("};\n");
  return 0;
}

int ProfileSynthetic(int64_t tokens, uint64_t seed, int steps) {
  const SyntheticKv gen(RefSpec(DType::kBFloat16), seed);
  int sparse = 0;
  for (int layer = 0; layer < gen.spec().num_layers; ++layer) {
    std::vector<double> persistence;
    const std::vector<Stats> m = MeasureLayer(gen, layer, tokens, steps, seed, &persistence);
    for (int head = 0; head < gen.spec().num_kv_heads; ++head) {
      sparse += !(m[head].oracle < 0.7 || m[head].keys90 > 0.15);
      PrintRow("synthetic", layer, head, m[head], persistence[head]);
    }
  }
  std::fprintf(stderr, "synthetic: %d of %d heads sparse\n", sparse,
               gen.spec().num_layers * gen.spec().num_kv_heads);
  return 0;
}

int FillBench(int64_t tokens) {
  for (DType dtype : {DType::kBFloat16, DType::kFloat16, DType::kFloat32}) {
    const ModelSpec spec = RefSpec(dtype);
    const SyntheticKv gen(spec, 1);
    const PromptHashes h = PromptBlockHashes({}, tokens, spec.block_size, 1, 1);
    const size_t bytes =
        static_cast<size_t>(tokens) * spec.num_kv_heads * spec.head_dim * DTypeSize(dtype);
    std::vector<std::byte> k(bytes), v(bytes);
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int layer = 0; layer < spec.num_layers; ++layer) {
        gen.FillPrompt(h, layer, 0, tokens, k.data(), v.data());
      }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, 2.0 * bytes * spec.num_layers / s / 1e9);
    }
    std::printf("fill %s: %.2f GB/s of K+V (best of 5, %lld tokens x 6 layers, one thread)\n",
                std::string(DTypeName(dtype)).c_str(), best, static_cast<long long>(tokens));
  }
  return 0;
}

int Main(int argc, char** argv) {
  std::string qkv;
  bool synthetic = false, fill = false, no_fit = false;
  int64_t tokens = 16384;
  uint64_t seed = 1;
  int steps = 64;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--qkv") {
      qkv = next();
    } else if (a == "--no-fit") {
      no_fit = true;
    } else if (a == "--synthetic") {
      synthetic = true;
    } else if (a == "--fill-bench") {
      fill = true;
    } else if (a == "--tokens") {
      tokens = std::atoll(next().c_str());
    } else if (a == "--seed") {
      seed = std::strtoull(next().c_str(), nullptr, 10);
    } else if (a == "--steps") {
      steps = std::atoi(next().c_str());
    } else {
      std::fprintf(stderr,
                   "usage: attic-synthetic-profile --qkv DIR [--no-fit] | --synthetic [--tokens N] "
                   "[--seed S] [--steps N] | --fill-bench [--tokens N]\n");
      return 2;
    }
  }
  if (!qkv.empty()) return ProfileDump(qkv, !no_fit);
  if (synthetic) return ProfileSynthetic(tokens, seed, steps);
  if (fill) return FillBench(tokens);
  std::fprintf(stderr, "one of --qkv, --synthetic, --fill-bench\n");
  return 2;
}

}  // namespace
}  // namespace attic::replay

int main(int argc, char** argv) { return attic::replay::Main(argc, argv); }
