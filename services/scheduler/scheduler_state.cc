#include "services/scheduler/scheduler_state.h"

#include <algorithm>
#include <cstdio>
#include <random>
#include <tuple>
#include <utility>

namespace attic::scheduler {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

uint64_t RandomIncarnation() {
  std::random_device rd;
  const uint64_t v =
      (uint64_t{rd()} << 32) ^ rd() ^
      static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  return v == 0 ? 1 : v;
}

std::string SeqName(uint64_t id) { return "sequence " + std::to_string(id); }

uint64_t Minus(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

std::string Seconds(std::chrono::steady_clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", std::chrono::duration<double>(d).count());
  return buf;
}

}  // namespace

SchedulerState::SchedulerState(SchedulerStateOptions options, Clock clock)
    : options_(options),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })),
      incarnation_(options.incarnation != 0 ? options.incarnation : RandomIncarnation()),
      recent_(options.recent_placement_ttl) {}

void SchedulerState::Sweep(TimePoint now) {
  std::vector<std::string> forget;
  for (auto& [name, w] : workers_) {
    if (!w.dead && now - w.last_seen > options_.dead_after) {
      w.dead = true;
      recent_.Forget(name);
      if (options_.on_worker_dead) {
        options_.on_worker_dead(name, w.report.data_address,
                                duration_cast<milliseconds>(now - w.last_seen));
      }
    }
    if (w.dead && now - w.last_seen > options_.forget_dead_after) forget.push_back(name);
  }
  for (const std::string& name : forget) {
    const std::set<uint64_t> ids = workers_[name].sequences;
    for (const uint64_t id : ids) DropSequence(id);
    workers_.erase(name);
  }
}

void SchedulerState::DropShard(uint64_t id, const std::string& worker) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return;
  Unreserve(it->second, worker);
  std::erase_if(it->second.shards, [&worker](const ShardRecord& s) { return s.worker == worker; });
  auto w = workers_.find(worker);
  if (w != workers_.end()) w->second.sequences.erase(id);
  if (it->second.shards.empty()) sequences_.erase(it);
}

void SchedulerState::DropSequence(uint64_t id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return;
  Unreserve(it->second, "");
  for (const ShardRecord& s : it->second.shards) {
    auto w = workers_.find(s.worker);
    if (w != workers_.end()) w->second.sequences.erase(id);
  }
  sequences_.erase(it);
}

void SchedulerState::Reconcile(const std::string& worker, const std::vector<HeldShard>& held,
                               TimePoint now) {
  WorkerRecord& w = workers_[worker];
  std::unordered_map<uint64_t, const HeldShard*> listed;
  for (const HeldShard& h : held) listed[h.sequence_id] = &h;
  // The shards this worker was known to hold: confirmed, updated or forgotten.
  const std::set<uint64_t> known = w.sequences;
  for (const uint64_t id : known) {
    auto found = sequences_.find(id);
    if (found == sequences_.end()) continue;
    SequenceRecord& seq = found->second;
    auto shard = std::find_if(seq.shards.begin(), seq.shards.end(),
                              [&worker](const ShardRecord& s) { return s.worker == worker; });
    if (shard == seq.shards.end()) continue;
    auto it = listed.find(id);
    if (it == listed.end()) {
      if (shard->confirmed || now - seq.placed_at > options_.sequence_grace) DropShard(id, worker);
      continue;
    }
    const HeldShard& h = *it->second;
    shard->kv_head_begin = h.kv_head_begin;
    shard->kv_head_end = h.kv_head_end;
    if (shard->token_begin != h.token_begin) shard->token_end_known = false;
    shard->token_begin = h.token_begin;
    shard->held_tokens = h.tokens;
    shard->confirmed = true;
    listed.erase(it);
  }
  // Shards the scheduler did not know of: a restart of the scheduler, or a placement it forgot.
  for (const auto& [id, h] : listed) {
    SequenceRecord& seq = sequences_[id];
    if (seq.shards.empty()) {
      seq.tenant = h->tenant;
      seq.placed_at = now;
      seq.reason = "announced";
    }
    seq.shards.push_back({.worker = worker,
                          .kv_head_begin = h->kv_head_begin,
                          .kv_head_end = h->kv_head_end,
                          .token_begin = h->token_begin,
                          .held_tokens = h->tokens,
                          .confirmed = true});
    w.sequences.insert(id);
  }
  Recompute(w);
}

RegisterOutcome SchedulerState::Register(WorkerReport report) {
  MutexLock l(&mu_);
  const TimePoint now = Now();
  Sweep(now);
  RegisterOutcome out;
  auto it = workers_.find(report.name);
  out.is_new = it == workers_.end();
  if (!out.is_new) {
    out.restarted = it->second.report.incarnation != report.incarnation;
    out.came_back = !out.restarted && it->second.dead;
    if (out.restarted) recent_.Forget(report.name);
  }
  WorkerRecord& w = workers_[report.name];
  std::vector<HeldShard> held = std::move(report.shards);
  report.shards.clear();
  w.report = std::move(report);
  w.last_seen = now;
  w.dead = false;
  Reconcile(w.report.name, held, now);
  out.reply = {.heartbeat_interval_ms = static_cast<uint32_t>(options_.heartbeat_interval.count()),
               .dead_after_ms = static_cast<uint32_t>(options_.dead_after.count()),
               .scheduler_incarnation = incarnation_};
  return out;
}

