#include "services/replay/trace.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/testing/shared_data.h"

namespace attic::replay {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kMooncake =
    R"({"timestamp": 0, "input_length": 1000, "output_length": 10, "hash_ids": [0, 1]}
{"timestamp": 5, "input_length": 600, "output_length": 0, "hash_ids": [0, 2], "extra": "x"}

{"timestamp": 27.5, "input_length": 1, "output_length": 3, "hash_ids": []}
{"timestamp": 40, "input_length": 2048, "output_length": 7}
)";

constexpr std::string_view kAzure =
    "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
    "2023-11-16 18:15:46.6805900,374,44\r\n"
    "2023-11-16 18:15:50.9951690,396,109\r\n"
    "\r\n"
    "2023-11-16 18:16:00.5,1,0\r\n"
    "2023-11-16 18:16:00.5,20,1";  // no final newline

StatusOr<Trace> Parse(std::string_view text, TraceOptions options = {}) {
  return ParseTrace(text, "t.txt", options);
}

// The error of parsing `text`, which must fail with INVALID_ARGUMENT.
std::string ErrorOf(std::string_view text, TraceOptions options = {}) {
  StatusOr<Trace> t = Parse(text, options);
  EXPECT_FALSE(t.ok()) << "parsed: " << text;
  if (t.ok()) return "";
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << t.status();
  return std::string(t.status().message());
}

TEST(TraceFormatTest, NamesRoundTrip) {
  for (TraceFormat f : {TraceFormat::kAuto, TraceFormat::kMooncake, TraceFormat::kAzure}) {
    StatusOr<TraceFormat> back = ParseTraceFormat(TraceFormatName(f));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, f);
  }
  StatusOr<TraceFormat> bad = ParseTraceFormat("sharegpt");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("sharegpt"));
}

TEST(TraceFormatTest, Detects) {
  EXPECT_EQ(*DetectTraceFormat(R"({"timestamp": 0})"), TraceFormat::kMooncake);
  EXPECT_EQ(*DetectTraceFormat("  {"), TraceFormat::kMooncake);
  EXPECT_EQ(*DetectTraceFormat("TIMESTAMP,ContextTokens,GeneratedTokens"), TraceFormat::kAzure);
  EXPECT_EQ(*DetectTraceFormat("\xEF\xBB\xBFGeneratedTokens, TIMESTAMP ,ContextTokens,Other"),
            TraceFormat::kAzure);
  for (std::string_view bad : {"TIMESTAMP,ContextTokens", "a,b,c", "[1, 2]", ""}) {
    StatusOr<TraceFormat> f = DetectTraceFormat(bad);
    ASSERT_FALSE(f.ok()) << bad;
    EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(f.status().message()), HasSubstr("unknown trace format"));
  }
}

TEST(MooncakeTraceTest, ParsesAllFields) {
  StatusOr<Trace> t = Parse(kMooncake);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->name, "t.txt");
  EXPECT_EQ(t->format, TraceFormat::kMooncake);
  ASSERT_EQ(t->requests.size(), 4u);
  const TraceRequest& a = t->requests[0];
  EXPECT_EQ(a.index, 0);
  EXPECT_EQ(a.line, 1);
  EXPECT_EQ(a.arrival_ms, 0);
  EXPECT_EQ(a.input_tokens, 1000);
  EXPECT_EQ(a.output_tokens, 10);
  EXPECT_EQ(a.hash_ids, (std::vector<uint64_t>{0, 1}));
  EXPECT_EQ(t->requests[1].output_tokens, 0);  // prefill only is allowed
  EXPECT_EQ(t->requests[1].hash_ids, (std::vector<uint64_t>{0, 2}));
  // The empty line 3 is skipped but counted.
  EXPECT_EQ(t->requests[2].index, 2);
  EXPECT_EQ(t->requests[2].line, 4);
  EXPECT_DOUBLE_EQ(t->requests[2].arrival_ms, 27.5);
  EXPECT_TRUE(t->requests[2].hash_ids.empty());
  EXPECT_EQ(t->requests[3].line, 5);
  EXPECT_TRUE(t->requests[3].hash_ids.empty());  // hash_ids may be absent
}

TEST(MooncakeTraceTest, SlicesAndRebasesArrivals) {
  StatusOr<Trace> t = Parse(kMooncake, {.start = 1, .limit = 2});
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->requests.size(), 2u);
  EXPECT_EQ(t->requests[0].index, 1);
  EXPECT_EQ(t->requests[0].arrival_ms, 0);  // the slice's first request arrives at 0
  EXPECT_EQ(t->requests[1].index, 2);
  EXPECT_DOUBLE_EQ(t->requests[1].arrival_ms, 22.5);

  StatusOr<Trace> rest = Parse(kMooncake, {.start = 3});
  ASSERT_TRUE(rest.ok()) << rest.status();
  ASSERT_EQ(rest->requests.size(), 1u);
  EXPECT_EQ(rest->requests[0].index, 3);

  StatusOr<Trace> more = Parse(kMooncake, {.start = 2, .limit = 100});
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_EQ(more->requests.size(), 2u);
}

