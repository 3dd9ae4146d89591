// attic-worker: the attention worker daemon. Holds KV caches in DRAM and answers the data
// plane (UCX) with attention; serves /metrics, /healthz and /readyz over HTTP.
//
//   attic-worker --config worker.yaml --data-port 7100 --control-port 7180
//   attic-worker --help
//
// Control plane: /metrics (Prometheus), /healthz, /readyz, and the admin pages /configz
// (effective configuration, token masked) and /statusz (KV and connection figures, JSON).
//
// SIGTERM or SIGINT drains: readiness turns to 503, new requests get UNAVAILABLE, requests
// already queued finish (up to drain_timeout_ms), then the worker exits 0. Nothing is
// durable yet: a restarted worker starts empty (docs/worker.md).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

#include "common/log.h"
#include "services/worker/worker_config.h"
#include "services/worker/worker_metrics.h"
#include "services/worker/worker_service.h"
#include "transport/control/http_server.h"
#include "transport/frame.h"
#include "transport/rpc_server.h"

namespace attic {
namespace {

Status WriteReadyFile(const std::string& path, const std::string& name, uint16_t data_port,
                      uint16_t control_port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "{\"name\": \"" << name << "\", \"pid\": " << getpid()
        << ", \"data_port\": " << data_port << ", \"control_port\": " << control_port << "}\n";
    if (!out) return UnavailableError("cannot write ready file " + tmp);
  }
  // Renamed into place so a reader never sees a half-written file.
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return UnavailableError("cannot rename ready file to " + path);
  }
  return OkStatus();
}

