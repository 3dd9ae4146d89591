// ./attic bench retrieval --data DIR [--json FILE] [--layers 1,4] [--contexts 2048,4096]
//                         [--quick] [--threads N] [--sinks S] [--window W] [--top-k K]
//
// Retrieval attention on a dump of real activations: for every layer, KV head and context of
// the cost-vs-length sweep, every retrieval method (Attic's indexes through BuildKeyIndex, and
// FAISS HNSW / IVF-Flat and hnswlib as baselines) at every setting of its effort sweep:
// recall@100, attention-mass recall, output error, keys scanned, bytes read as a fraction of a
// dense pass, and latency against the one-thread cold dense pass measured in the same run.
// Definitions: docs/retrieval-bench.md.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "attention_workers/thread_pool.h"
#include "bench/bench_report.h"
#include "bench/retrieval/dataset.h"
#include "bench/retrieval/dense_reference.h"
#include "bench/retrieval/evaluator.h"
#include "bench/retrieval/head_policy.h"
#include "bench/retrieval/methods.h"
#include "bench/retrieval/report.h"

namespace attic::retrieval::eval {
namespace {

constexpr const char* kProgram = "attic-bench-retrieval";

struct Flags {
  std::string data;
  std::string json;
  std::vector<int> layers;
  std::vector<int64_t> contexts;
  std::vector<std::string> methods;
  bool quick = false;
  int threads = 0;
  int max_steps = 0;
  int dense_reps = 7;
  bool cold = false;
  int build_threads = 1;
  double target = 0.95;
  SelectionParams selection{.sinks = 4, .window = 64, .top_k = 100};
};

void Usage() {
  std::printf(
      "usage: %s --data DIR [--json FILE] [options]\n"
      "  Retrieval attention on real activations: recall, attention mass, output error,\n"
      "  keys scanned, bytes and latency of Attic's indexes and FAISS / hnswlib baselines.\n"
      "  --data DIR        a dump folder (L{l}_k.npy, L{l}_q_decode.npy, optional L{l}_v.npy,\n"
      "                    L{l}_q_prefill.npy, meta.json); an absolute path under ./attic.\n"
      "                    Default: $ATTIC_SHARED_DIR/data/qkv/attic-ref-54m/networkx-16k\n"
      "  --json FILE       also write the result envelope as JSON\n"
      "  --layers 1,4      layers to evaluate (default: every layer in DIR)\n"
      "  --contexts N,...  contexts of the sweep (default: 2048,4096,8192,16384 up to the\n"
      "                    dump's length, and the full length of a longer dump)\n"
      "  --methods a,b     only methods whose name contains one of these\n"
      "  --quick           one layer, one context, 16 steps, two settings per method\n"
      "  --threads N       (layer, head) evaluations in parallel (default: all cores)\n"
      "  --max-steps N     at most N decode steps per context\n"
      "  --sinks S --window W --top-k K   the selection (default 4, 64, 100)\n"
      "  --target R        recall@100 of the matched-recall summary (default 0.95)\n"
      "  --dense-reps N    repetitions of the dense reference (default 7)\n"
      "  --cold            time steps and the dense reference cold (caches streamed out\n"
      "                    before each); default warm (the dense reference after one\n"
      "                    untimed pass). Use with --threads 1\n"
      "  --build-threads N Attic's indexes build on N threads (default 1; baselines: 1);\n"
      "                    build keys/s per core = indexed keys / build seconds / N\n",
      kProgram);
}

template <typename T>
std::vector<T> ParseList(const std::string& s) {
  std::vector<T> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    if constexpr (std::is_same_v<T, std::string>) {
      out.push_back(item);
    } else {
      out.push_back(static_cast<T>(std::stoll(item)));
    }
  }
  return out;
}

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--help" || a == "-h") {
      Usage();
      std::exit(0);
    } else if (a == "--quick") {
      f->quick = true;
    } else if (!has_value) {
      std::fprintf(stderr, "%s: '%s' needs a value or is unknown (try --help)\n", kProgram, a.c_str());
      return false;
    } else if (a == "--data") {
      f->data = argv[++i];
    } else if (a == "--json") {
      f->json = argv[++i];
    } else if (a == "--layers") {
      f->layers = ParseList<int>(argv[++i]);
    } else if (a == "--contexts") {
      f->contexts = ParseList<int64_t>(argv[++i]);
    } else if (a == "--methods") {
      f->methods = ParseList<std::string>(argv[++i]);
    } else if (a == "--threads") {
      f->threads = std::atoi(argv[++i]);
    } else if (a == "--max-steps") {
      f->max_steps = std::atoi(argv[++i]);
    } else if (a == "--build-threads") {
      f->build_threads = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--dense-reps") {
      f->dense_reps = std::atoi(argv[++i]);
    } else if (a == "--cold") {
      f->cold = true;
    } else if (a == "--sinks") {
      f->selection.sinks = std::atoi(argv[++i]);
    } else if (a == "--window") {
      f->selection.window = std::atoi(argv[++i]);
    } else if (a == "--top-k") {
      f->selection.top_k = std::atoi(argv[++i]);
    } else if (a == "--target") {
      f->target = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "%s: unknown argument '%s' (try --help)\n", kProgram, a.c_str());
      return false;
    }
  }
  if (f->data.empty()) {
    // `./attic bench retrieval` exports ATTIC_SHARED_DIR: the reference dump is the default.
    const char* shared = std::getenv("ATTIC_SHARED_DIR");
    if (shared != nullptr && *shared != '\0') {
      f->data = std::string(shared) + "/data/qkv/attic-ref-54m/networkx-16k";
    } else {
      std::fprintf(stderr, "%s: --data DIR is required (try --help)\n", kProgram);
      return false;
    }
  }
  return true;
}

