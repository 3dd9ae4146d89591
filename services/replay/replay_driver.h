// ReplayDriver: replays a trace open-loop against a fleet, as an inference engine with
// continuous batching would drive it, and measures what happened (report.h).
//
//   DriverOptions o{.spec = spec, .scheduler = "127.0.0.1:7300", .speedup = 4};
//   ASSIGN_OR_RETURN(ReplayReport report, ReplayDriver(o, trace).Run());
//
// Requests arrive on the trace clock divided by the speed-up. A request takes a concurrency
// slot when one is free, else waits in a bounded queue; one that finds the queue full fails
// with RESOURCE_EXHAUSTED. With a slot it is placed by the scheduler, opened, looked up in the
// prefix cache, and the missing part of its prompt is prefilled (prefill threads, chunked),
// then it joins the decode batch. Every decode step runs the batch through all layers: per
// layer one Attend of every decoding request (q and the new token's k/v, synthetic, see
// synthetic.h), so a step is what one engine iteration waits for. After output_tokens steps
// the request is closed. Every request ends completed or failed with the code it met.
//
// Thread safety: Run() once, from one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/model_spec.h"
#include "common/status.h"
#include "services/replay/report.h"
#include "services/replay/trace.h"

namespace attic::replay {

// How decode steps attend (docs/replay.md, "Attention"):
enum class AttentionPolicy {
  kDense,      // every head over every token
  kAuto,       // retrieval attention where the worker's profile finds the head sparse
  kRetrieval,  // retrieval attention on every head (SparseOptions::force)
};
std::string_view AttentionPolicyName(AttentionPolicy p);

struct DriverOptions {
  ModelSpec spec;          // the replayed model (layers already scaled)
  std::string model_name;  // the preset's name, for the report
  std::string scheduler;   // host:port
  double speedup = 1.0;
  int max_concurrency = 0;  // 0: from the fleet's free KV memory and the trace's lengths
  int max_queue = -1;       // -1: 4 x max_concurrency
  int prefill_threads = 2;
  int64_t prefill_chunk_tokens = 8192;
  uint64_t seed = 1;
  AttentionPolicy attention = AttentionPolicy::kAuto;
  // Retrieval: every this many prompt positions, the query is sent with Client::BuildIndex
  // for the workers' indexes and head profiles to learn from.
  int index_sample_stride = 16;
  std::string tenant = "replay";
  std::chrono::milliseconds timeout{120000};  // each client call
  bool progress = true;                       // a progress line on stderr
};

class ReplayDriver {
 public:
  ReplayDriver(DriverOptions options, Trace trace);
  ~ReplayDriver();
  ReplayDriver(const ReplayDriver&) = delete;
  ReplayDriver& operator=(const ReplayDriver&) = delete;

  // Errors only for what stops the replay from starting (no scheduler, no live worker, a
  // client that cannot connect); request failures are in the report.
  StatusOr<ReplayReport> Run();

  // The concurrency Run() uses when max_concurrency is 0: the fleet's free KV bytes (DRAM)
  // over the mean KV bytes of the trace's requests (prompt + output), at least 1, at most 256.
  static int AutoConcurrency(uint64_t fleet_free_bytes, const Trace& trace, const ModelSpec& spec);

  struct Impl;

 private:
  DriverOptions options_;
  Trace trace_;
};

}  // namespace attic::replay