TEST(MooncakeTraceTest, ChecksLinesBeforeTheSliceButNotAfter) {
  const std::string bad_early =
      "{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 1}\n{broken\n" +
      std::string(kMooncake);
  EXPECT_THAT(ErrorOf(bad_early, {.start = 3}), HasSubstr("t.txt:2: not a JSON line"));
  const std::string bad_last = std::string(kMooncake) + "not json\n";
  StatusOr<Trace> t = Parse(bad_last, {.start = 0, .limit = 4});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->requests.size(), 4u);
  EXPECT_THAT(ErrorOf(bad_last, {.start = 0, .limit = 5}), HasSubstr("t.txt:6: not a JSON line"));
}

struct BadLine {
  std::string line;
  std::string expected;  // a substring of the message after "t.txt:2: "
};

TEST(MooncakeTraceTest, RefusesMalformedLinesNamingLineAndField) {
  const std::string good = R"({"timestamp": 10, "input_length": 5, "output_length": 1})";
  const std::vector<BadLine> cases = {
      {"{\"timestamp\": 11, \"input_length\": 5", "not a JSON line (syntax error"},
      {"hello", "not a JSON line"},
      {"[1, 2, 3]", "not a JSON object but array"},
      {R"({"input_length": 5, "output_length": 1})", "missing field timestamp"},
      {R"({"timestamp": 11, "output_length": 1})", "missing field input_length"},
      {R"({"timestamp": 11, "input_length": 5})", "missing field output_length"},
      {R"({"timestamp": "11", "input_length": 5, "output_length": 1})",
       "timestamp: must be a number of milliseconds, got string"},
      {R"({"timestamp": -3, "input_length": 5, "output_length": 1})",
       "timestamp: must be a non-negative number"},
      {R"({"timestamp": 11, "input_length": "5", "output_length": 1})",
       "input_length: must be an integer number of tokens, got string"},
      {R"({"timestamp": 11, "input_length": 5.5, "output_length": 1})",
       "input_length: must be an integer number of tokens, got a fractional number"},
      {R"({"timestamp": 11, "input_length": -5, "output_length": 1})",
       "input_length: must be a positive integer"},
      {R"({"timestamp": 11, "input_length": 0, "output_length": 1})",
       "input_length: must be a positive integer"},
      {R"({"timestamp": 11, "input_length": 99999999999, "output_length": 1})",
       "input_length: must be a positive integer of at most 16777216 tokens"},
      {R"({"timestamp": 11, "input_length": 5, "output_length": -1})",
       "output_length: must be a non-negative integer"},
      {R"({"timestamp": 11, "input_length": 5, "output_length": null})",
       "output_length: must be an integer number of tokens, got null"},
      {R"({"timestamp": 11, "input_length": 5, "output_length": 1, "hash_ids": 3})",
       "hash_ids: must be an array of block ids"},
      {R"({"timestamp": 11, "input_length": 5, "output_length": 1, "hash_ids": [1, 2.5]})",
       "hash_ids[1]: must be a non-negative integer, got a fractional number 2.5"},
      {R"({"timestamp": 11, "input_length": 5, "output_length": 1, "hash_ids": [1, -2]})",
       "hash_ids[1]: must be a non-negative integer, got -2"},
      {R"({"timestamp": 11, "input_length": 5, "output_length": 1, "hash_ids": ["a"]})",
       "hash_ids[0]: must be a non-negative integer, got string"},
      {R"({"timestamp": 9, "input_length": 5, "output_length": 1})", "arrival time goes backwards"},
  };
  for (const BadLine& c : cases) {
    std::string text = good;
    text.append("\n").append(c.line).append("\n").append(good).append("\n");
    const std::string error = ErrorOf(text);
    EXPECT_THAT(error, HasSubstr("t.txt:2: " + c.expected)) << c.line;
  }
}