int Serve(const WorkerConfig& config) {
  // Signals are taken synchronously by this thread; every thread started below inherits the
  // mask, so no library thread is interrupted by them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  WorkerMetrics metrics(config.name);
  WorkerServiceOptions service_options{.name = config.name,
                                       .spec = config.model,
                                       .model_fingerprint = config.model_fingerprint,
                                       .kv_memory_bytes = config.kv_memory_bytes,
                                       .populate = config.populate,
                                       .compute_threads = config.compute_threads};
  service_options.retrieval = {
      .kind = *retrieval::ParseIndexKind(config.retrieval.index_kind),  // a checked choice
      .sinks = config.retrieval.sinks,
      .window = config.retrieval.window,
      .top_k = config.retrieval.top_k,
      .min_tokens = config.retrieval.min_tokens,
      .fold_tokens = config.retrieval.fold_tokens,
      .build_threads = config.retrieval.build_threads,
      .profile_heads = config.retrieval.profile_heads};
  StatusOr<std::unique_ptr<WorkerService>> service = WorkerService::Create(service_options, &metrics);
  if (!service.ok()) {
    ATTIC_LOG(kError, "worker") << "cannot start: " << service.status();
    return 1;
  }
  transport::RpcServerOptions rpc_options;
  rpc_options.name = config.name;
  rpc_options.listen_address = config.listen_address;
  rpc_options.port = config.data_port;
  rpc_options.model_fingerprint = (*service)->model_fingerprint();
  rpc_options.token = config.token;
  rpc_options.hello_reply_header = (*service)->HelloReplyHeader();
  rpc_options.max_payload_bytes = config.max_message_bytes;
  rpc_options.register_regions = (*service)->memory_regions();
  rpc_options.busy_poll_us = config.busy_poll_us;
  rpc_options.default_timeout_ms = config.default_timeout_ms;
  WorkerService* svc = service->get();
  StatusOr<std::unique_ptr<transport::RpcServer>> server = transport::RpcServer::Start(
      rpc_options, [svc](transport::IncomingMessage request, transport::Responder responder) {
        svc->Submit(std::move(request), std::move(responder));
      });
  if (!server.ok()) {
    ATTIC_LOG(kError, "worker") << "cannot listen on " << config.listen_address << ":"
                                << config.data_port << ": " << server.status();
    return 1;
  }
  transport::RpcServer* rpc = server->get();

  std::atomic<bool> ready{true};
  std::map<std::string, control::HttpHandler> routes;
  routes["/metrics"] = [&](const control::HttpRequest&) {
    svc->RefreshMetrics();
    const transport::RpcServerStats& s = rpc->stats();
    metrics.SetConnections(static_cast<int64_t>(s.connections_open.load()),
                           s.handshakes_refused.load());
    return control::HttpResponse{.status = 200,
                                 .content_type = "text/plain; version=0.0.4; charset=utf-8",
                                 .body = metrics.Serialize()};
  };
  routes["/healthz"] = [](const control::HttpRequest&) {
    return control::HttpResponse{.status = 200, .body = "ok\n"};
  };
  routes["/readyz"] = [&](const control::HttpRequest&) {
    return ready.load() ? control::HttpResponse{.status = 200, .body = "ready\n"}
                        : control::HttpResponse{.status = 503, .body = "draining\n"};
  };
  // Admin: the effective configuration (token masked) and the store's figures.
  const std::string described = DescribeConfig(config);
  routes["/configz"] = [described](const control::HttpRequest&) {
    return control::HttpResponse{.status = 200, .body = described};
  };
  routes["/statusz"] = [svc, rpc, &ready](const control::HttpRequest&) {
    const KvStoreStats s = svc->store().Stats();
    const transport::RpcServerStats& r = rpc->stats();
    std::string body = "{";
    auto field = [&body](const char* name, int64_t v, bool last = false) {
      body += "\"" + std::string(name) + "\": " + std::to_string(v) + (last ? "" : ", ");
    };
    field("ready", ready.load() ? 1 : 0);
    field("sequences", s.sequences);
    field("k_blocks_used", s.k.used_blocks);
    field("k_blocks_capacity", s.k.capacity_blocks);
    field("v_blocks_used", s.v.used_blocks);
    field("v_blocks_capacity", s.v.capacity_blocks);
    field("prefix_blocks", s.prefix_blocks);
    field("cached_blocks", s.cached_blocks);
    field("queue_depth", svc->queue_depth());
    field("connections", static_cast<int64_t>(r.connections_open.load()));
    field("requests_received", static_cast<int64_t>(r.requests_received.load()), true);
    body += "}\n";
    return control::HttpResponse{.status = 200, .content_type = "application/json",
                                 .body = body};
  };
  StatusOr<std::unique_ptr<control::HttpServer>> http = control::HttpServer::Start(
      {.address = config.control_address, .port = config.control_port}, routes);
  if (!http.ok()) {
    ATTIC_LOG(kError, "worker") << "cannot serve the control plane: " << http.status();
    return 1;
  }
  ATTIC_LOG(kInfo, "worker") << config.name << " serving " << config.model.ToString()
                             << " on data port " << rpc->port() << ", control port "
                             << (*http)->port() << ", " << config.kv_memory_bytes
                             << " bytes of KV memory";
  if (!config.ready_file.empty()) {
    Status s = WriteReadyFile(config.ready_file, config.name, rpc->port(), (*http)->port());
    if (!s.ok()) {
      ATTIC_LOG(kError, "worker") << s;
      return 1;
    }
  }

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  ATTIC_LOG(kInfo, "worker") << "signal " << signal_number << ": draining";
  ready.store(false);
  rpc->StopAccepting();
  const bool idle = svc->WaitIdle(transport::DeadlineAfter(
      std::chrono::milliseconds(config.drain_timeout_ms)));
  if (!idle) {
    ATTIC_LOG(kWarn, "worker") << "drain timeout: " << svc->queue_depth()
                               << " requests still queued are answered UNAVAILABLE";
  }
  // Reverse order of creation: the control plane, then the data plane (its endpoints close
  // after replies already queued), then the service and its memory.
  http->reset();
  server->reset();
  service->reset();
  ATTIC_LOG(kInfo, "worker") << "stopped";
  return 0;
}

}  // namespace
}  // namespace attic

int main(int argc, char** argv) {
  // A restarted worker must listen on its port again while connections of its previous life
  // linger in TIME_WAIT, and UCX leaves SO_REUSEADDR off unless told. Set before any thread
  // exists (UCX reads it when the listener opens); an explicit setting still wins.
  setenv("UCX_TCP_CM_REUSEADDR", "y", /*overwrite=*/0);
  attic::StatusOr<attic::ConfigResult> loaded =
      attic::LoadWorkerConfig(argc, argv, attic::Environment());
  if (!loaded.ok()) {
    std::fprintf(stderr, "attic-worker: %s\n", std::string(loaded.status().message()).c_str());
    return 2;
  }
  if (loaded->exit_now) {
    std::fputs(loaded->output.c_str(), loaded->exit_code == 0 ? stdout : stderr);
    return loaded->exit_code;
  }
  const attic::WorkerConfig& config = loaded->config;
  if (auto level = attic::ParseLogLevel(config.log_level)) attic::SetLogLevel(*level);
  ATTIC_LOG(kInfo, "worker") << "configuration:\n" << attic::DescribeConfig(config);
  return attic::Serve(config);
}
