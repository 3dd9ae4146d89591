// RenderHtml: one self-contained page. The charts are SVG drawn here; the page has inline CSS
// and nothing else (no script, no external reference), so it opens anywhere, offline.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "services/replay/internal/report_format.h"
#include "services/replay/report.h"

namespace attic::replay {
namespace {

using internal::FormatBytes;
using internal::FormatCount;
using internal::FormatMs;
using internal::FormatPercent;
using internal::FormatRate;
using Points = std::vector<std::pair<double, double>>;

constexpr size_t kMaxChartPoints = 1200;
constexpr size_t kMaxListedFailures = 20;

std::string Escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// ---- SVG line charts -----------------------------------------------------------------------

enum class Scale { kNumber, kBytes, kFraction, kMs };

struct Series {
  std::string name;
  std::string color;
  Points points;
};

struct Chart {
  std::string title;
  std::string x_label;
  std::string y_label;
  bool log_x = false;
  Scale x_scale = Scale::kNumber;
  Scale y_scale = Scale::kNumber;
};

constexpr double kWidth = 720, kHeight = 280;
constexpr double kLeft = 76, kRight = 16, kTop = 30, kBottom = 46;
constexpr double kPlotW = kWidth - kLeft - kRight, kPlotH = kHeight - kTop - kBottom;

std::string Tick(double v, Scale scale) {
  switch (scale) {
    case Scale::kBytes:
      return FormatBytes(v);
    case Scale::kFraction:
    case Scale::kMs:  // decades on a log axis: 0.1, 1, 10
      return fmt::format("{:g}", v);
    case Scale::kNumber:
      break;
  }
  const double a = std::fabs(v);
  if (a >= 1e9) return fmt::format("{:g}G", v / 1e9);
  if (a >= 1e6) return fmt::format("{:g}M", v / 1e6);
  if (a >= 1e4) return fmt::format("{:g}k", v / 1e3);
  return fmt::format("{:g}", v);
}

// 1, 2 or 5 times a power of ten (of 1024 for bytes), near range / 5.
double NiceStep(double range, Scale scale) {
  if (!(range > 0)) return 1;
  const double raw = range / 5;
  if (scale == Scale::kBytes && raw >= 1024) {
    const double p = std::pow(1024.0, std::floor(std::log(raw) / std::log(1024.0)));
    for (double m : {1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0}) {
      if (m * p >= raw) return m * p;
    }
    return 1024 * p;
  }
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * p >= raw) return m * p;
  }
  return 10 * p;
}

struct Axes {
  double x0 = 0, x1 = 1, y1 = 1;
  bool log_x = false;
  double X(double x) const {
    const double f =
        log_x ? (std::log10(std::max(x, 1e-300)) - x0) / (x1 - x0) : (x - x0) / (x1 - x0);
    return kLeft + std::clamp(f, 0.0, 1.0) * kPlotW;
  }
  double Y(double y) const { return kTop + kPlotH - std::clamp(y / y1, 0.0, 1.0) * kPlotH; }
};

Axes FitAxes(const Chart& c, const std::vector<Series>& series) {
  double xmin = INFINITY, xmax = -INFINITY, ymax = 0;
  for (const Series& s : series) {
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y) || (c.log_x && x <= 0)) continue;
      xmin = std::min(xmin, x);
      xmax = std::max(xmax, x);
      ymax = std::max(ymax, y);
    }
  }
  Axes a;
  a.log_x = c.log_x;
  if (xmin > xmax) return a;  // no points
  if (c.log_x) {
    a.x0 = std::floor(std::log10(xmin));
    a.x1 = std::max(a.x0 + 1, std::ceil(std::log10(xmax)));
  } else {
    a.x0 = std::min(0.0, xmin);
    a.x1 = xmax > a.x0 ? xmax : a.x0 + 1;
  }
  a.y1 = c.y_scale == Scale::kFraction ? 1.0 : (ymax > 0 ? ymax * 1.08 : 1.0);
  return a;
}

