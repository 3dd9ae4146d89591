#include "services/replay/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>

#include "services/replay/internal/report_format.h"

namespace attic::replay {
namespace {

using internal::FormatBytes;
using internal::FormatCount;
using internal::FormatMs;
using internal::FormatPercent;
using internal::FormatRate;
using Json = nlohmann::ordered_json;

// Nearest rank: the smallest value with at least p % of the values at or below it.
double NearestRank(const std::vector<double>& sorted, double p) {
  const auto n = static_cast<double>(sorted.size());
  const auto rank = static_cast<size_t>(std::max(1.0, std::ceil(p / 100.0 * n)));
  return sorted[std::min(rank, sorted.size()) - 1];
}

// Whether a request's prefix_tokens is known: its LookupPrefix answered.
bool LookedUp(const RequestRecord& r) { return r.lookup_done || r.prefill_ms >= 0; }

// Milliseconds rounded to microseconds (keeps the JSON short); null for "never" (negative).
Json MsOrNull(double ms) {
  if (ms < 0 || !std::isfinite(ms)) return nullptr;
  return std::round(ms * 1000) / 1000;
}

double Finite(double v) { return std::isfinite(v) ? v : 0.0; }

Json PercentilesJson(const Percentiles& p) {
  return Json{{"p50", Finite(p.p50)}, {"p90", Finite(p.p90)},   {"p99", Finite(p.p99)},
              {"max", Finite(p.max)}, {"mean", Finite(p.mean)}, {"count", p.count}};
}

Json ConfigJson(const ReplayConfig& c) {
  return Json{{"trace", c.trace},
              {"format", c.format},
              {"start", c.start},
              {"limit", c.limit},
              {"speedup", Finite(c.speedup)},
              {"model", c.model},
              {"layers", c.layers},
              {"num_q_heads", c.num_q_heads},
              {"num_kv_heads", c.num_kv_heads},
              {"head_dim", c.head_dim},
              {"block_tokens", c.block_tokens},
              {"dtype", c.dtype},
              {"kv_bytes_per_token", c.kv_bytes_per_token},
              {"max_concurrency", c.max_concurrency},
              {"max_queue", c.max_queue},
              {"prefill_threads", c.prefill_threads},
              {"seed", c.seed},
              {"scheduler", c.scheduler},
              {"workers", c.workers},
              {"tenant", c.tenant}};
}

Json TimelineJson(const std::vector<TimelineSample>& timeline) {
  Json out = Json::array();
  for (const TimelineSample& s : timeline) {
    out.push_back(Json{{"t_ms", MsOrNull(s.t_ms)},
                       {"completed", s.completed},
                       {"failed", s.failed},
                       {"decoding", s.decoding},
                       {"prefilling", s.prefilling},
                       {"queued", s.queued},
                       {"decode_tokens", s.decode_tokens},
                       {"kv_bytes_dram", s.kv_bytes_dram},
                       {"kv_bytes_ssd", s.kv_bytes_ssd},
                       {"bytes_sent", s.bytes_sent}});
  }
  return out;
}

Json RequestsJson(const std::vector<RequestRecord>& requests) {
  Json out = Json::array();
  for (const RequestRecord& r : requests) {
    out.push_back(Json{{"index", r.index},
                       {"arrival_ms", MsOrNull(r.arrival_ms)},
                       {"start_ms", MsOrNull(r.start_ms)},
                       {"first_token_ms", MsOrNull(r.first_token_ms)},
                       {"end_ms", MsOrNull(r.end_ms)},
                       {"input_tokens", r.input_tokens},
                       {"output_tokens", r.output_tokens},
                       {"prefix_tokens", r.prefix_tokens},
                       {"lookup_done", r.lookup_done},
                       {"decode_steps", r.decode_steps},
                       {"prefill_ms", MsOrNull(r.prefill_ms)},
                       {"code", std::string(StatusCodeName(r.code))},
                       {"error", r.error},
                       {"placement", r.placement}});
  }
  return out;
}

// A table row: label, then five right-aligned figures.
std::string LatencyRow(std::string_view label, const Percentiles& p) {
  return fmt::format("  {:<14}{:>10}{:>10}{:>10}{:>10}{:>10}\n", label, FormatMs(p.p50),
                     FormatMs(p.p90), FormatMs(p.p99), FormatMs(p.max), FormatCount(p.count));
}

std::string FailuresText(const ReplaySummary& s) {
  if (s.failures_by_code.empty()) return "none";
  std::string out;
  for (const auto& [code, n] : s.failures_by_code) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {}", code, FormatCount(n));
  }
  return out;
}

// The sparse share of each layer's heads, "0% 0% 100% ...".
std::string LayerSparseText(const AttentionTotals& a) {
  std::string t;
  for (size_t l = 0; l < a.layer_head_steps.size(); ++l) {
    if (!t.empty()) t += ' ';
    t += FormatPercent(a.layer_sparse_fraction(l));
  }
  return t;
}

Json AttentionJson(const AttentionTotals& a) {
  Json layers = Json::array();
  for (size_t l = 0; l < a.layer_head_steps.size(); ++l) {
    layers.push_back(a.layer_sparse_fraction(l));
  }
  return Json{{"policy", a.policy},
              {"sparse_head_fraction", a.sparse_fraction()},
              {"sparse_head_fraction_by_layer", std::move(layers)},
              {"stand_in_head_fraction", a.stand_in_fraction()},
              {"keys_touched_fraction", a.keys_touched_fraction()},
              {"bytes_fraction", a.bytes_fraction()},
              {"recall", a.recall_exact > 0 ? Json(a.recall()) : Json()},
              {"head_steps", a.head_steps},
              {"dense_head_steps", a.dense_head_steps},
              {"stand_in_head_steps", a.stand_in_head_steps},
              {"keys_touched", a.keys_touched},
              {"keys_context", a.keys_context},
              {"bytes_read", a.bytes_read},
              {"dense_bytes", a.dense_bytes},
              {"ssd_bytes", a.ssd_bytes},
              {"recall_heads", a.recall_heads},
              {"recall_exact", a.recall_exact},
              {"recall_hits", a.recall_hits}};
}

}  // namespace

