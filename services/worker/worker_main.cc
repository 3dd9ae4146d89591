// attic-worker: the attention worker daemon. Holds KV caches in DRAM (and, with data_dir, on
// an SSD tier that survives restarts) and answers the data plane (UCX) with attention; serves
// /metrics, /healthz and /readyz over HTTP.
//
//   attic-worker --config worker.yaml --data-port 7100 --control-port 7180
//   attic-worker --data-dir /var/lib/attic/kv --value-dram-fraction 0.25
//   attic-worker --help
//
// Control plane: /metrics (Prometheus), /healthz, /readyz, and the admin pages /configz
// (effective configuration, token masked) and /statusz (KV and connection figures, JSON). It
// comes up first: /healthz answers and /readyz says 503 "starting" while the SSD tier is
// recovered, and turns to 200 once the data plane listens.
//
// With scheduler.address, a scheduler agent registers the worker with attic-scheduler once it
// serves and heartbeats its figures, prefix summary and held shards (docs/scheduler.md); the
// scheduler being down or slow never affects serving.
//
// SIGTERM or SIGINT drains: readiness turns to 503, new requests get UNAVAILABLE, requests
// already queued finish (up to drain_timeout_ms), then the worker exits 0. Without data_dir
// nothing is durable: a restarted worker starts empty (docs/worker.md).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "common/log.h"
#include "services/worker/scheduler_agent.h"
#include "services/worker/worker_config.h"
#include "services/worker/worker_metrics.h"
#include "services/worker/worker_report.h"
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

// What the control plane's handlers read. The service and the server are published once both
// run; the control plane is stopped before either is destroyed.
struct Serving {
  enum Phase { kStarting, kReady, kDraining };
  std::atomic<Phase> phase{kStarting};
  std::atomic<WorkerService*> service{nullptr};
  std::atomic<transport::RpcServer*> rpc{nullptr};
};

WorkerServiceOptions ServiceOptions(const WorkerConfig& config) {
  WorkerServiceOptions o{.name = config.name,
                         .spec = config.model,
                         .model_fingerprint = config.model_fingerprint,
                         .kv_memory_bytes = config.kv_memory_bytes,
                         .populate = config.populate,
                         .compute_threads = config.compute_threads,
                         .compute_spin_us = static_cast<int>(config.compute_spin_us),
                         .max_concurrent_requests = config.max_concurrent_requests,
                         .max_queued_requests = config.max_queued_requests};
  o.retrieval = {
      .kind = *ParseIndexKind(config.retrieval.index_kind),  // a checked choice
      .sinks = config.retrieval.sinks,
      .window = config.retrieval.window,
      .top_k = config.retrieval.top_k,
      .min_tokens = config.retrieval.min_tokens,
      .fold_tokens = config.retrieval.fold_tokens,
      .build_threads = config.retrieval.build_threads,
      .stand_in = config.retrieval.stand_in == "none"
                      ? std::nullopt
                      : ParseIndexKind(config.retrieval.stand_in),  // a checked choice
      .profile_heads = config.retrieval.profile_heads,
      .fetch_budget = config.retrieval.fetch_budget,
      .score_slack = static_cast<float>(config.retrieval.score_slack_pct) / 100.0f,
      .recall_sample_every = config.retrieval.recall_sample_every,
      .recall_target = static_cast<float>(config.retrieval.recall_target),
      .recall_guard_checks = config.retrieval.recall_guard_checks};
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  o.ssd.path = config.data_dir;
  o.ssd.block_cache_bytes = static_cast<size_t>(config.ssd.block_cache_mb) * kMiB;
  o.ssd.background_threads = config.ssd.background_threads;
  o.ssd.direct_io = config.ssd.direct_io;
  o.ssd.sync = config.ssd.sync;
  o.ssd.flush_bytes = static_cast<size_t>(config.ssd.flush_mb) * kMiB;
  o.ssd_capacity_bytes = config.ssd.capacity_mb * kMiB;
  o.value_dram_fraction = config.value_dram_fraction;
  o.value_dram_bytes = config.value_dram_mb * kMiB;
  o.spill_high_watermark = config.spill_high_watermark;
  o.spill_low_watermark = config.spill_low_watermark;
  return o;
}

