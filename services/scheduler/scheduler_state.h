// SchedulerState: the scheduler's registry — soft state only, rebuilt from what the workers
// announce. Workers by name (addresses, incarnation, last heartbeat, figures, prefix summary),
// sequences -> shards (from placements, and from the shards the workers say they hold), dead
// detection and the recent placements behind prefix affinity.
//
//   SchedulerState state({.heartbeat_interval = 500ms, .dead_after = 3s});
//   RegisterReply r = state.Register(report);            // POST /v1/register
//   HeartbeatReply h = state.Heartbeat(report);          // POST /v1/heartbeat
//   StatusOr<PlaceOutcome> p = state.Place(request, policy);
//   StatusOr<Placement> where = state.Locate(42);
//
// Rules (docs/scheduler.md, "Soft state and failures"):
// - A worker silent for longer than dead_after is dead. A heartbeat from a dead or unknown
//   worker, or from another incarnation than the registered one, is answered known = false:
//   the worker registers again. A registration with a new incarnation replaces the old state.
// - Workers are the source of truth for sequences. Every report carries the worker's held
//   shards: an unknown one is added (a restarted scheduler relearns its sequences this way);
//   one the worker held before and no longer lists is forgotten; a placed shard the worker has
//   never listed is forgotten sequence_grace after the placement. Release forgets at once.
// - Locate of a sequence with a shard on a dead worker is UNAVAILABLE naming the worker, its
//   address and how long it has been silent. A worker dead for forget_dead_after is dropped
//   with its sequences.
// - Memory promised to placements that the worker's figures do not show yet (expected bytes
//   minus held tokens) is reserved, so a burst of placements does not all land on the worker
//   that looked emptiest.
//
// Thread safety: every method may be called from any thread (one mutex; the policy runs under
// it and must be quick).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "services/scheduler/placement_policy.h"
#include "transport/control/scheduler_protocol.h"
#include "services/scheduler/recent_placements.h"

namespace attic::scheduler {

using TimePoint = std::chrono::steady_clock::time_point;
// The state's notion of now; tests inject a fake one.
using Clock = std::function<TimePoint()>;

struct SchedulerStateOptions {
  // Sent to workers in RegisterReply. Default 500 ms.
  std::chrono::milliseconds heartbeat_interval{500};
  // A worker silent longer than this is dead. Default 3 s.
  std::chrono::milliseconds dead_after{3000};
  // A placed shard its worker has not announced this long after the placement is forgotten
  // (the client never opened it). Default 10 s.
  std::chrono::milliseconds sequence_grace{10000};
  // A dead worker and its sequences are dropped after this long. Default 10 min.
  std::chrono::milliseconds forget_dead_after{600000};
  // How long a placed prompt block counts for prefix affinity. Default 10 s.
  std::chrono::milliseconds recent_placement_ttl{10000};
  // The scheduler's incarnation; 0 = a random one.
  uint64_t incarnation = 0;
  // Called (under the state's lock: it must be quick and must not call the state) when a
  // worker is found dead: its name, data address and how long it has been silent.
  std::function<void(const std::string&, const std::string&, std::chrono::milliseconds)>
      on_worker_dead;
};

// What a registration changed, for the caller's log.
struct RegisterOutcome {
  RegisterReply reply;
  bool is_new = false;     // the name was not known
  bool restarted = false;  // known under another incarnation: its state was replaced
  bool came_back = false;  // known and dead: alive again
};

struct PlaceOutcome {
  Placement placement;
  bool repeated = false;  // a retry answered with the placement already made
};

struct StateCounts {
  int64_t workers_alive = 0;
  int64_t workers_ready = 0;
  int64_t workers_dead = 0;
  int64_t sequences = 0;
};

class SchedulerState {
 public:
  explicit SchedulerState(SchedulerStateOptions options, Clock clock = {});

  RegisterOutcome Register(WorkerReport report) EXCLUDES(mu_);
  HeartbeatReply Heartbeat(WorkerReport report) EXCLUDES(mu_);