HeartbeatReply SchedulerState::Heartbeat(WorkerReport report) {
  MutexLock l(&mu_);
  const TimePoint now = Now();
  Sweep(now);
  HeartbeatReply reply{.known = false, .scheduler_incarnation = incarnation_};
  auto it = workers_.find(report.name);
  if (it == workers_.end() || it->second.dead ||
      it->second.report.incarnation != report.incarnation) {
    return reply;
  }
  WorkerRecord& w = it->second;
  std::vector<HeldShard> held = std::move(report.shards);
  report.shards.clear();
  w.report = std::move(report);
  w.last_seen = now;
  Reconcile(w.report.name, held, now);
  reply.known = true;
  return reply;
}

uint64_t SchedulerState::ShardReserve(const ShardRecord& s, const WorkerRecord& w) {
  if (s.expected_bytes == 0) return 0;
  const uint64_t heads = std::max<uint32_t>(w.report.num_kv_heads, 1);
  const uint64_t held = s.held_tokens * w.report.figures.kv_bytes_per_token / heads *
                        (s.kv_head_end - s.kv_head_begin);
  return Minus(s.expected_bytes, held);
}

void SchedulerState::Recompute(WorkerRecord& w) const {
  w.reserved = 0;
  for (const uint64_t id : w.sequences) {
    auto it = sequences_.find(id);
    if (it == sequences_.end()) continue;
    for (const ShardRecord& s : it->second.shards) {
      if (s.worker == w.report.name) w.reserved += ShardReserve(s, w);
    }
  }
}

void SchedulerState::Unreserve(const SequenceRecord& seq, const std::string& worker) {
  for (const ShardRecord& s : seq.shards) {
    if (!worker.empty() && s.worker != worker) continue;
    auto w = workers_.find(s.worker);
    if (w != workers_.end())
      w->second.reserved = Minus(w->second.reserved, ShardReserve(s, w->second));
  }
}

Status SchedulerState::CheckAlive(uint64_t id, const SequenceRecord& seq, TimePoint now) const {
  for (const ShardRecord& s : seq.shards) {
    auto w = workers_.find(s.worker);
    if (w == workers_.end() || !w->second.dead) continue;
    return UnavailableError(SeqName(id) + ": worker " + s.worker + " (" +
                            w->second.report.data_address + ") is dead: no heartbeat for " +
                            Seconds(now - w->second.last_seen));
  }
  return OkStatus();
}

Placement SchedulerState::ToPlacement(uint64_t id, const SequenceRecord& seq) const {
  Placement p{
      .sequence_id = id, .prefix_blocks_matched = seq.prefix_blocks_matched, .reason = seq.reason};
  for (const ShardRecord& s : seq.shards) {
    PlacedShard out{.worker_name = s.worker,
                    .kv_head_begin = s.kv_head_begin,
                    .kv_head_end = s.kv_head_end,
                    .token_begin = s.token_begin,
                    .token_end = s.token_end};
    auto w = workers_.find(s.worker);
    if (w != workers_.end()) out.data_address = w->second.report.data_address;
    if (!s.token_end_known) {
      // A shard learned from its worker ends where the next shard of its heads begins.
      out.token_end = -1;
      for (const ShardRecord& t : seq.shards) {
        const bool overlap = t.kv_head_begin < s.kv_head_end && s.kv_head_begin < t.kv_head_end;
        if (overlap && t.token_begin > s.token_begin &&
            (out.token_end < 0 || t.token_begin < static_cast<uint64_t>(out.token_end))) {
          out.token_end = static_cast<int64_t>(t.token_begin);
        }
      }
    }
    p.shards.push_back(std::move(out));
  }
  std::sort(p.shards.begin(), p.shards.end(), [](const PlacedShard& a, const PlacedShard& b) {
    return std::tie(a.token_begin, a.kv_head_begin) < std::tie(b.token_begin, b.kv_head_begin);
  });
  return p;
}

