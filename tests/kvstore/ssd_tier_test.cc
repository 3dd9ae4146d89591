// SsdTier on a real RocksDB directory: keys, block round trips through the WAL and the flush
// path, batched reads, records, range deletes, reopening (also after SIGKILL), checksums and
// figures. Fault injection is in ssd_fault_test.cc.
#include "kvstore/ssd/ssd_tier.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/file_checksum.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kvstore/ssd/internal/block_shards.h"
#include "kvstore/ssd/internal/block_value.h"
#include "kvstore/ssd/internal/key_tags.h"
#include "kvstore/ssd/internal/rocksdb_crc32c.h"
#include "kvstore/ssd/internal/task_crew.h"
#include "tests/kvstore/ssd_test_util.h"

namespace attic::ssd_test {
namespace {

using ::testing::HasSubstr;

constexpr size_t kBlock = 16384;
constexpr int kShards = 4;  // the fixture's block_shards

class SsdTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "no scratch directory";
    Open();
  }
  void Open(SsdTierOptions options = {}) {
    tier_.reset();
    options.path = dir_.db();
    if (options.block_shards == 0) options.block_shards = kShards;
    options.block_cache_bytes = size_t{8} << 20;
    options.write_buffer_bytes = size_t{16} << 20;
    auto tier = SsdTier::Open(options);
    ASSERT_TRUE(tier.ok()) << tier.status();
    tier_ = std::move(*tier);
  }

  ScratchDir dir_;
  std::unique_ptr<SsdTier> tier_;
};

TEST(SsdTierKeys, KeysOfOneSequenceSortTogetherInNumericOrder) {
  // Kind first after the sequence: every K block of sequence 7, then every V block, each by
  // layer, head and block; then sequence 8.
  std::vector<std::string> keys = {PrivateBlockKey(7, 0, 0, 0, BlockKind::kKey),
                                   PrivateBlockKey(7, 0, 0, 1, BlockKind::kKey),
                                   PrivateBlockKey(7, 0, 0, 256, BlockKind::kKey),
                                   PrivateBlockKey(7, 0, 1, 0, BlockKind::kKey),
                                   PrivateBlockKey(7, 1, 0, 0, BlockKind::kKey),
                                   PrivateBlockKey(7, 0, 0, 0, BlockKind::kValue),
                                   PrivateBlockKey(7, 0, 0, 1, BlockKind::kValue),
                                   PrivateBlockKey(7, 1, 0, 0, BlockKind::kValue),
                                   PrivateBlockKey(8, 0, 0, 0, BlockKind::kKey),
                                   PrivateBlockKey(256, 0, 0, 0, BlockKind::kKey)};
  for (size_t i = 1; i < keys.size(); ++i) EXPECT_LT(keys[i - 1], keys[i]) << i;
  const std::string prefix = PrivateBlockPrefix(7);
  for (size_t i = 0; i < 8; ++i) EXPECT_TRUE(keys[i].starts_with(prefix)) << i;
  EXPECT_FALSE(keys[8].starts_with(prefix));
  EXPECT_NE(SharedBlockKey(1, 2, 0, 0, BlockKind::kKey),
            SharedBlockKey(1, 2, 0, 0, BlockKind::kValue));
}

TEST(SsdTierKeys, ValueBlocksOfOneOwnerAreAdjacent) {
  // No K block sorts between two V blocks of one sequence, nor of one prefix entry.
  EXPECT_LT(PrivateBlockKey(7, 3, 3, 999, BlockKind::kKey),
            PrivateBlockKey(7, 0, 0, 0, BlockKind::kValue));
  EXPECT_LT(PrivateBlockKey(7, 31, 7, 9, BlockKind::kValue),
            PrivateBlockKey(8, 0, 0, 0, BlockKind::kKey));
  EXPECT_LT(SharedBlockKey(1, 2, 31, 7, BlockKind::kKey),
            SharedBlockKey(1, 2, 0, 0, BlockKind::kValue));
  EXPECT_LT(SharedBlockKey(1, 2, 0, 1, BlockKind::kValue),
            SharedBlockKey(1, 2, 1, 0, BlockKind::kValue));
  EXPECT_LT(SharedBlockKey(1, 2, 31, 7, BlockKind::kValue),
            SharedBlockKey(1, 3, 0, 0, BlockKind::kKey));
}