  // Places a new sequence with `policy`. A sequence already placed and not yet announced by
  // its workers is answered with the same placement (a retried request); one its workers
  // hold is ALREADY_EXISTS, unless one of them is dead (then it is placed anew). Otherwise
  // the policy's refusal.
  StatusOr<PlaceOutcome> Place(const PlaceRequest& request, const PlacementPolicy& policy)
      EXCLUDES(mu_);
  // NOT_FOUND when the sequence is not known; UNAVAILABLE naming the worker when one of its
  // shards is on a dead worker.
  StatusOr<Placement> Locate(uint64_t sequence_id) EXCLUDES(mu_);
  // Forgets the sequence; false when it was not known.
  bool Release(uint64_t sequence_id) EXCLUDES(mu_);

  Fleet GetFleet() EXCLUDES(mu_);
  StateCounts Counts() EXCLUDES(mu_);
  uint64_t incarnation() const { return incarnation_; }
  const SchedulerStateOptions& options() const { return options_; }

 private:
  struct WorkerRecord {
    WorkerReport report;  // the latest; its shards are folded into sequences_
    TimePoint last_seen;
    bool dead = false;
    std::set<uint64_t> sequences;  // ids with a shard on this worker
    // Sum of ShardReserve over its shards: recomputed at every report, kept up to date by
    // placements and drops in between (so a placement does not walk every sequence).
    uint64_t reserved = 0;
  };
  struct ShardRecord {
    std::string worker;
    uint32_t kv_head_begin = 0;
    uint32_t kv_head_end = 0;
    uint64_t token_begin = 0;
    int64_t token_end = -1;
    bool token_end_known = false;  // false for shards learned from a worker: derived at Locate
    uint64_t expected_bytes = 0;   // from the placement; 0 for announced shards
    uint64_t held_tokens = 0;
    bool confirmed = false;  // the worker has listed it
  };
  struct SequenceRecord {
    std::string tenant;
    std::vector<ShardRecord> shards;
    TimePoint placed_at;
    uint64_t prefix_blocks_matched = 0;
    std::string reason;
  };

  TimePoint Now() const { return clock_(); }
  void Sweep(TimePoint now) REQUIRES(mu_);
  void Reconcile(const std::string& worker, const std::vector<HeldShard>& held, TimePoint now)
      REQUIRES(mu_);
  void DropShard(uint64_t id, const std::string& worker) REQUIRES(mu_);
  void DropSequence(uint64_t id) REQUIRES(mu_);
  // Bytes a placed shard may still take on its worker beyond what the worker holds now.
  static uint64_t ShardReserve(const ShardRecord& s, const WorkerRecord& w);
  // Recomputes w.reserved from its shards.
  void Recompute(WorkerRecord& w) const REQUIRES(mu_);
  // Subtracts the reserves of `seq`'s shards on `worker` (all of them when empty).
  void Unreserve(const SequenceRecord& seq, const std::string& worker) REQUIRES(mu_);
  Placement ToPlacement(uint64_t id, const SequenceRecord& seq) const REQUIRES(mu_);
  // UNAVAILABLE naming the first dead worker among the sequence's shards; OK if none.
  Status CheckAlive(uint64_t id, const SequenceRecord& seq, TimePoint now) const REQUIRES(mu_);
  PlaceOutcome Record(const PlaceRequest& request, const PlacementDecision& decision,
                      const std::vector<const WorkerRecord*>& views, TimePoint now) REQUIRES(mu_);

  const SchedulerStateOptions options_;
  const Clock clock_;
  const uint64_t incarnation_;

  Mutex mu_;
  std::map<std::string, WorkerRecord> workers_ GUARDED_BY(mu_);
  std::unordered_map<uint64_t, SequenceRecord> sequences_ GUARDED_BY(mu_);
  RecentPlacements recent_ GUARDED_BY(mu_);
};

}  // namespace attic::scheduler
