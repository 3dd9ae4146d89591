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

struct BlockAddress {
  uint64_t seq = 0;
  int layer = 0;
  int head = 0;
  int block = 0;
  BlockKind kind = BlockKind::kKey;
};

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

size_t Streams(const TierBenchOptions& o) { return static_cast<size_t>(o.layers * o.heads); }

size_t BlocksPerSequence(const TierBenchOptions& o) {
  return Streams(o) * static_cast<size_t>(o.stream_blocks) * 2;
}

// Spilled block i in write order: batch b holds chunk b % chunks of sequence b / chunks, and
// within a batch each stream's K blocks of the chunk, then its V blocks.
BlockAddress AddressOf(const TierBenchOptions& o, size_t i) {
  const auto per_batch = static_cast<size_t>(o.batch_blocks());
  const auto chunk = static_cast<size_t>(o.chunk_blocks);
  const size_t chunks = static_cast<size_t>(o.stream_blocks) / chunk;
  const size_t b = i / per_batch;
  const size_t r = i % per_batch;
  const size_t stream = r / (2 * chunk);
  const size_t rest = r % (2 * chunk);
  return {.seq = b / chunks,
          .layer = static_cast<int>(stream) / o.heads,
          .head = static_cast<int>(stream) % o.heads,
          .block = static_cast<int>((b % chunks) * chunk + rest % chunk),
          .kind = rest < chunk ? BlockKind::kKey : BlockKind::kValue};
}

std::string KeyOf(uint64_t seq, size_t stream, int block, BlockKind kind, int heads) {
  return PrivateBlockKey(seq, static_cast<int>(stream) / heads, static_cast<int>(stream) % heads,
                         block, kind);
}

Status CheckShape(const TierBenchOptions& o) {
  if (o.layers < 1 || o.heads < 1 || o.chunk_blocks < 1 || o.stream_blocks < o.chunk_blocks ||
      o.stream_blocks % o.chunk_blocks != 0 || o.read_batch_blocks < 1) {
    return InvalidArgumentError(
        "tier bench: layers, heads and chunk_blocks must be positive, stream_blocks a multiple "
        "of chunk_blocks, read_batch_blocks positive");
  }
  return OkStatus();
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

// The keys one reload thread reads, in order: its streams (sequence-major), each stream's
// blocks in block order, K and V of a block together (kAll) or V alone.
std::vector<std::string> ReloadKeys(const TierBenchOptions& o, size_t first_stream,
                                    size_t end_stream, ReloadKind kind) {
  std::vector<std::string> keys;
  const size_t streams = Streams(o);
  for (size_t s = first_stream; s < end_stream; ++s) {
    const uint64_t seq = s / streams;
    for (int b = 0; b < o.stream_blocks; ++b) {
      if (kind == ReloadKind::kAll) {
        keys.push_back(KeyOf(seq, s % streams, b, BlockKind::kKey, o.heads));
      }
      keys.push_back(KeyOf(seq, s % streams, b, BlockKind::kValue, o.heads));
    }
  }
  return keys;
}

// Reads keys in batches; fails on the first block that does not read.
Status ReadKeys(SsdTier& tier, const TierBenchOptions& o, std::span<const std::string> keys,
                size_t batch) {
  std::vector<std::byte> buf(batch * o.block_bytes);
  std::vector<std::span<std::byte>> dsts;
  std::vector<Status> statuses;
  for (size_t i = 0; i < keys.size(); i += batch) {
    const size_t n = std::min(batch, keys.size() - i);
    dsts.clear();
    for (size_t j = 0; j < n; ++j) dsts.emplace_back(buf.data() + j * o.block_bytes, o.block_bytes);
    RETURN_IF_ERROR(tier.ReadBlocks(keys.subspan(i, n), dsts, &statuses));
  }
  return OkStatus();
}

StatusOr<ReloadFigures> ReloadOnce(const TierBenchOptions& o, const SpillFigures& spill,
                                   ReloadKind kind, int threads) {
  const size_t streams = spill.blocks / BlocksPerSequence(o) * Streams(o);
  const size_t batch = kind == ReloadKind::kAll ? static_cast<size_t>(o.read_batch_blocks)
                                                : static_cast<size_t>(o.stream_blocks);
  std::vector<std::vector<std::string>> keys(threads);
  size_t blocks = 0;
  for (int t = 0; t < threads; ++t) {
    keys[t] = ReloadKeys(o, streams * t / threads, streams * (t + 1) / threads, kind);
    blocks += keys[t].size();
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SsdTier> tier, OpenTier(o));
  std::vector<Status> results(threads);
  std::vector<std::thread> pool;
  const Clock::time_point start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] { results[t] = ReadKeys(*tier, o, keys[t], batch); });
  }
  for (std::thread& th : pool) th.join();
  const double seconds = Seconds(start, Clock::now());
  for (const Status& s : results) RETURN_IF_ERROR(s);
  const size_t bytes = blocks * o.block_bytes;
  return ReloadFigures{.threads = threads,
                       .bytes = bytes,
                       .seconds = seconds,
                       .gbps = static_cast<double>(bytes) / seconds / 1e9,
                       .stats = tier->Stats()};
}

}  // namespace

