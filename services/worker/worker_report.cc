#include "services/worker/worker_report.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "common/dtype.h"
#include "kvstore/kv_store.h"
#include "services/worker/worker_metrics.h"
#include "services/worker/worker_service.h"
#include "transport/frame.h"

namespace attic {
namespace {

uint64_t Bytes(int64_t blocks, size_t block_bytes) {
  return blocks > 0 ? static_cast<uint64_t>(blocks) * block_bytes : 0;
}

}  // namespace

WorkerReporter::WorkerReporter(WorkerIdentity identity, const WorkerService* service,
                               const WorkerMetrics* metrics,
                               std::function<uint64_t()> requests_total,
                               std::function<bool()> ready)
    : identity_(std::move(identity)),
      service_(service),
      metrics_(metrics),
      requests_total_(std::move(requests_total)),
      ready_(std::move(ready)) {}

double WorkerReporter::QuantileUs(const std::vector<uint64_t>& counts,
                                  std::span<const double> bounds, double q) {
  uint64_t total = 0;
  for (const uint64_t c : counts) total += c;
  if (total == 0 || bounds.empty()) return 0;
  const double target = q * static_cast<double>(total);
  double before = 0;
  for (size_t b = 0; b < counts.size(); ++b) {
    const auto in_bucket = static_cast<double>(counts[b]);
    if (in_bucket > 0 && before + in_bucket >= target) {
      // Past the last bound the latency is only known to exceed it.
      if (b >= bounds.size()) return bounds.back() * 1e6;
      const double lower = b == 0 ? 0.0 : bounds[b - 1];
      const double fraction = std::clamp((target - before) / in_bucket, 0.0, 1.0);
      return (lower + (bounds[b] - lower) * fraction) * 1e6;
    }
    before += in_bucket;
  }
  return bounds.back() * 1e6;
}

scheduler::WorkerFigures WorkerReporter::Figures(const KvStoreStats& s) {
  const ModelSpec& spec = service_->spec();
  const size_t bb = s.k.block_bytes;
  // Room in block pairs (one K and one V block of one layer and head): free slots, and the
  // cached prefix blocks that eviction would free.
  const int64_t pairs = std::min(s.k.free_blocks, s.v.free_blocks) + s.cached_blocks;
  int64_t dram_pairs = pairs;
  if (s.ssd) {
    // With a tier the V pool has as many ids as the K pool but only value_dram_blocks of DRAM;
    // past that, new values spill to SSD.
    dram_pairs = std::min(pairs, std::max<int64_t>(0, s.value_dram_blocks - s.v_resident_blocks));
  }
  scheduler::WorkerFigures f;
  f.kv_bytes_dram = Bytes(s.k.used_blocks + s.v.used_blocks - s.v_spilled_blocks, bb);
  f.kv_bytes_ssd = Bytes(s.v_spilled_blocks, bb);
  f.dram_capacity_bytes =
      Bytes(s.k.capacity_blocks + (s.ssd ? s.value_dram_blocks : s.v.capacity_blocks), bb);
  f.dram_free_bytes = 2 * Bytes(dram_pairs, bb);
  f.kv_free_bytes = 2 * Bytes(pairs, bb);
  f.ssd_bytes_used = s.ssd ? s.tier.live_blob_bytes + s.tier.total_sst_bytes : 0;
  f.ssd_tier = s.ssd;
  f.sequences = static_cast<uint64_t>(std::max<int64_t>(s.sequences, 0));
  f.prefix_blocks = static_cast<uint64_t>(std::max<int64_t>(s.prefix_blocks, 0));
  f.queue_depth = static_cast<uint64_t>(std::max<int64_t>(service_->queue_depth(), 0));
  if (metrics_ != nullptr) {
    std::vector<uint64_t> now =
        metrics_->DurationCounts(static_cast<int>(transport::Method::kAttend));
    std::vector<uint64_t> delta = now;
    for (size_t b = 0; b < delta.size() && b < last_attend_.size(); ++b) {
      delta[b] = now[b] >= last_attend_[b] ? now[b] - last_attend_[b] : 0;
    }
    f.attend_p50_us = QuantileUs(delta, WorkerMetrics::DurationBuckets(), 0.5);
    f.attend_p99_us = QuantileUs(delta, WorkerMetrics::DurationBuckets(), 0.99);
    last_attend_ = std::move(now);
  }
  f.requests_total = requests_total_ ? requests_total_() : 0;
  f.compute_threads = static_cast<uint32_t>(service_->compute_threads());
  f.block_tokens = static_cast<uint32_t>(spec.block_size);
  f.kv_bytes_per_token = spec.kv_bytes_per_token();
  return f;
}

std::vector<scheduler::HeldShard> WorkerReporter::HeldShards() const {
  std::vector<scheduler::HeldShard> shards;
  for (const uint64_t id : service_->store().SequenceIds()) {
    StatusOr<SequenceInfo> info = service_->store().GetSequence(id);
    if (!info.ok()) continue;  // closed in the meantime
    shards.push_back({.sequence_id = id,
                      .tenant = info->tenant,
                      .kv_head_begin = static_cast<uint32_t>(info->kv_head_begin),
                      .kv_head_end = static_cast<uint32_t>(info->kv_head_end),
                      .token_begin = service_->TokenBegin(id),
                      .tokens = info->layer_lengths.empty()
                                    ? 0
                                    : static_cast<uint64_t>(std::max(info->layer_lengths[0], 0))});
  }
  return shards;
}

const scheduler::PrefixSummary& WorkerReporter::Summary(const KvStoreStats& s) {
  // Any change of the filled entries moves one of these: a new or newly filled entry adds
  // blocks, an evicted or emptied one counts or removes blocks, the tier's set only grows.
  std::vector<int64_t> key = {s.prefix_entries, s.prefix_blocks, s.evictions, s.ssd_prefix_entries};
  if (key == summary_key_ && !summary_.empty()) return summary_;
  summary_ = scheduler::PrefixSummary::ForEntries(static_cast<uint64_t>(
      std::max<int64_t>(s.prefix_entries, 0) + std::max<int64_t>(s.ssd_prefix_entries, 0)));
  service_->store().VisitPrefixEntries(
      [this](uint64_t scope, uint64_t hash) { summary_.Add(scope, hash); });
  summary_key_ = std::move(key);
  return summary_;
}

scheduler::WorkerReport WorkerReporter::Report() {
  scheduler::WorkerReport r;
  r.name = identity_.name;
  r.data_address = identity_.data_address;
  r.metrics_address = identity_.metrics_address;
  r.incarnation = identity_.incarnation;
  r.model_fingerprint = service_->model_fingerprint();
  r.num_kv_heads = static_cast<uint32_t>(service_->spec().num_kv_heads);
  const KvStoreStats s = service_->store().Stats();
  r.figures = Figures(s);
  r.prefix = Summary(s);
  r.shards = HeldShards();
  r.ready = ready_ ? ready_() : true;
  return r;
}

}  // namespace attic
