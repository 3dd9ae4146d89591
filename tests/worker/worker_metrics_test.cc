// WorkerMetrics: what Serialize() exposes, parsed back from the text format.
#include "services/worker/worker_metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "transport/frame.h"

namespace attic {
namespace {

// One sample line: name, labels (sorted by name) and value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses the text exposition format; fails the test on a line it cannot read.
std::vector<Sample> Parse(const std::string& text) {
  std::vector<Sample> samples;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    Sample s;
    const size_t brace = line.find('{');
    const size_t space = line.rfind(' ');
    EXPECT_NE(space, std::string::npos) << line;
    s.name = line.substr(0, std::min(brace, space));
    if (brace != std::string::npos) {
      const std::string labels = line.substr(brace + 1, line.rfind('}') - brace - 1);
      size_t pos = 0;
      while (pos < labels.size()) {
        const size_t eq = labels.find('=', pos);
        const size_t close = labels.find('"', eq + 2);
        s.labels[labels.substr(pos, eq - pos)] = labels.substr(eq + 2, close - eq - 2);
        pos = close + 2;  // past '"' and ','
      }
    }
    const std::string value = line.substr(space + 1);
    char* end = nullptr;
    s.value = std::strtod(value.c_str(), &end);
    EXPECT_EQ(end, value.c_str() + value.size()) << line;
    samples.push_back(std::move(s));
  }
  return samples;
}

// The value of the one sample with this name and labels; NaN when absent.
double Value(const std::vector<Sample>& samples, const std::string& name,
             const std::map<std::string, std::string>& labels = {}) {
  double found = std::nan("");
  int n = 0;
  for (const Sample& s : samples) {
    if (s.name == name && s.labels == labels) {
      found = s.value;
      ++n;
    }
  }
  EXPECT_LE(n, 1) << name;
  return found;
}

int Count(const std::vector<Sample>& samples, const std::string& name) {
  return static_cast<int>(std::count_if(samples.begin(), samples.end(),
                                        [&](const Sample& s) { return s.name == name; }));
}

constexpr int kAttend = static_cast<int>(transport::Method::kAttend);
constexpr int kAppendKv = static_cast<int>(transport::Method::kAppendKv);

TEST(WorkerMetricsTest, InitialSeriesTypesAndBuildInfo) {
  WorkerMetrics m("worker-7");
  const std::string text = m.Serialize();
  for (const char* type_line :
       {"# TYPE attic_worker_requests_total counter",
        "# TYPE attic_worker_request_duration_seconds histogram",
        "# TYPE attic_worker_bytes_received_total counter",
        "# TYPE attic_worker_bytes_sent_total counter", "# TYPE attic_worker_kv_blocks gauge",
        "# TYPE attic_worker_kv_bytes gauge", "# TYPE attic_worker_sequences gauge",
        "# TYPE attic_worker_prefix_cache_blocks gauge",
        "# TYPE attic_worker_prefix_hits_total counter",
        "# TYPE attic_worker_compute_queue_depth gauge",
        "# TYPE attic_worker_attend_keys_scanned_total counter",
        "# TYPE attic_worker_connections gauge",
        "# TYPE attic_worker_handshakes_refused_total counter", "# TYPE attic_worker_up gauge",
        "# TYPE attic_worker_build_info gauge"}) {
    EXPECT_NE(text.find(std::string(type_line) + "\n"), std::string::npos) << type_line;
  }
  const auto s = Parse(text);
  EXPECT_EQ(Value(s, "attic_worker_up"), 1);
  EXPECT_EQ(Value(s, "attic_worker_build_info",
                  {{"version", "0.1.0"}, {"protocol", "1"}, {"worker", "worker-7"}}),
            1);
  // The OK series of every op exist at zero; no error series exists yet.
  for (const char* op : {"Hello", "OpenSequence", "LookupPrefix", "AppendKv", "Attend",
                         "CloseSequence", "Stats", "Echo", "Discard"}) {
    EXPECT_EQ(Value(s, "attic_worker_requests_total", {{"op", op}, {"code", "OK"}}), 0) << op;
    EXPECT_EQ(Value(s, "attic_worker_request_duration_seconds_count", {{"op", op}}), 0) << op;
  }
  EXPECT_EQ(Count(s, "attic_worker_requests_total"), WorkerMetrics::kMaxOp);
  EXPECT_EQ(Count(s, "attic_worker_request_errors_total"), 0);
  EXPECT_EQ(Count(s, "attic_worker_kv_blocks"), 4);
  EXPECT_EQ(Count(s, "attic_worker_kv_bytes"), 4);
  EXPECT_EQ(Count(s, "attic_worker_prefix_cache_blocks"), 3);
  EXPECT_EQ(Value(s, "attic_worker_bytes_received_total"), 0);
}

TEST(WorkerMetricsTest, RequestsAndErrorsByOpAndCode) {
  WorkerMetrics m("w");
  for (int i = 0; i < 3; ++i) m.ObserveRequest(kAttend, StatusCode::kOk, 0.001);
  for (int i = 0; i < 2; ++i) m.ObserveRequest(kAttend, StatusCode::kNotFound, 0.001);
  m.ObserveRequest(kAppendKv, StatusCode::kResourceExhausted, 0.002);
  const auto s = Parse(m.Serialize());
  EXPECT_EQ(Value(s, "attic_worker_requests_total", {{"op", "Attend"}, {"code", "OK"}}), 3);
  EXPECT_EQ(Value(s, "attic_worker_requests_total", {{"op", "Attend"}, {"code", "NOT_FOUND"}}), 2);
  EXPECT_EQ(
      Value(s, "attic_worker_requests_total", {{"op", "AppendKv"}, {"code", "RESOURCE_EXHAUSTED"}}),
      1);
  EXPECT_EQ(
      Value(s, "attic_worker_request_errors_total", {{"op", "Attend"}, {"code", "NOT_FOUND"}}), 2);
  EXPECT_EQ(Value(s, "attic_worker_request_errors_total",
                  {{"op", "AppendKv"}, {"code", "RESOURCE_EXHAUSTED"}}),
            1);
  EXPECT_EQ(Count(s, "attic_worker_request_errors_total"), 2);  // never an OK series
  EXPECT_NE(m.Serialize().find("# TYPE attic_worker_request_errors_total counter\n"),
            std::string::npos);
  EXPECT_EQ(Value(s, "attic_worker_request_duration_seconds_count", {{"op", "Attend"}}), 5);
  EXPECT_EQ(Value(s, "attic_worker_request_duration_seconds_count", {{"op", "AppendKv"}}), 1);
}

TEST(WorkerMetricsTest, OutOfRangeOpAndCodeAreCountedAsUnknown) {
  WorkerMetrics m("w");
  m.ObserveRequest(99, StatusCode::kOk, 0.001);
  m.ObserveRequest(kAttend, static_cast<StatusCode>(42), 0.001);
  const auto s = Parse(m.Serialize());
  EXPECT_EQ(Value(s, "attic_worker_requests_total", {{"op", "Unknown"}, {"code", "OK"}}), 1);
  EXPECT_EQ(Value(s, "attic_worker_requests_total", {{"op", "Attend"}, {"code", "UNKNOWN"}}), 1);
  EXPECT_EQ(Value(s, "attic_worker_request_errors_total", {{"op", "Attend"}, {"code", "UNKNOWN"}}),
            1);
}

TEST(WorkerMetricsTest, OpNamesMatchTheTransport) {
  for (int op = 1; op <= WorkerMetrics::kMaxOp; ++op) {
    EXPECT_EQ(WorkerMetrics::OpName(op), transport::MethodName(static_cast<transport::Method>(op)));
  }
  EXPECT_EQ(transport::kMaxMethod, WorkerMetrics::kMaxOp);
  EXPECT_EQ(WorkerMetrics::OpName(0), "Unknown");
  EXPECT_EQ(WorkerMetrics::OpName(WorkerMetrics::kMaxOp + 1), "Unknown");
}

TEST(WorkerMetricsTest, DurationBucketsAreExponentialFrom50usTo10s) {
  const auto b = WorkerMetrics::DurationBuckets();
  ASSERT_EQ(b.size(), 19u);
  EXPECT_DOUBLE_EQ(b.front(), 50e-6);
  EXPECT_DOUBLE_EQ(b.back(), 10.0);
  for (size_t i = 1; i + 1 < b.size(); ++i) EXPECT_DOUBLE_EQ(b[i], 2 * b[i - 1]) << i;
  EXPECT_GT(b.back(), b[b.size() - 2]);
}

TEST(WorkerMetricsTest, HistogramBucketsAreCumulativeAndInclusive) {
  WorkerMetrics m("w");
  m.ObserveRequest(kAttend, StatusCode::kOk, 50e-6);  // exactly on the first bound
  m.ObserveRequest(kAttend, StatusCode::kOk, 60e-6);  // (50 us, 100 us]
  m.ObserveRequest(kAttend, StatusCode::kOk, 0.5);    // (0.4096, 0.8192]
  m.ObserveRequest(kAttend, StatusCode::kOk, 20.0);   // past 10 s: only +Inf
  const auto s = Parse(m.Serialize());
  std::vector<std::pair<double, double>> buckets;  // le -> cumulative count
  for (const Sample& x : s) {
    if (x.name == "attic_worker_request_duration_seconds_bucket" && x.labels.at("op") == "Attend") {
      buckets.emplace_back(std::strtod(x.labels.at("le").c_str(), nullptr), x.value);
    }
  }
  ASSERT_EQ(buckets.size(), 20u);  // 19 bounds and +Inf
  std::sort(buckets.begin(), buckets.end());
  auto at = [&](double le) {
    for (const auto& [bound, count] : buckets) {
      if (std::abs(bound - le) <= 1e-9 * std::max(1.0, le)) return count;
    }
    return -1.0;
  };
  EXPECT_EQ(at(50e-6), 1);
  EXPECT_EQ(at(100e-6), 2);
  EXPECT_EQ(at(0.4096), 2);
  EXPECT_EQ(at(0.8192), 3);
  EXPECT_EQ(at(10.0), 3);
  EXPECT_TRUE(std::isinf(buckets.back().first));
  EXPECT_EQ(buckets.back().second, 4);
  for (size_t i = 1; i < buckets.size(); ++i) EXPECT_GE(buckets[i].second, buckets[i - 1].second);
  EXPECT_EQ(Value(s, "attic_worker_request_duration_seconds_count", {{"op", "Attend"}}), 4);
  EXPECT_NEAR(Value(s, "attic_worker_request_duration_seconds_sum", {{"op", "Attend"}}), 20.50011,
              1e-9);
}

TEST(WorkerMetricsTest, DurationCountsPerBucketForOneOp) {
  WorkerMetrics m("w");
  const int attend = static_cast<int>(transport::Method::kAttend);
  m.ObserveRequest(attend, StatusCode::kOk, 60e-6);   // (50 us, 100 us]
  m.ObserveRequest(attend, StatusCode::kOk, 100e-6);  // the same bucket: bounds are inclusive
  m.ObserveRequest(attend, StatusCode::kOk, 20.0);    // +Inf
  m.ObserveRequest(static_cast<int>(transport::Method::kAppendKv), StatusCode::kOk, 60e-6);
  const std::vector<uint64_t> counts = m.DurationCounts(attend);
  ASSERT_EQ(counts.size(), WorkerMetrics::DurationBuckets().size() + 1);
  EXPECT_EQ(counts[1], 2u);
  EXPECT_EQ(counts.back(), 1u);
  uint64_t total = 0;
  for (const uint64_t c : counts) total += c;
  EXPECT_EQ(total, 3u);
}

TEST(WorkerMetricsTest, BytesKeysQueueConnectionsAndKvFigures) {
  WorkerMetrics m("w");
  m.AddBytes(100, 40);
  m.AddBytes(1, 2);
  m.AddKeysScanned(4096);
  m.SetQueueDepth(7);
  m.SetConnections(3, 2);
  m.SetConnections(1, 7);
  m.SetKv({.k_used_blocks = 10,
           .k_capacity_blocks = 100,
           .v_used_blocks = 11,
           .v_capacity_blocks = 101,
           .block_bytes = 16384,
           .sequences = 4,
           .cached_blocks = 5,
           .shared_blocks = 2,
           .prefix_blocks = 9,
           .prefix_hits = 5});
  m.SetKv({.k_used_blocks = 12,
           .k_capacity_blocks = 100,
           .v_used_blocks = 12,
           .v_capacity_blocks = 100,
           .block_bytes = 16384,
           .sequences = 3,
           .cached_blocks = 6,
           .shared_blocks = 1,
           .prefix_blocks = 8,
           .prefix_hits = 8});
  const auto s = Parse(m.Serialize());
  EXPECT_EQ(Value(s, "attic_worker_bytes_received_total"), 101);
  EXPECT_EQ(Value(s, "attic_worker_bytes_sent_total"), 42);
  EXPECT_EQ(Value(s, "attic_worker_attend_keys_scanned_total"), 4096);
  EXPECT_EQ(Value(s, "attic_worker_compute_queue_depth"), 7);
  EXPECT_EQ(Value(s, "attic_worker_connections"), 1);
  EXPECT_EQ(Value(s, "attic_worker_handshakes_refused_total"), 7);
  EXPECT_EQ(Value(s, "attic_worker_kv_blocks", {{"pool", "k"}, {"state", "used"}}), 12);
  EXPECT_EQ(Value(s, "attic_worker_kv_blocks", {{"pool", "v"}, {"state", "capacity"}}), 100);
  EXPECT_EQ(Value(s, "attic_worker_kv_bytes", {{"pool", "k"}, {"state", "used"}}), 12 * 16384);
  EXPECT_EQ(Value(s, "attic_worker_kv_bytes", {{"pool", "v"}, {"state", "capacity"}}), 100 * 16384);
  EXPECT_EQ(Value(s, "attic_worker_sequences"), 3);
  EXPECT_EQ(Value(s, "attic_worker_prefix_cache_blocks", {{"state", "cached"}}), 6);
  EXPECT_EQ(Value(s, "attic_worker_prefix_cache_blocks", {{"state", "shared"}}), 1);
  EXPECT_EQ(Value(s, "attic_worker_prefix_cache_blocks", {{"state", "total"}}), 8);
  EXPECT_EQ(Value(s, "attic_worker_prefix_hits_total"), 8);  // a running total, not a sum
}

TEST(WorkerMetricsTest, SsdTierFigures) {
  WorkerMetrics m("w");
  auto s = Parse(m.Serialize());
  EXPECT_EQ(Value(s, "attic_worker_ssd_tier"), 0);  // every series exists without a tier
  EXPECT_EQ(Value(s, "attic_worker_kv_spilled_blocks_total"), 0);
  EXPECT_EQ(Value(s, "attic_worker_ssd_writes_total", {{"result", "error"}}), 0);
  WorkerMetrics::SsdFigures f{.tier = true,
                              .value_dram_blocks = 1000,
                              .v_resident_blocks = 900,
                              .v_spilled_blocks = 300,
                              .pending_durable_blocks = 2,
                              .recovered_sequences = 3,
                              .prefix_entries = 40,
                              .live_blob_bytes = 1 << 20,
                              .sst_bytes = 4096,
                              .write_amplification = 1.25,
                              .direct_io = true,
                              .spilled = 300,
                              .bytes_read = 16384,
                              .bytes_written = 1 << 20,
                              .writes = 10,
                              .write_errors = 1,
                              .durability_errors = 1,
                              .sample_store_errors = 1};
  m.SetSsd(f);
  f.spilled = 350;
  f.writes = 12;
  m.SetSsd(f);
  s = Parse(m.Serialize());
  EXPECT_EQ(Value(s, "attic_worker_ssd_tier"), 1);
  EXPECT_EQ(Value(s, "attic_worker_kv_value_dram_blocks"), 1000);
  EXPECT_EQ(Value(s, "attic_worker_kv_resident_value_blocks"), 900);
  EXPECT_EQ(Value(s, "attic_worker_kv_spilled_value_blocks"), 300);
  EXPECT_EQ(Value(s, "attic_worker_kv_pending_durable_blocks"), 2);
  EXPECT_EQ(Value(s, "attic_worker_recovered_sequences"), 3);
  EXPECT_EQ(Value(s, "attic_worker_ssd_prefix_entries"), 40);
  EXPECT_EQ(Value(s, "attic_worker_ssd_file_bytes", {{"kind", "blob"}}), 1 << 20);
  EXPECT_EQ(Value(s, "attic_worker_ssd_file_bytes", {{"kind", "sst"}}), 4096);
  EXPECT_EQ(Value(s, "attic_worker_ssd_write_amplification"), 1.25);
  EXPECT_EQ(Value(s, "attic_worker_ssd_direct_io"), 1);
  EXPECT_EQ(Value(s, "attic_worker_kv_spilled_blocks_total"), 350);  // running totals
  EXPECT_EQ(Value(s, "attic_worker_ssd_writes_total", {{"result", "ok"}}), 12);
  EXPECT_EQ(Value(s, "attic_worker_ssd_writes_total", {{"result", "error"}}), 1);
  EXPECT_EQ(Value(s, "attic_worker_ssd_bytes_read_total"), 16384);
  EXPECT_EQ(Value(s, "attic_worker_ssd_bytes_written_total"), 1 << 20);
  EXPECT_EQ(Value(s, "attic_worker_durability_errors_total"), 1);
  EXPECT_EQ(Value(s, "attic_worker_query_sample_store_errors_total"), 1);
  EXPECT_EQ(Value(s, "attic_worker_kv_reloaded_blocks_total"), 0);
}

TEST(WorkerMetricsTest, ConcurrentObservationsAreExact) {
  WorkerMetrics m("w");
  constexpr int kThreads = 4, kPerThread = 50000;
  const StatusCode codes[] = {StatusCode::kOk, StatusCode::kOk, StatusCode::kNotFound,
                              StatusCode::kDeadlineExceeded};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        m.ObserveRequest(1 + i % 7, codes[i % 4], 1e-4 * (i % 100));
        m.AddBytes(3, 5);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const auto s = Parse(m.Serialize());
  double requests = 0, errors = 0, observed = 0;
  for (const Sample& x : s) {
    if (x.name == "attic_worker_requests_total") requests += x.value;
    if (x.name == "attic_worker_request_errors_total") errors += x.value;
    if (x.name == "attic_worker_request_duration_seconds_count") observed += x.value;
  }
  EXPECT_EQ(requests, kThreads * kPerThread);
  EXPECT_EQ(errors, kThreads * kPerThread / 2);
  EXPECT_EQ(observed, kThreads * kPerThread);
  int hello_ok = 0;  // what one thread sent as (Hello, OK)
  for (int i = 0; i < kPerThread; ++i)
    hello_ok += (1 + i % 7 == 1 && codes[i % 4] == StatusCode::kOk);
  EXPECT_EQ(Value(s, "attic_worker_requests_total", {{"op", "Hello"}, {"code", "OK"}}),
            kThreads * hello_ok);
  EXPECT_EQ(Value(s, "attic_worker_bytes_received_total"), 3.0 * kThreads * kPerThread);
  EXPECT_EQ(Value(s, "attic_worker_bytes_sent_total"), 5.0 * kThreads * kPerThread);
}

}  // namespace
}  // namespace attic
