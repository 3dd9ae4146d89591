// Production LLM-serving traces for attic-replay: Mooncake JSON lines and Azure CSV.
//
//   ASSIGN_OR_RETURN(Trace t, ReadTrace("conversation.jsonl", {.start = 0, .limit = 300}));
//   for (const TraceRequest& r : t.requests) Schedule(r.arrival_ms, r);
//
// Mooncake (kvcache-ai/Mooncake FAST'25 traces): one JSON object per line with `timestamp` (ms
// from the trace start), `input_length`, `output_length` (tokens) and `hash_ids` (one id per
// 512-token prompt block; equal ids at equal positions are a shared prefix). Other keys are
// ignored; `hash_ids` may be absent (the prompt then shares nothing). Azure
// (AzurePublicDataset LLM inference traces): CSV with the header
// `TIMESTAMP,ContextTokens,GeneratedTokens` (any column order, extra columns ignored; no
// quoting), TIMESTAMP a wall-clock time "2023-11-16 18:15:46.6805900" (up to 9 fractional
// digits; 'T' for the space, a 'Z' or "+hh:mm" suffix accepted); no prefix information.
//
// A request has at least one prompt token: an input length of 0 is refused (there would be
// nothing to attend to); an output length of 0 is allowed (prefill only). Both are at most
// kMaxTraceTokens. Arrival times are made relative to the first request of the selected slice
// (it arrives at 0). Every refusal of a line is INVALID_ARGUMENT naming the file and the
// 1-based line, and the field where there is one:
// "trace.jsonl:17: output_length: must be a non-negative integer of at most 16777216 tokens,
// got -3".
//
// Thread safety: stateless functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace attic::replay {

enum class TraceFormat { kAuto, kMooncake, kAzure };

// The largest input or output length accepted, in tokens (keeps byte counts far from overflow).
inline constexpr int64_t kMaxTraceTokens = int64_t{1} << 24;

// "auto", "mooncake", "azure".
std::string_view TraceFormatName(TraceFormat format);
StatusOr<TraceFormat> ParseTraceFormat(std::string_view name);

struct TraceRequest {
  int64_t index = 0;      // 0-based request number in the file (header not counted)
  int64_t line = 0;       // 1-based line in the file
  double arrival_ms = 0;  // relative to the slice's first request
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  std::vector<uint64_t> hash_ids;  // Mooncake: one per 512-token block; Azure: empty
};

struct TraceOptions {
  TraceFormat format = TraceFormat::kAuto;
  int64_t start = 0;   // first request taken (0-based); must be before the trace's end
  int64_t limit = -1;  // requests taken, at least 1; -1 = all the rest
};

struct Trace {
  std::string name;                             // the file's name (for reports)
  TraceFormat format = TraceFormat::kMooncake;  // the detected or given format
  std::vector<TraceRequest> requests;
};

// The format of a trace whose first non-empty line is `first_line`: '{' = Mooncake, a CSV header
// naming TIMESTAMP, ContextTokens and GeneratedTokens = Azure; otherwise INVALID_ARGUMENT.
StatusOr<TraceFormat> DetectTraceFormat(std::string_view first_line);

// Parses a whole trace held in memory; `name` names it in errors. Lines outside the selected
// slice are still checked up to its end (a malformed line before the slice is an error too);
// lines after the slice are not read. Arrival times must not decrease (INVALID_ARGUMENT naming
// the line otherwise). Empty lines, a trailing '\r' and a UTF-8 byte-order mark are ignored.
// INVALID_ARGUMENT too for a text without lines, a CSV with a header only, a start past the
// last request and a start < 0 or limit < -1 or 0.
StatusOr<Trace> ParseTrace(std::string_view text, std::string_view name,
                           const TraceOptions& options);

// Reads and parses a file: NOT_FOUND naming the path when it cannot be opened or read. Errors
// name the path as given; Trace::name is its file name.
StatusOr<Trace> ReadTrace(const std::string& path, const TraceOptions& options);

// Nanoseconds since 1970-01-01 UTC of "YYYY-MM-DD[ T]hh:mm:ss[.f{1,9}][Z|+hh:mm|-hh:mm]";
// nullopt when the text is not such a time (a field out of range included).
std::optional<int64_t> ParseWallClockNanos(std::string_view text);

}  // namespace attic::replay