StatusOr<PlaceOutcome> SchedulerState::Place(const PlaceRequest& request,
                                             const PlacementPolicy& policy) {
  MutexLock l(&mu_);
  const TimePoint now = Now();
  Sweep(now);
  auto existing = sequences_.find(request.sequence_id);
  if (existing != sequences_.end() && CheckAlive(request.sequence_id, existing->second, now).ok()) {
    const bool announced =
        std::any_of(existing->second.shards.begin(), existing->second.shards.end(),
                    [](const ShardRecord& s) { return s.confirmed; });
    if (announced) {
      return AlreadyExistsError(SeqName(request.sequence_id) + " is already open on worker " +
                                existing->second.shards.front().worker);
    }
    return PlaceOutcome{.placement = ToPlacement(request.sequence_id, existing->second),
                        .repeated = true};
  }
  const RecentPlacements::Run recent =
      recent_.Lookup(request.prefix_scope, request.prompt_hashes, now);
  std::vector<WorkerView> views;
  std::vector<const WorkerRecord*> records;
  views.reserve(workers_.size());
  for (const auto& [name, w] : workers_) {
    views.push_back({.name = name,
                     .alive = !w.dead,
                     .ready = w.report.ready,
                     .model_fingerprint = w.report.model_fingerprint,
                     .num_kv_heads = w.report.num_kv_heads,
                     .figures = w.report.figures,
                     .prefix = &w.report.prefix,
                     .reserved_bytes = w.reserved,
                     .recent_prefix_blocks = recent.worker == name ? recent.blocks : 0});
    records.push_back(&w);
  }
  const PlacementInput input{.sequence_id = request.sequence_id,
                             .model_fingerprint = request.model_fingerprint,
                             .prompt_tokens = request.prompt_tokens,
                             .expected_tokens = request.expected_tokens,
                             .prompt_hashes = request.prompt_hashes,
                             .prefix_scope = request.prefix_scope};
  ASSIGN_OR_RETURN(PlacementDecision decision, policy.Place(input, views));
  if (existing != sequences_.end()) DropSequence(request.sequence_id);
  return Record(request, decision, records, now);
}

PlaceOutcome SchedulerState::Record(const PlaceRequest& request, const PlacementDecision& decision,
                                    const std::vector<const WorkerRecord*>& views, TimePoint now) {
  SequenceRecord seq{.tenant = request.tenant,
                     .placed_at = now,
                     .prefix_blocks_matched = decision.prefix_blocks_matched,
                     .reason = decision.reason};
  for (const ShardDecision& d : decision.shards) {
    const std::string& name = views[d.worker]->report.name;
    seq.shards.push_back({.worker = name,
                          .kv_head_begin = d.kv_head_begin,
                          .kv_head_end = d.kv_head_end,
                          .token_begin = d.token_begin,
                          .token_end = d.token_end,
                          .token_end_known = true,
                          .expected_bytes = std::max<uint64_t>(d.bytes, 1)});
    WorkerRecord& w = workers_[name];
    w.sequences.insert(request.sequence_id);
    w.reserved += ShardReserve(seq.shards.back(), w);
  }
  // The prompt blocks the first shard holds count for affinity from now on.
  if (!seq.shards.empty()) {
    const ShardRecord& first = seq.shards.front();
    const uint64_t block =
        std::max<uint32_t>(views[decision.shards.front().worker]->report.figures.block_tokens, 1);
    size_t n = request.prompt_hashes.size();
    if (first.token_end >= 0)
      n = std::min<size_t>(n, static_cast<uint64_t>(first.token_end) / block);
    recent_.Record(request.prefix_scope, std::span(request.prompt_hashes).first(n), first.worker,
                   now);
  }
  PlaceOutcome out{.placement = ToPlacement(request.sequence_id, seq)};
  sequences_[request.sequence_id] = std::move(seq);
  return out;
}

StatusOr<Placement> SchedulerState::Locate(uint64_t sequence_id) {
  MutexLock l(&mu_);
  const TimePoint now = Now();
  Sweep(now);
  auto it = sequences_.find(sequence_id);
  if (it == sequences_.end()) {
    return NotFoundError(SeqName(sequence_id) +
                         " is not known to the scheduler: never placed, released, or no live "
                         "worker announces it");
  }
  RETURN_IF_ERROR(CheckAlive(sequence_id, it->second, now));
  return ToPlacement(sequence_id, it->second);
}

bool SchedulerState::Release(uint64_t sequence_id) {
  MutexLock l(&mu_);
  const bool known = sequences_.count(sequence_id) != 0;
  DropSequence(sequence_id);
  return known;
}

Fleet SchedulerState::GetFleet() {
  MutexLock l(&mu_);
  const TimePoint now = Now();
  Sweep(now);
  Fleet fleet{.scheduler_incarnation = incarnation_};
  for (const auto& [name, w] : workers_) {
    fleet.workers.push_back({.name = name,
                             .data_address = w.report.data_address,
                             .metrics_address = w.report.metrics_address,
                             .alive = !w.dead,
                             .ready = w.report.ready,
                             .silent_ms = static_cast<uint64_t>(std::max<int64_t>(
                                 duration_cast<milliseconds>(now - w.last_seen).count(), 0)),
                             .figures = w.report.figures});
  }
  return fleet;
}

StateCounts SchedulerState::Counts() {
  MutexLock l(&mu_);
  Sweep(Now());
  StateCounts c;
  for (const auto& [name, w] : workers_) {
    if (w.dead) {
      ++c.workers_dead;
    } else {
      ++c.workers_alive;
      if (w.report.ready) ++c.workers_ready;
    }
  }
  c.sequences = static_cast<int64_t>(sequences_.size());
  return c;
}

}  // namespace attic::scheduler