TEST(SsdTierKeys, RecordKeysParseBackAndEveryKeyReadsInWords) {
  uint64_t seq = 0, scope = 0, hash = 0;
  int layer = -1;
  EXPECT_TRUE(ParseManifestKey(ManifestKey(42), &seq));
  EXPECT_EQ(seq, 42u);
  EXPECT_TRUE(ManifestKey(42).starts_with(ManifestKeyPrefix()));
  EXPECT_FALSE(ParseManifestKey(SampleKey(42, 3), &seq));
  EXPECT_TRUE(ParseSampleKey(SampleKey(43, 3), &seq, &layer));
  EXPECT_EQ(seq, 43u);
  EXPECT_EQ(layer, 3);
  EXPECT_TRUE(SampleKey(43, 3).starts_with(SamplePrefix(43)));
  EXPECT_TRUE(ParsePrefixEntryKey(PrefixEntryKey(5, 0xfeedULL), &scope, &hash));
  EXPECT_EQ(scope, 5u);
  EXPECT_EQ(hash, 0xfeedULL);
  EXPECT_TRUE(PrefixEntryKey(5, 6).starts_with(PrefixEntryKeyPrefix()));

  EXPECT_EQ(DescribeTierKey(PrivateBlockKey(7, 1, 0, 12, BlockKind::kValue)),
            "private block seq 7 layer 1 head 0 block 12 V");
  EXPECT_THAT(DescribeTierKey(SharedBlockKey(1, 2, 3, 4, BlockKind::kKey)),
              HasSubstr("shared block scope 0x0000000000000001 hash 0x0000000000000002 layer 3 "
                        "head 4 K"));
  EXPECT_EQ(DescribeTierKey(ManifestKey(9)), "manifest seq 9");
  EXPECT_EQ(DescribeTierKey(std::string("\x01\xff", 2)), "key 0x01ff");
}

TEST(SsdTierKeys, PrefixEndSkipsTrailingFfBytes) {
  using ssd_internal::PrefixEnd;
  EXPECT_EQ(PrefixEnd("ab"), "ac");
  EXPECT_EQ(PrefixEnd(std::string("a\xff\xff", 3)), "b");
  EXPECT_EQ(PrefixEnd(std::string("\xff", 1)), std::nullopt);
  EXPECT_EQ(PrefixEnd(""), std::nullopt);
  // A sequence id ending in 0xff still bounds exactly its own keys.
  const std::string end = *PrefixEnd(PrivateBlockPrefix(0xff));
  EXPECT_LT(PrivateBlockKey(0xff, 9, 9, 9, BlockKind::kValue), end);
  EXPECT_LE(end, PrivateBlockPrefix(0x100));
}

