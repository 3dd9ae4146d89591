#include "bench/decode/decode_probes.h"

#include <chrono>
#include <cstdlib>

#include "services/loadgen/decode_driver.h"
#include "services/loadgen/worker_process.h"
#include "transport/control/http_server.h"
#include "transport/rpc_client.h"

namespace attic::bench {

StatusOr<double> MeasureRoundTrip(const std::string& address, uint64_t fingerprint) {
  ASSIGN_OR_RETURN(auto rpc, transport::RpcClient::Create({.name = "bench-rtt",
                                                           .model_fingerprint = fingerprint}));
  ASSIGN_OR_RETURN(auto conn, rpc->Connect(address, transport::DeadlineAfter(std::chrono::seconds(10))));
  std::vector<double> rtts;
  for (int i = 0; i < 2000; ++i) {
    transport::OutgoingMessage m;
    m.method = transport::Method::kEcho;
    m.header = std::string(64, 'x');
    const auto t0 = std::chrono::steady_clock::now();
    StatusOr<transport::IncomingMessage> r =
        conn->Call(std::move(m), transport::DeadlineAfter(std::chrono::seconds(5))).get();
    if (!r.ok()) return r.status();
    if (i >= 200) {
      rtts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  return loadgen::Percentile(rtts, 0.5);
}

StatusOr<WorkerAttendTime> ScrapeAttendTime(const std::string& control) {
  ASSIGN_OR_RETURN(control::HttpResponse r,
                   control::HttpGet(control, "/metrics", std::chrono::seconds(10)));
  WorkerAttendTime t;
  auto value_of = [&](const std::string& series) -> double {
    const size_t at = r.body.find(series);
    if (at == std::string::npos) return 0.0;
    return std::atof(r.body.c_str() + at + series.size());
  };
  t.seconds = value_of("attic_worker_request_duration_seconds_sum{op=\"Attend\"} ");
  t.count = value_of("attic_worker_request_duration_seconds_count{op=\"Attend\"} ");
  t.prepare = value_of("attic_worker_attend_phase_seconds_total{phase=\"prepare\"} ");
  t.compute = value_of("attic_worker_attend_phase_seconds_total{phase=\"compute\"} ");
  t.reply = value_of("attic_worker_attend_phase_seconds_total{phase=\"reply\"} ");
  return t;
}

std::vector<std::string> WorkerArgs(const ModelSpec& spec, uint64_t kv_bytes, int threads) {
  std::vector<std::string> args = loadgen::WorkerModelArgs(spec);
  args.insert(args.end(), {"--kv-memory-bytes", std::to_string(kv_bytes), "--compute-threads",
                           std::to_string(threads), "--populate", "--log-level", "warn"});
  return args;
}

}  // namespace attic::bench
