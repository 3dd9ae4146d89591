// PrefixSummary: a Bloom filter over the (scope, chained block hash) entries of a worker's
// prefix cache, sent with every heartbeat so that the scheduler can tell, without asking, how
// long a leading run of a new prompt's blocks a worker probably holds.
//
//   // worker side
//   PrefixSummary summary = PrefixSummary::ForEntries(stats.prefix_entries);
//   store.VisitPrefixEntries([&](uint64_t scope, uint64_t hash) { summary.Add(scope, hash); });
//   // scheduler side
//   ASSIGN_OR_RETURN(PrefixSummary s, PrefixSummary::FromBits(bits, num_hashes, entries));
//   int run = s.LeadingRun(request.prefix_scope, request.prompt_hashes);
//
// Key of an entry: HashCombine(scope, hash), scope being kvstore's ScopeFingerprint, so two
// tenants' equal hashes are distinct keys. Probes: double hashing over the key's two 32-bit
// halves, bit i = (low + i * (high | 1)) mod bits. A summary never misses an entry that was
// added (no false negatives); it answers "maybe" for an absent one with the false-positive
// rate it was sized for. Since prompt hashes are chained, a false positive only lengthens a
// run when every earlier block matched, so a run is rarely overstated by more than a block.
//
// Thread safety: a value; const methods may be called concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "common/status.h"

namespace attic::scheduler {

class PrefixSummary {
 public:
  static constexpr size_t kMinBits = 1024;
  // 2^20 bits (128 KiB): about 100,000 entries at 1 % false positives; a cache with more
  // entries gets a higher rate rather than a larger heartbeat.
  static constexpr size_t kMaxBits = size_t{1} << 20;
  static constexpr int kMaxHashes = 16;

  // An empty summary that holds nothing (LeadingRun is always 0).
  PrefixSummary() = default;

  // Sized for `entries` keys at about `false_positive_rate` (in (0, 0.5]): bits rounded up to
  // a power of two in [kMinBits, kMaxBits], probes = round(bits / entries * ln 2) in [1, 16].
  static PrefixSummary ForEntries(uint64_t entries, double false_positive_rate = 0.01);

  // A summary received on the wire. InvalidArgument when bits is not a power of two in
  // [kMinBits / 8, kMaxBits / 8] bytes or num_hashes is not in [1, kMaxHashes]; an empty
  // `bits` gives the empty summary (whatever num_hashes says).
  static StatusOr<PrefixSummary> FromBits(std::string bits, int num_hashes, uint64_t entries);

  void Add(uint64_t scope, uint64_t hash);
  bool MayContain(uint64_t scope, uint64_t hash) const;
  // The number of leading hashes that MayContain: how many prompt blocks the worker probably
  // holds from the start of the prompt.
  int LeadingRun(uint64_t scope, std::span<const uint64_t> hashes) const;

  bool empty() const { return bits_.empty(); }
  // The filter's bytes (bit i is bit i % 8 of byte i / 8); empty for the empty summary.
  const std::string& bits() const { return bits_; }
  int num_hashes() const { return num_hashes_; }
  // Keys added (as counted by the sender; duplicates count twice).
  uint64_t entries() const { return entries_; }

 private:
  PrefixSummary(size_t num_bits, int num_hashes);

  std::string bits_;
  int num_hashes_ = 0;
  uint64_t entries_ = 0;
};

}  // namespace attic::scheduler