TEST(SsdTierBlockValue, ChecksumMismatchIsDataLossNamingKeyAndBothChecksums) {
  const std::vector<std::byte> bytes = BlockBytes(1, 4096);
  const ssd_internal::BlockTrailer trailer = ssd_internal::MakeTrailer(bytes);
  std::string stored(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  stored.append(trailer.data(), trailer.size());
  SSD_EXPECT_OK(ssd_internal::CheckBlockValue(stored, 4096, "block X", "/db"));

  stored[100] = static_cast<char>(stored[100] ^ 1);
  const Status s = ssd_internal::CheckBlockValue(stored, 4096, "block X", "/db");
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("checksum mismatch for block X in /db"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("stored 0x"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("computed 0x"));

  const Status short_value = ssd_internal::CheckBlockValue("abc", 4096, "block X", "/db");
  EXPECT_EQ(short_value.code(), StatusCode::kDataLoss);
}

TEST_F(SsdTierTest, SmallBatchesRoundTripThroughTheWal) {
  BlockSet set;
  const size_t sizes[] = {64, 1000, 4096, kBlock, 4 * kBlock};  // below and above min_blob_bytes
  for (size_t i = 0; i < std::size(sizes); ++i) {
    set.Add(PrivateBlockKey(1, 0, 0, static_cast<int>(i), BlockKind::kValue), i, sizes[i]);
  }
  SSD_ASSERT_OK(tier_->Write(set.Batch()));
  ExpectReadsBack(*tier_, set);
  const SsdTierStats st = tier_->Stats();
  EXPECT_EQ(st.flushes, 0u);
  EXPECT_GT(st.wal_bytes, set.Batch().block_bytes());
  // And again once they live in blob and SST files.
  SSD_ASSERT_OK(tier_->Flush());
  ExpectReadsBack(*tier_, set);
}

TEST_F(SsdTierTest, LargeBatchesSkipTheWalAndFlush) {
  const BlockSet set = SequenceBlocks(2, 80, kBlock);  // 1.25 MiB >= flush_bytes (1 MiB)
  SSD_ASSERT_OK(tier_->Write(set.Batch()));
  const SsdTierStats st = tier_->Stats();
  EXPECT_EQ(st.flushes, 1u);
  EXPECT_LT(st.wal_bytes, kBlock);  // the blocks never went through the WAL
  EXPECT_GE(st.blob_bytes_written, 80 * kBlock);
  EXPECT_GE(st.live_blob_bytes, 80 * kBlock);
  ExpectReadsBack(*tier_, set);
}

TEST_F(SsdTierTest, ReadBlocksReadsEveryKeyButTheMissingOne) {
  const BlockSet set = SequenceBlocks(3, 40, kBlock);
  SSD_ASSERT_OK(tier_->Write(set.Batch()));
  std::vector<std::string> keys = set.keys;
  keys.insert(keys.begin() + 17, PrivateBlockKey(3, 0, 0, 999, BlockKind::kValue));
  std::vector<std::vector<std::byte>> bufs(keys.size(), std::vector<std::byte>(kBlock));
  std::vector<std::span<std::byte>> dsts(bufs.begin(), bufs.end());
  std::vector<Status> statuses;
  const Status s = tier_->ReadBlocks(keys, dsts, &statuses);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("block 999"));
  ASSERT_EQ(statuses.size(), keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i == 17) {
      EXPECT_EQ(statuses[i].code(), StatusCode::kNotFound);
      continue;
    }
    const size_t j = i < 17 ? i : i - 1;
    EXPECT_TRUE(statuses[i].ok()) << i << ": " << statuses[i];
    EXPECT_TRUE(bufs[i] == set.bytes[j]) << i;
  }
  EXPECT_EQ(tier_->ReadBlocks(keys, std::span(dsts).first(3), &statuses).code(),
            StatusCode::kInvalidArgument);
}

