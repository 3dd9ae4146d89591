// SsdTier against a failing disk (FaultInjector): ENOSPC on the WAL and on a forced flush
// (also one over several block shards), EIO on reads and on everything, and corrupted blob reads.
// Each case checks the status code, that the message names what failed, that nothing written before
// the fault is lost (also across a reopen), and that writes resume once the fault is gone.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "kvstore/ssd/ssd_tier.h"
#include "tests/kvstore/ssd_test_util.h"

namespace attic::ssd_test {
namespace {

using Fault = FaultInjector::Fault;
using ::testing::HasSubstr;

constexpr size_t kBlock = 16384;

class SsdFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "no scratch directory";
    Open();
  }
  void Open() {
    tier_.reset();
    auto tier = SsdTier::Open({.path = dir_.db(),
                               .block_cache_bytes = size_t{8} << 20,
                               .write_buffer_bytes = size_t{16} << 20,
                               .faults = &faults_});
    ASSERT_TRUE(tier.ok()) << tier.status();
    tier_ = std::move(*tier);
  }
  // A block that is either wholly stored or absent: a failed batch is all or nothing.
  void ExpectWholeOrAbsent(const BlockSet& set) {
    int present = 0;
    for (size_t i = 0; i < set.keys.size(); ++i) {
      std::vector<std::byte> got(set.bytes[i].size());
      const Status s = tier_->ReadBlock(set.keys[i], got);
      if (s.ok()) {
        ++present;
        EXPECT_TRUE(got == set.bytes[i]);
      } else {
        EXPECT_EQ(s.code(), StatusCode::kNotFound) << s;
      }
    }
    EXPECT_TRUE(present == 0 || present == static_cast<int>(set.keys.size())) << present;
  }

  FaultInjector faults_;
  ScratchDir dir_;
  std::unique_ptr<SsdTier> tier_;
};

TEST_F(SsdFaultTest, NoSpaceOnTheWalIsResourceExhaustedAndWritesResume) {
  const BlockSet before = SequenceBlocks(1, 80, kBlock);  // flushed: in blob files
  const BlockSet wal = SequenceBlocks(2, 3, kBlock);      // in the WAL and memtable
  SSD_ASSERT_OK(tier_->Write(before.Batch()));
  SSD_ASSERT_OK(tier_->Write(wal.Batch()));

  faults_.Set(Fault::kNoSpace);
  const BlockSet failed = SequenceBlocks(3, 2, kBlock);
  const Status s = tier_->Write(failed.Batch());
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(dir_.db()));
  EXPECT_GT(faults_.injected(), 0u);
  ExpectReadsBack(*tier_, before);
  ExpectReadsBack(*tier_, wal);
  // Still full: the next write's resume fails and says so.
  EXPECT_EQ(tier_->Write(SequenceBlocks(4, 1, kBlock).Batch()).code(),
            StatusCode::kResourceExhausted);

  faults_.Set(Fault::kNone);
  const BlockSet after = SequenceBlocks(5, 2, kBlock);
  SSD_ASSERT_OK(tier_->Write(after.Batch()));
  ExpectReadsBack(*tier_, after);
  ExpectWholeOrAbsent(failed);
  EXPECT_EQ(tier_->Stats().write_errors, 2u);
  EXPECT_EQ(tier_->Stats().reopens, 1u) << "recovered by reopening";

  Open();
  ExpectReadsBack(*tier_, before);
  ExpectReadsBack(*tier_, wal);
  ExpectReadsBack(*tier_, after);
  ExpectWholeOrAbsent(failed);
}

TEST_F(SsdFaultTest, NoSpaceOnAForcedFlushIsResourceExhaustedAndWritesResume) {
  const BlockSet before = SequenceBlocks(1, 80, kBlock);
  const BlockSet wal = SequenceBlocks(2, 3, kBlock);
  SSD_ASSERT_OK(tier_->Write(before.Batch()));
  SSD_ASSERT_OK(tier_->Write(wal.Batch()));

  faults_.Set(Fault::kNoSpace);
  const BlockSet failed = SequenceBlocks(3, 80, kBlock);  // >= flush_bytes: memtable, then flush
  const Status s = tier_->Write(failed.Batch());
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("flush"));
  ExpectReadsBack(*tier_, before);
  ExpectReadsBack(*tier_, wal);

  faults_.Set(Fault::kNone);
  const BlockSet after = SequenceBlocks(5, 80, kBlock);
  SSD_ASSERT_OK(tier_->Write(after.Batch()));
  ExpectReadsBack(*tier_, after);
  ExpectWholeOrAbsent(failed);

  Open();
  ExpectReadsBack(*tier_, before);
  ExpectReadsBack(*tier_, wal);
  ExpectReadsBack(*tier_, after);
  ExpectWholeOrAbsent(failed);
}

