#include "services/replay/internal/report_format.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace attic::replay::internal {

std::string FormatBytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (!(bytes > 0)) return "0 B";
  int unit = 0;
  while (bytes >= 1024 && unit < 5) {
    bytes /= 1024;
    ++unit;
  }
  if (unit == 0) return fmt::format("{:.0f} B", bytes);
  return fmt::format("{:.{}f} {}", bytes, bytes < 10 ? 2 : (bytes < 100 ? 1 : 0), kUnits[unit]);
}

std::string FormatMs(double ms) {
  if (!std::isfinite(ms)) return "-";
  const double a = std::fabs(ms);
  if (a == 0) return "0";
  if (a < 1) return fmt::format("{:.3g}", ms);
  if (a < 100) return fmt::format("{:.{}f}", ms, a < 10 ? 2 : 1);
  return fmt::format("{:.0f}", ms);
}

std::string FormatCount(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ' ';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string FormatRate(double value) {
  if (!std::isfinite(value)) return "-";
  if (std::fabs(value) < 1000) return fmt::format("{:.1f}", value);
  return fmt::format("{:.0f}", value);
}

std::string FormatPercent(double fraction) {
  if (!std::isfinite(fraction)) return "-";
  return fmt::format("{:.1f} %", fraction * 100);
}

std::string SliceText(const ReplayConfig& config, int64_t admitted) {
  std::string slice = admitted > 0
                          ? fmt::format("requests {}-{}", config.start, config.start + admitted - 1)
                          : "no requests";
  return fmt::format("{}, speed-up {}x", slice, config.speedup);
}

std::vector<std::pair<std::string, std::string>> ConfigRows(const ReplayConfig& c) {
  return {
      {"trace", c.trace},
      {"format", c.format},
      {"start", std::to_string(c.start)},
      {"limit", std::to_string(c.limit)},
      {"speedup", fmt::format("{}", c.speedup)},
      {"model", c.model},
      {"layers", std::to_string(c.layers)},
      {"num_q_heads", std::to_string(c.num_q_heads)},
      {"num_kv_heads", std::to_string(c.num_kv_heads)},
      {"head_dim", std::to_string(c.head_dim)},
      {"block_tokens", std::to_string(c.block_tokens)},
      {"dtype", c.dtype},
      {"kv_bytes_per_token", std::to_string(c.kv_bytes_per_token)},
      {"max_concurrency", std::to_string(c.max_concurrency)},
      {"max_queue", std::to_string(c.max_queue)},
      {"prefill_threads", std::to_string(c.prefill_threads)},
      {"seed", std::to_string(c.seed)},
      {"scheduler", c.scheduler},
      {"workers", std::to_string(c.workers)},
      {"tenant", c.tenant},
  };
}

std::vector<std::pair<double, double>> Cdf(std::vector<double> values, int max_points) {
  std::vector<std::pair<double, double>> out;
  if (values.empty() || max_points < 2) return out;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  const size_t points = std::min(n, static_cast<size_t>(max_points));
  out.reserve(points);
  for (size_t i = 0; i < points; ++i) {
    // Spread the chosen ranks evenly over [0, n - 1], both ends included.
    const size_t rank = points == 1 ? n - 1 : i * (n - 1) / (points - 1);
    out.emplace_back(values[rank], static_cast<double>(rank + 1) / static_cast<double>(n));
  }
  return out;
}

std::vector<std::pair<double, double>> DecodeRateSeries(const std::vector<TimelineSample>& t) {
  std::vector<std::pair<double, double>> out;
  for (size_t i = 1; i < t.size(); ++i) {
    const double dt_s = (t[i].t_ms - t[i - 1].t_ms) / 1000;
    if (dt_s <= 0) continue;
    const auto tokens = static_cast<double>(t[i].decode_tokens - t[i - 1].decode_tokens);
    out.emplace_back(t[i].t_ms / 1000, tokens / dt_s);
  }
  return out;
}

std::vector<const RequestRecord*> FailedRequests(const ReplayReport& report, size_t max) {
  std::vector<const RequestRecord*> out;
  for (const RequestRecord& r : report.requests) {
    if (out.size() >= max) break;
    if (r.code != StatusCode::kOk) out.push_back(&r);
  }
  return out;
}

std::vector<double> StepLatencies(const ReplayReport& report) {
  return {report.step_latency_ms.begin(), report.step_latency_ms.end()};
}

std::vector<double> PrefillLatencies(const ReplayReport& report) {
  std::vector<double> out;
  for (const RequestRecord& r : report.requests) {
    if (r.prefill_ms >= 0) out.push_back(r.prefill_ms);
  }
  return out;
}

std::vector<double> TtftLatencies(const ReplayReport& report) {
  std::vector<double> out;
  for (const RequestRecord& r : report.requests) {
    if (r.first_token_ms >= 0) out.push_back(r.first_token_ms - r.arrival_ms);
  }
  return out;
}

}  // namespace attic::replay::internal
