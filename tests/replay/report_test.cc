#include "services/replay/report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace attic::replay {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

RequestRecord Completed(int64_t index, double arrival, int64_t input, int64_t prefix) {
  return RequestRecord{.index = index,
                       .arrival_ms = arrival,
                       .start_ms = arrival + 1,
                       .first_token_ms = arrival + 20,
                       .end_ms = arrival + 500,
                       .input_tokens = input,
                       .output_tokens = 10,
                       .prefix_tokens = prefix,
                       .lookup_done = true,
                       .decode_steps = 10,
                       .prefill_ms = 15,
                       .placement = "prefix-affinity"};
}

// Three completed requests, one refused at admission, one lost after its lookup.
ReplayReport HandcraftedReport() {
  ReplayReport r;
  r.config = ReplayConfig{.trace = "conv<1>.jsonl",
                          .format = "mooncake",
                          .start = 10,
                          .limit = 5,
                          .speedup = 4,
                          .model = "attic-ref-54m",
                          .layers = 6,
                          .num_q_heads = 8,
                          .num_kv_heads = 2,
                          .head_dim = 128,
                          .block_tokens = 64,
                          .dtype = "bf16",
                          .kv_bytes_per_token = 6144,
                          .max_concurrency = 2,
                          .max_queue = 1,
                          .prefill_threads = 2,
                          .seed = 42,
                          .scheduler = "127.0.0.1:7100",
                          .workers = 2,
                          .tenant = "replay"};
  r.requests.push_back(Completed(10, 0, 1000, 512));
  r.requests.push_back(Completed(11, 100, 2000, 0));
  r.requests.push_back(RequestRecord{.index = 12,
                                     .arrival_ms = 150,
                                     .end_ms = 150,
                                     .input_tokens = 300,
                                     .output_tokens = 5,
                                     .code = StatusCode::kResourceExhausted,
                                     .error = "queue full (1 waiting) <at> admission"});
  RequestRecord lost = Completed(13, 200, 1000, 512);
  lost.first_token_ms = -1;
  lost.prefill_ms = -1;
  lost.decode_steps = 0;
  lost.code = StatusCode::kUnavailable;
  lost.error = "worker 127.0.0.1:7201 is gone";
  r.requests.push_back(lost);
  r.requests.push_back(Completed(14, 300, 500, 500));
  for (int i = 1; i <= 100; ++i) {
    r.step_latency_ms.push_back(static_cast<float>(i));
    r.step_batch.push_back(i % 3 + 1);
  }
  for (int i = 0; i <= 20; ++i) {
    r.timeline.push_back(TimelineSample{.t_ms = 500.0 * i,
                                        .completed = i / 7,
                                        .failed = i / 10,
                                        .decoding = 2,
                                        .prefilling = i % 2,
                                        .queued = i % 3,
                                        .decode_tokens = int64_t{60} * i,
                                        .kv_bytes_dram = 1000000ull * static_cast<uint64_t>(i),
                                        .kv_bytes_ssd = 0,
                                        .bytes_sent = 5000ull * i});
  }
  r.wall_s = 10;
  r.decode_tokens = 1234;
  r.bytes_sent = 3ull << 30;
  r.bytes_received = 5ull << 20;
  r.attend_bytes_read = 7ull << 30;
  r.kv_bytes_dram_peak = 20000000;
  r.kv_bytes_ssd_peak = 0;
  r.started_at = "2025-01-02T03:04:05Z";
  // Two layers: the first answered densely (diffuse), the second sparse at 5 % of the keys.
  AttentionTotals& a = r.attention;
  a.policy = "auto";
  a.head_steps = 400;
  a.dense_head_steps = 200;
  a.stand_in_head_steps = 100;
  a.keys_context = 400000;
  a.keys_touched = 200000 + 10000;
  a.dense_bytes = 400000ull * 512;
  a.bytes_read = 200000ull * 512 + 6000ull * 512;
  a.ssd_bytes = 1ull << 20;
  a.recall_heads = 8;
  a.recall_exact = 800;
  a.recall_hits = 760;
  a.layer_head_steps = {200, 200};
  a.layer_dense_head_steps = {200, 0};
  return r;
}

