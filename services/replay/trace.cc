#include "services/replay/trace.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

namespace attic::replay {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";
constexpr std::string_view kTimestampColumn = "TIMESTAMP";
constexpr std::string_view kContextColumn = "ContextTokens";
constexpr std::string_view kGeneratedColumn = "GeneratedTokens";
// Timestamps past this many milliseconds (about 31 years) would overflow nanosecond arithmetic.
constexpr double kMaxTimestampMs = 1e12;
// Quoted input in messages is cut to this many characters.
constexpr size_t kExcerptChars = 60;

std::string Excerpt(std::string_view s) {
  if (s.size() <= kExcerptChars) return std::string(s);
  return std::string(s.substr(0, kExcerptChars)) + "...";
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Status LineError(std::string_view name, int64_t line, std::string_view what) {
  std::string msg(name);
  msg += ':';
  msg += std::to_string(line);
  msg += ": ";
  msg += what;
  return InvalidArgumentError(std::move(msg));
}

// One parsed request line, before slicing: its time in nanoseconds on the trace's own clock.
struct Row {
  int64_t time_ns = 0;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  std::vector<uint64_t> hash_ids;
};

// Token counts: input at least 1 (a request without a prompt has nothing to attend to),
// output at least 0; both at most kMaxTraceTokens.
std::optional<std::string> CheckTokens(std::string_view field, int64_t value, int64_t min) {
  if (value < min || value > kMaxTraceTokens) {
    return std::string(field) +
           (min > 0 ? ": must be a positive integer" : ": must be a non-negative integer") +
           " of at most " + std::to_string(kMaxTraceTokens) + " tokens, got " +
           std::to_string(value);
  }
  return std::nullopt;
}

std::optional<int64_t> ParseInt64(std::string_view s) {
  s = Trim(s);
  int64_t v = 0;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (s.empty() || ec != std::errc() || p != end) return std::nullopt;
  return v;
}

// ---- Mooncake JSON lines -------------------------------------------------------------------

// A JSON integer as int64, or nullopt when the value is not an integer (floats included) or
// does not fit.
std::optional<int64_t> JsonInt64(const Json& v) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

// How a wrong value reads in a message: "a fractional number 2.5", "-2", "null", "string \"a\"".
std::string TypeOf(const Json& v) {
  if (v.is_number_float()) return "a fractional number " + Excerpt(v.dump());
  if (v.is_number() || v.is_null()) return v.dump();
  return std::string(v.type_name()) + " " + Excerpt(v.dump());
}

Status ParseMooncakeTokens(const Json& obj, const char* key, int64_t min, std::string_view name,
                           int64_t line, int64_t* out) {
  const auto it = obj.find(key);
  if (it == obj.end()) return LineError(name, line, std::string("missing field ") + key);
  const std::optional<int64_t> v = JsonInt64(*it);
  if (!v) {
    return LineError(
        name, line, std::string(key) + ": must be an integer number of tokens, got " + TypeOf(*it));
  }
  if (auto bad = CheckTokens(key, *v, min)) return LineError(name, line, *bad);
  *out = *v;
  return OkStatus();
}

Status ParseMooncakeLine(std::string_view text, std::string_view name, int64_t line, Row* row) {
  Json obj;
  try {
    obj = Json::parse(text.begin(), text.end());
  } catch (const Json::parse_error& e) {
    return LineError(
        name, line,
        "not a JSON line (syntax error at byte " + std::to_string(e.byte) + "): " + Excerpt(text));
  }
  if (!obj.is_object()) {
    return LineError(name, line, "not a JSON object but " + std::string(obj.type_name()));
  }
  const auto ts = obj.find("timestamp");
  if (ts == obj.end()) return LineError(name, line, "missing field timestamp");
  if (!ts->is_number()) {
    return LineError(name, line, "timestamp: must be a number of milliseconds, got " + TypeOf(*ts));
  }
  const double ms = ts->get<double>();
  if (!(ms >= 0 && ms <= kMaxTimestampMs)) {
    return LineError(name, line,
                     "timestamp: must be a non-negative number of milliseconds of at most 1e12, "
                     "got " +
                         Excerpt(ts->dump()));
  }
  row->time_ns = std::llround(ms * 1e6);
  RETURN_IF_ERROR(ParseMooncakeTokens(obj, "input_length", 1, name, line, &row->input_tokens));
  RETURN_IF_ERROR(ParseMooncakeTokens(obj, "output_length", 0, name, line, &row->output_tokens));
  row->hash_ids.clear();
  const auto ids = obj.find("hash_ids");
  if (ids == obj.end()) return OkStatus();
  if (!ids->is_array()) {
    return LineError(name, line, "hash_ids: must be an array of block ids, got " + TypeOf(*ids));
  }
  row->hash_ids.reserve(ids->size());
  for (size_t i = 0; i < ids->size(); ++i) {
    const Json& id = (*ids)[i];
    if (!id.is_number_unsigned()) {
      return LineError(
          name, line,
          "hash_ids[" + std::to_string(i) + "]: must be a non-negative integer, got " + TypeOf(id));
    }
    row->hash_ids.push_back(id.get<uint64_t>());
  }
  return OkStatus();
}

// ---- Azure CSV -----------------------------------------------------------------------------

// Days from 1970-01-01 to the civil date (proleptic Gregorian; H. Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int DaysInMonth(int64_t y, int64_t m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

// Reads exactly `digits` decimal digits at s[*pos].
bool Digits(std::string_view s, size_t* pos, int digits, int64_t* out) {
  if (*pos + static_cast<size_t>(digits) > s.size()) return false;
  int64_t v = 0;
  for (int i = 0; i < digits; ++i) {
    const char c = s[*pos + static_cast<size_t>(i)];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += static_cast<size_t>(digits);
  *out = v;
  return true;
}

bool Expect(std::string_view s, size_t* pos, char c) {
  if (*pos >= s.size() || s[*pos] != c) return false;
  ++*pos;
  return true;
}

}  // namespace

std::optional<int64_t> ParseWallClockNanos(std::string_view text) {
  const std::string_view s = Trim(text);
  size_t p = 0;
  int64_t y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!Digits(s, &p, 4, &y) || !Expect(s, &p, '-') || !Digits(s, &p, 2, &mo) ||
      !Expect(s, &p, '-') || !Digits(s, &p, 2, &d)) {
    return std::nullopt;
  }
  if (p >= s.size() || (s[p] != ' ' && s[p] != 'T')) return std::nullopt;
  ++p;
  if (!Digits(s, &p, 2, &h) || !Expect(s, &p, ':') || !Digits(s, &p, 2, &mi) ||
      !Expect(s, &p, ':') || !Digits(s, &p, 2, &sec)) {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > DaysInMonth(y, mo) || h > 23 || mi > 59 || sec > 59) {
    return std::nullopt;
  }
  int64_t frac_ns = 0;
  if (p < s.size() && s[p] == '.') {
    ++p;
    int digits = 0;
    int64_t scale = 100'000'000;
    for (; p < s.size() && s[p] >= '0' && s[p] <= '9'; ++p, ++digits) {
      if (digits >= 9) return std::nullopt;
      frac_ns += (s[p] - '0') * scale;
      scale /= 10;
    }
    if (digits == 0) return std::nullopt;
  }
  int64_t offset_s = 0;
  if (p < s.size() && s[p] == 'Z') {
    ++p;
  } else if (p < s.size() && (s[p] == '+' || s[p] == '-')) {
    const int64_t sign = s[p] == '-' ? -1 : 1;
    ++p;
    int64_t oh = 0, om = 0;
    if (!Digits(s, &p, 2, &oh) || !Expect(s, &p, ':') || !Digits(s, &p, 2, &om) || oh > 23 ||
        om > 59) {
      return std::nullopt;
    }
    offset_s = sign * (oh * 3600 + om * 60);
  }
  if (p != s.size()) return std::nullopt;
  const int64_t secs = DaysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset_s;
  return secs * 1'000'000'000 + frac_ns;
}

namespace {

// Splits a CSV line at commas into `fields` (no quoting: the Azure traces have none).
void SplitCsv(std::string_view line, std::vector<std::string_view>* fields) {
  fields->clear();
  size_t begin = 0;
  while (true) {
    const size_t comma = line.find(',', begin);
    if (comma == std::string_view::npos) {
      fields->push_back(Trim(line.substr(begin)));
      return;
    }
    fields->push_back(Trim(line.substr(begin, comma - begin)));
    begin = comma + 1;
  }
}

struct AzureColumns {
  size_t count = 0;
  size_t timestamp = 0;
  size_t context = 0;
  size_t generated = 0;
};

std::optional<AzureColumns> FindAzureColumns(std::string_view header) {
  std::vector<std::string_view> fields;
  SplitCsv(header, &fields);
  AzureColumns c{.count = fields.size()};
  bool ts = false, ctx = false, gen = false;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (fields[i] == kTimestampColumn) ts = true, c.timestamp = i;
    if (fields[i] == kContextColumn) ctx = true, c.context = i;
    if (fields[i] == kGeneratedColumn) gen = true, c.generated = i;
  }
  if (!ts || !ctx || !gen) return std::nullopt;
  return c;
}

Status ParseAzureTokens(std::string_view field, std::string_view column, int64_t min,
                        std::string_view name, int64_t line, int64_t* out) {
  const std::optional<int64_t> v = ParseInt64(field);
  if (!v) {
    return LineError(name, line,
                     std::string(column) + ": must be an integer number of tokens, got '" +
                         Excerpt(field) + "'");
  }
  if (auto bad = CheckTokens(column, *v, min)) return LineError(name, line, *bad);
  *out = *v;
  return OkStatus();
}

Status ParseAzureLine(std::string_view text, const AzureColumns& cols, std::string_view name,
                      int64_t line, std::vector<std::string_view>* fields, Row* row) {
  SplitCsv(text, fields);
  if (fields->size() != cols.count) {
    return LineError(name, line,
                     "expected " + std::to_string(cols.count) +
                         " CSV columns as in the header, got " + std::to_string(fields->size()) +
                         ": " + Excerpt(text));
  }
  const std::string_view ts = (*fields)[cols.timestamp];
  const std::optional<int64_t> ns = ParseWallClockNanos(ts);
  if (!ns) {
    return LineError(
        name, line,
        "TIMESTAMP: not a time of the form 2023-11-16 18:15:46.6805900: '" + Excerpt(ts) + "'");
  }
  row->time_ns = *ns;
  RETURN_IF_ERROR(
      ParseAzureTokens((*fields)[cols.context], kContextColumn, 1, name, line, &row->input_tokens));
  RETURN_IF_ERROR(ParseAzureTokens((*fields)[cols.generated], kGeneratedColumn, 0, name, line,
                                   &row->output_tokens));
  row->hash_ids.clear();
  return OkStatus();
}

// Walks the lines of `text`: 1-based numbers, '\r' stripped; empty lines skipped by callers.
class LineReader {
 public:
  explicit LineReader(std::string_view text) : rest_(text) {}
  bool Next(std::string_view* line) {
    if (done_) return false;
    const size_t nl = rest_.find('\n');
    if (nl == std::string_view::npos) {
      *line = rest_;
      done_ = true;
    } else {
      *line = rest_.substr(0, nl);
      rest_.remove_prefix(nl + 1);
    }
    if (!line->empty() && line->back() == '\r') line->remove_suffix(1);
    ++number_;
    return true;
  }
  int64_t number() const { return number_; }