std::vector<int64_t> Contexts(const Flags& flags, const Dataset& ds) {
  std::vector<int64_t> want = flags.contexts;
  if (want.empty()) {
    for (int64_t n : {2048, 4096, 8192, 16384}) {
      if (n <= ds.num_tokens) want.push_back(n);
    }
    if (want.empty() || ds.num_tokens > 16384) want.push_back(ds.num_tokens);
  }
  std::vector<int64_t> out;
  for (int64_t n : want) {
    if (n > ds.num_tokens) {
      std::printf("note: context %lld skipped: the dump has %lld tokens\n",
                  static_cast<long long>(n), static_cast<long long>(ds.num_tokens));
    } else {
      out.push_back(n);
    }
  }
  if (flags.quick && out.size() > 1) out.resize(1);
  return out;
}

// One (layer, KV head) of one context.
struct Task {
  const LayerData* layer = nullptr;
  int kv_head = 0;
  ContextPlan plan;
  StatusOr<HeadResult> result = InternalError("not run");
};

// Runs the dense decision, then the methods (or the dense row), for one task.
StatusOr<HeadResult> RunTask(const Dataset& ds, const Task& t, const std::vector<MethodSpec>& methods,
                             const EvalOptions& options) {
  omp_set_num_threads(1);  // parallelism is over tasks; FAISS must not oversubscribe
  const SampleBuffer sample = GatherSample(ds, *t.layer, t.plan.sample_rows, t.kv_head);
  RETURN_IF_ERROR(CheckNoLeakage(sample.sample, t.plan.indexed));
  ASSIGN_OR_RETURN(HeadDecision d, DecideHead(t.layer->key_rows(t.kv_head).prefix(t.plan.indexed),
                                              sample.sample, ds.scale, options.selection));
  ASSIGN_OR_RETURN(HeadResult r, EvaluateHead(ds, *t.layer, t.kv_head, t.plan, methods, options));
  const std::string where = "layer " + std::to_string(t.layer->layer) + " head " +
                            std::to_string(t.kv_head) + " context " +
                            std::to_string(t.plan.context);
  if (d.available) {
    r.notes.push_back("dense decision, " + where + ": " + (d.dense ? "DENSE" : "sparse") + " (" +
                      d.detail + ")");
    if (d.dense) r.rows.push_back(DenseRow(*t.layer, t.kv_head, t.plan.context, ds.group_size));
  }
  return r;
}