std::string AttentionText(const AttentionTotals& a) {
  if (a.head_steps == 0) return a.policy + ": no decode step\n";
  std::string t = fmt::format("{}: {} of heads sparse | keys touched {}\n", a.policy,
                              FormatPercent(a.sparse_fraction()),
                              FormatPercent(a.keys_touched_fraction()));
  t += fmt::format("{:<14}bytes read {} of a dense pass ({}, of it {} from SSD)\n", "",
                   FormatPercent(a.bytes_fraction()),
                   FormatBytes(static_cast<double>(a.bytes_read)),
                   FormatBytes(static_cast<double>(a.ssd_bytes)));
  t += fmt::format("{:<14}sparse heads by layer: {}\n", "", LayerSparseText(a));
  if (a.stand_in_head_steps > 0) {
    t += fmt::format("{:<14}{} of heads searched the stand-in index while theirs was built\n",
                     "", FormatPercent(a.stand_in_fraction()));
  }
  if (a.recall_heads > 0) {
    t += fmt::format("{:<14}online recall@k {:.3f} ({} heads checked)\n", "",
                     a.recall(), FormatCount(
                         static_cast<int64_t>(a.recall_heads)));
  } else if (a.policy != "dense") {
    t += fmt::format("{:<14}online recall: no sparse head was checked\n", "");
  }
  return t;
}

Percentiles ComputePercentiles(std::vector<double> values) {
  Percentiles p;
  if (values.empty()) return p;
  std::sort(values.begin(), values.end());
  p.count = static_cast<int64_t>(values.size());
  p.p50 = NearestRank(values, 50);
  p.p90 = NearestRank(values, 90);
  p.p99 = NearestRank(values, 99);
  p.max = values.back();
  p.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  return p;
}