 private:
  std::string_view rest_;
  int64_t number_ = 0;
  bool done_ = false;
};

// What the first non-empty line says about the rest: the format, and the CSV columns when it is
// an Azure header.
struct Layout {
  TraceFormat format = TraceFormat::kMooncake;
  std::optional<AzureColumns> columns;
};

StatusOr<Layout> ReadLayout(std::string_view line, int64_t number, std::string_view name,
                            TraceFormat requested) {
  Layout layout{.format = requested};
  if (requested == TraceFormat::kAuto) {
    StatusOr<TraceFormat> f = DetectTraceFormat(line);
    if (!f.ok()) return LineError(name, number, f.status().message());
    layout.format = *f;
  }
  if (layout.format == TraceFormat::kAzure) {
    layout.columns = FindAzureColumns(line);
    if (!layout.columns) {
      return LineError(name, number,
                       "not an Azure CSV header naming TIMESTAMP, ContextTokens and "
                       "GeneratedTokens: '" +
                           Excerpt(line) + "'");
    }
  }
  return layout;
}

// "12.345" for 12345000 ns.
std::string Millis(int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f", static_cast<double>(ns) / 1e6);
  return buf;
}

Status CheckOptions(std::string_view name, const TraceOptions& options) {
  if (options.start < 0) {
    return InvalidArgumentError(std::string(name) + ": start must be >= 0, got " +
                                std::to_string(options.start));
  }
  if (options.limit == 0 || options.limit < -1) {
    return InvalidArgumentError(std::string(name) + ": limit must be positive or -1 (all), got " +
                                std::to_string(options.limit));
  }
  return OkStatus();
}

}  // namespace

