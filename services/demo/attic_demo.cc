// attic-demo: the quick start's main job.
//
// Starts two attic-worker processes on loopback and plays the compute node: the reference
// model's real attention activations (shared/data/qkv; a seeded synthetic set of the same
// shapes when absent) are prefilled into the fleet through attic::Client, then the 256
// recorded decode steps run layer by layer — each appends the token's K/V on the workers,
// attends there and merges the partial results in the client — and outputs are checked
// against fp64 attention computed locally. Three sequences show the three ways a context can
// live on the fleet: KV heads split over both workers, tokens split over both workers, and a
// copy of the first prompt that the prefix cache serves without resending it.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "client/client.h"
#include "services/demo/activations.h"
#include "services/loadgen/decode_driver.h"
#include "services/loadgen/engine_model.h"
#include "services/loadgen/worker_process.h"

namespace attic::demo {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Flags {
  std::string shared_dir;
  int workers = 2;
  int threads = 1;      // compute threads per worker
  int check_every = 16;
  DType dtype = DType::kBFloat16;
};

void Usage() {
  std::printf(
      "usage: attic-demo [--shared-dir DIR] [--threads N] [--check-every N] [--dtype T]\n"
      "  Starts 2 local attic-workers and replays 256 decode steps of real attention\n"
      "  activations through attic::Client; prints throughput, per-layer latency and the error\n"
      "  against fp64 attention.\n"
      "  --shared-dir DIR  folder holding data/qkv (default: ../shared if present; else a\n"
      "                    seeded synthetic set is used)\n"
      "  --threads N       compute threads per worker (default 1)\n"
      "  --check-every N   compare with fp64 attention every N steps (default 16)\n"
      "  --dtype T         KV storage dtype bf16|fp16|fp32 (default bf16)\n");
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
      f->threads = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--check-every" && has_value) {
      f->check_every = std::max(1, std::atoi(argv[++i]));
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

void Die(const Status& s) {
  std::fprintf(stderr, "attic-demo: %s\n", s.ToString().c_str());
  std::exit(1);
}

std::vector<std::string> WorkerArgs(const ModelSpec& spec, int threads,
                                    const std::string& data_dir) {
  std::vector<std::string> args = loadgen::WorkerModelArgs(spec);
  args.insert(args.end(), {"--kv-memory-bytes", "256MiB", "--compute-threads",
                           std::to_string(threads), "--log-level", "warn", "--data-dir",
                           data_dir});
  return args;
}

// A scratch directory for the workers' SSD tiers, removed when the demo ends.
struct DataDirs {
  std::string root;
  DataDirs() {
    std::string tmpl = (fs::temp_directory_path() / "attic-demo-XXXXXX").string();
    if (mkdtemp(tmpl.data()) != nullptr) root = tmpl;
  }
  ~DataDirs() {
    std::error_code ec;
    if (!root.empty()) fs::remove_all(root, ec);
  }
};

// One Attend per layer of a fixed query over every sequence, without appending: what the
// sequences hold, as attention sees it.
StatusOr<std::vector<float>> Probe(Client& client, const ModelSpec& spec,
                                   const std::vector<uint64_t>& ids) {
  const size_t per = static_cast<size_t>(spec.num_q_heads) * spec.head_dim;
  std::vector<float> q(per);
  for (size_t i = 0; i < per; ++i) q[i] = static_cast<float>((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  std::vector<float> out(static_cast<size_t>(spec.num_layers) * ids.size() * (per + spec.num_q_heads));
  size_t at = 0;
  for (int layer = 0; layer < spec.num_layers; ++layer) {
    AttendBatch batch{.layer = layer};
    for (uint64_t id : ids) {
      batch.items.push_back({.id = id,
                             .q = TensorView(q.data(), DType::kFloat32,
                                             {spec.num_q_heads, spec.head_dim}),
                             .out = out.data() + at,
                             .lse = out.data() + at + per});
      at += per + static_cast<size_t>(spec.num_q_heads);
    }
    StatusOr<AttendStats> s = client.Attend(std::move(batch)).get();
    if (!s.ok()) return s.status();
  }
  return out;
}

ModelSpec DemoSpec(const Activations& act, DType dtype) {
  return ModelSpec{.name = "attic-ref-54m",
                   .num_layers = static_cast<int>(act.layers.size()),
                   .num_q_heads = act.q_heads,
                   .num_kv_heads = act.kv_heads,
                   .head_dim = act.head_dim,
                   .dtype = dtype,
                   .block_size = 64,
                   .softmax_scale = act.scale};
}

void PrintIntro(const Activations& act, const ModelSpec& spec) {
  std::printf("Attic demo: decode attention offloaded to a local fleet\n");
  std::printf("  activations  %s\n", act.source.c_str());
  std::printf("  model        %s (layers %d and %d of the reference model)\n",
              spec.ToString().c_str(), act.layers[0].layer, act.layers[1].layer);
}

using Workers = std::vector<std::unique_ptr<loadgen::WorkerProcess>>;

// Starts flags.workers attic-workers, each with its SSD tier under data_root; returns the
// options of a client that uses them all.
ClientOptions StartWorkers(const Flags& flags, const ModelSpec& spec, const std::string& data_root,
                           Workers* workers) {
  ClientOptions copts;
  for (int i = 0; i < flags.workers; ++i) {
    workers->push_back(std::make_unique<loadgen::WorkerProcess>(loadgen::WorkerProcessOptions{
        .binary = loadgen::SiblingBinary("attic-worker"),
        .args = WorkerArgs(spec, flags.threads, data_root + "/w" + std::to_string(i)),
        .name = "demo-w" + std::to_string(i)}));
    loadgen::WorkerProcess& w = *workers->back();
    Status s = w.Start(std::chrono::seconds(60));
    if (!s.ok()) Die(s);
    std::printf("  worker %d     pid %d, data %s, metrics http://%s/metrics\n", i,
                static_cast<int>(w.pid()), w.data_address().c_str(), w.control_address().c_str());
    copts.workers.push_back(w.data_address());
  }
  copts.spec = spec;
  copts.name = "attic-demo";
  return copts;
}

// The recorded activations as the engine model replays them: the prompt's K/V, then one
// query per decode step. The views point into act.
std::vector<loadgen::RecordedLayer> RecordedLayers(const Activations& act) {
  const int prompt = act.tokens - act.steps;
  std::vector<loadgen::RecordedLayer> recorded;
  for (const LayerActivations& la : act.layers) {
    const int64_t t = act.tokens, hkv = act.kv_heads, hq = act.q_heads, d = act.head_dim;
    recorded.push_back({.k = TensorView(la.k.data(), DType::kFloat16, {t, hkv, d}),
                        .v = TensorView(la.v.data(), DType::kFloat16, {t, hkv, d}),
                        .q = TensorView(la.q.data(), DType::kFloat16, {act.steps, hq, d}),
                        .first_q = prompt});
  }
  return recorded;
}

// One demo sequence: its id, the content its prompt hashes name, where it lives on the fleet.
struct Placed {
  uint64_t id;
  uint64_t content;
  ShardPlan plan;
  const char* what;
};

// The same recorded context three times: 1 split by KV head, 2 split by tokens at the
// middle, 3 on the same shards as 1 (its whole prompt comes from the prefix cache).
std::vector<Placed> Placements(const ModelSpec& spec, int prompt) {
  const int64_t middle = prompt / 2 / spec.block_size * spec.block_size;
  return {
      {1, 7, ShardPlan::SplitHeads(spec, {0, 1}), "KV heads split over both workers"},
      {2, 8, ShardPlan::SplitTokens(spec, {0, 1}, {0, middle}), "tokens split at the middle"},
      {3, 7, ShardPlan::SplitHeads(spec, {0, 1}), "same prompt as 1: prefix cache"},
  };
}

// Opens p, looks its prompt up in the prefix cache and prefills every layer; prints how much
// of the prompt the cache served and what was sent.
void PrefillSequence(Client& client, loadgen::EngineModel& model, const Placed& p,
                     const std::vector<loadgen::RecordedLayer>& recorded, const ModelSpec& spec,
                     int prompt) {
  // The prompt's block hashes name its content: 1 and 3 share theirs.
  model.AddRecordedSequence({.id = p.id,
                             .prompt_tokens = prompt,
                             .shared_prefix_tokens = prompt,
                             .prefix_content = p.content},
                            recorded);
  const std::vector<uint64_t> hashes = model.PromptHashes(p.id);
  const auto t0 = Clock::now();
  Status s = client.Open({.id = p.id, .tenant = "demo", .plan = p.plan}).get();
  if (!s.ok()) Die(s);
  StatusOr<PrefixMatch> match = client.LookupPrefix(p.id, hashes).get();
  if (!match.ok()) Die(match.status());
  std::vector<std::future<Status>> pending;
  for (int layer = 0; layer < spec.num_layers; ++layer) {
    pending.push_back(client.Prefill(p.id, layer, 0, model.K(p.id, layer, 0, prompt),
                                     model.V(p.id, layer, 0, prompt)));
  }
  for (auto& f : pending) {
    Status fs = f.get();
    if (!fs.ok()) Die(fs);
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  const double bytes = static_cast<double>(prompt - match->matched_tokens) * spec.num_layers *
                       spec.num_kv_heads * spec.head_dim * 2 * DTypeSize(spec.dtype);
  std::printf("  sequence %llu  %-34s %6lld tokens from the prefix cache, %7.1f MB sent in "
              "%6.1f ms\n",
              static_cast<unsigned long long>(p.id), p.what,
              static_cast<long long>(match->matched_tokens), bytes / 1e6, secs * 1e3);
}

// Prefills every placed sequence in order; returns their ids.
std::vector<uint64_t> PrefillAll(Client& client, loadgen::EngineModel& model,
                                 const std::vector<Placed>& placed,
                                 const std::vector<loadgen::RecordedLayer>& recorded,
                                 const ModelSpec& spec, int prompt) {
  std::printf("\nprefill: %d tokens x %d layers per sequence\n", prompt, spec.num_layers);
  std::vector<uint64_t> ids;
  for (const Placed& p : placed) {
    PrefillSequence(client, model, p, recorded, spec, prompt);
    ids.push_back(p.id);
  }
  return ids;
}

// What the decode steps measured.
struct DecodeTotals {
  std::vector<double> layer_seconds;  // one per (step, layer) Attend
  double max_err = 0.0;
  double max_lse = 0.0;
  int checked = 0;  // layer-steps compared with fp64 attention
  uint64_t keys = 0;
  double decode_s = 0.0;
};

// `steps` decode steps of every layer over the batch `ids`, compared with fp64 attention every
// check_every steps and at the last.
DecodeTotals DecodeAll(Client& client, loadgen::EngineModel& model,
                       const std::vector<uint64_t>& ids, int steps, int num_layers,
                       int check_every) {
  std::printf("\ndecode: %d steps x %d layers, batch of %zu sequences\n", steps, num_layers,
              ids.size());
  DecodeTotals totals;
  const auto d0 = Clock::now();
  for (int step = 0; step < steps; ++step) {
    const bool check = step % check_every == 0 || step == steps - 1;
    for (int layer = 0; layer < num_layers; ++layer) {
      StatusOr<loadgen::StepResult> r = loadgen::DecodeStep(client, model, layer, ids, check);
      if (!r.ok()) Die(r.status());
      totals.layer_seconds.push_back(r->seconds);
      totals.keys += r->keys_scanned;
      if (r->checked) {
        totals.max_err = std::max(totals.max_err, r->max_relative_error);
        totals.max_lse = std::max(totals.max_lse, r->max_lse_error);
        ++totals.checked;
      }
    }
  }
  totals.decode_s = std::chrono::duration<double>(Clock::now() - d0).count();
  return totals;
}

void PrintDecode(const DecodeTotals& totals, const ModelSpec& spec, size_t sequences, int steps) {
  double attend_s = 0.0;
  for (double s : totals.layer_seconds) attend_s += s;
  const double kv_bytes =
      static_cast<double>(totals.keys) * spec.head_dim * 2 * DTypeSize(spec.dtype);
  std::printf("  per-layer Attend latency  p50 %.0f us, p99 %.0f us\n",
              loadgen::Percentile(totals.layer_seconds, 0.5) * 1e6,
              loadgen::Percentile(totals.layer_seconds, 0.99) * 1e6);
  std::printf("  decode throughput         %.0f tokens/s (%zu sequences x %d steps in %.2f s; "
              "%.2f s in Attend)\n",
              static_cast<double>(sequences) * steps / totals.decode_s, sequences, steps,
              totals.decode_s, attend_s);
  std::printf("  KV read by the workers    %.1f GB/s while attending\n", kv_bytes / attend_s / 1e9);
  std::printf("  accuracy vs fp64          max relative error %.2e, max |lse| error %.2e "
              "(%d layer-steps checked, bound 5e-3)\n",
              totals.max_err, totals.max_lse, totals.checked);
}

// Tokens summed over sequences x layers: held by the workers, and durable on their SSD tiers.
struct TokenCounts {
  int64_t durable = 0;
  int64_t held = 0;
};

TokenCounts CountTokens(Client& client, const std::vector<uint64_t>& ids, int num_layers) {
  TokenCounts counts;
  for (uint64_t id : ids) {
    for (int layer = 0; layer < num_layers; ++layer) {
      const StatusOr<int64_t> d = client.DurableLength(id, layer);
      const StatusOr<int64_t> n = client.Length(id, layer);
      counts.durable += d.ok() ? *d : 0;
      counts.held += n.ok() ? *n : 0;
    }
  }
  return counts;
}

// Kills the worker with SIGKILL and starts it again on its data directory; returns the
// seconds until it was ready.
double KillAndRestart(loadgen::WorkerProcess& worker) {
  const auto k0 = Clock::now();
  StatusOr<int> killed = worker.Kill(SIGKILL);
  if (!killed.ok()) Die(killed.status());
  Status restarted = worker.Start(std::chrono::seconds(120));
  if (!restarted.ok()) Die(restarted);
  return std::chrono::duration<double>(Clock::now() - k0).count();
}

// Takes every placed sequence over again; returns the tokens resumed (sequences x layers).
int64_t ResumeAll(Client& client, const std::vector<Placed>& placed) {
  int64_t recovered = 0;
  for (const Placed& p : placed) {
    StatusOr<ResumeInfo> r = client.Resume({.id = p.id, .tenant = "demo", .plan = p.plan}).get();
    if (!r.ok()) Die(r.status());
    for (int64_t n : r->lengths) recovered += n;
  }
  return recovered;
}

struct RestartOutcome {
  int64_t held = 0;       // tokens held before the crash (sequences x layers)
  int64_t recovered = 0;  // tokens resumed after it
  bool same = false;      // attention identical before and after
};

// Durability: every worker writes its blocks through to an SSD tier (RocksDB). Kill one with
// SIGKILL, restart it on its directory, take the sequences over again, and ask the same
// question as before the crash.
RestartOutcome CrashAndRecover(Client& client, const ModelSpec& spec,
                               const std::vector<uint64_t>& ids, const std::vector<Placed>& placed,
                               loadgen::WorkerProcess& victim) {
  std::printf("\nrestart: SIGKILL worker 1, restart it on its data directory, resume\n");
  const TokenCounts before_crash = CountTokens(client, ids, spec.num_layers);
  std::printf("  durable before the crash  %lld of %lld tokens (sequences x layers)\n",
              static_cast<long long>(before_crash.durable),
              static_cast<long long>(before_crash.held));
  StatusOr<std::vector<float>> before = Probe(client, spec, ids);
  if (!before.ok()) Die(before.status());
  const double restart_s = KillAndRestart(victim);
  RestartOutcome outcome{.held = before_crash.held, .recovered = ResumeAll(client, placed)};
  StatusOr<std::vector<float>> after = Probe(client, spec, ids);
  if (!after.ok()) Die(after.status());
  outcome.same = *before == *after;
  std::printf("  restarted and recovered   in %.2f s; %lld tokens resumed (sequences x layers)\n",
              restart_s, static_cast<long long>(outcome.recovered));
  std::printf("  attention after restart   %s\n",
              outcome.same ? "identical to before the crash" : "DIFFERENT from before the crash");
  return outcome;
}

// Closes the sequences, disconnects, then stops the workers with SIGTERM.
void Shutdown(const std::vector<uint64_t>& ids, std::unique_ptr<Client>* client, Workers& workers) {
  for (uint64_t id : ids) {
    Status s = (*client)->Close(id).get();
    if (!s.ok()) Die(s);
  }
  client->reset();
  for (auto& w : workers) {
    StatusOr<int> st = w->Kill(SIGTERM);
    if (!st.ok()) Die(st.status());
  }
}

int Run(const Flags& flags) {
  StatusOr<Activations> act_or = LoadActivations(QkvDir(flags));
  if (!act_or.ok()) Die(act_or.status());
  const Activations& act = *act_or;
  const int prompt = act.tokens - act.steps;
  const ModelSpec spec = DemoSpec(act, flags.dtype);
  PrintIntro(act, spec);

  // Static so that Die()'s std::exit still kills the workers (it runs static destructors).
  static Workers workers;
  static DataDirs dirs;
  if (dirs.root.empty()) Die(UnavailableError("cannot create a data directory under " +
                                              fs::temp_directory_path().string()));
  StatusOr<std::unique_ptr<Client>> client_or =
      Client::Connect(StartWorkers(flags, spec, dirs.root, &workers));
  if (!client_or.ok()) Die(client_or.status());
  Client& client = **client_or;

  loadgen::EngineModel model(spec, /*seed=*/2026);
  const std::vector<loadgen::RecordedLayer> recorded = RecordedLayers(act);
  const std::vector<Placed> placed = Placements(spec, prompt);
  const std::vector<uint64_t> ids = PrefillAll(client, model, placed, recorded, spec, prompt);
  const DecodeTotals decode =
      DecodeAll(client, model, ids, act.steps, spec.num_layers, flags.check_every);
  PrintDecode(decode, spec, ids.size(), act.steps);
  const RestartOutcome restart = CrashAndRecover(client, spec, ids, placed, *workers[1]);
  Shutdown(ids, &*client_or, workers);

  const bool ok = decode.max_err < 5e-3 && restart.same && restart.recovered == restart.held;
  std::printf("\n%s\n", ok ? "OK: every checked output matches exact attention, and a killed "
                                 "worker came back with everything."
                            : "FAILED: outputs differ from exact attention or were lost in the "
                              "restart.");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace attic::demo

int main(int argc, char** argv) {
  attic::demo::Flags flags;
  const int rc = attic::demo::ParseFlags(argc, argv, &flags);
  if (rc >= 0) return rc;
  return attic::demo::Run(flags);
}