TEST(AzureTraceTest, ParsesTimestampsRelativeToTheSlice) {
  StatusOr<Trace> t = Parse(kAzure);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->format, TraceFormat::kAzure);
  ASSERT_EQ(t->requests.size(), 4u);
  EXPECT_EQ(t->requests[0].line, 2);
  EXPECT_EQ(t->requests[0].index, 0);
  EXPECT_EQ(t->requests[0].arrival_ms, 0);
  EXPECT_EQ(t->requests[0].input_tokens, 374);
  EXPECT_EQ(t->requests[0].output_tokens, 44);
  EXPECT_TRUE(t->requests[0].hash_ids.empty());
  EXPECT_NEAR(t->requests[1].arrival_ms, 4314.579, 1e-6);
  EXPECT_EQ(t->requests[2].line, 5);
  EXPECT_NEAR(t->requests[2].arrival_ms, 13819.41, 1e-6);  // one fractional digit
  EXPECT_EQ(t->requests[2].output_tokens, 0);
  EXPECT_EQ(t->requests[3].line, 6);
  EXPECT_EQ(t->requests[3].input_tokens, 20);

  StatusOr<Trace> slice = Parse(kAzure, {.start = 1, .limit = 2});
  ASSERT_TRUE(slice.ok()) << slice.status();
  ASSERT_EQ(slice->requests.size(), 2u);
  EXPECT_EQ(slice->requests[0].index, 1);
  EXPECT_EQ(slice->requests[0].arrival_ms, 0);
  EXPECT_NEAR(slice->requests[1].arrival_ms, 9504.831, 1e-6);
}

TEST(AzureTraceTest, ColumnsByNameInAnyOrder) {
  StatusOr<Trace> t = Parse(
      "GeneratedTokens,Extra,TIMESTAMP,ContextTokens\n"
      "5,x,2024-02-29T23:59:59Z,7\n"
      "6,y,2024-03-01 00:00:00.25,8\n");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->requests.size(), 2u);
  EXPECT_EQ(t->requests[0].input_tokens, 7);
  EXPECT_EQ(t->requests[0].output_tokens, 5);
  EXPECT_DOUBLE_EQ(t->requests[1].arrival_ms, 1250);  // across a leap day's midnight
}