TEST(PercentilesTest, NearestRank) {
  const Percentiles empty = ComputePercentiles({});
  EXPECT_EQ(empty.count, 0);
  EXPECT_EQ(empty.p50, 0);
  EXPECT_EQ(empty.max, 0);
  const Percentiles one = ComputePercentiles({7});
  EXPECT_EQ(one.p50, 7);
  EXPECT_EQ(one.p99, 7);
  const Percentiles three = ComputePercentiles({5, 1, 3});
  EXPECT_EQ(three.p50, 3);  // rank ceil(1.5) = 2
  EXPECT_EQ(three.p90, 5);
  EXPECT_EQ(three.max, 5);
  EXPECT_DOUBLE_EQ(three.mean, 3);
  std::vector<double> ten;
  for (int i = 10; i >= 1; --i) ten.push_back(i);
  const Percentiles p = ComputePercentiles(ten);
  EXPECT_EQ(p.p50, 5);
  EXPECT_EQ(p.p90, 9);
  EXPECT_EQ(p.p99, 10);
  EXPECT_EQ(p.count, 10);
}

TEST(SummarizeTest, AccountsEveryRequest) {
  const ReplayReport r = HandcraftedReport();
  const ReplaySummary s = Summarize(r);
  EXPECT_EQ(s.requests_admitted, 5);
  EXPECT_EQ(s.requests_completed, 3);
  EXPECT_EQ(s.requests_failed, 2);
  EXPECT_EQ(s.requests_completed + s.requests_failed, s.requests_admitted);
  EXPECT_EQ(s.failures_by_code,
            (std::map<std::string, int64_t>{{"RESOURCE_EXHAUSTED", 1}, {"UNAVAILABLE", 1}}));
  EXPECT_DOUBLE_EQ(s.decode_tokens_per_s, 123.4);
  EXPECT_DOUBLE_EQ(s.request_rate, 0.3);
  EXPECT_EQ(s.step_latency_ms.p50, 50);
  EXPECT_EQ(s.step_latency_ms.p90, 90);
  EXPECT_EQ(s.step_latency_ms.p99, 99);
  EXPECT_EQ(s.step_latency_ms.max, 100);
  EXPECT_DOUBLE_EQ(s.step_latency_ms.mean, 50.5);
  EXPECT_EQ(s.step_latency_ms.count, 100);
  EXPECT_EQ(s.prefill_latency_ms.count, 3);  // completed prefills only
  EXPECT_EQ(s.prefill_latency_ms.p50, 15);
  EXPECT_EQ(s.ttft_ms.count, 3);
  EXPECT_EQ(s.ttft_ms.p99, 20);
  // The refused request never looked up: it is not in the ratio; the lost one is.
  EXPECT_EQ(s.prompt_tokens, 1000 + 2000 + 1000 + 500);
  EXPECT_EQ(s.prefix_tokens, 512 + 0 + 512 + 500);
  EXPECT_DOUBLE_EQ(s.prefix_hit_ratio, 1524.0 / 4500.0);
}

TEST(SummarizeTest, EmptyReportIsAllZero) {
  const ReplaySummary s = Summarize(ReplayReport{});
  EXPECT_EQ(s.requests_admitted, 0);
  EXPECT_EQ(s.decode_tokens_per_s, 0);
  EXPECT_EQ(s.prefix_hit_ratio, 0);
  EXPECT_TRUE(s.failures_by_code.empty());
  // Every rendering copes with nothing to show.
  EXPECT_THAT(RenderTable(ReplayReport{}, s), HasSubstr("admitted 0"));
  EXPECT_TRUE(nlohmann::json::accept(RenderJson(ReplayReport{}, s)));
  EXPECT_THAT(RenderHtml(ReplayReport{}, s), HasSubstr("no data"));
}