TEST_F(SsdTierTest, RecordsPutGetScanAndDelete) {
  TierBatch b;
  for (uint64_t seq : {5, 6, 300}) {
    b.records.push_back({.key = ManifestKey(seq), .value = "manifest " + std::to_string(seq)});
  }
  b.records.push_back({.key = SampleKey(5, 0), .value = "s50"});
  b.records.push_back({.key = SampleKey(5, 1), .value = "s51"});
  b.records.push_back({.key = SampleKey(6, 0), .value = "s60"});
  b.records.push_back({.key = PrefixEntryKey(1, 2), .value = "entry"});
  SSD_ASSERT_OK(tier_->Write(b));

  auto got = tier_->GetRecord(ManifestKey(6));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "manifest 6");
  EXPECT_EQ(tier_->GetRecord(ManifestKey(7)).status().code(), StatusCode::kNotFound);

  std::vector<uint64_t> manifests;
  SSD_ASSERT_OK(tier_->ScanRecords(ManifestKeyPrefix(), [&](std::string_view k, std::string_view) {
    uint64_t seq = 0;
    EXPECT_TRUE(ParseManifestKey(k, &seq));
    manifests.push_back(seq);
    return OkStatus();
  }));
  EXPECT_EQ(manifests, (std::vector<uint64_t>{5, 6, 300}));
  std::vector<std::string> samples;
  SSD_ASSERT_OK(tier_->ScanRecords(SamplePrefix(5), [&](std::string_view, std::string_view v) {
    samples.emplace_back(v);
    return OkStatus();
  }));
  EXPECT_EQ(samples, (std::vector<std::string>{"s50", "s51"}));
  // The callback's error stops the scan and comes back.
  int calls = 0;
  const Status stop = tier_->ScanRecords("", [&](std::string_view, std::string_view) {
    ++calls;
    return AbortedError("enough");
  });
  EXPECT_EQ(stop.code(), StatusCode::kAborted);
  EXPECT_EQ(calls, 1);

  TierBatch del;
  del.delete_records = {ManifestKey(5), SampleKey(5, 0)};
  SSD_ASSERT_OK(tier_->Write(del));
  EXPECT_EQ(tier_->GetRecord(ManifestKey(5)).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(tier_->GetRecord(SampleKey(5, 1)).ok());
}

TEST_F(SsdTierTest, DeletePrefixRemovesOneSequencesPrivateBlocksOnly) {
  const BlockSet a = StreamBlocks(0xff, 2, 4, 2, 4096);
  const BlockSet b = StreamBlocks(0x100, 2, 4, 2, 4096);
  SSD_ASSERT_OK(tier_->Write(a.Batch()));
  SSD_ASSERT_OK(tier_->Write(b.Batch()));
  SSD_ASSERT_OK(tier_->Flush());
  TierBatch del;
  del.delete_block_prefixes = {PrivateBlockPrefix(0xff)};
  del.delete_blocks = {b.keys[3]};
  SSD_ASSERT_OK(tier_->Write(del));
  for (const std::string& k : a.keys) {
    auto has = tier_->HasBlock(k);
    ASSERT_TRUE(has.ok()) << has.status();
    EXPECT_FALSE(*has) << DescribeTierKey(k);
  }
  for (size_t i = 0; i < b.keys.size(); ++i) {
    auto has = tier_->HasBlock(b.keys[i]);
    ASSERT_TRUE(has.ok()) << has.status();
    EXPECT_EQ(*has, i != 3) << DescribeTierKey(b.keys[i]);
  }
  TierBatch bad;
  bad.delete_block_prefixes = {std::string("\xff\xff", 2)};
  EXPECT_EQ(tier_->Write(bad).code(), StatusCode::kInvalidArgument);
}

// Distinct block shards the keys of a set fall in.
std::set<int> ShardsOf(const BlockSet& set, int shards) {
  std::set<int> out;
  for (const std::string& k : set.keys) out.insert(ssd_internal::BlockShardOf(k, shards));
  return out;
}

TEST(SsdTierShards, AnOwnersBlocksShareAShardAndOwnersSpread) {
  using ssd_internal::BlockShardOf;
  using ssd_internal::BlockShardOfPrefix;
  std::set<int> owners;
  for (uint64_t seq = 0; seq < 64; ++seq) {
    const int shard = BlockShardOf(PrivateBlockKey(seq, 0, 0, 0, BlockKind::kKey), 8);
    ASSERT_GE(shard, 0);
    ASSERT_LT(shard, 8);
    for (int x : {1, 7, 4095}) {
      EXPECT_EQ(BlockShardOf(PrivateBlockKey(seq, x, x % 8, x, BlockKind::kValue), 8), shard);
    }
    EXPECT_EQ(BlockShardOfPrefix(PrivateBlockPrefix(seq), 8), shard);
    const int scope = BlockShardOf(SharedBlockKey(seq, 2, 0, 0, BlockKind::kKey), 8);
    EXPECT_EQ(BlockShardOf(SharedBlockKey(seq, 3, 31, 7, BlockKind::kValue), 8), scope)
        << "every chain hash of a scope";
    owners.insert(shard);
  }
  EXPECT_EQ(owners.size(), 8u) << "64 sequences over 8 shards";
  EXPECT_EQ(BlockShardOf(PrivateBlockKey(9, 1, 2, 3, BlockKind::kKey), 1), 0);
  const int other = BlockShardOf("some other key", 8);
  EXPECT_TRUE(other >= 0 && other < 8);
  // Shorter than an owner: keys with the prefix may be anywhere.
  EXPECT_EQ(BlockShardOfPrefix("p", 8), -1);
  EXPECT_EQ(BlockShardOfPrefix("x-whatever-long-enough", 8), -1);
  EXPECT_EQ(ssd_internal::BlockFamilyName(3), "blocks.3");
  EXPECT_EQ(ssd_internal::ParseBlockFamilyName("blocks.12"), 12);
  for (const char* bad : {"blocks", "blocks.", "blocks.01", "blocks.-1", "blocks.1x", "records"}) {
    EXPECT_EQ(ssd_internal::ParseBlockFamilyName(bad), -1) << bad;
  }
}