std::string GridAndTicks(const Chart& c, const Axes& a) {
  std::string g;
  const double ystep = NiceStep(a.y1, c.y_scale);
  for (double y = 0; y <= a.y1 + 1e-9 * a.y1; y += ystep) {
    g += fmt::format(R"(<line class="grid" x1="{:.1f}" x2="{:.1f}" y1="{:.1f}" y2="{:.1f}"/>)",
                     kLeft, kLeft + kPlotW, a.Y(y), a.Y(y));
    g += fmt::format(R"(<text class="tick" x="{:.1f}" y="{:.1f}" text-anchor="end">{}</text>)",
                     kLeft - 6, a.Y(y) + 4, Escape(Tick(y, c.y_scale)));
  }
  std::vector<double> xs;
  if (a.log_x) {
    for (double e = a.x0; e <= a.x1 + 1e-9; e += 1) xs.push_back(std::pow(10.0, e));
  } else {
    const double step = NiceStep(a.x1 - a.x0, c.x_scale);
    for (double x = std::ceil(a.x0 / step) * step; x <= a.x1 + 1e-9 * step; x += step) {
      xs.push_back(x);
    }
  }
  for (const double x : xs) {
    g += fmt::format(R"(<line class="grid" x1="{:.1f}" x2="{:.1f}" y1="{:.1f}" y2="{:.1f}"/>)",
                     a.X(x), a.X(x), kTop, kTop + kPlotH);
    g += fmt::format(R"(<text class="tick" x="{:.1f}" y="{:.1f}" text-anchor="middle">{}</text>)",
                     a.X(x), kTop + kPlotH + 16, Escape(Tick(x, c.x_scale)));
  }
  return g;
}

std::string Polyline(const Series& s, const Axes& a, bool log_x) {
  const size_t n = s.points.size();
  const size_t stride = std::max<size_t>(1, (n + kMaxChartPoints - 1) / kMaxChartPoints);
  std::string pts;
  const auto add = [&](size_t i) {
    const auto& [x, y] = s.points[i];
    if (!std::isfinite(x) || !std::isfinite(y) || (log_x && x <= 0)) return;
    pts += fmt::format("{:.1f},{:.1f} ", a.X(x), a.Y(y));
  };
  for (size_t i = 0; i < n; i += stride) add(i);
  if (n > 0 && (n - 1) % stride != 0) add(n - 1);  // always end at the last point
  return fmt::format(R"(<polyline fill="none" stroke="{}" stroke-width="1.6" points="{}"/>)",
                     s.color, pts);
}

std::string Legend(const std::vector<Series>& series) {
  std::string g;
  double x = kLeft + 8;
  for (const Series& s : series) {
    g += fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="12" height="4" fill="{}"/>)", x,
                     kTop - 14, s.color);
    g += fmt::format(R"(<text class="legend" x="{:.1f}" y="{:.1f}">{}</text>)", x + 16, kTop - 9,
                     Escape(s.name));
    x += 28 + 7.0 * static_cast<double>(s.name.size());
  }
  return g;
}

std::string LineChart(const Chart& c, const std::vector<Series>& series) {
  const Axes a = FitAxes(c, series);
  bool any = false;
  for (const Series& s : series) any = any || !s.points.empty();
  std::string svg = fmt::format(
      R"(<figure><figcaption>{}</figcaption><svg viewBox="0 0 {:.0f} {:.0f}" width="{:.0f}" )"
      R"(height="{:.0f}" role="img" aria-label="{}">)",
      Escape(c.title), kWidth, kHeight, kWidth, kHeight, Escape(c.title));
  svg += fmt::format(R"(<rect class="plot" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}"/>)",
                     kLeft, kTop, kPlotW, kPlotH);
  if (!any) {
    svg += fmt::format(R"(<text class="empty" x="{:.1f}" y="{:.1f}" text-anchor="middle">)"
                       "no data</text></svg></figure>\n",
                       kLeft + kPlotW / 2, kTop + kPlotH / 2);
    return svg;
  }
  svg += GridAndTicks(c, a);
  for (const Series& s : series) svg += Polyline(s, a, c.log_x);
  svg += Legend(series);
  svg += fmt::format(R"(<text class="label" x="{:.1f}" y="{:.1f}" text-anchor="middle">{}</text>)",
                     kLeft + kPlotW / 2, kHeight - 8, Escape(c.x_label));
  svg += fmt::format(R"svg(<text class="label" transform="translate(14 {:.1f}) rotate(-90)" )svg"
                     R"svg(text-anchor="middle">{}</text>)svg",
                     kTop + kPlotH / 2, Escape(c.y_label));
  svg += "</svg></figure>\n";
  return svg;
}

// ---- the page ------------------------------------------------------------------------------