std::string_view TraceFormatName(TraceFormat format) {
  switch (format) {
    case TraceFormat::kAuto:
      return "auto";
    case TraceFormat::kMooncake:
      return "mooncake";
    case TraceFormat::kAzure:
      return "azure";
  }
  return "unknown";
}

StatusOr<TraceFormat> ParseTraceFormat(std::string_view name) {
  for (TraceFormat f : {TraceFormat::kAuto, TraceFormat::kMooncake, TraceFormat::kAzure}) {
    if (name == TraceFormatName(f)) return f;
  }
  return InvalidArgumentError("unknown trace format '" + Excerpt(name) +
                              "' (expected auto, mooncake or azure)");
}

StatusOr<TraceFormat> DetectTraceFormat(std::string_view first_line) {
  if (first_line.starts_with(kUtf8Bom)) first_line.remove_prefix(kUtf8Bom.size());
  const std::string_view line = Trim(first_line);
  if (line.starts_with('{')) return TraceFormat::kMooncake;
  if (FindAzureColumns(line)) return TraceFormat::kAzure;
  return InvalidArgumentError(
      "unknown trace format: the first line is neither a JSON object (Mooncake) nor a CSV "
      "header naming TIMESTAMP, ContextTokens and GeneratedTokens (Azure): '" +
      Excerpt(line) + "'");
}