// RocksDB's CRC-32C, whichever implementation runs it, as RocksDB's file checksum (4 bytes,
// big-endian).
std::string RocksDbCrc32c(std::string_view bytes) {
  const auto gen = rocksdb::GetFileChecksumGenCrc32cFactory()->CreateFileChecksumGenerator({});
  gen->Update(bytes.data(), bytes.size());
  gen->Finalize();
  return gen->GetChecksum();
}

std::string BigEndian32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

TEST(SsdTierCrc32c, RocksDbsChecksumsAreTheStandardCrc32cAndAcceleratedWhereBuiltIn) {
  EXPECT_EQ(RocksDbCrc32c("123456789"), std::string("\xe3\x06\x92\x83", 4));
  const std::vector<std::byte> bytes = BlockBytes(5, (size_t{1} << 20) + 13);
  const std::string_view view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  EXPECT_EQ(RocksDbCrc32c(view), BigEndian32(Crc32c(bytes.data(), bytes.size())));
  EXPECT_EQ(RocksDbCrc32c(view.substr(3, 1000)), BigEndian32(Crc32c(view.data() + 3, 1000)));
#if ATTIC_ROCKSDB_HW_CRC32C
  EXPECT_TRUE(ssd_internal::RocksDbCrc32cAccelerated())
      << "RocksDB's calls of crc32c::Extend do not reach the replacement (shared librocksdb?)";
#else
  EXPECT_FALSE(ssd_internal::RocksDbCrc32cAccelerated());
#endif
}

TEST(SsdTierTaskCrew, CallersShareHelpersAndGetEveryResult) {
  ssd_internal::TaskCrew crew(3);
  std::atomic<int> running{0}, most{0};
  auto run_call = [&](int call) {
    std::vector<std::function<Status()>> tasks;
    for (int i = 0; i < 5; ++i) {
      tasks.emplace_back([&, call, i]() -> Status {
        const int now = running.fetch_add(1) + 1;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        running.fetch_sub(1);
        if (i == 3)
          return UnavailableError("task " + std::to_string(call) + "." + std::to_string(i));
        return OkStatus();
      });
    }
    std::vector<Status> results(tasks.size());
    crew.RunAll(tasks, results);
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(results[i].ok(), i != 3) << call << "." << i;
    }
    EXPECT_THAT(std::string(results[3].message()), HasSubstr(std::to_string(call) + ".3"));
  };
  std::vector<std::thread> callers;
  for (int c = 0; c < 3; ++c) callers.emplace_back(run_call, c);
  for (std::thread& t : callers) t.join();
  EXPECT_GT(most.load(), 1) << "tasks ran side by side";
  crew.RunAll({}, {});  // nothing to do
}