TEST(RenderTableTest, ShowsEveryFigure) {
  const ReplayReport r = HandcraftedReport();
  const std::string t = RenderTable(r, Summarize(r));
  ASSERT_FALSE(t.empty());
  EXPECT_EQ(t.back(), '\n');
  for (const char* want :
       {"admitted 5 | completed 3 | failed 2", "RESOURCE_EXHAUSTED 1, UNAVAILABLE 1",
        "123.4 decode tokens/s", "decode step", "prefill", "TTFT", "33.9 %",
        "(1 524 of 4 500 prompt tokens)", "DRAM 19.1 MiB", "SSD 0 B", "3.00 GiB",
        "KV read by Attend 7.00 GiB", "10.0 s", "attic-ref-54m", "requests 10-14, speed-up 4x",
        "127.0.0.1:7100", "6.00 KiB/token", "auto: 50.0 % of heads sparse",
        "keys touched 52.5 %", "bytes read 51.5 % of a dense pass", "of it 1.00 MiB from SSD",
        "sparse heads by layer: 0.0 % 100.0 %", "online recall@k 0.950 (8 heads checked)",
        "25.0 % of heads searched the stand-in index"}) {
    EXPECT_THAT(t, HasSubstr(want)) << t;
  }
  std::istringstream lines(t);
  std::string line;
  while (std::getline(lines, line)) EXPECT_LE(line.size(), 100u) << line;
  // The latency rows line up under their headers.
  EXPECT_THAT(t, HasSubstr("  decode step         50.0      90.0      99.0       100       100\n"));
}

TEST(RenderJsonTest, ParsesBackWithTheRequiredKeys) {
  const ReplayReport r = HandcraftedReport();
  const ReplaySummary s = Summarize(r);
  const nlohmann::json j = nlohmann::json::parse(RenderJson(r, s));
  EXPECT_EQ(j["requests_admitted"], 5);
  EXPECT_EQ(j["requests_completed"], 3);
  EXPECT_EQ(j["requests_failed"], 2);
  EXPECT_EQ(j["failures_by_code"], (nlohmann::json{{"RESOURCE_EXHAUSTED", 1}, {"UNAVAILABLE", 1}}));
  EXPECT_DOUBLE_EQ(j["decode_tokens_per_s"].get<double>(), 123.4);
  EXPECT_EQ(j["step_latency_ms"]["p50"], 50.0);
  EXPECT_EQ(j["step_latency_ms"]["p90"], 90.0);
  EXPECT_EQ(j["step_latency_ms"]["p99"], 99.0);
  EXPECT_EQ(j["prefill_latency_ms"]["p50"], 15.0);
  EXPECT_TRUE(j["prefill_latency_ms"].contains("p90"));
  EXPECT_TRUE(j["prefill_latency_ms"].contains("p99"));
  EXPECT_EQ(j["kv_bytes"]["dram"], 20000000);
  EXPECT_EQ(j["kv_bytes"]["ssd"], 0);
  EXPECT_DOUBLE_EQ(j["prefix_hit_ratio"].get<double>(), 1524.0 / 4500.0);
  EXPECT_EQ(j["bytes_sent"], 3ull << 30);
  EXPECT_EQ(j["attend_bytes_read"], 7ull << 30);
  const nlohmann::json& at = j["attention"];
  EXPECT_EQ(at["policy"], "auto");
  EXPECT_DOUBLE_EQ(at["sparse_head_fraction"].get<double>(), 0.5);
  EXPECT_EQ(at["sparse_head_fraction_by_layer"], (nlohmann::json{0.0, 1.0}));
  EXPECT_DOUBLE_EQ(at["keys_touched_fraction"].get<double>(), 0.525);
  EXPECT_DOUBLE_EQ(at["bytes_fraction"].get<double>(), 206000.0 / 400000.0);
  EXPECT_DOUBLE_EQ(at["recall"].get<double>(), 0.95);
  EXPECT_EQ(at["ssd_bytes"], 1ull << 20);
  EXPECT_DOUBLE_EQ(at["stand_in_head_fraction"].get<double>(), 0.25);
  EXPECT_EQ(at["stand_in_head_steps"], 100);
  const nlohmann::json& c = j["config"];
  EXPECT_EQ(c["trace"], "conv<1>.jsonl");
  EXPECT_EQ(c["model"], "attic-ref-54m");
  EXPECT_EQ(c["speedup"], 4.0);
  EXPECT_EQ(c["seed"], 42);
  EXPECT_EQ(c["max_concurrency"], 2);
  EXPECT_EQ(c["workers"], 2);
  // Per-request records, "never" as null, codes by name.
  ASSERT_EQ(j["requests"].size(), 5u);
  EXPECT_EQ(j["requests"][0]["code"], "OK");
  EXPECT_EQ(j["requests"][2]["code"], "RESOURCE_EXHAUSTED");
  EXPECT_TRUE(j["requests"][2]["start_ms"].is_null());
  EXPECT_EQ(j["requests"][3]["error"], "worker 127.0.0.1:7201 is gone");
  EXPECT_EQ(j["requests"][4]["index"], 14);
  EXPECT_EQ(j["timeline"].size(), 21u);
  EXPECT_EQ(j["timeline"][20]["decode_tokens"], 1200);
  // A CDF: latencies and fractions both non-decreasing, ending at (max, 1).
  const nlohmann::json& cdf = j["step_latency_ms"]["cdf"];
  ASSERT_GE(cdf.size(), 2u);
  for (size_t i = 1; i < cdf.size(); ++i) {
    EXPECT_LE(cdf[i - 1][0].get<double>(), cdf[i][0].get<double>());
    EXPECT_LE(cdf[i - 1][1].get<double>(), cdf[i][1].get<double>());
  }
  EXPECT_EQ(cdf.back()[0], 100.0);
  EXPECT_EQ(cdf.back()[1], 1.0);
}