std::string StatusJson(const Serving& serving) {
  WorkerService* svc = serving.service.load();
  transport::RpcServer* rpc = serving.rpc.load();
  std::string body = "{";
  auto field = [&body](const char* name, int64_t v) {
    body += (body.size() > 1 ? ", \"" : "\"") + std::string(name) + "\": " + std::to_string(v);
  };
  field("ready", serving.phase.load() == Serving::kReady ? 1 : 0);
  if (svc != nullptr && rpc != nullptr) {
    const KvStoreStats s = svc->store().Stats();
    const transport::RpcServerStats& r = rpc->stats();
    field("sequences", s.sequences);
    field("k_blocks_used", s.k.used_blocks);
    field("k_blocks_capacity", s.k.capacity_blocks);
    field("v_blocks_used", s.v.used_blocks);
    field("v_blocks_capacity", s.v.capacity_blocks);
    field("prefix_blocks", s.prefix_blocks);
    field("cached_blocks", s.cached_blocks);
    field("ssd_tier", s.ssd ? 1 : 0);
    field("v_resident_blocks", s.v_resident_blocks);
    field("v_spilled_blocks", s.v_spilled_blocks);
    field("pending_durable_blocks", s.pending_durable_blocks);
    field("recovered_sequences", s.recovered_sequences);
    field("queue_depth", svc->queue_depth());
    field("connections", static_cast<int64_t>(r.connections_open.load()));
    field("requests_received", static_cast<int64_t>(r.requests_received.load()));
  }
  return body + "}\n";
}

std::map<std::string, control::HttpHandler> ControlRoutes(const WorkerConfig& config,
                                                          WorkerMetrics* metrics,
                                                          Serving* serving) {
  std::map<std::string, control::HttpHandler> routes;
  routes["/metrics"] = [metrics, serving](const control::HttpRequest&) {
    WorkerService* svc = serving->service.load();
    transport::RpcServer* rpc = serving->rpc.load();
    if (svc != nullptr) svc->RefreshMetrics();
    if (rpc != nullptr) {
      const transport::RpcServerStats& s = rpc->stats();
      metrics->SetConnections(static_cast<int64_t>(s.connections_open.load()),
                              s.handshakes_refused.load());
    }
    return control::HttpResponse{.status = 200,
                                 .content_type = "text/plain; version=0.0.4; charset=utf-8",
                                 .body = metrics->Serialize()};
  };
  routes["/healthz"] = [](const control::HttpRequest&) {
    return control::HttpResponse{.status = 200, .body = "ok\n"};
  };
  routes["/readyz"] = [serving](const control::HttpRequest&) {
    switch (serving->phase.load()) {
      case Serving::kReady: return control::HttpResponse{.status = 200, .body = "ready\n"};
      case Serving::kStarting:
        return control::HttpResponse{.status = 503, .body = "starting (recovering)\n"};
      case Serving::kDraining: break;
    }
    return control::HttpResponse{.status = 503, .body = "draining\n"};
  };
  // Admin: the effective configuration (token masked) and the store's figures.
  const std::string described = DescribeConfig(config);
  routes["/configz"] = [described](const control::HttpRequest&) {
    return control::HttpResponse{.status = 200, .body = described};
  };
  routes["/statusz"] = [serving](const control::HttpRequest&) {
    return control::HttpResponse{.status = 200, .content_type = "application/json",
                                 .body = StatusJson(*serving)};
  };
  return routes;
}

// "host:port", bracketing an IPv6 host.
std::string JoinHostPort(const std::string& host, uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

uint64_t NewIncarnation() {
  std::random_device rd;
  const uint64_t v =
      (uint64_t{rd()} << 32) ^ rd() ^
      static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) ^
      static_cast<uint64_t>(getpid());
  return v == 0 ? 1 : v;
}

// The scheduler agent and the reporter it reads (both null without scheduler.address). The
// reporter reads the service: both must go before it.
struct SchedulerLink {
  std::unique_ptr<WorkerReporter> reporter;
  std::unique_ptr<SchedulerAgent> agent;
};

StatusOr<SchedulerLink> StartSchedulerLink(const WorkerConfig& config, const Serving& serving,
                                           WorkerMetrics* metrics, uint16_t data_port,
                                           uint16_t control_port) {
  SchedulerLink link;
  if (config.scheduler.address.empty()) return link;
  const std::string host = AdvertisedHost(config);
  transport::RpcServer* rpc = serving.rpc.load();
  link.reporter = std::make_unique<WorkerReporter>(
      WorkerIdentity{.name = config.name,
                     .data_address = JoinHostPort(host, data_port),
                     .metrics_address = JoinHostPort(host, control_port),
                     .incarnation = NewIncarnation()},
      serving.service.load(), metrics,
      [rpc] { return static_cast<uint64_t>(rpc->stats().requests_received.load()); },
      [&serving] { return serving.phase.load() == Serving::kReady; });
  const SchedulerAgentOptions options{
      .scheduler = config.scheduler.address,
      .fallback_interval = std::chrono::milliseconds(config.scheduler.heartbeat_ms)};
  ASSIGN_OR_RETURN(link.agent, SchedulerAgent::Start(
                                   options, [r = link.reporter.get()] { return r->Report(); }));
  return link;
}