std::vector<Task> PlanTasks(const Dataset& ds, int64_t context, std::vector<std::string>* notes) {
  std::vector<Task> tasks;
  for (const LayerData& l : ds.layers) {
    auto plan = PlanContext(ds, l, context);
    if (!plan.ok()) {
      notes->push_back("layer " + std::to_string(l.layer) + " context " + std::to_string(context) +
                       " skipped: " + std::string(plan.status().message()));
      continue;
    }
    for (int h = 0; h < ds.kv_heads; ++h) tasks.push_back({.layer = &l, .kv_head = h, .plan = *plan});
  }
  return tasks;
}

// The serving policy's figures for one context as envelope rows: recall of the worst sparse
// head against the target, the bytes against a dense pass over every head.
void AddServingRows(const ServingSummary& s, double target, bench::BenchReport* report) {
  const std::vector<bench::Param> params = {{"method", s.method},
                                            {"context", std::to_string(s.context)},
                                            {"heads", std::to_string(s.heads)},
                                            {"sparse_heads", std::to_string(s.sparse_heads)}};
  report->AddRow({.name = "serving_min_recall_at_100", .params = params, .value = s.min_recall,
                  .unit = "recall", .limit = target, .limit_source = "recall target (--target)"});
  report->AddRow({.name = "serving_mean_recall_at_100", .params = params,
                  .value = s.mean_recall, .unit = "recall", .limit = target,
                  .limit_source = "recall target (--target)"});
  report->AddRow({.name = "serving_heads_below_target", .params = params,
                  .value = static_cast<double>(s.below_target), .unit = "heads",
                  .better = "lower"});
  report->AddRow({.name = "serving_sparse_mean_bytes_fraction", .params = params,
                  .value = s.sparse_bytes, .unit = "fraction", .limit = 1.0,
                  .limit_source = "a dense pass", .better = "lower"});
  report->AddRow({.name = "serving_sparse_max_bytes_fraction", .params = params,
                  .value = s.max_sparse_bytes, .unit = "fraction", .limit = 1.0,
                  .limit_source = "a dense pass", .better = "lower"});
  report->AddRow({.name = "serving_all_heads_bytes_fraction", .params = params,
                  .value = s.all_bytes, .unit = "fraction", .limit = 1.0,
                  .limit_source = "a dense pass over every head", .better = "lower"});
}

