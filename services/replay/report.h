// What attic-replay measured, and its renderings: the summary table, the JSON file and the
// self-contained HTML report (inline SVG charts, no external assets), plus the progress line.
//
//   ReplayReport r = driver.Run();
//   ReplaySummary s = Summarize(r);
//   std::cout << RenderTable(r, s);
//   WriteFile(json_path, RenderJson(r, s));
//   WriteFile(html_path, RenderHtml(r, s));
//
// Honest accounting: every request of the slice is admitted; each ends completed (code OK) or
// failed with its code, so completed + failed = admitted always holds in the summary.
//
// Thread safety: stateless functions over const data.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace attic::replay {

// The configuration a replay ran with (the JSON's "config" object, field for field).
struct ReplayConfig {
  std::string trace;   // file path
  std::string format;  // "mooncake" / "azure"
  int64_t start = 0;
  int64_t limit = -1;
  double speedup = 1.0;
  std::string model;  // preset name
  int layers = 0;     // layers replayed (the preset's, or --layers)
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_tokens = 0;
  std::string dtype;
  int64_t kv_bytes_per_token = 0;  // over all replayed layers
  int max_concurrency = 0;         // requests prefilling or decoding at once
  int max_queue = 0;               // requests waiting for a slot; one more fails RESOURCE_EXHAUSTED
  int prefill_threads = 0;
  uint64_t seed = 0;
  std::string scheduler;  // host:port
  int workers = 0;        // workers alive when the replay started
  std::string tenant;
};

struct RequestRecord {
  int64_t index = 0;           // request number in the trace file
  double arrival_ms = 0;       // scheduled issue time (trace time / speedup), from the start
  double start_ms = -1;        // got a concurrency slot (-1: never)
  double first_token_ms = -1;  // prefill done, joined the decode batch (-1: never)
  double end_ms = -1;          // completed or failed
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t prefix_tokens = 0;  // prompt tokens served from the prefix cache
  bool lookup_done = false;   // LookupPrefix answered, so prefix_tokens is known (also
                              // implied by prefill_ms >= 0)
  int64_t decode_steps = 0;   // decode steps done
  double prefill_ms = -1;     // place + open + lookup + prefill, -1 if it did not finish
  StatusCode code = StatusCode::kOk;
  std::string error;      // the failure's message (empty when completed)
  std::string placement;  // the scheduler's reason ("prefix-affinity", ...)
};

// One sample of the run's state, taken about every 100-500 ms.
struct TimelineSample {
  double t_ms = 0;
  int64_t completed = 0;  // cumulative
  int64_t failed = 0;     // cumulative
  int64_t decoding = 0;   // requests in the decode batch now
  int64_t prefilling = 0;
  int64_t queued = 0;
  int64_t decode_tokens = 0;   // cumulative
  uint64_t kv_bytes_dram = 0;  // over the fleet (from the scheduler's fleet figures)
  uint64_t kv_bytes_ssd = 0;
  uint64_t bytes_sent = 0;  // cumulative, client to workers
};

// What decode attention did over the run (docs/replay.md, "Attention"). Sums over every
// (request, layer, KV head, step) answered; a head answered densely counts its whole context.
struct AttentionTotals {
  std::string policy = "dense";  // dense | auto | retrieval
  uint64_t head_steps = 0;
  uint64_t dense_head_steps = 0;  // answered densely (diffuse, index not ready, short context)
  uint64_t stand_in_head_steps = 0;  // answered sparse through a worker's stand-in index
  uint64_t keys_touched = 0;      // keys scored exactly or selected (their union), per head
  uint64_t keys_context = 0;      // context keys of the same heads (what a dense pass touches)
  uint64_t bytes_read = 0;        // K, V and index bytes the workers read
  uint64_t dense_bytes = 0;       // what a dense pass over the same heads reads
  uint64_t ssd_bytes = 0;         // of bytes_read, values read from SSD
  uint64_t recall_heads = 0;      // online recall: heads checked, their k, hits among those
  uint64_t recall_exact = 0;
  uint64_t recall_hits = 0;
  std::vector<uint64_t> layer_head_steps;  // [layers]
  std::vector<uint64_t> layer_dense_head_steps;

  // The report's figures, fractions in [0, 1] (0 where nothing was counted).
  double sparse_fraction() const {
    return head_steps == 0 ? 0.0 : 1.0 - Ratio(dense_head_steps, head_steps);
  }
  double layer_sparse_fraction(size_t layer) const {
    return layer_head_steps[layer] == 0
               ? 0.0
               : 1.0 - Ratio(layer_dense_head_steps[layer], layer_head_steps[layer]);
  }
  double stand_in_fraction() const { return Ratio(stand_in_head_steps, head_steps); }
  double keys_touched_fraction() const { return Ratio(keys_touched, keys_context); }
  double bytes_fraction() const { return Ratio(bytes_read, dense_bytes); }
  // Online recall@k; meaningful only when recall_exact > 0.
  double recall() const { return Ratio(recall_hits, recall_exact); }

