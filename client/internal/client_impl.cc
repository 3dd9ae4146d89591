// ClientImpl: connecting, opening, prefix lookup, closing and the bookkeeping queries.
#include "client/internal/client_impl.h"

#include <future>
#include <string>
#include <utility>

#include "client/internal/fan_in.h"
#include "client/internal/wire_codec.h"

namespace attic {

StatusOr<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  return client_internal::ClientImpl::Connect(options);
}

namespace client_internal {
namespace {

using transport::IncomingMessage;
using transport::Method;

// Equal models, with an unset softmax scale equal to the 1/sqrt(D) it stands for.
bool SameModel(ModelSpec a, ModelSpec b) {
  a.softmax_scale = a.EffectiveScale();
  b.softmax_scale = b.EffectiveScale();
  return a == b;
}

// Connects to one worker and checks that it serves the client's model.
StatusOr<WorkerLink> ConnectWorker(transport::RpcClient& rpc, const std::string& address,
                                   const ModelSpec& spec, transport::Deadline deadline) {
  StatusOr<std::shared_ptr<transport::Connection>> conn = rpc.Connect(address, deadline);
  if (!conn.ok()) return conn.status().WithContext("worker " + address);
  StatusOr<HelloInfo> hello = ParseHelloReply((*conn)->hello_reply().header());
  if (!hello.ok()) return hello.status().WithContext("worker " + address);
  WorkerLink link{.conn = *std::move(conn),
                  .name = hello->worker_name,
                  .label = WorkerLabel(hello->worker_name, address)};
  if (!SameModel(hello->spec, spec)) {
    return FailedPreconditionError(link.label + " serves " + hello->spec.ToString() +
                                   ", the client's model is " + spec.ToString());
  }
  return link;
}

}  // namespace

StatusOr<std::unique_ptr<Client>> ClientImpl::Connect(const ClientOptions& options) {
  RETURN_IF_ERROR(options.spec.Validate());
  if (options.workers.empty() && options.scheduler.empty()) {
    return InvalidArgumentError("ClientOptions: no workers and no scheduler");
  }
  const uint64_t fingerprint =
      options.model_fingerprint != 0 ? options.model_fingerprint : options.spec.Fingerprint();
  ASSIGN_OR_RETURN(
      std::unique_ptr<transport::RpcClient> rpc,
      transport::RpcClient::Create(
          {.name = options.name, .model_fingerprint = fingerprint, .token = options.token}));
  // One deadline for the whole fleet: connect_timeout bounds Connect as a whole.
  const transport::Deadline deadline = transport::DeadlineAfter(options.connect_timeout);
  std::vector<WorkerLink> links;
  for (const std::string& address : options.workers) {
    ASSIGN_OR_RETURN(WorkerLink link, ConnectWorker(*rpc, address, options.spec, deadline));
    links.push_back(std::move(link));
  }
  return std::unique_ptr<Client>(new ClientImpl(options, std::move(rpc), std::move(links)));
}

ClientImpl::ClientImpl(const ClientOptions& options, std::unique_ptr<transport::RpcClient> rpc,
                       std::vector<WorkerLink> workers)
    : options_(options),
      fingerprint_(options.model_fingerprint != 0 ? options.model_fingerprint
                                                  : options.spec.Fingerprint()),
      rpc_(std::move(rpc)),
      workers_(std::move(workers)),
      addresses_(options.workers) {
  if (!options_.scheduler.empty()) release_thread_ = std::thread([this] { ReleaseLoop(); });
}

ClientImpl::~ClientImpl() {
  {
    MutexLock lock(&release_mu_);
    stopping_ = true;
  }
  release_cv_.NotifyAll();
  if (release_thread_.joinable()) release_thread_.join();
}

void ClientImpl::QueueRelease(uint64_t id) {
  {
    MutexLock lock(&release_mu_);
    releases_.push_back(id);
  }
  release_cv_.NotifyOne();
}

void ClientImpl::ReleaseLoop() {
  while (true) {
    std::vector<uint64_t> batch;
    {
      MutexLock lock(&release_mu_);
      while (!stopping_ && releases_.empty()) release_cv_.Wait(&release_mu_);
      // Pending releases are still sent when stopping: the scheduler would otherwise keep the
      // sequences until the workers' heartbeats no longer list them.
      if (releases_.empty()) return;
      batch.swap(releases_);
    }
    for (uint64_t id : batch) {
      // Best effort: the scheduler also forgets sequences its workers stop announcing.
      (void)SchedulerRelease(options_.scheduler, id, options_.timeout);
    }
  }
}

StatusOr<int> ClientImpl::WorkerIndex(const std::string& address) {
  {
    MutexLock lock(&links_mu_);
    for (size_t i = 0; i < addresses_.size(); ++i) {
      if (addresses_[i] == address) return static_cast<int>(i);
    }
  }
  MutexLock connecting(&connect_mu_);
  {
    // Another thread may have connected it while this one waited.
    MutexLock lock(&links_mu_);
    for (size_t i = 0; i < addresses_.size(); ++i) {
      if (addresses_[i] == address) return static_cast<int>(i);
    }
  }
  ASSIGN_OR_RETURN(WorkerLink link,
                   ConnectWorker(*rpc_, address, options_.spec,
                                 transport::DeadlineAfter(options_.connect_timeout)));
  MutexLock lock(&links_mu_);
  workers_.push_back(std::move(link));
  addresses_.push_back(address);
  return static_cast<int>(workers_.size() - 1);
}

StatusOr<Placement> ClientImpl::ToPlacement(const scheduler::Placement& placed) {
  Placement out{.prefix_blocks_matched = static_cast<int64_t>(placed.prefix_blocks_matched),
                .reason = placed.reason};
  for (const scheduler::PlacedShard& s : placed.shards) {
    ASSIGN_OR_RETURN(int worker, WorkerIndex(s.data_address));
    out.plan.shards.push_back({.worker = worker,
                               .kv_head_begin = static_cast<int>(s.kv_head_begin),
                               .kv_head_end = static_cast<int>(s.kv_head_end),
                               .token_begin = static_cast<int64_t>(s.token_begin),
                               .token_end = s.token_end});
  }
  RETURN_IF_ERROR(out.plan.Validate(options_.spec, static_cast<int>(NumWorkers()))
                      .WithContext("placement of sequence " + std::to_string(placed.sequence_id) +
                                   " from scheduler " + options_.scheduler));
  return out;
}

std::future<StatusOr<Placement>> ClientImpl::Place(const PlaceOptions& options) {
  using Result = StatusOr<Placement>;
  if (options_.scheduler.empty()) {
    return ReadyFuture(Result(FailedPreconditionError(
        "sequence " + std::to_string(options.id) + ": Place needs ClientOptions::scheduler")));
  }
  const uint64_t scope = ScopeFingerprint(options.tenant, fingerprint_, options_.spec);
  return std::async(std::launch::async, [this, options, scope]() -> Result {
    StatusOr<scheduler::Placement> placed =
        SchedulerPlace(options_.scheduler, options, scope, fingerprint_, options_.timeout);
    if (!placed.ok()) return placed.status().WithContext("sequence " + std::to_string(options.id));
    return ToPlacement(*placed);
  });
}

std::future<StatusOr<Placement>> ClientImpl::Locate(uint64_t id) {
  using Result = StatusOr<Placement>;
  if (options_.scheduler.empty()) {
    return ReadyFuture(Result(FailedPreconditionError(
        "sequence " + std::to_string(id) + ": Locate needs ClientOptions::scheduler")));
  }
  return std::async(std::launch::async, [this, id]() -> Result {
    StatusOr<scheduler::Placement> placed = SchedulerLocate(options_.scheduler, id, options_.timeout);
    if (!placed.ok()) return placed.status().WithContext("sequence " + std::to_string(id));
    return ToPlacement(*placed);
  });
}

Status ClientImpl::ReconnectFailed(const ShardPlan& plan) {
  const transport::Deadline deadline = transport::DeadlineAfter(options_.connect_timeout);
  for (const Shard& shard : plan.shards) {
    const size_t w = static_cast<size_t>(shard.worker);
    if (Link(w).conn->connected()) continue;
    std::string address;
    {
      MutexLock lock(&links_mu_);
      address = addresses_[w];
    }
    ASSIGN_OR_RETURN(WorkerLink link, ConnectWorker(*rpc_, address, options_.spec, deadline));
    MutexLock lock(&links_mu_);
    // Another thread may have reconnected it meanwhile; either link works.
    if (!workers_[w].conn->connected()) workers_[w] = std::move(link);
  }
  return OkStatus();
}

Status ClientImpl::CheckLayer(std::string_view context, int layer) const {
  if (layer >= 0 && layer < options_.spec.num_layers) return OkStatus();
  return InvalidArgumentError(std::string(context) + ": layer " + std::to_string(layer) +
                              " is not in [0, " + std::to_string(options_.spec.num_layers) + ")");
}

std::future<Status> ClientImpl::Open(const OpenOptions& options) {
  const int num_workers = static_cast<int>(NumWorkers());
  if (Status s = options.plan.Validate(options_.spec, num_workers); !s.ok()) {
    return ReadyFuture(s.WithContext("sequence " + std::to_string(options.id)));
  }
  if (Status s = ReconnectFailed(options.plan); !s.ok()) {
    return ReadyFuture(s.WithContext("sequence " + std::to_string(options.id)));
  }
  auto seq = std::make_shared<SequenceState>(options.id, options.plan, options_.spec.num_layers);
  if (Status s = table_->Insert(seq); !s.ok()) return ReadyFuture(std::move(s));

  auto promise = std::make_shared<std::promise<Status>>();
  std::future<Status> future = promise->get_future();
  std::vector<WorkerLink> links;
  for (size_t i = 0; i < seq->plan.shards.size(); ++i) links.push_back(LinkOf(*seq, i));
  auto fan = FanIn::Create(links.size(), [seq, links, promise, table = table_, counters = counters_,
                                          timeout = options_.timeout](std::vector<Status> results) {
    const Status first = FirstError(results);
    if (first.ok()) {
      MutexLock lock(&seq->mu);
      seq->open = true;
    } else {
      // Undo the shards that opened (or may have: a timeout is not a refusal). A shard
      // refused with ALREADY_EXISTS belongs to someone else and is left alone.
      for (size_t i = 0; i < links.size(); ++i) {
        if (results[i].code() == StatusCode::kAlreadyExists) continue;
        SendRequest(links[i], counters,
                    {.method = Method::kCloseSequence, .header = EncodeCloseSequence(seq->id)},
                    transport::DeadlineAfter(timeout), [](StatusOr<IncomingMessage>) {});
      }
      table->RemoveIfSame(seq.get());
    }
    promise->set_value(first);
  });
  const transport::Deadline deadline = CallDeadline();
  for (size_t i = 0; i < links.size(); ++i) {
    Request request{.method = Method::kOpenSequence,
                    .header = EncodeOpenSequence(options.id, options.tenant, options_.spec,
                                                 fingerprint_, seq->plan.shards[i])};
    SendRequest(links[i], counters_, std::move(request), deadline,
                [fan, i, id = options.id, label = links[i].label](StatusOr<IncomingMessage> r) {
                  fan->Done(i, NameError(r.status(), id, label));
                });
  }
  return future;
}

std::future<StatusOr<ResumeInfo>> ClientImpl::Resume(const OpenOptions& options) {
  using Result = StatusOr<ResumeInfo>;
  const std::string context = "sequence " + std::to_string(options.id);
  if (Status s = options.plan.Validate(options_.spec, static_cast<int>(NumWorkers())); !s.ok()) {
    return ReadyFuture(Result(s.WithContext(context)));
  }
  if (Status s = ReconnectFailed(options.plan); !s.ok()) {
    return ReadyFuture(Result(s.WithContext(context)));
  }
  const int num_layers = options_.spec.num_layers;
  // Entered into the table only once every shard answered: until then an entry of the same id
  // (its workers restarted under it) stays as it was.
  auto seq = std::make_shared<SequenceState>(options.id, options.plan, num_layers);
  auto shards = std::make_shared<std::vector<ResumedShard>>(seq->plan.shards.size());
  auto promise = std::make_shared<std::promise<Result>>();
  std::future<Result> future = promise->get_future();
  auto fan = FanIn::Create(shards->size(), [seq, shards, promise,
                                            table = table_](std::vector<Status> results) {
    // Nothing changed on the workers: a failed Resume may simply be tried again.
    const Status first = FirstError(results);
    if (!first.ok()) {
      promise->set_value(Result(first));
      return;
    }
    ResumeInfo info = AdoptResumed(*seq, *shards);
    table->Put(seq);
    promise->set_value(Result(std::move(info)));
  });
  const transport::Deadline deadline = CallDeadline();
  for (size_t i = 0; i < seq->plan.shards.size(); ++i) {
    const WorkerLink link = LinkOf(*seq, i);
    Request request{.method = Method::kOpenSequence,
                    .header = EncodeOpenSequence(options.id, options.tenant, options_.spec,
                                                 fingerprint_, seq->plan.shards[i],
                                                 /*resume=*/true)};
    SendRequest(link, counters_, std::move(request), deadline,
                [fan, shards, i, num_layers, id = options.id,
                 label = link.label](StatusOr<IncomingMessage> r) {
                  StatusOr<ResumedShard> parsed =
                      r.ok() ? ParseResumeReply(r->header(), num_layers) : r.status();
                  if (parsed.ok()) (*shards)[i] = *std::move(parsed);
                  fan->Done(i, NameError(parsed.status(), id, label));
                });
  }
  return future;
}

std::future<StatusOr<PrefixMatch>> ClientImpl::LookupPrefix(uint64_t id,
                                                            std::span<const uint64_t> hashes) {
  using Result = StatusOr<PrefixMatch>;
  StatusOr<std::shared_ptr<SequenceState>> found = table_->FindOpen(id);
  if (!found.ok()) return ReadyFuture(Result(found.status()));
  std::shared_ptr<SequenceState> seq = *std::move(found);
  {
    MutexLock lock(&seq->mu);
    bool appended = false;
    for (int64_t n : seq->length) appended = appended || n > 0;
    if (seq->looked_up || appended) {
      return ReadyFuture(Result(FailedPreconditionError(
          "sequence " + std::to_string(id) + ": LookupPrefix comes once, before any Prefill")));
    }
    seq->looked_up = true;
    seq->lookup_pending = true;
  }
  const int block = options_.spec.block_size;
  auto matched = std::make_shared<std::vector<int64_t>>(seq->plan.shards.size(), 0);
  auto promise = std::make_shared<std::promise<Result>>();
  std::future<Result> future = promise->get_future();
  auto fan = FanIn::Create(seq->plan.shards.size(), [seq, matched,
                                                     promise](std::vector<Status> results) {
    // Shards that answered hold their hits whatever the others did: record them, so later
    // appends start where the workers expect.
    int64_t prefix = 0;
    {
      MutexLock lock(&seq->mu);
      prefix = CombinePrefixMatch(seq->plan, seq->ranges, *matched);
      seq->prefix_tokens = prefix;
      seq->lookup_pending = false;
      for (auto& layer : seq->local_len) layer = *matched;
      for (int64_t& n : seq->length) n = prefix;
    }
    const Status first = FirstError(results);
    promise->set_value(first.ok() ? Result(PrefixMatch{.matched_tokens = prefix}) : Result(first));
  });
  const transport::Deadline deadline = CallDeadline();
  for (size_t i = 0; i < seq->plan.shards.size(); ++i) {
    std::span<const uint64_t> mine = ShardHashes(seq->plan.shards[i], hashes, block);
    if (mine.empty()) {
      fan->Done(i, OkStatus());
      continue;
    }
    const WorkerLink link = LinkOf(*seq, i);
    Request request{.method = Method::kLookupPrefix, .header = EncodeLookupPrefix(id, mine)};
    SendRequest(link, counters_, std::move(request), deadline,
                [fan, matched, i, id, n = mine.size(), block,
                 label = link.label](StatusOr<IncomingMessage> r) {
                  StatusOr<int64_t> m =
                      r.ok() ? ParseLookupPrefixReply(r->header(), n, block) : r.status();
                  if (m.ok()) (*matched)[i] = *m;
                  fan->Done(i, NameError(m.status(), id, label));
                });
  }
  return future;
}

std::future<Status> ClientImpl::Close(uint64_t id) {
  std::shared_ptr<SequenceState> seq = table_->Remove(id);
  if (!seq) return ReadyFuture(NotFoundError("sequence " + std::to_string(id) + " is not open"));
  if (!options_.scheduler.empty()) QueueRelease(id);
  auto promise = std::make_shared<std::promise<Status>>();
  std::future<Status> future = promise->get_future();
  auto fan = FanIn::Create(seq->plan.shards.size(), [promise](std::vector<Status> results) {
    promise->set_value(FirstError(results));
  });
  const transport::Deadline deadline = CallDeadline();
  for (size_t i = 0; i < seq->plan.shards.size(); ++i) {
    const WorkerLink link = LinkOf(*seq, i);
    SendRequest(link, counters_,
                {.method = Method::kCloseSequence, .header = EncodeCloseSequence(id)}, deadline,
                [fan, i, id, label = link.label](StatusOr<IncomingMessage> r) {
                  fan->Done(i, NameError(r.status(), id, label));
                });
  }
  return future;
}

StatusOr<int64_t> ClientImpl::Length(uint64_t id, int layer) const {
  RETURN_IF_ERROR(CheckLayer("sequence " + std::to_string(id), layer));
  ASSIGN_OR_RETURN(std::shared_ptr<SequenceState> seq, table_->Find(id));
  MutexLock lock(&seq->mu);
  return seq->length[static_cast<size_t>(layer)];
}

StatusOr<int64_t> ClientImpl::DurableLength(uint64_t id, int layer) const {
  RETURN_IF_ERROR(CheckLayer("sequence " + std::to_string(id), layer));
  ASSIGN_OR_RETURN(std::shared_ptr<SequenceState> seq, table_->Find(id));
  MutexLock lock(&seq->mu);
  return CombinePrefixMatch(seq->plan, seq->ranges,
                            seq->durable_len[static_cast<size_t>(layer)]);
}

ClientStats ClientImpl::Stats() const {
  return ClientStats{.requests = counters_->requests.load(std::memory_order_relaxed),
                     .errors = counters_->errors.load(std::memory_order_relaxed),
                     .bytes_sent = counters_->bytes_sent.load(std::memory_order_relaxed),
                     .bytes_received = counters_->bytes_received.load(std::memory_order_relaxed)};
}

}  // namespace client_internal
}  // namespace attic
