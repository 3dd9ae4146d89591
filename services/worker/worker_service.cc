#include "services/worker/worker_service.h"

#include <algorithm>
#include <chrono>
#include <utility>
#include <variant>

#include "common/log.h"
#include "services/worker/attend_executor.h"
#include "services/worker/worker_metrics.h"
#include "transport/frame.h"

namespace attic {

using transport::IncomingMessage;
using transport::Method;
using transport::OutgoingMessage;

namespace {

// The pools' sizes from kv_memory_bytes, and the SSD tier's options.
StatusOr<KvStoreOptions> StoreOptions(const WorkerServiceOptions& options) {
  const size_t block_bytes = options.spec.block_bytes();
  KvStoreOptions kv;
  kv.block_bytes = block_bytes;
  kv.k_pool_blocks = static_cast<int64_t>(options.kv_memory_bytes / 2 / block_bytes);
  kv.v_pool_blocks = kv.k_pool_blocks;
  kv.populate = options.populate;
  if (kv.k_pool_blocks < options.spec.num_kv_heads) {
    return InvalidArgumentError("kv_memory_bytes " + std::to_string(options.kv_memory_bytes) +
                                " holds fewer than one " + std::to_string(block_bytes) +
                                "-byte K and V block per KV head");
  }
  if (options.ssd.path.empty()) return kv;
  kv.ssd = options.ssd;
  const auto budget =
      options.value_dram_bytes > 0
          ? static_cast<int64_t>(options.value_dram_bytes / block_bytes)
          : static_cast<int64_t>(options.value_dram_fraction * static_cast<double>(kv.v_pool_blocks));
  kv.value_dram_blocks = std::clamp<int64_t>(budget, 1, kv.v_pool_blocks);
  kv.spill_high_watermark = options.spill_high_watermark;
  kv.spill_low_watermark = options.spill_low_watermark;
  kv.ssd_capacity_bytes = options.ssd_capacity_bytes;
  return kv;
}

}  // namespace

StatusOr<std::unique_ptr<WorkerService>> WorkerService::Create(
    const WorkerServiceOptions& options, WorkerMetrics* metrics) {
  RETURN_IF_ERROR(options.spec.Validate().WithContext("worker model"));
  std::unique_ptr<WorkerService> service(new WorkerService(options, metrics));
  ASSIGN_OR_RETURN(const KvStoreOptions kv, StoreOptions(options));
  const auto start = std::chrono::steady_clock::now();
  StatusOr<std::unique_ptr<KvStore>> store = KvStore::Open(kv);
  if (!store.ok() && !kv.ssd.path.empty()) {
    return store.status().WithContext("SSD tier " + kv.ssd.path);
  }
  ASSIGN_OR_RETURN(service->store_, std::move(store));
  service->pool_ = std::make_unique<ThreadPool>(
      ThreadPoolOptions{.num_threads = options.compute_threads,
                        .spin_us = options.compute_spin_us});
  service->retrieval_ = std::make_unique<worker_internal::RetrievalState>(
      service->store_.get(), options.spec, options.retrieval);
  RETURN_IF_ERROR(service->Recover());
  service->recovery_.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (service->store_->has_ssd_tier()) service->LogRecovery(kv.ssd.path);
  const int runners = options.max_concurrent_requests > 0
                          ? options.max_concurrent_requests
                          : std::min(4, service->pool_->num_threads());
  service->queue_ = std::make_unique<worker_internal::RequestQueue>(
      worker_internal::RequestQueueOptions{.runners = runners,
                                           .max_queued = options.max_queued_requests,
                                           .cost_classes = transport::kMaxMethod + 1},
      options.name);
  return service;
}

void WorkerService::LogRecovery(const std::string& path) const {
  const RecoveryReport& r = recovery_;
  const KvStoreStats stats = store_->Stats();
  ATTIC_LOG(kInfo, "worker") << "SSD tier " << path << " (direct I/O "
                             << (stats.tier.direct_io ? "on" : "off") << ", values of "
                             << stats.value_dram_blocks << " of " << stats.v.capacity_blocks
                             << " V blocks kept in DRAM): recovered " << r.sequences
                             << " sequences (" << r.tokens << " tokens over their layers) in "
                             << r.seconds << " s; the retrieval indexes of " << r.sample_layers
                             << " layers rebuild in the background";
}

WorkerService::WorkerService(const WorkerServiceOptions& options, WorkerMetrics* metrics)
    : options_(options),
      fingerprint_(options.model_fingerprint != 0 ? options.model_fingerprint
                                                  : options.spec.Fingerprint()),
      metrics_(metrics),
      codec_{.spec = options.spec} {}

WorkerService::~WorkerService() {
  // The runners stop first (queued requests answered UNAVAILABLE), then the rest goes.
  queue_.reset();
}

void WorkerService::Submit(IncomingMessage request, transport::Responder responder) {
  const Method method = request.method();
  StatusOr<worker_codec::WorkerCall> call =
      worker_codec::DecodeCall(method, request.header(), codec_);
  if (!call.ok()) {
    if (metrics_ != nullptr) metrics_->ObserveRequest(static_cast<int>(method), call.status().code(), 0);
    responder.Fail(call.status());
    return;
  }
  // Shared by the job's two callbacks; exactly one of them runs.
  struct Held {
    IncomingMessage request;
    worker_codec::WorkerCall call;
    transport::Responder responder;
  };
  auto held = std::make_shared<Held>(
      Held{std::move(request), std::move(call).value(), std::move(responder)});
  worker_internal::QueuedJob job;
  worker_codec::CallSequences(held->call, &job.sequences);
  job.deadline = held->responder.deadline();
  job.cost_class = static_cast<int>(method);
  job.bypass = method == Method::kCloseSequence;
  job.run = [this, held] { Serve(held->request, held->call, held->responder); };
  job.expire = [this, held, method](Status s) {
    if (metrics_ != nullptr) metrics_->ObserveRequest(static_cast<int>(method), s.code(), 0);
    held->responder.Fail(Status(s.code(), std::string(transport::MethodName(method)) + " " +
                                              std::string(s.message())));
  };
  Status admitted = queue_->Submit(std::move(job));
  if (metrics_ != nullptr) metrics_->SetQueueDepth(queue_->queued());
  if (!admitted.ok()) {
    // Counted as attic_worker_errors_total{code="RESOURCE_EXHAUSTED"}.
    if (metrics_ != nullptr) metrics_->ObserveRequest(static_cast<int>(method), admitted.code(), 0);
    held->responder.Fail(admitted);
  }
}

void WorkerService::Serve(const IncomingMessage& request, const worker_codec::WorkerCall& call,
                          transport::Responder& responder) {
  const auto start = transport::Clock::now();
  const Method method = request.method();
  StatusOr<OutgoingMessage> reply = Dispatch(method, call, request.payload());
  const uint64_t in = request.header().size() + request.payload().size();
  uint64_t out = 0;
  const StatusCode code = reply.ok() ? StatusCode::kOk : reply.status().code();
  if (reply.ok()) {
    out = reply->header.size() + reply->payload_bytes();
    responder.Reply(std::move(reply).value());
  } else {
    if (code == StatusCode::kInternal || code == StatusCode::kDataLoss) {
      ATTIC_LOG(kError, "worker") << transport::MethodName(method) << " from "
                                  << responder.peer() << ": " << reply.status();
    }
    responder.Fail(reply.status());
  }
  if (metrics_ != nullptr) {
    const double seconds =
        std::chrono::duration<double>(transport::Clock::now() - start).count();
    metrics_->ObserveRequest(static_cast<int>(method), code, seconds);
    metrics_->AddBytes(in, out);
    metrics_->SetQueueDepth(queue_->queued());
  }
  // After the reply: the upkeep is off the request's latency.
  if (store_->has_ssd_tier()) ScheduleUpkeep();
}

StatusOr<OutgoingMessage> WorkerService::Handle(const IncomingMessage& request) {
  ASSIGN_OR_RETURN(worker_codec::WorkerCall call,
                   worker_codec::DecodeCall(request.method(), request.header(), codec_));
  return Dispatch(request.method(), call, request.payload());
}

StatusOr<OutgoingMessage> WorkerService::Dispatch(Method method,
                                                  const worker_codec::WorkerCall& call,
                                                  std::span<const std::byte> payload) {
  using namespace worker_codec;  // NOLINT(google-build-using-namespace): the call types
  if (const auto* c = std::get_if<OpenSequenceCall>(&call)) return OpenSequence(*c);
  if (const auto* c = std::get_if<LookupPrefixCall>(&call)) return LookupPrefix(*c);
  if (const auto* c = std::get_if<AppendKvCall>(&call)) return AppendKv(*c, payload);
  if (const auto* c = std::get_if<AttendCall>(&call)) return Attend(*c, payload);
  if (const auto* c = std::get_if<CloseSequenceCall>(&call)) return CloseSequence(*c);
  if (std::holds_alternative<StatsCall>(call)) return Stats();
  return UnimplementedError("worker " + options_.name + " does not serve method " +
                            std::to_string(static_cast<int>(method)));
}

StatusOr<OutgoingMessage> WorkerService::Attend(const worker_codec::AttendCall& c,
                                                std::span<const std::byte> payload) {
  worker_internal::AttendExecutor::Figures figures;
  worker_internal::AttendExecutor::Phases phases;
  std::unique_ptr<worker_internal::AttendExecutor> executor = TakeExecutor();
  // The executor fills each item's durableTokens from the store.
  StatusOr<OutgoingMessage> reply = executor->Run(c, payload, &figures, &phases);
  ReturnExecutor(std::move(executor));
  if (metrics_ != nullptr) {
    metrics_->AddKeysScanned(figures.keys_scanned);
    metrics_->AddAttendHeads(figures.sparse_heads, figures.dense_heads);
    metrics_->AddRetrievalChecks(figures.fallback_heads, figures.recall_heads,
                                 figures.recall_exact, figures.recall_hits);
    metrics_->AddStandInHeads(figures.stand_in_heads);
    metrics_->AddAttendPhases(phases.prepare, phases.compute, phases.reply);
  }
  return reply;
}

std::unique_ptr<worker_internal::AttendExecutor> WorkerService::TakeExecutor() {
  {
    MutexLock lock(&executors_mu_);
    if (!executors_.empty()) {
      std::unique_ptr<worker_internal::AttendExecutor> e = std::move(executors_.back());
      executors_.pop_back();
      return e;
    }
  }
  return std::make_unique<worker_internal::AttendExecutor>(store_.get(), pool_.get(),
                                                           options_.spec, retrieval_.get());
}

void WorkerService::ReturnExecutor(std::unique_ptr<worker_internal::AttendExecutor> executor) {
  MutexLock lock(&executors_mu_);
  executors_.push_back(std::move(executor));
}

void WorkerService::ScheduleUpkeep() {
  store_->TickValueClock();
  // While write-throughs fail, upkeep keeps running until it sees them recovered.
  if (!store_->MaintenanceDue() && !durability_failing_.load()) return;
  // One upkeep asked at a time: requests finishing meanwhile do not ask again.
  if (upkeep_asked_.exchange(true)) return;
  queue_->RunExclusive([this] {
    upkeep_asked_.store(false);
    MaintainTier();
  });
}

bool WorkerService::WaitIdle(transport::Deadline deadline) { return queue_->WaitIdle(deadline); }

int64_t WorkerService::queue_depth() const { return queue_->queued(); }

std::string WorkerService::HelloReplyHeader() const {
  return worker_codec::EncodeHelloReply(transport::kProtocolVersion, options_.name, fingerprint_,
                                        options_.spec);
}

std::vector<std::span<std::byte>> WorkerService::memory_regions() const {
  std::vector<std::span<std::byte>> regions;
  for (const MemoryRegion& r : store_->memory_regions()) {
    regions.emplace_back(static_cast<std::byte*>(r.base), r.bytes);
  }
  return regions;
}

void WorkerService::RefreshMetrics() const {
  if (metrics_ == nullptr) return;
  const KvStoreStats s = store_->Stats();
  WorkerMetrics::KvFigures f{};
  f.k_used_blocks = s.k.used_blocks;
  f.k_capacity_blocks = s.k.capacity_blocks;
  f.v_used_blocks = s.v.used_blocks;
  f.v_capacity_blocks = s.v.capacity_blocks;
  f.block_bytes = s.k.block_bytes;
  f.sequences = s.sequences;
  f.cached_blocks = s.cached_blocks;
  f.shared_blocks = s.shared_blocks;
  f.prefix_blocks = s.prefix_blocks;
  f.prefix_hits = s.prefix_hits;
  metrics_->SetKv(f);
  metrics_->SetQueueDepth(queue_depth());
  const worker_internal::RetrievalState::Stats r = retrieval_->stats();
  metrics_->SetSsd({.tier = s.ssd,
                    .value_dram_blocks = s.value_dram_blocks,
                    .v_resident_blocks = s.v_resident_blocks,
                    .v_spilled_blocks = s.v_spilled_blocks,
                    .pending_durable_blocks = s.pending_durable_blocks,
                    .recovered_sequences = s.recovered_sequences,
                    .prefix_entries = s.ssd_prefix_entries,
                    .live_blob_bytes = s.tier.live_blob_bytes,
                    .sst_bytes = s.tier.total_sst_bytes,
                    .write_amplification = s.tier.write_amplification(),
                    .direct_io = s.tier.direct_io,
                    .capacity_bytes = s.ssd_capacity.capacity_bytes,
                    .used_bytes = s.ssd_capacity.used_bytes,
                    .full = s.ssd_capacity.full,
                    .spilled = static_cast<uint64_t>(std::max<int64_t>(0, s.spilled_total)),
                    .reloaded = static_cast<uint64_t>(std::max<int64_t>(0, s.reloaded_total)),
                    .streamed = static_cast<uint64_t>(std::max<int64_t>(0, s.streamed_total)),
                    .durable_retries = durable_retries_.load(std::memory_order_relaxed),
                    .bytes_read = s.ssd_bytes_read,
                    .bytes_written = s.tier.block_bytes_written,
                    .writes = s.tier.writes,
                    .write_errors = s.tier.write_errors,
                    .durability_errors =
                        static_cast<uint64_t>(std::max<int64_t>(0, s.durability_errors)),
                    .checksum_failures = s.tier.checksum_failures,
                    .flushes = s.tier.flushes,
                    .prefix_hits = static_cast<uint64_t>(std::max<int64_t>(0, s.ssd_prefix_hits)),
                    .sample_store_errors = sample_store_errors_.load(std::memory_order_relaxed),
                    .reclaimed_bytes = s.ssd_capacity.reclaimed_bytes,
                    .full_refusals = static_cast<uint64_t>(
                        std::max<int64_t>(0, s.ssd_capacity.full_refusals))});
  metrics_->SetRetrieval({.indexes = r.indexes,
                          .index_bytes = r.index_bytes,
                          .dense_heads = r.dense_heads,
                          .queued = r.queued,
                          .builds = r.builds,
                          .folds = r.folds,
                          .build_seconds = r.build_seconds,
                          .served_by_scan = r.served_by_scan,
                          .served_dense = r.served_dense,
                          .guard_raised = r.guard_raised,
                          .guard_scan = r.guard_scan,
                          .guard_dense = r.guard_dense});
}

}  // namespace attic