 private:
  static double Ratio(uint64_t a, uint64_t b) {
    return b == 0 ? 0.0 : static_cast<double>(a) / static_cast<double>(b);
  }
};

struct ReplayReport {
  ReplayConfig config;
  std::vector<RequestRecord> requests;  // every admitted request, in trace order
  std::vector<float> step_latency_ms;   // every decode step of the batch (all layers)
  std::vector<int32_t> step_batch;      // requests in the batch at each step
  std::vector<TimelineSample> timeline;
  double wall_s = 0;          // first arrival to last request's end
  int64_t decode_tokens = 0;  // decode tokens generated (one per request per step)
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t attend_bytes_read = 0;  // K and V bytes the workers' Attend calls read
  AttentionTotals attention;
  uint64_t kv_bytes_dram_peak = 0;
  uint64_t kv_bytes_ssd_peak = 0;
  std::string started_at;  // ISO 8601 UTC wall-clock time the run started
};

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
  int64_t count = 0;
};

// Nearest-rank percentiles (p-th: the smallest value with at least p % of the values at or
// below it), max and mean; all zero for no values.
Percentiles ComputePercentiles(std::vector<double> values);

struct ReplaySummary {
  int64_t requests_admitted = 0;
  int64_t requests_completed = 0;
  int64_t requests_failed = 0;
  std::map<std::string, int64_t> failures_by_code;  // "RESOURCE_EXHAUSTED" -> n
  double decode_tokens_per_s = 0;                   // decode_tokens / wall_s
  double request_rate = 0;                          // completed requests per second of wall time
  Percentiles step_latency_ms;
  Percentiles prefill_latency_ms;  // completed prefills
  Percentiles ttft_ms;             // arrival to first decode step
  double prefix_hit_ratio = 0;     // prefix-cache prompt tokens / prompt tokens of requests
                                   // that got past their lookup (lookup_done or a
                                   // finished prefill); 0 when there are none
  int64_t prompt_tokens = 0;       // the ratio's denominator
  int64_t prefix_tokens = 0;       // the ratio's numerator
};

ReplaySummary Summarize(const ReplayReport& report);

// What decode attention did, as the text table's "attention" lines (the first unindented):
// policy and share of heads sparse, keys touched, bytes against a dense pass, by layer, the
// stand-in share, online recall. Each line ends in a newline.
std::string AttentionText(const AttentionTotals& attention);

// A fixed-width text table of the summary, ending in a newline.
std::string RenderTable(const ReplayReport& report, const ReplaySummary& summary);

// The JSON file: every ReplaySummary figure under the names the issue lists
// (requests_admitted, requests_completed, requests_failed, failures_by_code,
// decode_tokens_per_s, step_latency_ms{p50,p90,p99}, prefill_latency_ms{...}, kv_bytes{dram,ssd},
// prefix_hit_ratio, bytes_sent, config{...}) plus the timeline and per-request records.
// Latency objects also carry max, mean and count; step_latency_ms has "cdf", about a hundred
// [ms, fraction] pairs. kv_bytes are the fleet's peaks. Also: request_rate, decode_tokens,
// decode_steps, mean_step_batch, ttft_ms{...}, prompt_tokens, prefix_tokens, bytes_received,
// attend_bytes_read, wall_s, started_at. "timeline" holds one object per TimelineSample and
// "requests" one per RequestRecord (field names as in the structs, "code" as its UPPER_SNAKE name);
// a time that never came (-1 in the record) is null. Ends in a newline.
std::string RenderJson(const ReplayReport& report, const ReplaySummary& summary);

// One HTML page, no external assets (inline CSS and SVG, no script, no URL): the summary
// table, the latency CDFs (decode step, prefill, TTFT; log time axis), throughput (decode
// tokens/s) and KV memory (DRAM, SSD) over time, requests in flight and queued over time, the
// failures by code with the first failed requests' messages, and the configuration. Every
// text from the report is HTML-escaped.
std::string RenderHtml(const ReplayReport& report, const ReplaySummary& summary);

// One progress line (no newline), at most `width` columns:
// "[#########.........] 120/300 done 3 failed | decoding 24 prefilling 2 queued 5 | 1830 tok/s".
// "done" counts completed and failed requests. The bar takes what the text leaves (at least 10
// columns); when width is short the batch state, then the rate, then the bar are dropped, and
// the line is cut at `width` as a last resort.
std::string ProgressLine(const TimelineSample& now, int64_t total, double decode_tokens_per_s,
                         int width);

}  // namespace attic::replay
