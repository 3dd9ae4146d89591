// Production LLM-serving traces for attic-replay: Mooncake JSON lines and Azure CSV.
//
//   ASSIGN_OR_RETURN(Trace t, ReadTrace("conversation.jsonl", {.start = 0, .limit = 300}));
//   for (const TraceRequest& r : t.requests) Schedule(r.arrival_ms, r);
//
// Mooncake (kvcache-ai/Mooncake FAST'25 traces): one JSON object per line with `timestamp` (ms
// from the trace start), `input_length`, `output_length` (tokens) and `hash_ids` (one id per
// 512-token prompt block; equal ids at equal positions are a shared prefix). Other keys are
// ignored. Azure (AzurePublicDataset LLM inference traces): CSV with the header
// `TIMESTAMP,ContextTokens,GeneratedTokens`, TIMESTAMP a wall-clock time
// "2023-11-16 18:15:46.6805900"; no prefix information.
//
// Arrival times are made relative to the first request of the selected slice (it arrives at 0).
// Every refusal is INVALID_ARGUMENT naming the file and the 1-based line:
// "trace.jsonl:17: output_length: must be a non-negative integer".
//
// Thread safety: stateless functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace attic::replay {

enum class TraceFormat { kAuto, kMooncake, kAzure };

// "auto", "mooncake", "azure".
std::string_view TraceFormatName(TraceFormat format);
StatusOr<TraceFormat> ParseTraceFormat(std::string_view name);

struct TraceRequest {
  int64_t index = 0;        // 0-based request number in the file (header not counted)
  int64_t line = 0;         // 1-based line in the file
  double arrival_ms = 0;    // relative to the slice's first request
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  std::vector<uint64_t> hash_ids;  // Mooncake: one per 512-token block; Azure: empty
};

struct TraceOptions {
  TraceFormat format = TraceFormat::kAuto;
  int64_t start = 0;    // first request taken (0-based)
  int64_t limit = -1;   // requests taken; -1 = all the rest
};

struct Trace {
  std::string name;     // the file's name (for reports)
  TraceFormat format = TraceFormat::kMooncake;  // the detected or given format
  std::vector<TraceRequest> requests;
};

// The format of a trace whose first non-empty line is `first_line`: '{' = Mooncake, a CSV header
// naming TIMESTAMP, ContextTokens and GeneratedTokens = Azure; otherwise INVALID_ARGUMENT.
StatusOr<TraceFormat> DetectTraceFormat(std::string_view first_line);

// Parses a whole trace held in memory; `name` names it in errors. Lines outside the selected
// slice are still checked up to its end (a malformed line before the slice is an error too);
// lines after the slice are not read. Arrival times must not decrease (INVALID_ARGUMENT naming
// the line otherwise). Empty lines and a trailing '\r' are ignored.
StatusOr<Trace> ParseTrace(std::string_view text, std::string_view name,
                           const TraceOptions& options);

// Reads and parses a file: NOT_FOUND naming the path when it cannot be opened.
StatusOr<Trace> ReadTrace(const std::string& path, const TraceOptions& options);

}  // namespace attic::replay
