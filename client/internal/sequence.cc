#include "client/internal/sequence.h"

#include <string>
#include <utility>

namespace attic::client_internal {

Status CheckAppendable(SequenceState& seq, int layer) {
  const Status& failed = seq.layer_error[static_cast<size_t>(layer)];
  if (!failed.ok()) {
    return FailedPreconditionError("sequence " + std::to_string(seq.id) + ": layer " +
                                   std::to_string(layer) + " had a failed append (" +
                                   failed.ToString() + "); close and reopen the sequence");
  }
  if (seq.lookup_pending) {
    return FailedPreconditionError("sequence " + std::to_string(seq.id) +
                                   ": LookupPrefix is in flight: wait for its future");
  }
  return OkStatus();
}

ResumeInfo AdoptResumed(SequenceState& seq, const std::vector<ResumedShard>& shards) {
  ResumeInfo info;
  MutexLock lock(&seq.mu);
  for (size_t l = 0; l < seq.length.size(); ++l) {
    for (size_t s = 0; s < shards.size(); ++s) {
      seq.local_len[l][s] = shards[s].lengths[l];
      seq.durable_len[l][s] = shards[s].durable[l];
    }
    seq.length[l] = CombinePrefixMatch(seq.plan, seq.ranges, seq.local_len[l]);
    info.lengths.push_back(seq.length[l]);
    info.durable_lengths.push_back(CombinePrefixMatch(seq.plan, seq.ranges, seq.durable_len[l]));
  }
  seq.looked_up = true;
  seq.open = true;
  return info;
}

Status SequenceTable::Insert(std::shared_ptr<SequenceState> seq) {
  const uint64_t id = seq->id;
  MutexLock lock(&mu_);
  if (!map_.emplace(id, std::move(seq)).second) {
    return AlreadyExistsError("sequence " + std::to_string(id) + " is already open");
  }
  return OkStatus();
}

void SequenceTable::Put(std::shared_ptr<SequenceState> seq) {
  const uint64_t id = seq->id;
  MutexLock lock(&mu_);
  map_[id] = std::move(seq);
}

StatusOr<std::shared_ptr<SequenceState>> SequenceTable::Find(uint64_t id) const {
  MutexLock lock(&mu_);
  auto it = map_.find(id);
  if (it == map_.end()) return NotFoundError("sequence " + std::to_string(id) + " is not open");
  return it->second;
}

StatusOr<std::shared_ptr<SequenceState>> SequenceTable::FindOpen(uint64_t id) const {
  ASSIGN_OR_RETURN(std::shared_ptr<SequenceState> seq, Find(id));
  MutexLock lock(&seq->mu);
  if (!seq->open) {
    return FailedPreconditionError("sequence " + std::to_string(id) +
                                   " is still opening: wait for Open's future");
  }
  return seq;
}

std::shared_ptr<SequenceState> SequenceTable::Remove(uint64_t id) {
  MutexLock lock(&mu_);
  auto it = map_.find(id);
  if (it == map_.end()) return nullptr;
  std::shared_ptr<SequenceState> seq = std::move(it->second);
  map_.erase(it);
  return seq;
}

void SequenceTable::RemoveIfSame(const SequenceState* seq) {
  MutexLock lock(&mu_);
  auto it = map_.find(seq->id);
  if (it != map_.end() && it->second.get() == seq) map_.erase(it);
}

}  // namespace attic::client_internal