int Run(const Flags& flags) {
  auto loaded = LoadDataset(flags.data, flags.layers);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s: %s\n", kProgram, loaded.status().ToString().c_str());
    return 1;
  }
  Dataset& ds = *loaded;
  if (flags.quick && flags.layers.empty() && ds.layers.size() > 1) {
    ds.layers.erase(ds.layers.begin(), ds.layers.end() - 1);  // the deepest layer only
  }
  // A multi-threaded build owns the cores: (layer, head) evaluations then run one at a time.
  const int threads = flags.build_threads > 1 ? 1
                      : flags.threads > 0
                          ? flags.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  EvalOptions options{.selection = flags.selection,
                      .max_steps = flags.max_steps > 0 ? flags.max_steps : (flags.quick ? 16 : 0),
                      .cold_steps = flags.cold};
  std::unique_ptr<ThreadPool> build_pool;
  if (flags.build_threads > 1) {
    build_pool = std::make_unique<ThreadPool>(ThreadPoolOptions{.num_threads = flags.build_threads});
  }
  const std::vector<MethodSpec> methods = RetrievalMethods(
      {.quick = flags.quick, .seed = 1, .only = flags.methods, .build_pool = build_pool.get()});
  std::printf("%s: %s: %lld tokens, %zu layer(s), Hq=%d Hkv=%d G=%d D=%d scale=%.5f, first decode "
              "position %lld, prefill stride %lld, %d thread(s)\n",
              kProgram, ds.dir.c_str(), static_cast<long long>(ds.num_tokens), ds.layers.size(),
              ds.q_heads, ds.kv_heads, ds.group_size, ds.head_dim, ds.scale,
              static_cast<long long>(ds.first_decode), static_cast<long long>(ds.prefill_stride),
              threads);
  std::fflush(stdout);
  ThreadPool pool({.num_threads = threads});
  std::vector<EvalRow> rows;
  std::vector<std::string> notes;
  DenseLatencies dense_us;
  for (int64_t context : Contexts(flags, ds)) {
    auto dense = DenseLatencyUs(ds, ds.layers[0], 0, context, flags.quick ? 3 : flags.dense_reps,
                                flags.cold);
    if (!dense.ok()) {
      std::fprintf(stderr, "%s: %s\n", kProgram, dense.status().ToString().c_str());
      return 1;
    }
    dense_us[context] = *dense;
    std::vector<Task> tasks = PlanTasks(ds, context, &notes);
    const auto t0 = std::chrono::steady_clock::now();
    pool.ParallelFor(static_cast<int64_t>(tasks.size()), [&](int64_t i) {
      Task& t = tasks[static_cast<size_t>(i)];
      t.result = RunTask(ds, t, methods, options);
    });
    for (Task& t : tasks) {
      if (!t.result.ok()) {
        std::fprintf(stderr, "%s: %s\n", kProgram, t.result.status().ToString().c_str());
        return 1;
      }
      for (EvalRow& r : t.result->rows) rows.push_back(std::move(r));
      for (std::string& n : t.result->notes) notes.push_back(std::move(n));
    }
    std::fprintf(stderr, "%s: context %lld done in %.1f s (dense reference %.1f us)\n", kProgram,
                 static_cast<long long>(context),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 *dense);
  }
  std::set<std::string> printed;
  for (const std::string& n : notes) {
    if (printed.insert(n.substr(0, n.find(" ("))).second) std::printf("note: %s\n", n.c_str());
  }
  std::printf("\nDense reference (one thread, one GQA group, %s):",
              flags.cold ? "cold: K/V not in cache, and every step timed cold too"
                         : "warm: after one untimed pass; steps timed warm too");
  for (const auto& [n, us] : dense_us) std::printf(" %lld: %.1f us", static_cast<long long>(n), us);
  std::printf("\n\n");
  PrintRows(stdout, rows, dense_us);
  PrintMatchedRecall(stdout, rows, dense_us, flags.target);
  std::vector<ServingSummary> serving;
  for (const char* method : {"attic-serving", "attic-serving-guarded"}) {
    for (ServingSummary& s : PrintServingPolicy(stdout, rows, dense_us, flags.target, method)) {
      serving.push_back(std::move(s));
    }
  }

  bench::BenchReport report("retrieval");
  report.AddHostFact("data", ds.dir);
  report.AddHostFact("selection", "sinks=" + std::to_string(flags.selection.sinks) +
                                      " window=" + std::to_string(flags.selection.window) +
                                      " top_k=" + std::to_string(flags.selection.top_k));
  report.AddHostFact("threads", std::to_string(threads));
  report.AddHostFact("build_threads", std::to_string(flags.build_threads));
  report.AddHostFact("timing", flags.cold ? "cold" : "warm");
  for (const EvalRow& r : rows) report.AddRawRow(RowJson(r, dense_us[r.context]));
  for (const ServingSummary& s : serving) AddServingRows(s, flags.target, &report);
  return report.Finish(flags.json, kProgram);
}

}  // namespace
}  // namespace attic::retrieval::eval

int main(int argc, char** argv) {
  attic::retrieval::eval::Flags flags;
  if (!attic::retrieval::eval::ParseFlags(argc, argv, &flags)) return 2;
  return attic::retrieval::eval::Run(flags);
}