StatusOr<Trace> ParseTrace(std::string_view text, std::string_view name,
                           const TraceOptions& options) {
  RETURN_IF_ERROR(CheckOptions(name, options));
  Trace trace;
  trace.name = std::string(name);
  const int64_t end =
      options.limit < 0 ? std::numeric_limits<int64_t>::max() : options.start + options.limit;
  LineReader lines(text);
  std::string_view line;
  std::optional<Layout> layout;
  std::vector<std::string_view> fields;
  Row row;
  int64_t index = 0;     // requests seen so far
  int64_t prev_ns = 0;   // previous request's time (arrivals must not decrease)
  int64_t first_ns = 0;  // the slice's first request's time
  while (index < end && lines.Next(&line)) {
    if (lines.number() == 1 && line.starts_with(kUtf8Bom)) line.remove_prefix(kUtf8Bom.size());
    if (Trim(line).empty()) continue;
    if (!layout) {
      ASSIGN_OR_RETURN(layout, ReadLayout(line, lines.number(), name, options.format));
      trace.format = layout->format;
      if (layout->columns) continue;  // the CSV header
    }
    RETURN_IF_ERROR(layout->columns ? ParseAzureLine(line, *layout->columns, name, lines.number(),
                                                     &fields, &row)
                                    : ParseMooncakeLine(line, name, lines.number(), &row));
    if (index > 0 && row.time_ns < prev_ns) {
      return LineError(name, lines.number(),
                       "arrival time goes backwards: " + Millis(prev_ns - row.time_ns) +
                           " ms before the previous request's");
    }
    prev_ns = row.time_ns;
    if (index >= options.start) {
      if (trace.requests.empty()) first_ns = row.time_ns;
      trace.requests.push_back(TraceRequest{
          .index = index,
          .line = lines.number(),
          .arrival_ms = static_cast<double>(row.time_ns - first_ns) / 1e6,
          .input_tokens = row.input_tokens,
          .output_tokens = row.output_tokens,
          .hash_ids = std::exchange(row.hash_ids, {}),
      });
    }
    ++index;
  }
  if (!layout) return InvalidArgumentError(std::string(name) + ": empty trace (no lines)");
  if (index == 0) return InvalidArgumentError(std::string(name) + ": no requests after the header");
  if (trace.requests.empty()) {
    return InvalidArgumentError(std::string(name) + ": start " + std::to_string(options.start) +
                                " is past the last request (the trace has " +
                                std::to_string(index) + ")");
  }
  return trace;
}

StatusOr<Trace> ReadTrace(const std::string& path, const TraceOptions& options) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return NotFoundError("trace file '" + path + "' cannot be opened: " + std::strerror(errno));
  }
  std::string text;
  char buf[1 << 16];
  size_t got = 0;
  while ((got = std::fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, got);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) {
    return NotFoundError("trace file '" + path + "' cannot be read: " + std::strerror(err));
  }
  ASSIGN_OR_RETURN(Trace trace, ParseTrace(text, path, options));
  trace.name = std::filesystem::path(path).filename().string();
  return trace;
}

}  // namespace attic::replay