constexpr std::string_view kStyle = R"(
body { font: 14px/1.45 system-ui, sans-serif; color: #1d232b;
       margin: 24px auto; max-width: 1500px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: #5a6573; margin: 0 0 16px; }
table { border-collapse: collapse; margin: 4px 0 12px; }
td, th { padding: 3px 12px 3px 0; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
th { color: #5a6573; font-weight: 600; border-bottom: 1px solid #d5dae0; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #d5dae0; border-radius: 6px; padding: 10px 14px; min-width: 150px; }
.card .v { font-size: 20px; font-weight: 600; } .card .k { color: #5a6573; font-size: 12px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: 2px; }
svg { max-width: 100%; height: auto; font-size: 11px; }
.plot { fill: #fbfcfd; stroke: #c9d0d8; } .grid { stroke: #e6e9ed; stroke-width: 1; }
.tick, .legend { fill: #4a5563; } .label { fill: #1d232b; font-size: 12px; }
.empty { fill: #8a94a0; font-size: 14px; }
.err { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-word; }
.ok { color: #1f7a3a; } .bad { color: #b3261e; }
)";

std::string Card(std::string_view key, std::string_view value, std::string_view cls = "") {
  return fmt::format(R"(<div class="card"><div class="v {}">{}</div><div class="k">{}</div></div>)",
                     cls, Escape(value), Escape(key));
}

std::string Cards(const ReplayReport& r, const ReplaySummary& s) {
  std::string h = R"(<div class="cards">)";
  h += Card("requests completed",
            FormatCount(s.requests_completed) + " / " + FormatCount(s.requests_admitted), "ok");
  h += Card("requests failed", FormatCount(s.requests_failed), s.requests_failed > 0 ? "bad" : "");
  h += Card("decode tokens/s", FormatRate(s.decode_tokens_per_s));
  h += Card("decode step p99", FormatMs(s.step_latency_ms.p99) + " ms");
  h += Card("TTFT p50", FormatMs(s.ttft_ms.p50) + " ms");
  h += Card("prefix hit ratio", FormatPercent(s.prefix_hit_ratio));
  if (r.attention.head_steps > 0) {
    h += Card("heads sparse (" + r.attention.policy + ")",
              FormatPercent(r.attention.sparse_fraction()));
  }
  h += Card("KV peak DRAM / SSD", FormatBytes(static_cast<double>(r.kv_bytes_dram_peak)) + " / " +
                                      FormatBytes(static_cast<double>(r.kv_bytes_ssd_peak)));
  h += Card("wall time", fmt::format("{:.1f} s", r.wall_s));
  return h + "</div>\n";
}

std::string Row(std::string_view key, std::string_view value) {
  return fmt::format("<tr><td>{}</td><td>{}</td></tr>", Escape(key), Escape(value));
}

std::string LatencyRowHtml(std::string_view name, const Percentiles& p) {
  return fmt::format(
      R"(<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td>)"
      R"(<td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>)",
      Escape(name), FormatMs(p.p50), FormatMs(p.p90), FormatMs(p.p99), FormatMs(p.max),
      FormatMs(p.mean), FormatCount(p.count));
}

std::string SummaryTables(const ReplayReport& r, const ReplaySummary& s) {
  std::string h = "<h2>Summary</h2>\n<table>";
  h += Row("requests",
           fmt::format("admitted {}, completed {}, failed {}", FormatCount(s.requests_admitted),
                       FormatCount(s.requests_completed), FormatCount(s.requests_failed)));
  h +=
      Row("throughput", fmt::format("{} decode tokens/s, {} requests/s",
                                    FormatRate(s.decode_tokens_per_s), FormatRate(s.request_rate)));
  h += Row("prefix cache",
           fmt::format("hit ratio {} ({} of {} prompt tokens)", FormatPercent(s.prefix_hit_ratio),
                       FormatCount(s.prefix_tokens), FormatCount(s.prompt_tokens)));
  h += Row("KV bytes (peak)",
           fmt::format("DRAM {}, SSD {}", FormatBytes(static_cast<double>(r.kv_bytes_dram_peak)),
                       FormatBytes(static_cast<double>(r.kv_bytes_ssd_peak))));
  h += Row("bytes sent",
           fmt::format("{} (received {})", FormatBytes(static_cast<double>(r.bytes_sent)),
                       FormatBytes(static_cast<double>(r.bytes_received))));
  h += Row("KV read by Attend", FormatBytes(static_cast<double>(r.attend_bytes_read)));
  // The text table's attention lines, one row each.
  const std::string attention = AttentionText(r.attention);
  size_t begin = 0;
  for (size_t end; (end = attention.find('\n', begin)) != std::string::npos; begin = end + 1) {
    const std::string_view line =
        std::string_view(attention).substr(begin, end - begin);
    const size_t text = line.find_first_not_of(' ');
    h += Row(begin == 0 ? "attention" : "", text == std::string_view::npos ? "" : line.substr(text));
  }
  h += Row("decode tokens", FormatCount(r.decode_tokens));
  h += Row("wall time", fmt::format("{:.1f} s", r.wall_s));
  h += "</table>\n<table><tr><th>latency (ms)</th><th class=\"num\">p50</th><th class=\"num\">p90"
       "</th><th class=\"num\">p99</th><th class=\"num\">max</th><th class=\"num\">mean</th>"
       "<th class=\"num\">count</th></tr>";
  h += LatencyRowHtml("decode step (all layers)", s.step_latency_ms);
  h += LatencyRowHtml("prefill", s.prefill_latency_ms);
  h += LatencyRowHtml("time to first token", s.ttft_ms);
  return h + "</table>\n";
}

std::string Charts(const ReplayReport& r) {
  std::string h = "<h2>Over the run</h2>\n<div class=\"charts\">\n";
  h += LineChart({.title = "Latency CDF",
                  .x_label = "latency (ms, log scale)",
                  .y_label = "fraction at or below",
                  .log_x = true,
                  .x_scale = Scale::kMs,
                  .y_scale = Scale::kFraction},
                 {{"decode step", "#2e6fd8", internal::Cdf(internal::StepLatencies(r), 600)},
                  {"prefill", "#d8802e", internal::Cdf(internal::PrefillLatencies(r), 600)},
                  {"TTFT", "#8a3ab9", internal::Cdf(internal::TtftLatencies(r), 600)}});
  h += LineChart({.title = "Decode throughput", .x_label = "time (s)", .y_label = "tokens/s"},
                 {{"decode tokens/s", "#2e6fd8", internal::DecodeRateSeries(r.timeline)}});
  Points dram, ssd, decoding, prefilling, queued;
  for (const TimelineSample& t : r.timeline) {
    const double x = t.t_ms / 1000;
    dram.emplace_back(x, static_cast<double>(t.kv_bytes_dram));
    ssd.emplace_back(x, static_cast<double>(t.kv_bytes_ssd));
    decoding.emplace_back(x, static_cast<double>(t.decoding));
    prefilling.emplace_back(x, static_cast<double>(t.prefilling));
    queued.emplace_back(x, static_cast<double>(t.queued));
  }
  h += LineChart({.title = "KV cache over the fleet",
                  .x_label = "time (s)",
                  .y_label = "bytes",
                  .y_scale = Scale::kBytes},
                 {{"DRAM", "#2e6fd8", std::move(dram)}, {"SSD", "#d8802e", std::move(ssd)}});
  h += LineChart({.title = "Requests in flight", .x_label = "time (s)", .y_label = "requests"},
                 {{"decoding", "#2e6fd8", std::move(decoding)},
                  {"prefilling", "#d8802e", std::move(prefilling)},
                  {"queued", "#b3261e", std::move(queued)}});
  return h + "</div>\n";
}

std::string Failures(const ReplayReport& r, const ReplaySummary& s) {
  std::string h = "<h2>Failures</h2>\n";
  if (s.failures_by_code.empty()) return h + "<p>None: every admitted request completed.</p>\n";
  h += "<table><tr><th>code</th><th class=\"num\">requests</th></tr>";
  for (const auto& [code, n] : s.failures_by_code) {
    h +=
        fmt::format(R"(<tr><td>{}</td><td class="num">{}</td></tr>)", Escape(code), FormatCount(n));
  }
  h += "</table>\n<table><tr><th>request</th><th>code</th><th>message</th></tr>";
  for (const RequestRecord* f : internal::FailedRequests(r, kMaxListedFailures)) {
    h += fmt::format(R"(<tr><td class="num">{}</td><td>{}</td><td class="err">{}</td></tr>)",
                     f->index, Escape(StatusCodeName(f->code)), Escape(f->error));
  }
  h += "</table>\n";
  if (s.requests_failed > static_cast<int64_t>(kMaxListedFailures)) {
    h +=
        fmt::format("<p>The first {} failed requests of {}; the JSON report lists every one.</p>\n",
                    kMaxListedFailures, FormatCount(s.requests_failed));
  }
  return h;
}

std::string Configuration(const ReplayConfig& c) {
  std::string h = "<h2>Configuration</h2>\n<table>";
  for (const auto& [key, value] : internal::ConfigRows(c)) h += Row(key, value);
  return h + "</table>\n";
}

}  // namespace

std::string RenderHtml(const ReplayReport& report, const ReplaySummary& summary) {
  const ReplayConfig& c = report.config;
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += fmt::format("<title>attic-replay: {}</title>\n<style>{}</style>\n</head>\n<body>\n",
                   Escape(c.trace), kStyle);
  h += "<h1>attic-replay report</h1>\n";
  h += fmt::format(
      "<p class=\"sub\">{} ({}), {} &middot; model {} ({} layers, {}) &middot; {} workers"
      "{}</p>\n",
      Escape(c.trace), Escape(c.format), Escape(internal::SliceText(c, summary.requests_admitted)),
      Escape(c.model), c.layers, Escape(c.dtype), c.workers,
      report.started_at.empty() ? "" : " &middot; started " + Escape(report.started_at));
  h += Cards(report, summary);
  h += SummaryTables(report, summary);
  h += Charts(report);
  h += Failures(report, summary);
  h += Configuration(c);
  h += "</body>\n</html>\n";
  return h;
}

}  // namespace attic::replay
