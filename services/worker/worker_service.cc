#include "services/worker/worker_service.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "common/log.h"
#include "services/worker/attend_executor.h"
#include "services/worker/worker_metrics.h"
#include "transport/capnp_codec.h"
#include "transport/frame.h"
#include "transport/proto/attic.capnp.h"
#include "transport/wire_types.h"

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
      ThreadPoolOptions{.num_threads = options.compute_threads});
  service->retrieval_ = std::make_unique<worker_internal::RetrievalState>(
      service->store_.get(), options.spec, options.retrieval);
  service->attend_ = std::make_unique<worker_internal::AttendExecutor>(
      service->store_.get(), service->pool_.get(), options.spec, service->retrieval_.get());
  RETURN_IF_ERROR(service->Recover());
  service->recovery_.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (service->store_->has_ssd_tier()) {
    const RecoveryReport& r = service->recovery_;
    const KvStoreStats stats = service->store_->Stats();
    ATTIC_LOG(kInfo, "worker") << "SSD tier " << kv.ssd.path << " (direct I/O "
                               << (stats.tier.direct_io ? "on" : "off") << ", values of "
                               << stats.value_dram_blocks << " of " << stats.v.capacity_blocks
                               << " V blocks kept in DRAM): recovered " << r.sequences
                               << " sequences (" << r.tokens << " tokens over their layers) in "
                               << r.seconds << " s; the retrieval indexes of " << r.sample_layers
                               << " layers rebuild in the background";
  }
  service->dispatcher_ = std::thread([s = service.get()] { s->DispatchLoop(); });
  return service;
}

WorkerService::WorkerService(const WorkerServiceOptions& options, WorkerMetrics* metrics)
    : options_(options),
      fingerprint_(options.model_fingerprint != 0 ? options.model_fingerprint
                                                  : options.spec.Fingerprint()),
      metrics_(metrics) {}

WorkerService::~WorkerService() {
  std::deque<Pending> orphans;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    orphans.swap(queue_);
  }
  wake_.notify_all();
  if (dispatcher_.joinable()) dispatcher_.join();
  for (Pending& p : orphans) {
    p.responder.Fail(UnavailableError("worker " + options_.name + " is shutting down"));
  }
}

void WorkerService::Submit(IncomingMessage request, transport::Responder responder) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stop_) {
      queue_.push_back(Pending{std::move(request), std::move(responder)});
      if (metrics_ != nullptr) metrics_->SetQueueDepth(static_cast<int64_t>(queue_.size()));
      wake_.notify_one();
      return;
    }
  }
  responder.Fail(UnavailableError("worker " + options_.name + " is shutting down"));
}

void WorkerService::DispatchLoop() {
  pthread_setname_np(pthread_self(), "attic-dispatch");
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Pending next = std::move(queue_.front());
    queue_.pop_front();
    running_ = true;
    if (metrics_ != nullptr) metrics_->SetQueueDepth(static_cast<int64_t>(queue_.size()));
    lock.unlock();
    Run(std::move(next));
    lock.lock();
    running_ = false;
    if (queue_.empty()) idle_.notify_all();
  }
}

void WorkerService::Run(Pending pending) {
  const auto start = transport::Clock::now();
  const Method method = pending.request.method();
  StatusOr<OutgoingMessage> reply =
      start > pending.responder.deadline()
          ? StatusOr<OutgoingMessage>(DeadlineExceededError(
                std::string(transport::MethodName(method)) + " expired in the queue of worker " +
                options_.name))
          : Handle(pending.request);
  const uint64_t in = pending.request.header().size() + pending.request.payload().size();
  uint64_t out = 0;
  const StatusCode code = reply.ok() ? StatusCode::kOk : reply.status().code();
  if (reply.ok()) {
    out = reply->header.size() + reply->payload_bytes();
    pending.responder.Reply(std::move(reply).value());
  } else {
    if (code == StatusCode::kInternal || code == StatusCode::kDataLoss) {
      ATTIC_LOG(kError, "worker") << transport::MethodName(method) << " from "
                                  << pending.responder.peer() << ": " << reply.status();
    }
    pending.responder.Fail(reply.status());
  }
  if (metrics_ != nullptr) {
    const double seconds =
        std::chrono::duration<double>(transport::Clock::now() - start).count();
    metrics_->ObserveRequest(static_cast<int>(method), code, seconds);
    metrics_->AddBytes(in, out);
  }
  // After the reply: the upkeep is off the request's latency, and no value view is held.
  if (store_->has_ssd_tier()) MaintainTier();
}

StatusOr<OutgoingMessage> WorkerService::Handle(const IncomingMessage& request) {
  switch (request.method()) {
    case Method::kOpenSequence: return OpenSequence(request);
    case Method::kLookupPrefix: return LookupPrefix(request);
    case Method::kAppendKv: return AppendKv(request);
    case Method::kAttend: {
      worker_internal::AttendExecutor::Figures figures;
      worker_internal::AttendExecutor::Phases phases;
      // The executor fills each item's durableTokens from the store.
      StatusOr<OutgoingMessage> reply = attend_->Run(request, &figures, &phases);
      if (metrics_ != nullptr) {
        metrics_->AddKeysScanned(figures.keys_scanned);
        metrics_->AddAttendHeads(figures.sparse_heads, figures.dense_heads);
        metrics_->AddAttendPhases(phases.prepare, phases.compute, phases.reply);
      }
      return reply;
    }
    case Method::kCloseSequence: return CloseSequence(request);
    case Method::kStats: return Stats(request);
    default: break;
  }
  return UnimplementedError("worker " + options_.name + " does not serve method " +
                            std::to_string(static_cast<int>(request.method())));
}

bool WorkerService::WaitIdle(transport::Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_.wait_until(lock, deadline, [&] { return queue_.empty() && !running_; });
}

int64_t WorkerService::queue_depth() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(queue_.size());
}

std::string WorkerService::HelloReplyHeader() const {
  capnp::MallocMessageBuilder builder;
  auto hello = builder.initRoot<wire::HelloReply>();
  hello.setProtocolVersion(transport::kProtocolVersion);
  hello.setWorkerName(options_.name);
  hello.setModelFingerprint(fingerprint_);
  transport::SpecToWire(options_.spec, hello.initSpec());
  return transport::EncodeCapnp(builder);
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
                    .sample_store_errors = sample_store_errors_.load(std::memory_order_relaxed)});
  metrics_->SetRetrieval({.indexes = r.indexes,
                          .index_bytes = r.index_bytes,
                          .dense_heads = r.dense_heads,
                          .queued = r.queued,
                          .builds = r.builds,
                          .folds = r.folds,
                          .build_seconds = r.build_seconds});
}

}  // namespace attic