TEST(AzureTraceTest, WallClock) {
  EXPECT_EQ(ParseWallClockNanos("1970-01-01 00:00:00"), 0);
  EXPECT_EQ(ParseWallClockNanos("1970-01-02 00:00:01.5"), 86401'500'000'000);
  EXPECT_EQ(ParseWallClockNanos("2000-03-01T00:00:00Z"), 951868800'000'000'000);
  EXPECT_EQ(ParseWallClockNanos("2000-03-01 02:30:00+02:30"), 951868800'000'000'000);
  EXPECT_EQ(ParseWallClockNanos("2023-11-16 18:15:46.123456789"), 1700158546'123456789);
  for (std::string_view bad :
       {"", "2023-11-16", "2023-11-16 18:15", "2023-13-01 00:00:00", "2023-02-29 00:00:00",
        "2023-11-16 24:00:00", "2023-11-16 18:60:00", "2023-11-16 18:15:46.", "23-11-16 18:15:46",
        "2023-11-16 18:15:46.1234567890", "2023-11-16 18:15:46 x", "2023/11/16 18:15:46"}) {
    EXPECT_FALSE(ParseWallClockNanos(bad).has_value()) << bad;
  }
}

TEST(AzureTraceTest, RefusesMalformedRowsNamingLineAndField) {
  const std::string header = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
  const std::string good = "2023-11-16 18:15:46.6805900,374,44\n";
  const std::vector<BadLine> cases = {
      {"2023-11-16 18:15:47,374", "expected 3 CSV columns as in the header, got 2"},
      {"2023-11-16 18:15:47,374,44,1", "expected 3 CSV columns as in the header, got 4"},
      {"yesterday,374,44", "TIMESTAMP: not a time of the form"},
      {"2023-11-31 18:15:47,374,44", "TIMESTAMP: not a time of the form"},
      {"2023-11-16 18:15:47,abc,44", "ContextTokens: must be an integer number of tokens"},
      {"2023-11-16 18:15:47,3.5,44", "ContextTokens: must be an integer number of tokens"},
      {"2023-11-16 18:15:47,0,44", "ContextTokens: must be a positive integer"},
      {"2023-11-16 18:15:47,-4,44", "ContextTokens: must be a positive integer"},
      {"2023-11-16 18:15:47,374,-1", "GeneratedTokens: must be a non-negative integer"},
      {"2023-11-16 18:15:47,374,", "GeneratedTokens: must be an integer number of tokens"},
      {"2023-11-16 18:15:45,374,44", "arrival time goes backwards"},
  };
  for (const BadLine& c : cases) {
    std::string text = header;
    text.append(good).append(c.line).append("\n").append(good);
    EXPECT_THAT(ErrorOf(text), HasSubstr("t.txt:3: " + c.expected)) << c.line;
  }
  EXPECT_THAT(ErrorOf("TIMESTAMP,ContextTokens\n" + good, {.format = TraceFormat::kAzure}),
              HasSubstr("t.txt:1: not an Azure CSV header"));
}

TEST(TraceTest, RefusesEmptyTracesUnknownFormatsAndBadSlices) {
  EXPECT_THAT(ErrorOf(""), HasSubstr("t.txt: empty trace"));
  EXPECT_THAT(ErrorOf("\n\r\n  \n"), HasSubstr("t.txt: empty trace"));
  EXPECT_THAT(ErrorOf("TIMESTAMP,ContextTokens,GeneratedTokens\r\n\r\n"),
              HasSubstr("t.txt: no requests after the header"));
  EXPECT_THAT(ErrorOf("\nid,prompt,completion\n1,2,3\n"),
              HasSubstr("t.txt:2: unknown trace format"));
  EXPECT_THAT(ErrorOf(kMooncake, {.start = 4}),
              HasSubstr("start 4 is past the last request (the trace has 4)"));
  EXPECT_THAT(ErrorOf(kMooncake, {.start = -1}), HasSubstr("start must be >= 0"));
  EXPECT_THAT(ErrorOf(kMooncake, {.limit = 0}), HasSubstr("limit must be positive or -1"));
  EXPECT_THAT(ErrorOf(kMooncake, {.limit = -2}), HasSubstr("limit must be positive or -1"));
  // A forced format that does not match is an error on line 1, not a misparse.
  EXPECT_THAT(ErrorOf(kAzure, {.format = TraceFormat::kMooncake}),
              HasSubstr("t.txt:1: not a JSON line"));
  EXPECT_THAT(ErrorOf(kMooncake, {.format = TraceFormat::kAzure}),
              HasSubstr("t.txt:1: not an Azure CSV header"));
}

TEST(TraceTest, ReadsFilesAndNamesMissingOnes) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path();
  const std::filesystem::path path =
      dir / ("attic_trace_test_" + std::to_string(::getpid()) + ".csv");
  {
    std::ofstream out(path, std::ios::binary);
    out << kAzure;
  }
  StatusOr<Trace> t = ReadTrace(path.string(), {.limit = 3});
  std::filesystem::remove(path);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->name, path.filename().string());
  EXPECT_EQ(t->format, TraceFormat::kAzure);
  EXPECT_EQ(t->requests.size(), 3u);

  StatusOr<Trace> missing = ReadTrace((dir / "attic_no_such_trace.jsonl").string(), {});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("attic_no_such_trace.jsonl"));
}

// The real traces of ../shared/data/traces, when present: every row parses.
std::optional<std::string> TracesDir() {
  auto root = testing::SharedDir();
  if (!root) return std::nullopt;
  const std::filesystem::path p = std::filesystem::path(*root) / "data" / "traces";
  if (!std::filesystem::is_directory(p)) return std::nullopt;
  return p.string();
}

TEST(RealTraceTest, ParsesMooncakeConversation) {
  const auto dir = TracesDir();
  if (!dir) GTEST_SKIP() << testing::kNoSharedDataMessage;
  const auto t0 = std::chrono::steady_clock::now();
  StatusOr<Trace> t = ReadTrace(*dir + "/mooncake_conversation.jsonl", {});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(t.ok()) << t.status();
  std::printf("mooncake_conversation.jsonl: %zu requests in %.3f s\n", t->requests.size(), s);
  EXPECT_EQ(t->format, TraceFormat::kMooncake);
  ASSERT_EQ(t->requests.size(), 12031u);
  EXPECT_EQ(t->requests[0].input_tokens, 6758);
  EXPECT_EQ(t->requests[0].output_tokens, 500);
  EXPECT_EQ(t->requests[0].hash_ids.size(), 14u);
  EXPECT_EQ(t->requests.back().line, 12031);
  EXPECT_EQ(t->requests.back().arrival_ms, 3536999);
  EXPECT_EQ(t->requests.back().hash_ids.back(), 182789u);
}

TEST(RealTraceTest, ParsesAzureConversation) {
  const auto dir = TracesDir();
  if (!dir) GTEST_SKIP() << testing::kNoSharedDataMessage;
  StatusOr<Trace> t = ReadTrace(*dir + "/azure_llm_conv_2023.csv", {});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->format, TraceFormat::kAzure);
  ASSERT_EQ(t->requests.size(), 19366u);
  EXPECT_EQ(t->requests[0].input_tokens, 374);
  EXPECT_EQ(t->requests[0].output_tokens, 44);
  EXPECT_NEAR(t->requests[1].arrival_ms, 4314.579, 1e-6);
  EXPECT_EQ(t->requests.back().line, 19367);
  EXPECT_EQ(t->requests.back().input_tokens, 197);
  EXPECT_EQ(t->requests.back().output_tokens, 183);
}

}  // namespace
}  // namespace attic::replay
