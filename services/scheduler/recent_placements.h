// RecentPlacements: the prompt blocks the scheduler placed lately, (scope, chained hash) ->
// worker, each forgotten after a TTL. A burst of requests sharing a prefix then goes to the
// same worker before that worker's heartbeat summary shows the blocks.
//
//   RecentPlacements recent(std::chrono::seconds(10));
//   recent.Record(scope, hashes, "w1", now);
//   RecentPlacements::Run r = recent.Lookup(scope, hashes, now);   // {"w1", hashes.size()}
//
// A later placement of the same block to another worker takes the block over. At most
// max_entries blocks are remembered; past that the oldest go first.
//
// Thread safety: none; the scheduler's state calls it under its own mutex.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>

namespace attic::scheduler {

class RecentPlacements {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  explicit RecentPlacements(std::chrono::milliseconds ttl, size_t max_entries = size_t{1} << 20);

  // Blocks `hashes` of `scope` went to `worker` at `now`.
  void Record(uint64_t scope, std::span<const uint64_t> hashes, const std::string& worker,
              TimePoint now);

  struct Run {
    std::string worker;  // empty when blocks == 0
    int blocks = 0;
  };
  // The worker the first of `hashes` went to, and how many leading hashes went to it, among
  // entries younger than the TTL at `now`.
  Run Lookup(uint64_t scope, std::span<const uint64_t> hashes, TimePoint now) const;

  // Forgets every block placed on `worker` (it died or restarted empty).
  void Forget(const std::string& worker);

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string worker;
    TimePoint expires;
  };
  void Expire(TimePoint now);

  const std::chrono::milliseconds ttl_;
  const size_t max_entries_;
  std::unordered_map<uint64_t, Entry> entries_;       // HashCombine(scope, hash) -> entry
  std::deque<std::pair<TimePoint, uint64_t>> order_;  // (expiry, key), oldest first
};

}  // namespace attic::scheduler