TEST_F(SsdTierTest, ALargeBatchFlushesEveryShardItTouchedAndReadsBack) {
  ASSERT_EQ(tier_->block_shards(), kShards);
  // Blocks of 8 sequences in one batch (1 MiB: the flush path), so several shards.
  BlockSet set;
  for (uint64_t seq = 20; seq < 28; ++seq) {
    set.Append(StreamBlocks(seq, 2, 4, 4, 4096));
  }
  const std::set<int> shards = ShardsOf(set, kShards);
  ASSERT_GE(shards.size(), 2u);
  TierBatch batch = set.Batch();
  batch.records.push_back({.key = ManifestKey(20), .value = "m20"});
  SSD_ASSERT_OK(tier_->Write(batch));
  EXPECT_EQ(tier_->Stats().flushes, shards.size());
  EXPECT_LT(tier_->Stats().wal_bytes, 4096u) << "only the record goes through the WAL";
  ExpectReadsBack(*tier_, set);
  std::vector<std::vector<std::byte>> bufs(set.keys.size(), std::vector<std::byte>(4096));
  std::vector<std::span<std::byte>> dsts(bufs.begin(), bufs.end());
  SSD_ASSERT_OK(tier_->ReadBlocks(set.keys, dsts, nullptr));  // one MultiGet over the shards
  for (size_t i = 0; i < bufs.size(); ++i) EXPECT_TRUE(bufs[i] == set.bytes[i]) << i;
  Open();
  ExpectReadsBack(*tier_, set);
  auto record = tier_->GetRecord(ManifestKey(20));
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(*record, "m20");
}

TEST_F(SsdTierTest, ConcurrentLargeWritesOverSharedShards) {
  constexpr int kWriters = 4;
  std::vector<BlockSet> sets;
  for (int w = 0; w < kWriters; ++w) sets.push_back(StreamBlocks(40 + w, 2, 8, 8, 4096));
  std::vector<Status> results(kWriters);
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int round = 0; round < 3 && results[w].ok(); ++round) {
        results[w] = tier_->Write(sets[w].Batch());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const Status& s : results) SSD_EXPECT_OK(s);
  for (const BlockSet& set : sets) ExpectReadsBack(*tier_, set);
}

TEST_F(SsdTierTest, ADirectoryKeepsTheShardCountItWasCreatedWith) {
  const BlockSet set = StreamBlocks(12, 2, 8, 2, kBlock);
  SSD_ASSERT_OK(tier_->Write(set.Batch()));
  for (int asked : {2, 8, 0}) {
    Open({.block_shards = asked});
    EXPECT_EQ(tier_->block_shards(), kShards) << asked;
    ExpectReadsBack(*tier_, set);
  }
  ScratchDir fresh;
  auto tier = SsdTier::Open({.path = fresh.db(), .block_shards = 3});
  ASSERT_TRUE(tier.ok()) << tier.status();
  EXPECT_EQ((*tier)->block_shards(), 3);
  tier->reset();
  tier = SsdTier::Open({.path = fresh.db()});
  ASSERT_TRUE(tier.ok()) << tier.status();
  EXPECT_EQ((*tier)->block_shards(), 3);
}

TEST(SsdTierOpen, TheUnshardedLayoutOfEarlierReleasesIsRefused) {
  ScratchDir dir;
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    o.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"blocks", {}}, {"records", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir.db(), families, &handles, &db).ok());
    for (rocksdb::ColumnFamilyHandle* h : handles)
      ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    delete db;
  }
  const auto tier = SsdTier::Open({.path = dir.db()});
  EXPECT_EQ(tier.status().code(), StatusCode::kFailedPrecondition) << tier.status();
  EXPECT_THAT(std::string(tier.status().message()), HasSubstr("remove the directory"));
  EXPECT_THAT(std::string(tier.status().message()), HasSubstr(dir.db()));
}

TEST_F(SsdTierTest, ReopenKeepsWalAndFlushedWrites) {
  const BlockSet small = SequenceBlocks(10, 4, kBlock);
  const BlockSet large = SequenceBlocks(11, 96, kBlock);
  SSD_ASSERT_OK(tier_->Write(small.Batch()));
  TierBatch big = large.Batch();
  big.records.push_back({.key = ManifestKey(11), .value = "m11"});
  SSD_ASSERT_OK(tier_->Write(big));
  Open();
  ExpectReadsBack(*tier_, small);
  ExpectReadsBack(*tier_, large);
  auto m = tier_->GetRecord(ManifestKey(11));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(*m, "m11");
}