ReplaySummary Summarize(const ReplayReport& report) {
  ReplaySummary s;
  s.requests_admitted = static_cast<int64_t>(report.requests.size());
  for (const RequestRecord& r : report.requests) {
    if (r.code == StatusCode::kOk) {
      ++s.requests_completed;
    } else {
      ++s.requests_failed;
      ++s.failures_by_code[std::string(StatusCodeName(r.code))];
    }
    if (LookedUp(r)) {
      s.prompt_tokens += r.input_tokens;
      s.prefix_tokens += r.prefix_tokens;
    }
  }
  if (report.wall_s > 0) {
    s.decode_tokens_per_s = static_cast<double>(report.decode_tokens) / report.wall_s;
    s.request_rate = static_cast<double>(s.requests_completed) / report.wall_s;
  }
  s.step_latency_ms = ComputePercentiles(internal::StepLatencies(report));
  s.prefill_latency_ms = ComputePercentiles(internal::PrefillLatencies(report));
  s.ttft_ms = ComputePercentiles(internal::TtftLatencies(report));
  if (s.prompt_tokens > 0) {
    s.prefix_hit_ratio =
        static_cast<double>(s.prefix_tokens) / static_cast<double>(s.prompt_tokens);
  }
  return s;
}

std::string RenderTable(const ReplayReport& report, const ReplaySummary& s) {
  const ReplayConfig& c = report.config;
  std::string t;
  t += fmt::format("attic-replay summary\n");
  t += fmt::format("  trace       {} ({}), {}\n", c.trace, c.format,
                   internal::SliceText(c, s.requests_admitted));
  t += fmt::format("  model       {}: {} layers, Hq={} Hkv={} D={} {}, B={}, {}/token\n", c.model,
                   c.layers, c.num_q_heads, c.num_kv_heads, c.head_dim, c.dtype, c.block_tokens,
                   FormatBytes(static_cast<double>(c.kv_bytes_per_token)));
  t +=
      fmt::format("  fleet       {} workers via {}, concurrency {}, queue {}, seed {}\n", c.workers,
                  c.scheduler.empty() ? "-" : c.scheduler, c.max_concurrency, c.max_queue, c.seed);
  t += fmt::format("{:<14}admitted {} | completed {} | failed {}\n", "requests",
                   FormatCount(s.requests_admitted), FormatCount(s.requests_completed),
                   FormatCount(s.requests_failed));
  t += fmt::format("{:<14}{}\n", "failures", FailuresText(s));
  t += fmt::format("{:<14}{} decode tokens/s | {} requests/s\n", "throughput",
                   FormatRate(s.decode_tokens_per_s), FormatRate(s.request_rate));
  t += fmt::format("{:<16}{:>10}{:>10}{:>10}{:>10}{:>10}\n", "latency (ms)", "p50", "p90", "p99",
                   "max", "count");
  t += LatencyRow("decode step", s.step_latency_ms);
  t += LatencyRow("prefill", s.prefill_latency_ms);
  t += LatencyRow("TTFT", s.ttft_ms);
  t += fmt::format("{:<14}hit ratio {} ({} of {} prompt tokens)\n", "prefix cache",
                   FormatPercent(s.prefix_hit_ratio), FormatCount(s.prefix_tokens),
                   FormatCount(s.prompt_tokens));
  t += fmt::format("{:<14}DRAM {} | SSD {} (peaks over the fleet)\n", "KV bytes",
                   FormatBytes(static_cast<double>(report.kv_bytes_dram_peak)),
                   FormatBytes(static_cast<double>(report.kv_bytes_ssd_peak)));
  t += fmt::format("{:<14}{} (received {}) | KV read by Attend {}\n", "bytes sent",
                   FormatBytes(static_cast<double>(report.bytes_sent)),
                   FormatBytes(static_cast<double>(report.bytes_received)),
                   FormatBytes(static_cast<double>(report.attend_bytes_read)));
  t += fmt::format("{:<14}{}", "attention", AttentionText(report.attention));
  t += fmt::format("{:<14}{:.1f} s{}\n", "wall time", report.wall_s,
                   report.started_at.empty() ? "" : " (started " + report.started_at + ")");
  return t;
}