std::string SpilledBlockKey(const TierBenchOptions& o, size_t i) {
  const BlockAddress a = AddressOf(o, i);
  return PrivateBlockKey(a.seq, a.layer, a.head, a.block, a.kind);
}

StatusOr<SpillFigures> MeasureSpill(const TierBenchOptions& o, int writers) {
  RETURN_IF_ERROR(CheckShape(o));
  std::error_code ec;
  std::filesystem::remove_all(o.dir, ec);
  const std::vector<std::byte> patterns = RandomPatterns(o.block_bytes);
  ASSIGN_OR_RETURN(std::unique_ptr<SsdTier> tier, OpenTier(o));
  const auto batch = static_cast<size_t>(o.batch_blocks());
  const size_t sequences = std::max<size_t>(1, o.bytes / (BlocksPerSequence(o) * o.block_bytes));
  const size_t batches = sequences * BlocksPerSequence(o) / batch;
  SpillFigures fig;
  fig.writers = writers;
  fig.sync = o.tier.sync;
  fig.blocks = batches * batch;
  fig.block_bytes = fig.blocks * o.block_bytes;
  const size_t chunks = batches / sequences;
  auto write_share = [&](int w) -> Status {
    TierBatch tb;
    tb.blocks.resize(batch);
    for (size_t b = 0; b < batches; ++b) {
      if ((b / chunks) % static_cast<size_t>(writers) != static_cast<size_t>(w)) continue;
      for (size_t j = 0; j < batch; ++j) {
        const size_t i = b * batch + j;
        tb.blocks[j].key = SpilledBlockKey(o, i);
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
  fig.shards = tier->block_shards();
  fig.stats = tier->Stats();
  return fig;
}

StatusOr<std::vector<ReloadFigures>> MeasureReload(const TierBenchOptions& o,
                                                   const SpillFigures& spill, ReloadKind kind) {
  RETURN_IF_ERROR(CheckShape(o));
  std::vector<ReloadFigures> out;
  for (int threads : o.reload_threads) {
    ASSIGN_OR_RETURN(ReloadFigures f, ReloadOnce(o, spill, kind, threads));
    out.push_back(f);
  }
  return out;
}

StatusOr<LatencyFigures> MeasureRandomBlockReads(const TierBenchOptions& o,
                                                 const SpillFigures& spill) {
  ASSIGN_OR_RETURN(std::unique_ptr<SsdTier> tier, OpenTier(o));
  std::vector<std::byte> dst(o.block_bytes);
  for (size_t i = 0; i < spill.blocks; i += static_cast<size_t>(o.batch_blocks())) {
    RETURN_IF_ERROR(tier->ReadBlock(SpilledBlockKey(o, i), dst));
  }
  std::mt19937_64 rng(99);
  std::vector<double> us;
  us.reserve(o.random_reads);
  for (int r = 0; r < o.random_reads; ++r) {
    const std::string key = SpilledBlockKey(o, rng() % spill.blocks);
    const Clock::time_point start = Clock::now();
    RETURN_IF_ERROR(tier->ReadBlock(key, dst));
    us.push_back(Seconds(start, Clock::now()) * 1e6);
  }
  return Percentiles(&us);
}

}  // namespace attic::bench