TEST(RenderHtmlTest, SelfContainedWithChartsAndEscapedText) {
  ReplayReport r = HandcraftedReport();
  r.config.tenant = "<script>alert(1)</script>";
  const std::string h = RenderHtml(r, Summarize(r));
  EXPECT_THAT(h, HasSubstr("<!DOCTYPE html>"));
  EXPECT_THAT(h, HasSubstr("</html>"));
  EXPECT_THAT(h, HasSubstr("<svg"));
  size_t charts = 0;
  for (size_t p = h.find("<svg"); p != std::string::npos; p = h.find("<svg", p + 1)) ++charts;
  EXPECT_EQ(charts, 4u);
  EXPECT_THAT(h, HasSubstr("<polyline"));
  for (const char* banned : {"http://", "https://", "src=", "<script", "<link", "url("}) {
    EXPECT_THAT(h, Not(HasSubstr(banned))) << banned;
  }
  EXPECT_THAT(h, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_THAT(h, HasSubstr("conv&lt;1&gt;.jsonl"));
  EXPECT_THAT(h, HasSubstr("queue full (1 waiting) &lt;at&gt; admission"));
  EXPECT_THAT(h, HasSubstr("RESOURCE_EXHAUSTED"));
  EXPECT_THAT(h, HasSubstr("Latency CDF"));
  EXPECT_THAT(h, HasSubstr("Decode throughput"));
  EXPECT_THAT(h, HasSubstr("KV cache over the fleet"));
  EXPECT_THAT(h, HasSubstr("Requests in flight"));
  EXPECT_THAT(h, HasSubstr("Configuration"));
  // What attention did: a card and the text table's lines.
  EXPECT_THAT(h, HasSubstr("heads sparse (auto)"));
  EXPECT_THAT(h, HasSubstr("auto: 50.0 % of heads sparse | keys touched 52.5 %"));
  EXPECT_THAT(h, HasSubstr("sparse heads by layer: 0.0 % 100.0 %"));
  EXPECT_THAT(h, HasSubstr("online recall@k 0.950 (8 heads checked)"));
}

TEST(ProgressLineTest, StaysWithinTheWidth) {
  const TimelineSample now{
      .t_ms = 1000, .completed = 117, .failed = 3, .decoding = 24, .prefilling = 2, .queued = 5};
  for (int width = 0; width <= 200; ++width) {
    const std::string line = ProgressLine(now, 300, 1830.4, width);
    EXPECT_LE(static_cast<int>(line.size()), width);
    EXPECT_EQ(line.find('\n'), std::string::npos);
  }
  const std::string wide = ProgressLine(now, 300, 1830.4, 100);
  EXPECT_EQ(wide.size(), 100u);  // the bar takes the rest
  EXPECT_THAT(wide, HasSubstr("] 120/300 done 3 failed | decoding 24 prefilling 2 queued 5 | "
                              "1830 tok/s"));
  const size_t bar = wide.find(']') - 1;
  const auto filled = static_cast<size_t>(std::count(wide.begin(), wide.end(), '#'));
  EXPECT_EQ(filled, bar * 120 / 300);
  EXPECT_THAT(ProgressLine(now, 300, 1830.4, 50), HasSubstr("120/300 done 3 failed | 1830 tok/s"));
  EXPECT_EQ(ProgressLine(now, 300, 1830.4, 20), "120/300 done 3 faile");
  EXPECT_THAT(ProgressLine(TimelineSample{}, 0, 0, 80), HasSubstr("0/0 done 0 failed"));
}

}  // namespace
}  // namespace attic::replay