std::string RenderJson(const ReplayReport& report, const ReplaySummary& s) {
  Json failures = Json::object();
  for (const auto& [code, n] : s.failures_by_code) failures[code] = n;
  Json step = PercentilesJson(s.step_latency_ms);
  Json cdf = Json::array();
  for (const auto& [ms, fraction] : internal::Cdf(internal::StepLatencies(report), 101)) {
    cdf.push_back(Json::array({ms, fraction}));
  }
  step["cdf"] = std::move(cdf);
  double mean_batch = 0;
  if (!report.step_batch.empty()) {
    mean_batch = std::accumulate(report.step_batch.begin(), report.step_batch.end(), 0.0) /
                 static_cast<double>(report.step_batch.size());
  }
  Json j{{"requests_admitted", s.requests_admitted},
         {"requests_completed", s.requests_completed},
         {"requests_failed", s.requests_failed},
         {"failures_by_code", std::move(failures)},
         {"decode_tokens_per_s", Finite(s.decode_tokens_per_s)},
         {"request_rate", Finite(s.request_rate)},
         {"decode_tokens", report.decode_tokens},
         {"decode_steps", static_cast<int64_t>(report.step_latency_ms.size())},
         {"mean_step_batch", mean_batch},
         {"step_latency_ms", std::move(step)},
         {"prefill_latency_ms", PercentilesJson(s.prefill_latency_ms)},
         {"ttft_ms", PercentilesJson(s.ttft_ms)},
         {"kv_bytes", Json{{"dram", report.kv_bytes_dram_peak}, {"ssd", report.kv_bytes_ssd_peak}}},
         {"prefix_hit_ratio", Finite(s.prefix_hit_ratio)},
         {"prompt_tokens", s.prompt_tokens},
         {"prefix_tokens", s.prefix_tokens},
         {"bytes_sent", report.bytes_sent},
         {"bytes_received", report.bytes_received},
         {"attend_bytes_read", report.attend_bytes_read},
         {"attention", AttentionJson(report.attention)},
         {"wall_s", Finite(report.wall_s)},
         {"started_at", report.started_at},
         {"config", ConfigJson(report.config)},
         {"timeline", TimelineJson(report.timeline)},
         {"requests", RequestsJson(report.requests)}};
  return j.dump(1) + "\n";
}

std::string ProgressLine(const TimelineSample& now, int64_t total, double decode_tokens_per_s,
                         int width) {
  if (width <= 0) return "";
  const int64_t done = now.completed + now.failed;
  const std::string counts = fmt::format("{}/{} done {} failed", done, total, now.failed);
  const std::string state = fmt::format(" | decoding {} prefilling {} queued {}", now.decoding,
                                        now.prefilling, now.queued);
  const std::string rate = fmt::format(" | {:.0f} tok/s", Finite(decode_tokens_per_s));
  // Drop the least important parts first until the text leaves room for a bar of 10.
  std::string text = counts + state + rate;
  constexpr int kMinBar = 10;
  if (static_cast<int>(text.size()) + kMinBar + 3 > width) text = counts + rate;
  if (static_cast<int>(text.size()) + kMinBar + 3 > width) text = counts;
  const int bar = width - static_cast<int>(text.size()) - 3;
  std::string line;
  if (bar >= kMinBar) {
    const double fraction = total > 0 ? std::clamp(static_cast<double>(done) / total, 0.0, 1.0) : 0;
    const auto filled = static_cast<int>(fraction * bar);
    line = "[" + std::string(static_cast<size_t>(filled), '#') +
           std::string(static_cast<size_t>(bar - filled), '.') + "] ";
  }
  line += text;
  if (static_cast<int>(line.size()) > width) line.resize(static_cast<size_t>(width));
  return line;
}

}  // namespace attic::replay