transport::RpcServerOptions RpcOptions(const WorkerConfig& config, const WorkerService& svc) {
  transport::RpcServerOptions o;
  o.name = config.name;
  o.listen_address = config.listen_address;
  o.port = config.data_port;
  o.model_fingerprint = svc.model_fingerprint();
  o.token = config.token;
  o.hello_reply_header = svc.HelloReplyHeader();
  o.max_payload_bytes = config.max_message_bytes;
  o.register_regions = svc.memory_regions();
  o.busy_poll_us = config.busy_poll_us;
  o.default_timeout_ms = config.default_timeout_ms;
  return o;
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
  Serving serving;
  StatusOr<std::unique_ptr<control::HttpServer>> http = control::HttpServer::Start(
      {.address = config.control_address, .port = config.control_port},
      ControlRoutes(config, &metrics, &serving));
  if (!http.ok()) {
    ATTIC_LOG(kError, "worker") << "cannot serve the control plane: " << http.status();
    return 1;
  }
  StatusOr<std::unique_ptr<WorkerService>> service =
      WorkerService::Create(ServiceOptions(config), &metrics);
  if (!service.ok()) {
    ATTIC_LOG(kError, "worker") << "cannot start: " << service.status();
    return 1;
  }
  WorkerService* svc = service->get();
  StatusOr<std::unique_ptr<transport::RpcServer>> server = transport::RpcServer::Start(
      RpcOptions(config, *svc), [svc](transport::IncomingMessage request,
                                      transport::Responder responder) {
        svc->Submit(std::move(request), std::move(responder));
      });
  if (!server.ok()) {
    ATTIC_LOG(kError, "worker") << "cannot listen on " << config.listen_address << ":"
                                << config.data_port << ": " << server.status();
    return 1;
  }
  transport::RpcServer* rpc = server->get();
  serving.service.store(svc);
  serving.rpc.store(rpc);
  serving.phase.store(Serving::kReady);
  ATTIC_LOG(kInfo, "worker") << config.name << " serving " << config.model.ToString()
                             << " on data port " << rpc->port() << ", control port "
                             << (*http)->port() << ", " << config.kv_memory_bytes
                             << " bytes of KV memory"
                             << (config.data_dir.empty() ? ", DRAM only"
                                                         : ", SSD tier " + config.data_dir);
  if (!config.ready_file.empty()) {
    Status s = WriteReadyFile(config.ready_file, config.name, rpc->port(), (*http)->port());
    if (!s.ok()) {
      ATTIC_LOG(kError, "worker") << s;
      return 1;
    }
  }

  StatusOr<SchedulerLink> link =
      StartSchedulerLink(config, serving, &metrics, rpc->port(), (*http)->port());
  if (!link.ok()) {
    ATTIC_LOG(kError, "worker") << "cannot start the scheduler agent: " << link.status();
    return 1;
  }

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  ATTIC_LOG(kInfo, "worker") << "signal " << signal_number << ": draining";
  serving.phase.store(Serving::kDraining);
  // The scheduler hears at once that this worker takes no new sequences.
  if (link->agent != nullptr) link->agent->Nudge();
  rpc->StopAccepting();
  const bool idle = svc->WaitIdle(transport::DeadlineAfter(
      std::chrono::milliseconds(config.drain_timeout_ms)));
  if (!idle) {
    ATTIC_LOG(kWarn, "worker") << "drain timeout: " << svc->queue_depth()
                               << " requests still queued are answered UNAVAILABLE";
  }
  // The scheduler agent goes first (it reads the service; the scheduler then finds this worker
  // silent and declares it dead). The control plane next although it started first: its
  // handlers read the service and the server. Then the data plane (its endpoints close after
  // replies already queued), then the service and its memory (and the SSD tier, closed
  // cleanly).
  link->agent.reset();
  link->reporter.reset();
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