TEST_F(SsdTierTest, SyncedWritesRoundTripAndReopen) {
  Open({.sync = true});
  const BlockSet small = SequenceBlocks(12, 4, kBlock);
  const BlockSet large = SequenceBlocks(13, 80, kBlock);
  SSD_ASSERT_OK(tier_->Write(small.Batch()));
  SSD_ASSERT_OK(tier_->Write(large.Batch()));
  Open({.sync = true});
  ExpectReadsBack(*tier_, small);
  ExpectReadsBack(*tier_, large);
}

// The child writes one WAL batch and one flushed batch, then dies by SIGKILL without closing
// anything; the parent reopens the directory and finds both. The "threadsafe" death test style
// runs the child as a fresh process (a fork would inherit RocksDB's global thread pools without
// their threads), and that process runs this body again from the top: it finds the directory
// in the environment instead of making one.
TEST(SsdTierCrash, WritesSurviveSigkill) {
  constexpr const char* kDirVariable = "ATTIC_SSD_TIER_TEST_CRASH_DIR";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::optional<ScratchDir> scratch;
  std::string path;
  if (const char* inherited = std::getenv(kDirVariable)) {
    path = inherited;
  } else {
    scratch.emplace();
    path = scratch->db();
    ASSERT_EQ(setenv(kDirVariable, path.c_str(), 1), 0);
  }
  const BlockSet small = SequenceBlocks(20, 4, kBlock);
  const BlockSet large = SequenceBlocks(21, 80, kBlock);
  EXPECT_EXIT(
      {
        auto tier = SsdTier::Open({.path = path});
        if (!tier.ok() || !(*tier)->Write(small.Batch()).ok() ||
            !(*tier)->Write(large.Batch()).ok()) {
          std::_Exit(3);
        }
        std::raise(SIGKILL);
      },
      ::testing::KilledBySignal(SIGKILL), "");
  unsetenv(kDirVariable);
  auto tier = SsdTier::Open({.path = path});
  ASSERT_TRUE(tier.ok()) << tier.status();
  ExpectReadsBack(**tier, small);
  ExpectReadsBack(**tier, large);
}

// Writers on both paths and readers at once; every block read back is whole.
TEST_F(SsdTierTest, ConcurrentWritersAndReaders) {
  constexpr int kBatches = 6;
  std::vector<BlockSet> small, large;
  for (int i = 0; i < kBatches; ++i) {
    small.push_back(SequenceBlocks(100 + i, 4, kBlock));
    large.push_back(SequenceBlocks(200 + i, 70, kBlock));
  }
  std::atomic<int> written{0};
  std::atomic<bool> failed{false};
  auto writer = [&](const std::vector<BlockSet>& sets) {
    for (const BlockSet& set : sets) {
      if (!tier_->Write(set.Batch()).ok()) failed = true;
      written.fetch_add(1);
    }
  };
  auto reader = [&] {
    std::vector<std::byte> got(kBlock);
    while (written.load() < 2 * kBatches) {
      for (const BlockSet& set : small) {
        const Status s = tier_->ReadBlock(set.keys[1], got);
        if (s.ok() && got != set.bytes[1]) failed = true;
        if (!s.ok() && s.code() != StatusCode::kNotFound) failed = true;
      }
    }
  };
  std::vector<std::thread> threads;
  threads.emplace_back(writer, std::cref(small));
  threads.emplace_back(writer, std::cref(large));
  threads.emplace_back(reader);
  threads.emplace_back(reader);
  for (std::thread& t : threads) t.join();
  EXPECT_FALSE(failed.load());
  for (int i = 0; i < kBatches; ++i) {
    ExpectReadsBack(*tier_, small[i]);
    ExpectReadsBack(*tier_, large[i]);
  }
}

