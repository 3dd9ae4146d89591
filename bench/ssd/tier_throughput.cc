#include "bench/ssd/tier_throughput.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <span>
#include <thread>
#include <vector>

namespace attic::bench {
namespace {

using Clock = std::chrono::steady_clock;
// Distinct block contents; block i reuses pattern i % kPatterns (no layer of the tier
// compresses or deduplicates, so repeats cost the same as fresh bytes).
constexpr size_t kPatterns = 512;
constexpr size_t kBlocksPerSequence = 4096;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::vector<std::byte> RandomPatterns(size_t block_bytes) {
  std::vector<std::byte> out(kPatterns * block_bytes);
  std::mt19937_64 rng(1234);
  for (size_t i = 0; i + 8 <= out.size(); i += 8) {
    const uint64_t v = rng();
    for (size_t j = 0; j < 8; ++j) out[i + j] = static_cast<std::byte>(v >> (8 * j));
  }
  return out;
}

StatusOr<std::unique_ptr<SsdTier>> OpenTier(const TierBenchOptions& o) {
  SsdTierOptions t = o.tier;
  t.path = o.dir;
  return SsdTier::Open(t);
}

// Reads blocks [begin, end) in batches; fails on the first block that does not read.
Status ReadRange(SsdTier& tier, const TierBenchOptions& o, size_t begin, size_t end) {
  const size_t batch = static_cast<size_t>(o.read_batch_blocks);
  std::vector<std::byte> buf(batch * o.block_bytes);
  std::vector<std::string> keys;
  std::vector<std::span<std::byte>> dsts;
  std::vector<Status> statuses;
  for (size_t i = begin; i < end; i += batch) {
    const size_t n = std::min(batch, end - i);
    keys.clear();
    dsts.clear();
    for (size_t j = 0; j < n; ++j) {
      keys.push_back(SpilledBlockKey(i + j));
      dsts.emplace_back(buf.data() + j * o.block_bytes, o.block_bytes);
    }
    RETURN_IF_ERROR(tier.ReadBlocks(keys, dsts, &statuses));
  }
  return OkStatus();
}

StatusOr<ReloadFigures> ReloadOnce(const TierBenchOptions& o, const SpillFigures& spill,
                                   int threads) {
  ASSIGN_OR_RETURN(std::unique_ptr<SsdTier> tier, OpenTier(o));
  std::vector<Status> results(threads);
  std::vector<std::thread> pool;
  const Clock::time_point start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    const size_t begin = spill.blocks * t / threads;
    const size_t end = spill.blocks * (t + 1) / threads;
    pool.emplace_back([&, t, begin, end] { results[t] = ReadRange(*tier, o, begin, end); });
  }
  for (std::thread& th : pool) th.join();
  const double seconds = Seconds(start, Clock::now());
  for (const Status& s : results) RETURN_IF_ERROR(s);
  return ReloadFigures{.threads = threads,
                       .seconds = seconds,
                       .gbps = static_cast<double>(spill.block_bytes) / seconds / 1e9,
                       .stats = tier->Stats()};
}

}  // namespace

std::string SpilledBlockKey(size_t i) {
  return PrivateBlockKey(i / kBlocksPerSequence, 0, 0, static_cast<int>(i % kBlocksPerSequence),
                         BlockKind::kValue);
}

StatusOr<SpillFigures> MeasureSpill(const TierBenchOptions& o, int writers) {
  std::error_code ec;
  std::filesystem::remove_all(o.dir, ec);
  const std::vector<std::byte> patterns = RandomPatterns(o.block_bytes);
  ASSIGN_OR_RETURN(std::unique_ptr<SsdTier> tier, OpenTier(o));
  const size_t batch = static_cast<size_t>(o.batch_blocks);
  const size_t batches = std::max<size_t>(1, o.bytes / (o.block_bytes * batch));
  SpillFigures fig;
  fig.writers = writers;
  fig.sync = o.tier.sync;
  fig.blocks = batches * batch;
  fig.block_bytes = fig.blocks * o.block_bytes;
  auto write_share = [&](int w) -> Status {
    TierBatch tb;
    tb.blocks.resize(batch);
    for (size_t b = static_cast<size_t>(w); b < batches; b += static_cast<size_t>(writers)) {
      for (size_t j = 0; j < batch; ++j) {
        const size_t i = b * batch + j;
        tb.blocks[j].key = SpilledBlockKey(i);
        tb.blocks[j].bytes =
            std::span(patterns).subspan((i % kPatterns) * o.block_bytes, o.block_bytes);
      }
      RETURN_IF_ERROR(tier->Write(tb));
    }
    return OkStatus();
  };
  std::vector<Status> results(writers);
  std::vector<std::thread> pool;
  const Clock::time_point start = Clock::now();
  for (int w = 0; w < writers; ++w) pool.emplace_back([&, w] { results[w] = write_share(w); });
  for (std::thread& th : pool) th.join();
  fig.seconds = Seconds(start, Clock::now());
  for (const Status& s : results) RETURN_IF_ERROR(s);
  fig.gbps = static_cast<double>(fig.block_bytes) / fig.seconds / 1e9;
  fig.stats = tier->Stats();
  return fig;
}

StatusOr<std::vector<ReloadFigures>> MeasureReload(const TierBenchOptions& o,
                                                   const SpillFigures& spill) {
  std::vector<ReloadFigures> out;
  for (int threads : o.reload_threads) {
    ASSIGN_OR_RETURN(ReloadFigures f, ReloadOnce(o, spill, threads));
    out.push_back(f);
  }
  return out;
}

StatusOr<LatencyFigures> MeasureRandomBlockReads(const TierBenchOptions& o,
                                                 const SpillFigures& spill) {
  ASSIGN_OR_RETURN(std::unique_ptr<SsdTier> tier, OpenTier(o));
  std::vector<std::byte> dst(o.block_bytes);
  for (size_t i = 0; i < spill.blocks; i += static_cast<size_t>(o.batch_blocks)) {
    RETURN_IF_ERROR(tier->ReadBlock(SpilledBlockKey(i), dst));
  }
  std::mt19937_64 rng(99);
  std::vector<double> us;
  us.reserve(o.random_reads);
  for (int r = 0; r < o.random_reads; ++r) {
    const std::string key = SpilledBlockKey(rng() % spill.blocks);
    const Clock::time_point start = Clock::now();
    RETURN_IF_ERROR(tier->ReadBlock(key, dst));
    us.push_back(Seconds(start, Clock::now()) * 1e6);
  }
  return Percentiles(&us);
}

}  // namespace attic::bench