// A large batch reaches the disk in two steps (flushed block shards, then its records through
// the WAL): a failed flush leaves at most blocks that no record names, never the record.
TEST_F(SsdFaultTest, AFailedShardFlushLeavesNoRecordWithoutItsBlocks) {
  const BlockSet before = StreamBlocks(1, 2, 8, 4, kBlock);
  SSD_ASSERT_OK(tier_->Write(before.Batch()));

  faults_.Set(Fault::kNoSpace);
  BlockSet failed;  // several sequences, so several shards; >= flush_bytes
  for (uint64_t seq = 30; seq < 38; ++seq) {
    failed.Append(StreamBlocks(seq, 1, 2, 2, kBlock));
  }
  TierBatch batch = failed.Batch();
  batch.records.push_back({.key = ManifestKey(3), .value = "manifest of 3"});
  const Status s = tier_->Write(batch);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(tier_->GetRecord(ManifestKey(3)).status().code(), StatusCode::kNotFound);

  faults_.Set(Fault::kNone);
  SSD_ASSERT_OK(tier_->Write(SequenceBlocks(5, 80, kBlock).Batch()));  // resumes
  Open();
  ExpectReadsBack(*tier_, before);
  EXPECT_EQ(tier_->GetRecord(ManifestKey(3)).status().code(), StatusCode::kNotFound);
  for (size_t i = 0; i < failed.keys.size(); ++i) {  // any subset, each whole or absent
    std::vector<std::byte> got(kBlock);
    const Status r = tier_->ReadBlock(failed.keys[i], got);
    if (r.ok()) {
      EXPECT_TRUE(got == failed.bytes[i]) << DescribeTierKey(failed.keys[i]);
    } else {
      EXPECT_EQ(r.code(), StatusCode::kNotFound) << r;
    }
  }
  // Written again, the batch is whole.
  SSD_ASSERT_OK(tier_->Write(batch));
  ExpectReadsBack(*tier_, failed);
  EXPECT_TRUE(tier_->GetRecord(ManifestKey(3)).ok());
}

TEST_F(SsdFaultTest, ReadErrorsAreUnavailableAndPass) {
  const BlockSet set = SequenceBlocks(1, 80, kBlock);
  SSD_ASSERT_OK(tier_->Write(set.Batch()));
  faults_.Set(Fault::kReadIoError);
  std::vector<std::byte> dst(kBlock);
  const Status one = tier_->ReadBlock(set.keys[5], dst);
  EXPECT_EQ(one.code(), StatusCode::kUnavailable) << one;
  EXPECT_THAT(std::string(one.message()), HasSubstr("private block seq 1 layer 0 head 0 block 5"));

  std::vector<std::vector<std::byte>> bufs(8, std::vector<std::byte>(kBlock));
  std::vector<std::span<std::byte>> dsts(bufs.begin(), bufs.end());
  std::vector<Status> statuses;
  EXPECT_EQ(tier_->ReadBlocks(std::span(set.keys).first(8), dsts, &statuses).code(),
            StatusCode::kUnavailable);
  for (const Status& s : statuses) EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  // Writes still work while reads fail.
  SSD_EXPECT_OK(tier_->Write(SequenceBlocks(2, 2, kBlock).Batch()));

  faults_.Set(Fault::kNone);
  ExpectReadsBack(*tier_, set);
}

TEST_F(SsdFaultTest, IoErrorsEverywhereAreUnavailableAndWritesResume) {
  const BlockSet before = SequenceBlocks(1, 4, kBlock);
  SSD_ASSERT_OK(tier_->Write(before.Batch()));
  faults_.Set(Fault::kIoError);
  const Status s = tier_->Write(SequenceBlocks(2, 4, kBlock).Batch());
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  faults_.Set(Fault::kNone);
  const BlockSet after = SequenceBlocks(3, 4, kBlock);
  SSD_ASSERT_OK(tier_->Write(after.Batch()));
  EXPECT_EQ(tier_->Stats().reopens, 1u);
  ExpectReadsBack(*tier_, before);
  ExpectReadsBack(*tier_, after);
}

TEST_F(SsdFaultTest, CorruptBlobReadsAreDataLossNamingTheKey) {
  const BlockSet set = SequenceBlocks(1, 80, kBlock);
  SSD_ASSERT_OK(tier_->Write(set.Batch()));
  faults_.Set(Fault::kCorruptReads);
  std::vector<std::byte> dst(kBlock, std::byte{0});
  const Status one = tier_->ReadBlock(set.keys[7], dst);
  EXPECT_EQ(one.code(), StatusCode::kDataLoss) << one;
  EXPECT_THAT(std::string(one.message()), HasSubstr("private block seq 1 layer 0 head 0 block 7"));
  EXPECT_THAT(std::string(one.message()), HasSubstr("checksum mismatch"));
  EXPECT_EQ(dst, std::vector<std::byte>(kBlock, std::byte{0})) << "dst written on failure";

  std::vector<std::vector<std::byte>> bufs(16, std::vector<std::byte>(kBlock));
  std::vector<std::span<std::byte>> dsts(bufs.begin(), bufs.end());
  std::vector<Status> statuses;
  EXPECT_EQ(tier_->ReadBlocks(std::span(set.keys).subspan(20, 16), dsts, &statuses).code(),
            StatusCode::kDataLoss);
  for (size_t i = 0; i < statuses.size(); ++i) {
    EXPECT_EQ(statuses[i].code(), StatusCode::kDataLoss) << i << ": " << statuses[i];
    EXPECT_THAT(std::string(statuses[i].message()), HasSubstr(DescribeTierKey(set.keys[20 + i])));
  }
  EXPECT_EQ(tier_->Stats().checksum_failures, 17u);

  faults_.Set(Fault::kNone);
  ExpectReadsBack(*tier_, set);
}

}  // namespace
}  // namespace attic::ssd_test