TEST_F(SsdTierTest, WrongDestinationSizeIsDataLossNamingBothSizes) {
  const BlockSet set = SequenceBlocks(30, 1, kBlock);
  SSD_ASSERT_OK(tier_->Write(set.Batch()));
  std::vector<std::byte> small(kBlock / 2);
  const Status s = tier_->ReadBlock(set.keys[0], small);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("private block seq 30 layer 0 head 0 block 0"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(std::to_string(kBlock)));
  EXPECT_THAT(std::string(s.message()), HasSubstr(std::to_string(kBlock / 2)));
  EXPECT_EQ(tier_->Stats().checksum_failures, 1u);
  std::vector<std::byte> missing(kBlock);
  EXPECT_EQ(tier_->ReadBlock(PrivateBlockKey(31, 0, 0, 0, BlockKind::kKey), missing).code(),
            StatusCode::kNotFound);
}

TEST_F(SsdTierTest, StatsCountBlocksAndRocksDbBytes) {
  const BlockSet set = SequenceBlocks(40, 80, kBlock);
  SSD_ASSERT_OK(tier_->Write(set.Batch()));
  ExpectReadsBack(*tier_, set);
  const SsdTierStats st = tier_->Stats();
  EXPECT_EQ(st.writes, 1u);
  EXPECT_EQ(st.write_errors, 0u);
  EXPECT_EQ(st.blocks_written, 80u);
  EXPECT_EQ(st.block_bytes_written, 80 * kBlock);
  EXPECT_EQ(st.blocks_read, 80u);
  EXPECT_EQ(st.block_bytes_read, 80 * kBlock);
  EXPECT_GT(st.rocksdb_bytes_written, 80 * kBlock);
  EXPECT_GT(st.rocksdb_bytes_read, 80 * kBlock);
  EXPECT_GT(st.flush_bytes_written, 80 * kBlock);
  EXPECT_GE(st.blob_bytes_read, 80 * kBlock);
  EXPECT_GT(st.total_sst_bytes, 0u);
  EXPECT_GT(st.write_amplification(), 1.0);
  EXPECT_LT(st.write_amplification(), 1.2);
}

TEST_F(SsdTierTest, DirectIoIsActiveOrExplained) {
  if (tier_->direct_io_active()) {
    EXPECT_TRUE(tier_->direct_io_note().empty());
    EXPECT_TRUE(tier_->Stats().direct_io);
  } else {
    EXPECT_THAT(tier_->direct_io_note(), HasSubstr("O_DIRECT refused"));
    GTEST_SKIP() << "the test directory refuses O_DIRECT: " << tier_->direct_io_note();
  }
  Open({.direct_io = false});
  EXPECT_FALSE(tier_->direct_io_active());
  EXPECT_TRUE(tier_->direct_io_note().empty());
}

TEST(SsdTierOpen, BadOptionsAreInvalidArgument) {
  ScratchDir dir;
  EXPECT_EQ(SsdTier::Open({}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SsdTier::Open({.path = dir.db(), .background_threads = 0}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(SsdTier::Open({.path = dir.db(), .block_shards = -1}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(SsdTier::Open({.path = dir.db(), .block_shards = 65}).status().code(),
            StatusCode::kInvalidArgument);
  const auto too_big = SsdTier::Open(
      {.path = dir.db(), .write_buffer_bytes = size_t{2} << 20, .flush_bytes = size_t{4} << 20});
  EXPECT_EQ(too_big.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(too_big.status().message()), HasSubstr("flush_bytes"));
}

TEST(SsdTierOpen, ASecondOpenOfOneDirectoryIsUnavailable) {
  ScratchDir dir;
  auto first = SsdTier::Open({.path = dir.db()});
  ASSERT_TRUE(first.ok()) << first.status();
  const auto second = SsdTier::Open({.path = dir.db()});
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(dir.db()));
}

}  // namespace
}  // namespace attic::ssd_test
